"""The project image in tests of the real node: built here with buildah, imported into the node.

:func:`build_project_image` builds the Dockerfile with ``hack/node/image.sh`` (buildah, no
engine, a local Debian base when no registry answers) unless the image in buildah's store was
built from the same sources: the build labels it with :func:`source_digest`, a hash of the
Dockerfile, the build script, ``pyproject.toml``, the constraints and every file the Dockerfile
copies. :func:`import_image` streams it into a node's containerd (``buildah push`` to a docker
archive on a pipe, ``ctr images import -``: no copy on disk). Pods then run it with
``imagePullPolicy: Never``.

The ``project_image`` fixture does both for the session's real node, and again into every node
the session starts later (a node's containerd starts empty).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from kubeforge.core.config import IMAGE
from kubeforge.testing.controlplane import repo_root
from kubeforge.testing.node import NodeHandle, RunningNode

DIGEST_LABEL = "io.kubeforge.source-digest"
# What the image is made of besides the packages (see the Dockerfile and .dockerignore).
BUILD_FILES = (
    "Dockerfile",
    ".dockerignore",
    "hack/node/image.sh",
    "hack/constraints.txt",
    "pyproject.toml",
    "README.md",
)
PACKAGES = ("core", "cli", "testing", "components", "pipelines", "operators")
BUILD_TIMEOUT_S = 3600  # a cold build downloads torch's CUDA wheels and writes ~7 GB
IMPORT_TIMEOUT_S = 900


class ImageError(RuntimeError):
    """The project image could not be built or imported."""


@dataclass(frozen=True)
class ProjectImage:
    """An image in buildah's store: its reference, ID and the digest of its sources."""

    ref: str
    image_id: str
    digest: str


def _copied(path: Path) -> bool:
    """Whether the Dockerfile's context keeps ``path`` (``.dockerignore`` drops these)."""
    parts = path.parts
    return "__pycache__" not in parts and "tests" not in parts and path.suffix != ".pyc"


def source_digest(root: Path | None = None) -> str:
    """SHA-256 over the names and contents of everything the image is built from."""
    root = root or repo_root()
    files = [root / name for name in BUILD_FILES]
    for package in PACKAGES:
        files += sorted(
            p for p in (root / package).rglob("*") if p.is_file() and _copied(p.relative_to(root))
        )
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _inspect(ref: str) -> dict[str, object] | None:
    proc = subprocess.run(
        ["buildah", "inspect", "--type", "image", ref],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if proc.returncode != 0:
        return None
    info: dict[str, object] = json.loads(proc.stdout)
    return info


def built_image(ref: str = IMAGE) -> ProjectImage | None:
    """The image ``ref`` in buildah's store with the digest it was built from, if any."""
    info = _inspect(ref)
    if info is None:
        return None
    config = info.get("OCIv1")
    labels = (config.get("config") or {}).get("Labels") or {} if isinstance(config, dict) else {}
    return ProjectImage(ref, str(info.get("FromImageID", "")), str(labels.get(DIGEST_LABEL, "")))


def build_project_image(ref: str = IMAGE, log: Path | None = None) -> ProjectImage:
    """The project image built from the current sources (built now unless it is already).

    Raises:
        ImageError: buildah is missing or the build failed (the end of its log says why).
    """
    digest = source_digest()
    current = built_image(ref)
    if current is not None and current.digest == digest:
        return current
    script = repo_root() / "hack" / "node" / "image.sh"
    env = {**os.environ, "IMAGE": ref, "SOURCE_DIGEST": digest}
    env.pop("IMPORT", None)
    started = time.monotonic()
    with (log or Path(os.devnull)).open("w") as sink:
        proc = subprocess.run(
            ["bash", str(script)],
            stdout=subprocess.PIPE,
            stderr=sink if log else sys.stderr,
            text=True,
            env=env,
            check=False,
            timeout=BUILD_TIMEOUT_S,
        )
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:] if log else "(see the test's stderr)"
        raise ImageError(f"building {ref} failed ({proc.returncode}):\n{tail}")
    built = built_image(ref)
    if built is None or built.digest != digest:
        raise ImageError(f"{ref} was built but does not carry {DIGEST_LABEL}={digest}")
    print(f"project image {ref} built in {time.monotonic() - started:.0f}s", file=sys.stderr)
    return built


def import_image(image: ProjectImage, containerd_sock: Path) -> None:
    """Stream ``image`` from buildah's store into the containerd at ``containerd_sock``.

    Raises:
        ImageError: ``buildah push`` or ``ctr images import`` failed.
    """
    push = subprocess.Popen(
        ["buildah", "push", "-q", image.ref, f"docker-archive:/dev/stdout:{image.ref}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    ctr = subprocess.run(
        ["ctr", "--address", str(containerd_sock), "-n", "k8s.io", "images", "import", "-"],
        stdin=push.stdout,
        capture_output=True,
        check=False,
        timeout=IMPORT_TIMEOUT_S,
    )
    assert push.stdout is not None and push.stderr is not None
    push.stdout.close()
    pushed = push.wait(timeout=60)
    errors = push.stderr.read().decode(errors="replace")
    push.stderr.close()
    if pushed != 0 or ctr.returncode != 0:
        raise ImageError(
            f"importing {image.ref}: buildah push exited {pushed} ({errors.strip()}), "
            f"ctr exited {ctr.returncode} ({ctr.stderr.decode(errors='replace').strip()})"
        )


def import_into_node(image: ProjectImage, node: RunningNode) -> None:
    """Import ``image`` into ``node``'s containerd, timed on stderr."""
    started = time.monotonic()
    import_image(image, node.workdir / "containerd.sock")
    print(
        f"project image {image.ref} imported into the node in {time.monotonic() - started:.0f}s",
        file=sys.stderr,
    )


@pytest.fixture(scope="session")
def project_image(_node_handle: NodeHandle, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The project image, built from the current sources and in the real node's containerd.

    Built with buildah unless buildah's store holds an image of the same sources; imported
    into the running node and again into any node the session starts later. Pods use it with
    ``imagePullPolicy: Never``. Skipped when ``KUBECONFIG`` names a cluster.
    """
    if _node_handle.plane is None:
        pytest.skip("the project image goes into the session's own real node (KUBECONFIG is set)")
    image = build_project_image(log=tmp_path_factory.mktemp("image") / "build.log")
    _node_handle.ensure()
    _node_handle.on_start(lambda node: import_into_node(image, node))
    return image.ref
