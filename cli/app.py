"""The ``kubeforge`` command line: run, submit, compile, serve, demo."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from kubeforge.cli.label_budget import label_budget
from kubeforge.cli.pool import pool_app
from kubeforge.core.config import home
from kubeforge.core.errors import KubeforgeError
from kubeforge.pipelines.ir import parameters_from_strings

app = typer.Typer(no_args_is_help=True, help="Kubeforge: raw data to a served model.")
app.add_typer(pool_app, name="pool")


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=1)


def read_ir_file(name: str) -> Any:
    """A compiled pipeline read from an IR YAML file (a ``PipelineIR``)."""
    from kubeforge.pipelines.ir import load_ir

    path = Path(name)
    if not path.is_file():
        raise KubeforgeError(f"pipeline file {name} does not exist", "pipeline")
    return load_ir(path.read_text(), str(path))


def resolve_pipeline(name: str) -> Any:
    """A project pipeline by name, or an IR YAML file by path, as a callable KFP component."""
    from kubeforge.pipelines.registry import get_pipeline

    if Path(name).suffix in (".yaml", ".yml"):
        from kfp import components

        read_ir_file(name)  # refuse a file that is not a compiled pipeline, with its name
        return components.load_component_from_file(name)
    return get_pipeline(name)


def run_pipeline_locally(
    name: str,
    params: dict[str, Any],
    experiment: str = "kubeforge",
    verbose: bool = False,
) -> dict[str, Any]:
    """Run pipeline ``name`` (or an IR file) through kfp.local, tracked in MLflow; summarize.

    Shows one line per stage; the kfp logs go to ``.kubeforge/runs/<run>/`` (``verbose``
    streams them as well). A failure raises one error naming the stage, the cause and the log.
    """
    import datetime as dt
    import logging

    import mlflow
    from kfp import local

    from kubeforge.cli.progress import RunConsole
    from kubeforge.core.tracking import connect, error_file
    from kubeforge.pipelines.ir import task_order

    os.environ["KUBEFORGE_HOME"] = str(home())
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # its INFO lines are for developers
    uri = connect(params.get("mlflow_tracking_uri", ""), experiment)
    params["mlflow_tracking_uri"] = uri
    pipeline = resolve_pipeline(name)
    with mlflow.start_run(run_name=f"pipeline-{name}", tags={"kubeforge.pipeline": name}) as run:
        run_id = run.info.run_id
        run_dir = home() / "runs" / f"{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}-{run_id[:8]}"
        os.environ["KUBEFORGE_RUN_DIR"] = str(run_dir)  # where a failing stage leaves its line
        params["mlflow_parent_run_id"] = run_id
        mlflow.log_params({k: v for k, v in params.items() if not k.startswith("mlflow_")})
        mlflow.set_tag("kubeforge.logs", str(run_dir))
        console = RunConsole(
            run_dir,
            task_order(compiled_ir(name)),
            lambda stage: _key_figure(uri, run_id, stage),
            verbose=verbose,
        )
        started = time.perf_counter()
        try:
            with console.capture():
                local.init(
                    runner=local.SubprocessRunner(use_venv=False),
                    pipeline_root=str(home() / "kfp"),
                    raise_on_error=True,
                )
                pipeline(**params)
        except Exception as exc:  # noqa: BLE001 - report the stage's own message when it left one
            mlflow.set_tag("kubeforge.status", "failed")
            stage = console.failed_stage()
            left = error_file()
            detail = left.read_text().strip() if left.exists() else _plain(str(exc)).strip()
            detail = detail.removeprefix(f"{stage}: ").splitlines()[0] if detail else "unknown"
            where = f"stage {stage!r}" if stage else f"pipeline {name!r}"
            raise KubeforgeError(
                f"{where} failed: {detail}; log: {console.log_path(stage)}"
            ) from exc
        wall = time.perf_counter() - started
        mlflow.log_metric("pipeline_seconds", wall)
        summary = summarize(run_id, uri, wall)
        summary["logs"] = str(run_dir)
        mlflow.log_metrics(summary["cost"])
    return summary


def _plain(text: str) -> str:
    """``text`` without terminal colour codes (kfp colours its own messages)."""
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def _key_figure(tracking_uri: str, parent_run_id: str, stage: str) -> str:
    """A finished stage's key figure, read from its MLflow run."""
    from mlflow.tracking import MlflowClient

    from kubeforge.pipelines.main.summary import key_figure

    client = MlflowClient(tracking_uri)
    parent = client.get_run(parent_run_id)
    runs = client.search_runs(
        [parent.info.experiment_id],
        f"tags.mlflow.parentRunId = '{parent_run_id}' and tags.`kubeforge.stage` = '{stage}'",
    )
    return key_figure(stage, dict(runs[0].data.metrics)) if runs else ""


def summarize(parent_run_id: str, tracking_uri: str, wall_seconds: float) -> dict[str, Any]:
    """Gather each stage's metrics from MLflow for the end-of-run summary, and the run's cost."""
    from mlflow.tracking import MlflowClient

    from kubeforge.pipelines.main.summary import run_cost

    client = MlflowClient(tracking_uri)
    parent = client.get_run(parent_run_id)
    runs = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_run_id}'"
    )
    stages = {r.data.tags.get("kubeforge.stage"): r for r in runs}
    summary: dict[str, Any] = {
        "mlflow_run_id": parent_run_id,
        "tracking_uri": tracking_uri,
        "pipeline_seconds": round(wall_seconds, 1),
    }
    for stage, run in stages.items():
        summary[str(stage)] = dict(run.data.metrics)
        if stage == "deploy":
            summary["deploy"]["model_name"] = run.data.params.get("model_name")
            summary["deploy"]["alias"] = run.data.params.get("alias")
    summary["cost"] = run_cost(summary)
    return summary


def print_summary(summary: dict[str, Any], endpoint: str = "", answer: str = "") -> None:
    """Print the end-of-run summary of the ``main`` pipeline."""
    from kubeforge.pipelines.main.summary import summary_lines

    typer.echo("\n".join(summary_lines(summary, endpoint, answer)))


@app.command()
def run(
    pipeline: Annotated[
        str, typer.Argument(help="Pipeline name, e.g. 'main', or a compiled IR YAML file.")
    ],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="key=value pipeline parameter.")
    ] = None,
    local_run: Annotated[bool, typer.Option("--local", help="Run here through kfp.local.")] = True,
    experiment: Annotated[
        str, typer.Option("--experiment", help="MLflow experiment of the run.")
    ] = "kubeforge",
    summary_file: Annotated[
        Path | None,
        typer.Option("--summary-file", help="Also write the run's summary here as JSON."),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Stream the kfp task logs as well.")
    ] = False,
) -> None:
    """Run a pipeline locally (kfp.local), tracked in MLflow: one line per stage, a summary."""
    if not local_run:
        _fail("only --local runs are built so far; use 'kubeforge compile' for the Kubeflow UI")
    try:
        params = parameters_from_strings(compiled_ir(pipeline), param or [])
        summary = run_pipeline_locally(pipeline, params, experiment, verbose)
    except KubeforgeError as exc:
        if summary_file is not None:  # e.g. a pod's termination message: the operator reads it
            summary_file.write_text(json.dumps({"error": str(exc)}))
        _fail(str(exc))
    if summary_file is not None:  # small: a termination message keeps at most 4 KiB
        keys = ("mlflow_run_id", "tracking_uri", "pipeline_seconds")
        small = {k: summary[k] for k in keys if k in summary}
        small["cost"] = _status_cost(summary["cost"])
        summary_file.write_text(json.dumps(small))
    print_summary(summary)


def _status_cost(cost: dict[str, float]) -> dict[str, Any]:
    """The cost a PipelineRun's status carries (``status.cost``), from the summary's."""
    out: dict[str, Any] = {
        "goldRows": int(cost.get("cost_gold_rows", 0)),
        "humanLabelledRows": int(cost.get("cost_human_rows", 0)),
        "cpuSeconds": round(cost.get("cost_cpu_seconds", 0.0), 1),
        "gpuSeconds": round(cost.get("cost_gpu_seconds", 0.0), 1),
        "wallSeconds": round(cost.get("cost_wall_seconds", 0.0), 1),
    }
    if "cost_gpu_hours_held" in cost:
        out["gpuHoursHeld"] = round(cost["cost_gpu_hours_held"], 4)
    return out


@app.command("compile")
def compile_cmd(
    pipeline: Annotated[str, typer.Argument(help="Pipeline name, e.g. 'main'.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="IR YAML file to write.")],
) -> None:
    """Compile a pipeline to KFP IR YAML (uploadable in the Kubeflow UI)."""
    from kubeforge.pipelines.registry import compile_pipeline

    try:
        compile_pipeline(pipeline, str(output))
    except KubeforgeError as exc:
        _fail(str(exc))
    typer.echo(f"wrote {output}")


def compiled_ir(pipeline: str) -> Any:
    """The compiled IR of a project pipeline (by name) or of an IR YAML file (by path)."""
    from kubeforge.pipelines.registry import pipeline_ir

    if Path(pipeline).suffix in (".yaml", ".yml"):
        return read_ir_file(pipeline)
    return pipeline_ir(pipeline)


@app.command()
def submit(
    pipeline: Annotated[
        str, typer.Argument(help="Pipeline name, e.g. 'main', or a compiled IR YAML file.")
    ],
    host: Annotated[
        str, typer.Option("--host", help="Kubeflow Pipelines endpoint, e.g. http://localhost:8888.")
    ],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="key=value pipeline parameter.")
    ] = None,
    experiment: Annotated[
        str, typer.Option("--experiment", help="KFP experiment of the run (made if missing).")
    ] = "kubeforge",
    namespace: Annotated[
        str | None,
        typer.Option("--namespace", help="Kubeflow profile namespace (multi-user Kubeflow)."),
    ] = None,
    run_name: Annotated[
        str | None,
        typer.Option("--run-name", help="Run name; an existing run of this name is reused."),
    ] = None,
) -> None:
    """Upload a pipeline to Kubeflow Pipelines as compiled, start a run, print its UI link."""
    import datetime as dt

    from kubeforge.core.kfp import KfpBackend

    try:
        ir = compiled_ir(pipeline)
        params = parameters_from_strings(ir, param or [])
        name = run_name or f"{ir.name}-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}"
        kfp = KfpBackend(host, namespace=namespace)
        pipeline_id, version_id = kfp.ensure_pipeline_version(ir.name, ir.text, ir.digest)
        experiment_id = kfp.ensure_experiment(experiment)
        run_id = kfp.create_run(name, experiment_id, pipeline_id, version_id, params)
    except KubeforgeError as exc:
        _fail(str(exc))
    typer.echo(f"pipeline {ir.name} version {ir.digest[:12]} (id {version_id})")
    typer.echo(f"run {name} (id {run_id}) in experiment {experiment}")
    typer.echo(f"Kubeflow UI: {kfp.run_url(run_id)}")


def load_served_model(model_uri: str) -> Any:
    """Load a model from an MLflow URI (``models:/name@alias``) or a local ``model.pt``."""
    if Path(model_uri).is_file():
        from kubeforge.components.common.model import load

        return load(model_uri)
    import mlflow.pytorch

    from kubeforge.core.tracking import connect

    connect()
    try:
        return mlflow.pytorch.load_model(model_uri)
    except Exception as exc:  # noqa: BLE001 - any failure means the URI does not resolve
        raise KubeforgeError(f"cannot load model {model_uri!r}: {exc}", "model_uri") from exc


@app.command()
def serve(
    model_uri: Annotated[str, typer.Argument(help="models:/name@alias, or a model.pt file.")],
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8080,
    name: Annotated[str, typer.Option(help="Model name in the predict route.")] = "model",
    max_body_bytes: Annotated[
        int, typer.Option(help="Largest request body in bytes; larger ones get 413.")
    ] = 4 << 20,
    read_timeout: Annotated[
        float, typer.Option(help="Seconds a request body may take to arrive; then 408.")
    ] = 10.0,
    shutdown_delay: Annotated[
        float,
        typer.Option(help="Seconds after SIGTERM that readiness is false while still serving."),
    ] = 0.0,
    threads: Annotated[int, typer.Option(help="PyTorch threads for inference.")] = 1,
) -> None:
    """Serve a model: KServe V1 and V2 (Open Inference Protocol) routes, /metrics.

    The server listens at once and answers readiness (/v2/health/ready) with 503 until the model
    is loaded; an alias (models:/name@alias) is resolved once, at start, and logged.
    """
    import logging

    import torch

    from kubeforge.components.deploy.loading import load_for_serving
    from kubeforge.components.deploy.server import ModelServer, ServingSettings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if threads < 1:
        _fail("--threads must be at least 1")
    torch.set_num_threads(threads)
    try:
        settings = ServingSettings(max_body_bytes, read_timeout, shutdown_delay)
        server = ModelServer(None, None, name, host, port, settings)
    except KubeforgeError as exc:
        _fail(str(exc))
    typer.echo(f"serving {model_uri} at {server.predict_url} and {server.infer_url}")
    try:
        server.serve_forever(loader=lambda: load_for_serving(model_uri))
    except KubeforgeError as exc:
        _fail(str(exc))


# The demo's own labelling functions, written for digits' pixels: an example, chosen explicitly.
DEMO_LFS = "kubeforge.components.label.examples.digits:labeling_functions"


def write_demo_data(path: Path) -> Path:
    """scikit-learn's digits (shipped with the package) as a CSV with a ``label`` column."""
    from sklearn.datasets import load_digits

    frame = load_digits(as_frame=True).frame.rename(columns={"target": "label"})
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


@app.command()
def demo(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Stream the kfp task logs as well.")
    ] = False,
) -> None:
    """Run the main job on digits: ingest, label (5% gold), train, distill, deploy, serve, ask."""
    import urllib.request

    from kubeforge.components.common.splits import load_split
    from kubeforge.components.deploy.server import ModelServer

    data = write_demo_data(home() / "data" / "digits.csv")
    typer.echo(f"demo data: {data} (scikit-learn digits, 1797 rows, 64 pixel features)")
    typer.echo("running ingest -> label -> train -> distill -> deploy through kfp.local ...")
    try:
        params = parameters_from_strings(
            compiled_ir("main"), [f"data_uri={data}", f"labeling_functions={DEMO_LFS}"]
        )
        summary = run_pipeline_locally("main", params, verbose=verbose)
        deploy = summary.get("deploy", {})
        model_uri = f"models:/{deploy.get('model_name')}@{deploy.get('alias')}"
        model = load_served_model(model_uri)
    except KubeforgeError as exc:
        _fail(str(exc))
    server = ModelServer(model, list(model.spec.classes), str(deploy.get("model_name"))).start()
    try:
        test_rows = sorted((home() / "kfp").glob("**/ingest*/test_data"), key=os.path.getmtime)
        split = load_split(test_rows[-1])
        row = split.features()[0].tolist()
        request = urllib.request.Request(
            server.predict_url,
            data=json.dumps({"instances": [row]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as resp:
            answer = json.loads(resp.read())
        truth = split.frame[split.label_column].iloc[0]
        print_summary(
            summary,
            endpoint=server.predict_url,
            answer=f"{answer['predictions'][0]} (p={answer['probabilities'][0]:.2f}; true {truth})",
        )
        typer.echo(
            f"serve it again with: kubeforge serve {model_uri} --name {deploy.get('model_name')}"
        )
    finally:
        server.stop()


app.command("label-budget")(label_budget)


@app.command()
def version() -> None:
    """Print Kubeforge's version."""
    from importlib.metadata import version as dist_version

    typer.echo(dist_version("kubeforge"))


def main() -> None:
    """Entry point for ``python -m kubeforge.cli.app``."""
    app(sys.argv[1:])


if __name__ == "__main__":
    main()
