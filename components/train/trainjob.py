"""The Kubeflow Trainer v2 ``TrainJob`` the train stage runs on a cluster (kubeflow SDK models).

A TrainJob names a runtime (Trainer ships ``torch-distributed``, a ClusterTrainingRuntime) and
says how many nodes and processes per node it wants; the Trainer controller turns it into a JobSet
whose pods run ``torchrun`` (the runtime's torch policy sets its ``PET_*`` rendezvous variables).
"""

from __future__ import annotations

from typing import Any

from kubeforge.components.train.jobs import JobKind, submit_job, wait_for_job
from kubeforge.core.errors import KubeforgeError

GROUP, VERSION, PLURAL = "trainer.kubeflow.org", "v1alpha1", "trainjobs"
# Trainer names the TrainJob's JobSet after it; JobSet labels every pod with that name.
TRAINJOB = JobKind(
    "TrainJob",
    GROUP,
    VERSION,
    PLURAL,
    "Kubeflow Trainer v2",
    "Complete",
    2,
    "jobset.sigs.k8s.io/jobset-name",
)
RUNTIME = "torch-distributed"
# The replicated job and container of Trainer's torch runtimes that run the trainer.
TRAINER_NODE = "node"
PATCH_MANAGER = "kubeforge.io/train"
# SIGTERM to SIGKILL: the trainer saves a checkpoint of the step in flight within it.
GRACE_PERIOD_S = 60


def build_trainjob(
    name: str,
    namespace: str,
    image: str,
    command: list[str],
    nodes: int = 1,
    gpus_per_node: int = 1,
    node_selector: dict[str, str] | None = None,
    tolerations: list[dict[str, str]] | None = None,
    env: dict[str, str] | None = None,
    runtime: str = RUNTIME,
    gpu_resource: str = "nvidia.com/gpu",
    pod_annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A TrainJob of ``nodes`` nodes on ``runtime``, each asking ``gpus_per_node`` GPUs.

    ``pod_annotations`` go on the trainer nodes' pods (through the runtime patch's pod template
    metadata), e.g. the run time the job declares to the GPU pool.

    Each node runs one process per GPU (one on a CPU node); ``command`` is what ``torchrun``
    starts, e.g. ``["torchrun", "-m", "kubeforge.components.train.trainer", CONFIG_URI]``.

    Returns the manifest as a plain dict (serialised from the ``kubeflow-trainer-api`` models).

    Raises:
        KubeforgeError: fewer than one node or negative GPUs.
    """
    from kubeflow_trainer_api import models

    if nodes < 1:
        raise KubeforgeError(f"a TrainJob needs at least one node, got {nodes}", "workers")
    if gpus_per_node < 0:
        raise KubeforgeError(
            f"gpus_per_replica must not be negative, got {gpus_per_node}", "gpus_per_replica"
        )
    gpus = {gpu_resource: models.IoK8sApimachineryPkgApiResourceQuantity(str(gpus_per_node))}
    resources = (
        models.IoK8sApiCoreV1ResourceRequirements(limits=gpus, requests=gpus)
        if gpus_per_node
        else None
    )
    pod = models.TrainerV1alpha1PodSpecPatch(
        node_selector=node_selector or None,
        tolerations=[models.IoK8sApiCoreV1Toleration(**t) for t in tolerations or []] or None,
        termination_grace_period_seconds=GRACE_PERIOD_S,
    )
    patch = models.TrainerV1alpha1RuntimePatch(
        manager=PATCH_MANAGER,
        training_runtime_spec=models.TrainerV1alpha1TrainingRuntimeSpecPatch(
            template=models.TrainerV1alpha1JobSetTemplatePatch(
                spec=models.TrainerV1alpha1JobSetSpecPatch(
                    replicated_jobs=[
                        models.TrainerV1alpha1ReplicatedJobPatch(
                            name=TRAINER_NODE,
                            template=models.TrainerV1alpha1JobTemplatePatch(
                                spec=models.TrainerV1alpha1JobSpecPatch(
                                    template=models.TrainerV1alpha1PodTemplatePatch(
                                        metadata=models.IoK8sApimachineryPkgApisMetaV1ObjectMeta(
                                            annotations=pod_annotations
                                        )
                                        if pod_annotations
                                        else None,
                                        spec=pod,
                                    )
                                )
                            ),
                        )
                    ]
                )
            )
        ),
    )
    job = models.TrainerV1alpha1TrainJob(
        api_version=f"{GROUP}/{VERSION}",
        kind="TrainJob",
        metadata=models.IoK8sApimachineryPkgApisMetaV1ObjectMeta(
            name=name, namespace=namespace, labels={"app.kubernetes.io/managed-by": "kubeforge"}
        ),
        spec=models.TrainerV1alpha1TrainJobSpec(
            runtime_ref=models.TrainerV1alpha1RuntimeRef(
                name=runtime, kind="ClusterTrainingRuntime", api_group=GROUP
            ),
            trainer=models.TrainerV1alpha1Trainer(
                image=image,
                command=command,
                env=[
                    models.IoK8sApiCoreV1EnvVar(name=k, value=v)
                    for k, v in sorted((env or {}).items())
                ]
                or None,
                num_nodes=nodes,
                num_proc_per_node=max(gpus_per_node, 1),
                resources_per_node=resources,
            ),
            runtime_patches=[patch],
        ),
    )
    manifest: dict[str, Any] = job.to_dict()
    return manifest


def submit_trainjob(api_client: Any, manifest: dict[str, Any]) -> dict[str, Any]:
    """Create the TrainJob, or return the existing one of the same name (get-or-create)."""
    return submit_job(api_client, TRAINJOB, manifest)


def wait_for_trainjob(api_client: Any, namespace: str, name: str, timeout: float) -> str:
    """Wait until the TrainJob's Complete or Failed condition is true; return which."""
    return wait_for_job(api_client, TRAINJOB, namespace, name, timeout)
