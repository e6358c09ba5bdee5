"""The Kubeflow ``PyTorchJob`` the train stage runs on a cluster (kubeflow-training SDK models)."""

from __future__ import annotations

from typing import Any

from kubeforge.components.train.jobs import JobKind, submit_job, wait_for_job
from kubeforge.core.errors import KubeforgeError

GROUP, VERSION, PLURAL = "kubeflow.org", "v1", "pytorchjobs"
PYTORCHJOB = JobKind(
    "PyTorchJob",
    GROUP,
    VERSION,
    PLURAL,
    "Kubeflow's training operator",
    "Succeeded",
    5,
    "training.kubeflow.org/job-name",
)

# Each pod runs one trainer process (LOCAL_RANK unset, so 0): it serves its throughput on
# exactly this port (trainer.serve_throughput_metrics). The chart's training PodMonitor
# (monitoring.trainingPodMonitor) scrapes the container port named METRICS_PORT_NAME on pods
# carrying the training operator's label training.kubeflow.org/job-name; keep them in step.
METRICS_PORT = 9090
METRICS_PORT_NAME = "metrics"


def build_pytorchjob(
    name: str,
    namespace: str,
    image: str,
    command: list[str],
    workers: int = 1,
    gpus_per_replica: int = 1,
    node_selector: dict[str, str] | None = None,
    tolerations: list[dict[str, str]] | None = None,
    env: dict[str, str] | None = None,
    gpu_resource: str = "nvidia.com/gpu",
    pod_annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A PyTorchJob with one Master and ``workers`` Workers, each asking ``gpus_per_replica``.

    ``pod_annotations`` go on every replica's pod template (the training operator copies them
    to the pods), e.g. the run time the job declares to the GPU pool.

    Every replica's container gets ``KUBEFORGE_METRICS_PORT=METRICS_PORT`` and declares that
    port as ``METRICS_PORT_NAME``, so the chart's training PodMonitor scrapes its throughput.

    Returns the manifest as a plain dict (serialised from the kubeflow-training SDK models).

    Raises:
        KubeforgeError: negative sizes, or ``env`` setting ``KUBEFORGE_METRICS_PORT`` itself.
    """
    from kubeflow.training import models
    from kubernetes import client

    if workers < 0 or gpus_per_replica < 0:
        raise KubeforgeError("workers and gpus_per_replica must not be negative", "workers")
    if "KUBEFORGE_METRICS_PORT" in (env or {}):
        raise KubeforgeError(
            "env must not set KUBEFORGE_METRICS_PORT: the job serves metrics on "
            f"{METRICS_PORT} (the port the chart's training PodMonitor scrapes)",
            "env",
        )
    env_vars = {**(env or {}), "KUBEFORGE_METRICS_PORT": str(METRICS_PORT)}
    resources = (
        client.V1ResourceRequirements(
            limits={gpu_resource: str(gpus_per_replica)},
            requests={gpu_resource: str(gpus_per_replica)},
        )
        if gpus_per_replica
        else None
    )
    container = client.V1Container(
        name="pytorch",  # the training operator finds the container by this name
        image=image,
        command=command,
        env=[client.V1EnvVar(name=k, value=v) for k, v in sorted(env_vars.items())],
        ports=[
            client.V1ContainerPort(
                name=METRICS_PORT_NAME, container_port=METRICS_PORT, protocol="TCP"
            )
        ],
        resources=resources,
    )
    pod = client.V1PodSpec(
        containers=[container],
        node_selector=node_selector or None,
        tolerations=[client.V1Toleration(**t) for t in tolerations or []] or None,
    )

    def replica(count: int) -> Any:
        return models.KubeflowOrgV1ReplicaSpec(
            replicas=count,
            restart_policy="OnFailure",
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(annotations=pod_annotations)
                if pod_annotations
                else None,
                spec=pod,
            ),
        )

    specs = {"Master": replica(1)}
    if workers:
        specs["Worker"] = replica(workers)
    job = models.KubeflowOrgV1PyTorchJob(
        api_version=f"{GROUP}/{VERSION}",
        kind="PyTorchJob",
        metadata=client.V1ObjectMeta(
            name=name, namespace=namespace, labels={"app.kubernetes.io/managed-by": "kubeforge"}
        ),
        spec=models.KubeflowOrgV1PyTorchJobSpec(
            run_policy=models.KubeflowOrgV1RunPolicy(clean_pod_policy="None", backoff_limit=3),
            pytorch_replica_specs=specs,
        ),
    )
    manifest: dict[str, Any] = client.ApiClient().sanitize_for_serialization(job)
    return manifest


def submit_pytorchjob(api_client: Any, manifest: dict[str, Any]) -> dict[str, Any]:
    """Create the PyTorchJob, or return the existing one of the same name (get-or-create)."""
    return submit_job(api_client, PYTORCHJOB, manifest)


def wait_for_pytorchjob(api_client: Any, namespace: str, name: str, timeout: float) -> str:
    """Wait until the PyTorchJob's Succeeded or Failed condition is true; return which."""
    return wait_for_job(api_client, PYTORCHJOB, namespace, name, timeout)
