"""Prepare splits: read a table or an image folder, validate, clean, split and fingerprint it."""

from __future__ import annotations

import difflib
import io
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kubeforge.components.common.constraints import FORMATS
from kubeforge.components.common.params import StageParams, parse_columns
from kubeforge.components.common.splits import fingerprint, write_split
from kubeforge.core.errors import KubeforgeError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")


@dataclass(frozen=True)
class IngestParams(StageParams):
    """The ingest component's parameters; defaults and documentation: ``component.py``."""

    component = "kubeforge.components.ingest.component:ingest"

    data_uri: str
    label_column: str
    feature_columns: str
    data_format: str
    val_fraction: float
    test_fraction: float
    image_size: int
    gold_budget: float
    seed: int


@dataclass(frozen=True)
class Schema:
    """What the user declares about their data.

    Attributes:
        label_column: Column holding the class label; empty cells mean "unlabelled".
        feature_columns: Numeric feature columns; empty means every other column.
    """

    label_column: str = "label"
    feature_columns: tuple[str, ...] = ()


@dataclass
class IngestReport:
    """What ingest did, for the user and for MLflow."""

    source: str
    format: str
    rows_read: int
    rows_kept: int
    dropped: dict[str, int]
    feature_columns: list[str]
    label_column: str
    classes: list[str]
    splits: dict[str, int]
    unlabelled_rows: int
    fingerprint: str
    class_counts: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        """The report as indented JSON."""
        return json.dumps(asdict(self), indent=2, sort_keys=True)


def detect_format(uri: str, fmt: str) -> str:
    """Resolve ``auto`` from the URI's suffix (a folder means an image folder)."""
    if fmt not in FORMATS:
        raise KubeforgeError(f"unknown data format {fmt!r}; use one of {FORMATS}", "data_format")
    if fmt != "auto":
        return fmt
    lowered = uri.lower().rstrip("/")
    for suffix, name in ((".csv", "csv"), (".parquet", "parquet"), (".jsonl", "jsonl")):
        if lowered.endswith(suffix) or lowered.endswith(suffix + ".gz"):
            return name
    if lowered.endswith(".ndjson"):
        return "jsonl"
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri)
    if fs.isdir(path):
        return "images"
    raise KubeforgeError(
        f"cannot tell the format of {uri!r} from its name; set data_format to one of {FORMATS[1:]}",
        "data_format",
    )


def read_table(uri: str, fmt: str = "auto", image_size: int = 8) -> tuple[pd.DataFrame, str]:
    """Read ``uri`` (a local path, ``file://``, ``s3://``, ``gs://`` or ``http(s)://``).

    Returns:
        The raw table and the format it was read as.
    """
    import fsspec

    fmt = detect_format(uri, fmt)
    if fmt == "images":
        return read_image_folder(uri, image_size), fmt
    try:
        with fsspec.open(uri, "rb", compression="infer") as handle:
            raw = handle.read()
    except FileNotFoundError as exc:
        raise KubeforgeError(f"data file {uri!r} does not exist", "data_uri") from exc
    except (OSError, ValueError, ImportError) as exc:
        raise KubeforgeError(f"cannot open {uri!r}: {exc}", "data_uri") from exc
    if not raw.strip():
        raise KubeforgeError(f"data file {uri!r} is empty (0 bytes of data)", "data_uri")
    try:
        if fmt == "csv":
            frame = pd.read_csv(io.BytesIO(raw))
        elif fmt == "parquet":
            frame = pd.read_parquet(io.BytesIO(raw))
        else:
            frame = pd.read_json(io.BytesIO(raw), lines=True)
    except pd.errors.EmptyDataError as exc:
        raise KubeforgeError(f"data file {uri!r} holds no rows and no header", "data_uri") from exc
    except Exception as exc:  # noqa: BLE001 - every parser error means "unreadable"
        raise KubeforgeError(
            f"{uri!r} is not readable as {fmt}: {type(exc).__name__}: {exc}", "data_format"
        ) from exc
    return frame, fmt


def read_image_folder(uri: str, image_size: int) -> pd.DataFrame:
    """Read an image folder with one sub-folder per class into grey-scale pixel columns."""
    import fsspec
    from PIL import Image, UnidentifiedImageError

    fs, root = fsspec.core.url_to_fs(uri)
    if not fs.isdir(root):
        raise KubeforgeError(f"image folder {uri!r} does not exist", "data_uri")
    rows: list[dict[str, Any]] = []
    broken = 0
    classes = sorted(p for p in fs.ls(root, detail=False) if fs.isdir(p))
    if not classes:
        raise KubeforgeError(
            f"image folder {uri!r} has no class sub-folders (expected one folder per class)",
            "data_uri",
        )
    for class_dir in classes:
        label = class_dir.rstrip("/").rsplit("/", 1)[-1]
        for path in sorted(fs.ls(class_dir, detail=False)):
            if not path.lower().endswith(IMAGE_SUFFIXES):
                continue
            try:
                with fs.open(path, "rb") as handle:
                    image = Image.open(io.BytesIO(handle.read())).convert("L")
                    image = image.resize((image_size, image_size))
            except (UnidentifiedImageError, OSError):
                broken += 1
                continue
            pixels = np.asarray(image, dtype=np.float32).reshape(-1) / 255.0
            row: dict[str, Any] = {f"px{i}": float(v) for i, v in enumerate(pixels)}
            row["label"] = label
            row["_source"] = path
            rows.append(row)
    frame = pd.DataFrame(rows)
    frame.attrs["broken_images"] = broken
    if frame.empty:
        raise KubeforgeError(f"image folder {uri!r} holds no readable image", "data_uri")
    return frame


def validate_schema(frame: pd.DataFrame, schema: Schema) -> list[str]:
    """Check the declared columns exist; return the feature columns to use."""
    if schema.label_column not in frame.columns:
        raise KubeforgeError(
            f"label column {schema.label_column!r} is not in the data "
            f"({describe_columns(schema.label_column, frame.columns)})",
            "label_column",
        )
    if schema.feature_columns:
        missing = [c for c in schema.feature_columns if c not in frame.columns]
        if missing:
            raise KubeforgeError(
                f"feature columns {missing} are not in the data "
                f"({describe_columns(missing[0], frame.columns)})",
                "feature_columns",
            )
        features = list(schema.feature_columns)
    else:
        features = [c for c in frame.columns if c != schema.label_column and not c.startswith("_")]
    if not features:
        raise KubeforgeError("the data has no feature column besides the label", "feature_columns")
    return features


def describe_columns(wanted: str, columns: Any, shown: int = 12) -> str:
    """The columns a user may have meant: close matches first, then a few, then how many more."""
    names = [str(c) for c in columns]
    close = difflib.get_close_matches(wanted, names, n=3, cutoff=0.6)
    close += [n for n in names if wanted.lower() == n.lower() and n not in close]
    head = ", ".join(names[:shown])
    more = f", … and {len(names) - shown} more" if len(names) > shown else ""
    listing = f"{len(names)} columns: {head}{more}"
    return f"did you mean {' or '.join(map(repr, close))}? {listing}" if close else listing


def clean(
    frame: pd.DataFrame, features: list[str], label: str
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Drop broken and duplicate rows; return the clean table and counts by reason."""
    dropped: dict[str, int] = {}
    broken_images = int(frame.attrs.get("broken_images", 0))
    if broken_images:
        dropped["unreadable_image"] = broken_images
    numeric = frame[features].apply(pd.to_numeric, errors="coerce")
    non_numeric = numeric.isna() & frame[features].notna()
    bad_type = non_numeric.any(axis=1)
    missing = frame[features].isna().any(axis=1) & ~bad_type
    inf = np.isinf(numeric.to_numpy(dtype=np.float64, na_value=0.0)).any(axis=1)
    dropped["non_numeric_feature"] = int(bad_type.sum())
    dropped["missing_feature"] = int(missing.sum())
    dropped["infinite_feature"] = int((inf & ~bad_type & ~missing).sum())
    keep = ~(bad_type | missing | inf)
    out = numeric[keep].astype(np.float32)
    labels = frame.loc[keep, label]
    out[label] = labels.map(lambda v: None if pd.isna(v) else str(v).strip() or None)
    duplicate = out.duplicated(subset=[*features, label], keep="first")
    dropped["duplicate"] = int(duplicate.sum())
    out = out[~duplicate]
    # Same features with different labels: keep the first, the rest are contradictions.
    conflict = out.duplicated(subset=features, keep="first")
    dropped["conflicting_duplicate"] = int(conflict.sum())
    out = out[~conflict].reset_index(drop=True)
    return out, {k: v for k, v in dropped.items() if v}


def split(
    frame: pd.DataFrame, label: str, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, pd.DataFrame]:
    """Split labelled rows stratified by class; unlabelled rows all go to train.

    The split depends only on the rows' content and the seed, not on their order in the file.
    """
    from sklearn.model_selection import train_test_split

    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 < value < 1.0:
            raise KubeforgeError(f"{name} must be between 0 and 1, got {value}", name)
    if val_fraction + test_fraction >= 1.0:
        raise KubeforgeError("val_fraction + test_fraction must be below 1", "test_fraction")
    order = np.argsort(pd.util.hash_pandas_object(frame, index=False).to_numpy(), kind="stable")
    frame = frame.iloc[order].reset_index(drop=True)
    labelled = frame[frame[label].notna()]
    unlabelled = frame[frame[label].isna()]
    counts = labelled[label].value_counts()
    stratify = labelled[label] if len(counts) > 1 and counts.min() >= 3 else None
    n_holdout = round(len(labelled) * (val_fraction + test_fraction))
    if len(labelled) < 3 or n_holdout < 2 or n_holdout >= len(labelled):
        raise KubeforgeError(
            f"{len(labelled)} labelled rows cannot fill train, val and test splits "
            f"(val_fraction {val_fraction} + test_fraction {test_fraction} hold out "
            f"{n_holdout} rows; at least 2, and fewer than {len(labelled)}); "
            "add labelled rows or change the fractions",
            "test_fraction",
        )
    train, holdout = train_test_split(
        labelled, test_size=n_holdout, random_state=seed, stratify=stratify
    )
    hold_counts = holdout[label].value_counts()
    hold_stratify = holdout[label] if stratify is not None and hold_counts.min() >= 2 else None
    test_share = test_fraction / (val_fraction + test_fraction)
    val, test = train_test_split(
        holdout, test_size=test_share, random_state=seed, stratify=hold_stratify
    )
    splits = {
        "train": pd.concat([train, unlabelled]).reset_index(drop=True),
        "val": val.reset_index(drop=True),
        "test": test.reset_index(drop=True),
    }
    for name, part in splits.items():
        if part.empty:
            raise KubeforgeError(f"the {name} split is empty", f"{name}_fraction")
    return splits


MIN_GOLD_PER_CLASS = 2
"""Gold rows per class the label stage needs to build its labelling functions."""


def check_classes(labels: pd.Series, label: str) -> None:
    """Refuse a label column that holds fewer than two classes: nothing to learn."""
    counts = labels.dropna().value_counts()
    if len(counts) < 2:
        found = ", ".join(f"{k!r}: {v} rows" for k, v in counts.items()) or "no labelled row"
        raise KubeforgeError(
            f"label column {label!r} holds {len(counts)} class ({found}); "
            "a classifier needs rows of at least 2 classes",
            "label_column",
        )


def check_gold_budget(train: pd.DataFrame, label: str, gold_budget: float) -> None:
    """Refuse a training split whose gold budget cannot give each class its gold rows."""
    counts = train[label].dropna().value_counts()
    cap = math.floor(gold_budget * len(train))
    need = MIN_GOLD_PER_CLASS * len(counts)
    usable = min(cap, int(counts.sum()))
    if usable >= need and counts.min() >= MIN_GOLD_PER_CLASS:
        return
    if counts.min() < MIN_GOLD_PER_CLASS:
        rare = ", ".join(f"{k!r}: {v}" for k, v in counts.items() if v < MIN_GOLD_PER_CLASS)
        raise KubeforgeError(
            f"the training split holds fewer than {MIN_GOLD_PER_CLASS} labelled rows of some "
            f"classes ({rare}); add labelled rows of them or lower val_fraction/test_fraction",
            "test_fraction",
        )
    least = math.ceil(need / len(train) * 1000) / 1000
    raise KubeforgeError(
        f"gold_budget {gold_budget} of {len(train)} training rows allows {usable} gold rows; "
        f"{len(counts)} classes need at least {need} ({MIN_GOLD_PER_CLASS} per class): raise "
        f"gold_budget to at least {least:g} or add rows",
        "gold_budget",
    )


def prepare_splits(params: IngestParams, out_dir: Path) -> IngestReport:
    """Read, validate, clean, split and fingerprint ``params.data_uri``; write Parquet splits.

    Writes ``train.parquet``, ``val.parquet``, ``test.parquet`` and ``report.json`` to
    ``out_dir`` (created); nothing is written when the input is refused.
    """
    data_uri = params.data_uri
    schema = Schema(params.label_column, parse_columns(params.feature_columns))
    frame, fmt = read_table(data_uri, params.data_format, params.image_size)
    if fmt == "images" and schema.label_column != "label":
        schema = Schema(label_column="label", feature_columns=schema.feature_columns)
    rows_read = len(frame) + int(frame.attrs.get("broken_images", 0))
    if frame.empty:
        raise KubeforgeError(f"{data_uri!r} holds no rows", "data_uri")
    features = validate_schema(frame, schema)
    cleaned, dropped = clean(frame, features, schema.label_column)
    if cleaned.empty:
        raise KubeforgeError(
            f"every row of {data_uri!r} was dropped ({dropped}); check the feature columns",
            "feature_columns",
        )
    check_classes(cleaned[schema.label_column], schema.label_column)
    splits = split(
        cleaned, schema.label_column, params.val_fraction, params.test_fraction, params.seed
    )
    check_gold_budget(splits["train"], schema.label_column, params.gold_budget)
    labels = cleaned[schema.label_column]
    classes = sorted(labels.dropna().unique().tolist())
    report = IngestReport(
        source=data_uri,
        format=fmt,
        rows_read=rows_read,
        rows_kept=len(cleaned),
        dropped=dropped,
        feature_columns=features,
        label_column=schema.label_column,
        classes=[str(c) for c in classes],
        splits={name: len(part) for name, part in splits.items()},
        unlabelled_rows=int(labels.isna().sum()),
        fingerprint=fingerprint(cleaned),
        class_counts={str(k): int(v) for k, v in labels.value_counts().sort_index().items()},
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, part in splits.items():
        write_split(
            part,
            out_dir / f"{name}.parquet",
            report.label_column,
            report.feature_columns,
            report.classes,
            report.fingerprint,
            source=data_uri,
        )
    (out_dir / "report.json").write_text(report.to_json())
    return report
