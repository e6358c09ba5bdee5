"""The split format every stage reads and writes: Parquet with its schema in the file metadata.

Ingest writes the train/val/test splits; label writes the labelled train split; train, distill
and deploy read them back. The metadata carries the label column, the feature columns, the
classes and a content fingerprint, so a later stage needs nothing else to interpret the rows.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kubeforge.core.errors import KubeforgeError


@dataclass(frozen=True)
class LoadedSplit:
    """A split read back with its schema."""

    frame: pd.DataFrame
    label_column: str
    feature_columns: list[str]
    classes: list[str]
    source: str = ""  # the URI ingest read the rows from; "" when unknown

    def features(self) -> np.ndarray:
        """Feature matrix as float32."""
        return np.asarray(self.frame[self.feature_columns].to_numpy(dtype=np.float32))

    def label_indices(self) -> np.ndarray:
        """Labels as class indices; -1 for unlabelled rows."""
        index = {c: i for i, c in enumerate(self.classes)}
        return np.array(
            [index.get(v, -1) if isinstance(v, str) else -1 for v in self.frame[self.label_column]],
            dtype=np.int64,
        )


def fingerprint(frame: pd.DataFrame) -> str:
    """A content hash: equal for the same rows and columns in any order, different otherwise."""
    columns = sorted(frame.columns)
    canonical = frame[columns]
    row_hashes = np.sort(pd.util.hash_pandas_object(canonical, index=False).to_numpy())
    digest = hashlib.sha256()
    digest.update(json.dumps([(c, str(canonical[c].dtype)) for c in columns]).encode())
    digest.update(row_hashes.tobytes())
    return digest.hexdigest()


def write_split(
    frame: pd.DataFrame,
    path: Path,
    label: str,
    features: list[str],
    classes: list[str],
    content_hash: str = "",
    source: str = "",
) -> None:
    """Write one split atomically with its schema (and fingerprint) in the Parquet metadata.

    Args:
        frame: The rows.
        path: The Parquet file to write.
        label: The label column.
        features: The feature columns.
        classes: The class names, in class-index order.
        content_hash: The fingerprint to record; empty to compute it from ``frame``.
        source: The URI the rows were read from (deploy names a model after it).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    meta = {
        b"kubeforge.label_column": label.encode(),
        b"kubeforge.feature_columns": json.dumps(features).encode(),
        b"kubeforge.classes": json.dumps(classes).encode(),
        b"kubeforge.fingerprint": (content_hash or fingerprint(frame)).encode(),
        b"kubeforge.source": source.encode(),
    }
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)


def write_split_frame(frame: pd.DataFrame, path: Path, like: LoadedSplit) -> None:
    """Write ``frame`` with the schema of an already loaded split (for later stages)."""
    write_split(
        frame, path, like.label_column, like.feature_columns, like.classes, source=like.source
    )


def load_split(path: str | Path) -> LoadedSplit:
    """Read a split written by :func:`write_split` (a file, or a folder holding one)."""
    import pyarrow.parquet as pq

    path = Path(path)
    if path.is_dir():
        candidates = sorted(path.glob("*.parquet"))
        if not candidates:
            raise KubeforgeError(f"no Parquet file in {path}")
        path = candidates[0]
    table = pq.read_table(path)
    meta = table.schema.metadata or {}
    try:
        label = meta[b"kubeforge.label_column"].decode()
        features = json.loads(meta[b"kubeforge.feature_columns"])
        classes = json.loads(meta[b"kubeforge.classes"])
    except KeyError as exc:
        raise KubeforgeError(f"{path} was not written by kubeforge ingest (no schema)") from exc
    source = meta.get(b"kubeforge.source", b"").decode()
    return LoadedSplit(table.to_pandas(), label, features, classes, source)
