"""The ingest stage as the component runs it: prepare the splits, then outputs and MLflow."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kubeforge.components.ingest.prepare import IngestParams, prepare_splits
from kubeforge.core.tracking import stage_run


def run_ingest(
    params: IngestParams,
    outputs: dict[str, Any],
    tracking_uri: str,
    parent_run_id: str,
) -> None:
    """Run ingest and fill the KFP output artifacts (objects with ``path`` and ``metadata``)."""
    import mlflow

    with stage_run("ingest", tracking_uri, parent_run_id):
        work = Path(tempfile.mkdtemp(prefix="kubeforge-ingest-"))
        try:
            report = prepare_splits(params, work)
            mlflow.log_params(asdict(params))
            mlflow.log_metrics(
                {
                    "rows_read": report.rows_read,
                    "rows_kept": report.rows_kept,
                    **{f"dropped_{k}": v for k, v in report.dropped.items()},
                    **{f"rows_{k}": v for k, v in report.splits.items()},
                }
            )
            mlflow.set_tag("kubeforge.fingerprint", report.fingerprint)
            for name in ("train", "val", "test"):
                artifact = outputs[name]
                shutil.copyfile(work / f"{name}.parquet", artifact.path)
                artifact.metadata.update(
                    {"rows": report.splits[name], "fingerprint": report.fingerprint}
                )
                _log_dataset(work / f"{name}.parquet", params.data_uri, report.label_column, name)
            Path(outputs["report"].path).write_text(report.to_json())
            mlflow.log_text(report.to_json(), "ingest_report.json")
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _log_dataset(path: Path, source: str, label: str, context: str) -> None:
    import mlflow
    import pandas as pd
    from mlflow.data.pandas_dataset import from_pandas

    frame = pd.read_parquet(path)
    dataset = from_pandas(frame, source=source, targets=label, name=context)
    mlflow.log_input(dataset, context=context)
