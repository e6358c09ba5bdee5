"""``kubeforge label-budget``: label accuracy vs gold labels spent, as a table, a PNG and MLflow."""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any

import typer

from kubeforge.core.errors import KubeforgeError


def _parse_fractions(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise KubeforgeError(f"fractions must be numbers, got {text!r}", "fractions") from exc
    if not values or any(not 0.0 < v <= 1.0 for v in values):
        raise KubeforgeError(f"each fraction must be in (0, 1], got {text!r}", "fractions")
    return tuple(sorted(values))


def label_budget(
    data_uri: Annotated[str, typer.Argument(help="CSV, Parquet, JSONL or image folder.")],
    label_column: Annotated[str, typer.Option(help="Column holding the class.")] = "label",
    data_format: Annotated[str, typer.Option(help="auto, csv, parquet, jsonl or images.")] = "auto",
    labeling_functions: Annotated[
        str, typer.Option(help="module:function building the LFs; default: any numeric data.")
    ] = "kubeforge.components.label.generic:labeling_functions",
    fractions: Annotated[
        str, typer.Option(help="Comma-separated shares of training rows spent as gold.")
    ] = "0.01,0.02,0.05,0.1,0.2",
    output: Annotated[Path, typer.Option("--output", "-o", help="The PNG to write.")] = Path(
        "label_budget.png"
    ),
    seed: Annotated[int, typer.Option(help="Seed of the split and the gold choice.")] = 0,
    mlflow_tracking_uri: Annotated[str, typer.Option(help="MLflow; empty: the local one.")] = "",
) -> None:
    """Train the label model with growing gold sets; plot accuracy vs labels spent."""
    from kubeforge.cli.app import _fail

    try:
        points, uri, run_id = run_label_budget(
            data_uri, label_column, data_format, labeling_functions,
            _parse_fractions(fractions), output, seed, mlflow_tracking_uri,
        )  # fmt: skip
    except KubeforgeError as exc:
        _fail(str(exc))
    typer.echo("| gold share | gold rows | label model | majority vote | gold-only model |")
    typer.echo("|---|---|---|---|---|")
    for p in points:
        if "gold_rows" not in p:
            typer.echo(f"| {p['fraction']:.0%} | - | skipped: too few gold rows per class | | |")
            continue
        typer.echo(
            f"| {p['fraction']:.0%} | {p['gold_rows']} | {p['label_model_accuracy']:.3f} | "
            f"{p['majority_vote_accuracy']:.3f} | {p['gold_only_accuracy']:.3f} |"
        )
    typer.echo(f"figure: {output}\nMLflow run: {run_id} ({uri})")


def run_label_budget(
    data_uri: str,
    label_column: str,
    data_format: str,
    labeling_functions: str,
    fractions: tuple[float, ...],
    output: Path,
    seed: int,
    tracking_uri: str,
) -> tuple[list[dict[str, Any]], str, str]:
    """Ingest ``data_uri``, measure the budget curve, write the PNG, log all to MLflow."""
    import mlflow

    from kubeforge.components.common.splits import load_split
    from kubeforge.components.ingest.prepare import IngestParams, prepare_splits
    from kubeforge.components.label.budget import budget_curve
    from kubeforge.components.label.figures import budget_figure
    from kubeforge.components.label.labeling import LabelParams
    from kubeforge.core.tracking import connect

    work = Path(tempfile.mkdtemp(prefix="kubeforge-budget-"))
    try:
        changes: dict[str, Any] = {
            "data_uri": data_uri, "label_column": label_column, "data_format": data_format,
            "seed": seed,
        }  # fmt: skip
        if "gold_budget" in {f.name for f in fields(IngestParams)}:
            changes["gold_budget"] = max(fractions)  # ingest checks the largest share
        ingest = IngestParams.defaults(**changes)
        prepare_splits(ingest, work / "splits")
        train = load_split(work / "splits" / "train.parquet")
        params = LabelParams.defaults(labeling_functions=labeling_functions, seed=seed)
        points = budget_curve(train, params, work / "label", fractions)
        output.parent.mkdir(parents=True, exist_ok=True)
        budget_figure(points, f"Label budget curve: {Path(data_uri).name}", output)
        uri = connect(tracking_uri, "kubeforge")
        with mlflow.start_run(
            run_name="label-budget", tags={"kubeforge.stage": "label-budget"}
        ) as run:
            mlflow.log_params({"data_uri": data_uri, "labeling_functions": labeling_functions})
            for p in points:
                if "gold_rows" in p:
                    for key in (
                        "label_model_accuracy",
                        "majority_vote_accuracy",
                        "gold_only_accuracy",
                    ):
                        if p[key] is not None:
                            mlflow.log_metric(key, p[key], step=int(p["gold_rows"]))
            mlflow.log_artifact(str(output), "figures")
            mlflow.log_text(json.dumps(points, indent=2), "label_budget.json")
        return points, uri, run.info.run_id
    finally:
        shutil.rmtree(work, ignore_errors=True)
