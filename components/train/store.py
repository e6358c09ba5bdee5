"""Where the train stage and its workers exchange files: a folder, an object store or MLflow.

Pods of a PyTorchJob or TrainJob share no disk with the step that started them. Everything they
read (config, data) and write (checkpoints, model, result) lives under one root URI:

- ``mlflow-artifacts:/...`` (or ``mlflow-artifacts://host:port/...``): the artifact proxy of
  ``mlflow server --serve-artifacts``, resolved against ``MLFLOW_TRACKING_URI`` like MLflow does;
- any fsspec URL (``s3://``, ``gs://``, ``file://``...), e.g. the KFP pipeline root's own URIs;
- a plain local path (``backend=local``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from kubeforge.core.errors import KubeforgeError

MLFLOW_SCHEME = "mlflow-artifacts:"


def is_remote(uri: str) -> bool:
    """True for a URI that is not a path on this machine (``file://`` counts as local)."""
    return uri.startswith(MLFLOW_SCHEME) or ("://" in uri and not uri.startswith("file://"))


def join(root: str, name: str) -> str:
    """``root/name`` for a path or a URI."""
    return f"{root.rstrip('/')}/{name}" if name else root


class Store:
    """Files under ``root``; every method takes names relative to it (``a/b.pt``)."""

    def __init__(self, root: str) -> None:
        """Open ``root``: a local path, an fsspec URL or an ``mlflow-artifacts:`` URI."""
        self.root = root.rstrip("/")
        self._mlflow = root.startswith(MLFLOW_SCHEME)

    def __repr__(self) -> str:
        """The root, for messages."""
        return f"Store({self.root!r})"

    def _repo(self, name: str = "") -> Any:
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        return get_artifact_repository(join(self.root, name))

    def _fs(self) -> tuple[Any, str]:
        import fsspec

        fs, path = fsspec.core.url_to_fs(self.root)
        return fs, str(path)

    def write_bytes(self, name: str, data: bytes) -> None:
        """Write ``name`` whole; a reader never sees half of it."""
        if self._mlflow:
            with tempfile.TemporaryDirectory() as tmp:
                local = Path(tmp) / Path(name).name
                local.write_bytes(data)
                parent = str(Path(name).parent)
                self._repo().log_artifact(str(local), None if parent == "." else parent)
            return
        fs, base = self._fs()
        target = join(base, name)
        if is_remote(self.root):
            fs.pipe_file(target, data)  # one PUT: object stores have no half-written objects
            return
        fs.makedirs(str(Path(target).parent), exist_ok=True)
        partial = target + ".partial"
        fs.pipe_file(partial, data)
        fs.mv(partial, target)

    def read_bytes(self, name: str) -> bytes:
        """The content of ``name``.

        Raises:
            KubeforgeError: ``name`` does not exist under the root.
        """
        try:
            if self._mlflow:
                with tempfile.TemporaryDirectory() as tmp:
                    local = self._repo().download_artifacts(name, dst_path=tmp)
                    return Path(local).read_bytes()
            fs, base = self._fs()
            data: bytes = fs.cat_file(join(base, name))
            return data
        except Exception as exc:  # noqa: BLE001 - fsspec and MLflow each raise their own types
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise KubeforgeError(f"{join(self.root, name)} cannot be read: {first}") from exc

    def names(self, folder: str) -> list[str]:
        """File names directly inside ``folder`` (empty when it does not exist)."""
        if self._mlflow:
            return [Path(info.path).name for info in self._repo().list_artifacts(folder)]
        fs, base = self._fs()
        path = join(base, folder)
        if not fs.exists(path):
            return []
        return [Path(str(p)).name for p in fs.ls(path, detail=False)]

    def delete(self, name: str) -> None:
        """Remove ``name`` where the store allows it (MLflow's artifact proxy keeps every file)."""
        if self._mlflow:
            return
        fs, base = self._fs()
        fs.rm(join(base, name))

    def upload(self, local: Path, name: str) -> None:
        """Copy a local file, or a folder and its files, to ``name``."""
        if self._mlflow:
            repo = self._repo()
            if local.is_dir():
                repo.log_artifacts(str(local), name)
            else:
                parent = str(Path(name).parent)
                if Path(name).name != local.name:
                    self.write_bytes(name, local.read_bytes())
                else:
                    repo.log_artifact(str(local), None if parent == "." else parent)
            return
        files = sorted(p for p in local.rglob("*") if p.is_file()) if local.is_dir() else [local]
        for path in files:
            relative = path.relative_to(local).as_posix() if local.is_dir() else ""
            self.write_bytes(join(name, relative) if relative else name, path.read_bytes())

    def download(self, name: str, local: Path) -> Path:
        """Copy ``name`` (a file or a folder) to the folder ``local``; return the local copy."""
        local.mkdir(parents=True, exist_ok=True)
        if self._mlflow:
            return Path(self._repo().download_artifacts(name, dst_path=str(local)))
        fs, base = self._fs()
        source = join(base, name)
        target = local / Path(name).name
        if fs.isdir(source):
            fs.get(source.rstrip("/") + "/", str(target), recursive=True)
        else:
            fs.get(source, str(target))
        return target


def fetch(uri: str, local: Path) -> Path:
    """A local copy of ``uri`` (a file or a folder) under ``local``; a local path is itself."""
    if not is_remote(uri) and not uri.startswith("file://"):
        return Path(uri)
    parent, _, name = uri.rstrip("/").rpartition("/")
    if uri.startswith(MLFLOW_SCHEME) and parent in ("mlflow-artifacts:", "mlflow-artifacts:/"):
        raise KubeforgeError(f"{uri} names no file under the artifact root")
    return Store(parent).download(name, local)
