"""The ``kubeforge`` command line."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, help="Kubeforge: raw data to a served model.")


@app.command()
def demo() -> None:
    """Run the main job locally: ingest, label, train, distill, deploy on scikit-learn's digits."""
    typer.echo(
        "kubeforge demo will run the ingest -> label -> train -> distill -> deploy pipeline "
        "locally through kfp.local on scikit-learn's digits data, tracked in MLflow under "
        ".kubeforge/, and end with a served model answering a request.\n"
        "Not built yet: the pipeline and its five components (see the README's status section)."
    )
    raise typer.Exit(code=2)


@app.command()
def version() -> None:
    """Print Kubeforge's version."""
    from importlib.metadata import version as dist_version

    typer.echo(dist_version("kubeforge"))
