"""The test cluster runs real controllers: controller manager, scheduler, kwok, training operator.

Nothing here plays a controller: the tests create what a user creates and watch what the real
controllers make of it.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from kubeforge.components.train.pytorchjob import build_pytorchjob, submit_pytorchjob
from kubeforge.testing.builders import kueue_queue
from kubeforge.testing.controllers import Kueue, Kwok, Trainer, TrainingOperator
from kubeforge.testing.fixtures import Kubectl, wait_for

GROUP, VERSION, PLURAL = "kubeflow.org", "v1", "pytorchjobs"


GpuNode = Callable[[str], str]


@pytest.fixture
def gpu_node(api_client: Any) -> Iterator[GpuNode]:
    """Make kwok nodes of a pool advertising 8 GPUs (what a device plugin would report).

    They are deleted after the test, so no later test's pods land on them.
    """
    core = client.CoreV1Api(api_client)
    made: list[str] = []

    def make(pool: str) -> str:
        name = f"{pool}-{secrets.token_hex(3)}"
        core.create_node(
            {
                "metadata": {
                    "name": name,
                    "labels": {"kubeforge.io/pool": pool, "type": "kwok"},
                    "annotations": {"kwok.x-k8s.io/node": "fake"},
                }
            }
        )
        made.append(name)
        amounts = {"nvidia.com/gpu": "8", "cpu": "64", "memory": "512Gi", "pods": "110"}
        core.patch_node_status(name, {"status": {"capacity": amounts, "allocatable": amounts}})
        return name

    yield make
    for name in made:
        core.delete_node(name)


def job_conditions(api_client: Any, namespace: str, name: str) -> dict[str, str]:
    job = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )
    return {c["type"]: c["status"] for c in job.get("status", {}).get("conditions", [])}


def test_apiserver_reports_its_release_version(kubectl: Kubectl) -> None:
    versions = json.loads(kubectl("version", "-o", "json").stdout)
    assert versions["serverVersion"]["gitVersion"] == "v1.35.4"
    assert versions["clientVersion"]["gitVersion"] == "v1.35.4"


def test_namespace_gets_its_service_account_and_root_ca_and_really_goes_away(
    api_client: Any,
) -> None:
    core = client.CoreV1Api(api_client)
    name = f"kf-ns-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": name}})
    wait_for(lambda: bool(core.list_namespaced_service_account(name).items), timeout=60)
    wait_for(
        lambda: any(
            cm.metadata.name == "kube-root-ca.crt"
            for cm in core.list_namespaced_config_map(name).items
        ),
        timeout=60,
    )
    core.delete_namespace(name)

    def gone() -> bool:
        try:
            core.read_namespace(name)
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_for(gone, timeout=90)


def test_training_operator_runs_a_pytorchjob_on_kwok_gpu_nodes(
    api_client: Any,
    namespace: str,
    kwok: Kwok,
    training_operator: TrainingOperator,
    gpu_node: GpuNode,
) -> None:
    pool = f"to-{secrets.token_hex(3)}"
    nodes = {gpu_node(pool) for _ in range(4)}
    job = build_pytorchjob(
        "gang",
        namespace,
        "kubeforge/test:never-pulled",
        ["train"],
        workers=3,
        gpus_per_replica=8,
        node_selector={"kubeforge.io/pool": pool},
    )
    submit_pytorchjob(api_client, job)
    core = client.CoreV1Api(api_client)

    def all_ranks_placed() -> bool:
        pods = core.list_namespaced_pod(
            namespace, label_selector="training.kubeflow.org/job-name=gang"
        )
        return len(pods.items) == 4 and all(p.spec.node_name for p in pods.items)

    wait_for(all_ranks_placed, timeout=60)
    pods = core.list_namespaced_pod(namespace, label_selector="training.kubeflow.org/job-name=gang")
    # The real scheduler put one 8-GPU rank on each 8-GPU node of the pool.
    assert {p.spec.node_name for p in pods.items} == nodes
    services = core.list_namespaced_service(namespace).items
    assert {s.metadata.name for s in services} >= {"gang-master-0", "gang-worker-0"}
    wait_for(lambda: job_conditions(api_client, namespace, "gang").get("Succeeded") == "True", 90)


def test_training_operator_webhook_refuses_two_masters(
    api_client: Any, namespace: str, training_operator: TrainingOperator
) -> None:
    job = build_pytorchjob("twomasters", namespace, "img", ["train"], workers=1)
    job["spec"]["pytorchReplicaSpecs"]["Master"]["replicas"] = 2
    with pytest.raises(ApiException) as refused:
        client.CustomObjectsApi(api_client).create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, job
        )
    assert refused.value.status == 403
    assert "Master" in refused.value.body
    assert "validator.pytorchjob.training-operator.kubeflow.org" in refused.value.body


def is_suspended(api_client: Any, namespace: str, name: str) -> bool:
    job = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )
    return bool(job["spec"].get("runPolicy", {}).get("suspend"))


def test_kueue_admits_one_gang_of_two_within_its_gpu_quota(
    api_client: Any, namespace: str, kueue: Kueue, training_operator: TrainingOperator
) -> None:
    name = kueue_queue(api_client, namespace, gpus=16)
    for job_name in ("first", "second"):
        job = build_pytorchjob(job_name, namespace, "img", ["train"], workers=1, gpus_per_replica=8)
        job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] = name
        submit_pytorchjob(api_client, job)
        if job_name == "first":
            wait_for(lambda: not is_suspended(api_client, namespace, "first"), timeout=60)
    # Kueue's webhook suspended the second on creation and keeps it so: the quota is spent.
    assert is_suspended(api_client, namespace, "second")


def trainjob(name: str, namespace: str, nodes: int, gpus: int, pool: str) -> dict[str, Any]:
    """A TrainJob on Trainer's shipped torch runtime, ``nodes`` × ``gpus`` GPUs on ``pool``."""
    pod_patch = {"nodeSelector": {"kubeforge.io/pool": pool}}
    return {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "runtimeRef": {
                "apiGroup": "trainer.kubeflow.org",
                "kind": "ClusterTrainingRuntime",
                "name": "torch-distributed",
            },
            "trainer": {
                "numNodes": nodes,
                "command": ["train"],
                "resourcesPerNode": {
                    "requests": {"nvidia.com/gpu": str(gpus)},
                    "limits": {"nvidia.com/gpu": str(gpus)},
                },
            },
            "runtimePatches": [
                {
                    "manager": "kubeforge.io/tests",
                    "trainingRuntimeSpec": {
                        "template": {
                            "spec": {
                                "replicatedJobs": [
                                    {
                                        "name": "node",
                                        "template": {"spec": {"template": {"spec": pod_patch}}},
                                    }
                                ]
                            }
                        }
                    },
                }
            ],
        },
    }


def test_trainer_runs_a_trainjob_as_a_jobset_on_kwok_gpu_nodes(
    api_client: Any, namespace: str, kwok: Kwok, trainer: Trainer, gpu_node: GpuNode
) -> None:
    pool = f"tj-{secrets.token_hex(3)}"
    nodes = {gpu_node(pool) for _ in range(2)}
    custom = client.CustomObjectsApi(api_client)
    custom.create_namespaced_custom_object(
        "trainer.kubeflow.org",
        "v1alpha1",
        namespace,
        "trainjobs",
        trainjob("tj", namespace, nodes=2, gpus=8, pool=pool),
    )
    core = client.CoreV1Api(api_client)
    selector = "jobset.sigs.k8s.io/jobset-name=tj"

    def both_nodes_placed() -> bool:
        pods = core.list_namespaced_pod(namespace, label_selector=selector).items
        return len(pods) == 2 and all(p.spec.node_name for p in pods)

    wait_for(both_nodes_placed, timeout=90)
    pods = core.list_namespaced_pod(namespace, label_selector=selector).items
    assert {p.spec.node_name for p in pods} == nodes

    def complete() -> bool:
        job = custom.get_namespaced_custom_object(
            "trainer.kubeflow.org", "v1alpha1", namespace, "trainjobs", "tj"
        )
        conditions = {c["type"]: c["status"] for c in job.get("status", {}).get("conditions", [])}
        return conditions.get("Complete") == "True"

    wait_for(complete, timeout=120)
