"""``kubeforge pool simulate``: replay a job history through the GPU pool planner (what-if)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any

import typer

from kubeforge.core.durations import parse_duration
from kubeforge.operators.gpupool.core.planner import ScaleDownPolicy
from kubeforge.operators.gpupool.core.pool_config import pool_config
from kubeforge.operators.gpupool.sim.engine import ClusterSettings
from kubeforge.operators.gpupool.sim.replay import (
    ClusterTrace,
    ReplayError,
    check_fits,
    jobs_from_objects,
    read_jobs_csv,
)
from kubeforge.operators.gpupool.sim.whatif import render, what_if

pool_app = typer.Typer(no_args_is_help=True, help="GPU node pools: what-if simulation.")


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=1)


def _durations(text: str, option: str) -> list[float]:
    try:
        return [parse_duration(p.strip()) if p.strip() != "0" else 0.0 for p in text.split(",")]
    except ValueError:
        raise ReplayError(f"{option} {text!r}: give durations such as 0,1m,3m,5m,10m") from None


def _counts(text: str, option: str, minimum: int = 1) -> list[int]:
    try:
        values = [int(p) for p in text.split(",")]
    except ValueError:
        raise ReplayError(f"{option} {text!r}: give whole numbers such as 20,50,100") from None
    if any(v < minimum for v in values):
        raise ReplayError(f"{option} {text!r}: every value must be at least {minimum}")
    return values


def _pool_settings(pool_file: Path | None) -> ClusterSettings:
    """The pool spec's planner settings; the file's values, else the CRD's defaults."""
    import yaml

    obj: dict[str, Any] = {"metadata": {"name": "what-if"}, "spec": {"gpu": {}, "provider": {}}}
    if pool_file is not None:
        try:
            loaded = yaml.safe_load(pool_file.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ReplayError(f"--pool {pool_file}: cannot read it ({exc})") from None
        if not isinstance(loaded, dict) or loaded.get("kind") != "GPUNodePool":
            raise ReplayError(f"--pool {pool_file}: not a GPUNodePool manifest")
        obj = loaded
    try:
        config = pool_config(obj)
    except (ValueError, TypeError, KeyError) as exc:
        raise ReplayError(f"--pool {pool_file}: {exc}") from None
    policy = config.policy
    return ClusterSettings(
        gpus_per_node=policy.gpus_per_node,
        min_nodes=policy.min_nodes,
        max_nodes=policy.max_nodes,
        max_in_flight=policy.max_in_flight,
        idle_after_s=policy.idle_after_s,
        min_node_age_s=policy.min_node_age_s,
        scale_down=policy.scale_down,
        headroom_nodes=policy.headroom_nodes,
        # The operator always learns the pool's boot times: under IdleAfter too, a gang waits
        # for busy nodes that declared run times say free within one boot.
        learn_boot_time=True,
    )


def _cluster_jobs() -> ClusterTrace:
    """Finished PyTorchJobs and TrainJobs of the cluster in the kubeconfig."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    from kubeforge.core.kube import api_client

    custom = client.CustomObjectsApi(api_client())
    objects: list[dict[str, Any]] = []
    for group, version, plural, kind in (
        ("kubeflow.org", "v1", "pytorchjobs", "PyTorchJob"),
        ("trainer.kubeflow.org", "v1alpha1", "trainjobs", "TrainJob"),
    ):
        try:
            items = custom.list_cluster_custom_object(group, version, plural)["items"]
        except ApiException as exc:
            if exc.status == 404:  # that kind is not installed: nothing to read
                continue
            raise ReplayError(f"reading {plural} from the cluster failed: {exc.reason}") from None
        objects += [{**item, "kind": kind} for item in items]
    return jobs_from_objects(objects)


@pool_app.command()
def simulate(
    jobs: Annotated[
        Path | None,
        typer.Option(
            "--jobs",
            help="CSV of jobs: submit_time,replicas,gpus_per_replica,duration "
            "(seconds, durations like 30m, or ISO times), optionally expected_runtime "
            "(the run time a job declares; empty: none).",
        ),
    ] = None,
    from_cluster: Annotated[
        bool,
        typer.Option(
            "--from-cluster",
            help="Replay the finished PyTorchJobs/TrainJobs of the kubeconfig's cluster.",
        ),
    ] = False,
    pool: Annotated[
        Path | None, typer.Option("--pool", help="A GPUNodePool manifest (YAML) to replay with.")
    ] = None,
    gpus_per_node: Annotated[
        int | None, typer.Option("--gpus-per-node", help="Overrides spec.gpu.perNode.")
    ] = None,
    max_nodes: Annotated[
        int | None, typer.Option("--max-nodes", help="Overrides spec.scaling.maxNodes.")
    ] = None,
    idle_after: Annotated[
        str | None, typer.Option("--idle-after", help="Overrides spec.scaleDown.idleAfter.")
    ] = None,
    scale_down_policy: Annotated[
        str | None,
        typer.Option("--scale-down-policy", help="Overrides spec.scaleDown.policy."),
    ] = None,
    boot_time: Annotated[
        str, typer.Option("--boot-time", help="Node boot time range, e.g. 3m-5m.")
    ] = "3m-5m",
    sweep_idle_after: Annotated[
        str, typer.Option("--sweep-idle-after", help="idleAfter values of the frontier.")
    ] = "0,1m,3m,5m,10m",
    headroom_nodes: Annotated[
        int | None,
        typer.Option("--headroom-nodes", help="Overrides spec.scaling.headroomNodes."),
    ] = None,
    sweep_headroom_nodes: Annotated[
        str | None,
        typer.Option(
            "--sweep-headroom-nodes",
            help="headroomNodes values of the frontier (default: headroomNodes).",
        ),
    ] = None,
    sweep_max_nodes: Annotated[
        str | None,
        typer.Option(
            "--sweep-max-nodes", help="maxNodes values of the frontier (default: maxNodes)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the boot times.")] = 0,
) -> None:
    """Replay a job history through this pool's planner and the baselines; print the table."""
    try:
        if (jobs is None) == (not from_cluster):
            raise ReplayError("give exactly one of --jobs FILE.csv or --from-cluster")
        settings = _pool_settings(pool)
        overrides: dict[str, Any] = {"seed": seed}
        if gpus_per_node is not None:
            if gpus_per_node < 1:
                raise ReplayError(f"--gpus-per-node {gpus_per_node}: it must be at least 1")
            overrides["gpus_per_node"] = gpus_per_node
        if max_nodes is not None:
            if max_nodes < 1:
                raise ReplayError(f"--max-nodes {max_nodes}: it must be at least 1")
            overrides["max_nodes"] = overrides["max_in_flight"] = max_nodes
        if headroom_nodes is not None:
            if headroom_nodes < 0:
                raise ReplayError(f"--headroom-nodes {headroom_nodes}: it must be at least 0")
            overrides["headroom_nodes"] = headroom_nodes
        if idle_after is not None:
            overrides["idle_after_s"] = _durations(idle_after, "--idle-after")[0]
        if scale_down_policy is not None:
            try:
                chosen = ScaleDownPolicy(scale_down_policy)
            except ValueError:
                choices = ", ".join(p.value for p in ScaleDownPolicy)
                raise ReplayError(
                    f"--scale-down-policy {scale_down_policy!r}: choose one of {choices}"
                ) from None
            overrides["scale_down"] = chosen
        low, _, high = boot_time.partition("-")
        boot = _durations(low, "--boot-time")[0], _durations(high or low, "--boot-time")[0]
        if boot[0] > boot[1]:
            raise ReplayError(f"--boot-time {boot_time!r}: the low end is above the high end")
        overrides["provision_delay_s"] = boot
        settings = dataclasses.replace(settings, **overrides)
        if jobs is not None:
            try:
                text = jobs.read_text()
            except OSError as exc:
                raise ReplayError(f"--jobs {jobs}: cannot read it ({exc.strerror})") from None
            trace = read_jobs_csv(text, str(jobs))
        else:
            trace, skipped, notes = _cluster_jobs()
            if skipped:
                typer.echo(f"left out {len(skipped)} job(s): " + "; ".join(skipped[:5]))
            if notes:
                typer.echo(
                    f"run time not declared for {len(notes)} job(s): " + "; ".join(notes[:5])
                )
        sweep_nodes = (
            _counts(sweep_max_nodes, "--sweep-max-nodes")
            if sweep_max_nodes
            else [settings.max_nodes]
        )
        check_fits(trace, settings.gpus_per_node, min([settings.max_nodes, *sweep_nodes]))
        sweep_headroom = (
            _counts(sweep_headroom_nodes, "--sweep-headroom-nodes", minimum=0)
            if sweep_headroom_nodes
            else [settings.headroom_nodes]
        )
        fewest = min([settings.max_nodes, *sweep_nodes])
        if max([settings.headroom_nodes, *sweep_headroom]) > fewest:
            raise ReplayError(
                f"headroomNodes {max([settings.headroom_nodes, *sweep_headroom])} is above "
                f"maxNodes {fewest}: the spare nodes count toward maxNodes"
            )
        sweep_idle = _durations(sweep_idle_after, "--sweep-idle-after")
    except ReplayError as exc:
        _fail(str(exc))
        return
    typer.echo(
        f"{len(trace)} jobs over {trace[-1].created_at / 3600:.2f} h, pool of at most "
        f"{settings.max_nodes} x {settings.gpus_per_node} GPUs, idleAfter "
        f"{settings.idle_after_s:g}s, scale-down {settings.scale_down.value}, boot "
        f"{boot[0]:g}-{boot[1]:g}s\n"
    )
    typer.echo(render(what_if(trace, settings, sweep_idle, sweep_nodes, sweep_headroom)))
