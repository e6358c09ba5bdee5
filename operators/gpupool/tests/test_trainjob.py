"""A TrainJob (Kubeflow Trainer v2) is gang demand exactly as a PyTorchJob is.

Against the real API server with the real Trainer controller and JobSet (the TrainJob becomes a
JobSet, the real Job controller makes its pods), the real training operator, scheduler and kwok;
the test drives only the pool's reconciler, on its own clock.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from kubeforge.operators.clock import ManualClock
from kubeforge.operators.gpupool.clients.reconcile import Reconciler
from kubeforge.operators.gpupool.core.demand import job_demand
from kubeforge.operators.gpupool.core.planner import Decision
from kubeforge.testing.builders import GPU, gpu_pool, job_conditions, pytorchjob, read_pool
from kubeforge.testing.controllers import Kwok, Trainer, TrainingOperator
from kubeforge.testing.fixtures import Kubectl, wait_for, wait_for_crd

MANIFEST = Path(__file__).parents[3] / "manifests" / "crds" / "kubeforge.io_gpunodepools.yaml"
TRAINER = ("trainer.kubeflow.org", "v1alpha1")


def trainjob(name: str, namespace: str, nodes: int, gpus: int, pool: str) -> dict[str, Any]:
    """A TrainJob on Trainer's shipped torch runtime: ``nodes`` x ``gpus`` GPUs on ``pool``."""
    pod = {"spec": {"nodeSelector": {"kubeforge.io/pool": pool}}}
    replicated = [{"name": "node", "template": {"spec": {"template": pod}}}]
    return {
        "apiVersion": "/".join(TRAINER),
        "kind": "TrainJob",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "creationTimestamp": "2026-01-05T10:00:00Z",
        },
        "spec": {
            "runtimeRef": {
                "apiGroup": TRAINER[0],
                "kind": "ClusterTrainingRuntime",
                "name": "torch-distributed",
            },
            "trainer": {
                "numNodes": nodes,
                "command": ["train"],
                "resourcesPerNode": {
                    "requests": {GPU: str(gpus)},
                    "limits": {GPU: str(gpus)},
                },
            },
            "runtimePatches": [
                {
                    "manager": "kubeforge.io/tests",
                    "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": replicated}}},
                }
            ],
        },
    }


def succeeded(api_client: Any, namespace: str, job: str) -> bool:
    """The training operator marked the PyTorchJob Succeeded."""
    return job_conditions(api_client, namespace, job).get("Succeeded") == "True"


def test_a_trainjob_demands_what_the_same_shape_of_pytorchjob_demands() -> None:
    train = trainjob("b", "ml", nodes=4, gpus=8, pool="p")
    torch = pytorchjob("b").namespace("ml").workers(3).gpus(8).created("2026-01-05T10:00:00Z")
    ours, theirs = job_demand(train, [], GPU), job_demand(torch.obj(), [], GPU)
    assert ours == theirs and ours.unbound_pod_gpus == (8, 8, 8, 8)
    suspended = {**train, "spec": {**train["spec"], "suspend": True}}  # what Kueue does
    assert job_demand(suspended, [], GPU).unbound_pod_gpus == ()
    done = {**train, "status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    assert job_demand(done, [], GPU).unbound_pod_gpus == ()


@pytest.mark.cluster
def test_a_pending_trainjob_gets_its_gang_of_nodes_like_a_pytorchjob_and_they_go_once_done(
    api_client: Any,
    kubectl: Kubectl,
    namespace: str,
    kwok: Kwok,
    trainer: Trainer,
    training_operator: TrainingOperator,
) -> None:
    from kubernetes import client

    kubectl("apply", "--server-side", "-f", str(MANIFEST))
    wait_for_crd(api_client, "gpunodepools.kubeforge.io")
    pool = f"tj-{secrets.token_hex(3)}"
    body = (
        gpu_pool(pool)
        .kwok(gpuDelay="40s")
        .scaling(maxNodes=4)
        .scale_down(idleAfter="10m", minNodeAge="0s", policy="QueueAware")
        .serving()
        .obj()
    )
    kubectl("apply", "-f", "-", stdin=json.dumps(body))
    core = client.CoreV1Api(api_client)
    r = Reconciler(api_client, ManualClock())
    try:
        train = trainjob("tj", namespace, nodes=2, gpus=8, pool=pool)
        del train["metadata"]["creationTimestamp"]
        client.CustomObjectsApi(api_client).create_namespaced_custom_object(
            *TRAINER, namespace, "trainjobs", train
        )
        pytorchjob("pt").namespace(namespace).workers(1).gpus(8).pool(pool).submit(api_client)

        def reconcile(at: float) -> Any:
            assert isinstance(r.clock, ManualClock)
            r.clock.at = at
            result = r.reconcile(read_pool(api_client, pool))
            assert result.plan is not None
            return result.plan

        def jobset_pods() -> list[Any]:
            selector = "jobset.sigs.k8s.io/jobset-name=tj"
            return list(core.list_namespaced_pod(namespace, label_selector=selector).items)

        # Pending, no node yet: the TrainJob's gang is counted from its spec, like the
        # PyTorchJob's: 2 nodes each, 4 in one scale-up.
        first = reconcile(0)
        assert first.decision is Decision.SCALE_UP and first.add_nodes == 4
        status = read_pool(api_client, pool)["status"]
        assert sorted(
            (j["job"], j["gpus"], j["placement"], j["reason"]) for j in status["jobs"]
        ) == [
            (f"{namespace}/pt", 16, "needs_nodes", "whole job needs 2 new node(s)"),
            (f"{namespace}/tj", 16, "needs_nodes", "whole job needs 2 new node(s)"),
        ]
        assert reconcile(10).decision is Decision.NOOP  # nodes in flight are not asked twice

        # GPUs appear: the real scheduler binds the JobSet's pods (made by the real Job
        # controller) and the PyTorchJob's; nothing is pending any more.
        reconcile(45)
        wait_for(
            lambda: len(jobset_pods()) == 2 and all(p.spec.node_name for p in jobset_pods()), 90
        )
        assert {p.spec.node_name for p in jobset_pods()} <= set(
            n.metadata.name for n in r.provider_nodes(read_pool(api_client, pool))
        )
        assert len({p.spec.node_name for p in jobset_pods()}) == 2  # one rank per node

        def complete() -> bool:
            job = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
                *TRAINER, namespace, "trainjobs", "tj"
            )
            conditions = {
                c["type"]: c["status"] for c in job.get("status", {}).get("conditions", [])
            }
            return conditions.get("Complete") == "True"

        wait_for(complete, 120)
        wait_for(lambda: all(p.status.phase == "Succeeded" for p in jobset_pods()), 60)
        wait_for(lambda: succeeded(api_client, namespace, "pt"), 120)
        # Every pod ended (the job's condition can come before its pod's phase): all four
        # nodes are empty from the same reconcile on, so they pass the break-even together.
        wait_for(
            lambda: all(
                p.status.phase in ("Succeeded", "Failed")
                for p in core.list_namespaced_pod(namespace).items
            ),
            60,
        )
        done = reconcile(50)
        assert done.decision is Decision.NOOP  # idle 5 s, under the 45 s boot time seen
        assert read_pool(api_client, pool)["status"]["pendingJobs"] == 0
        # QueueAware: nobody queues for the empty nodes; past the break-even (the boot time
        # this reconciler observed, 45 s) all four are cordoned and removed in one reconcile.
        gone = reconcile(100)
        assert gone.decision is Decision.SCALE_DOWN and len(gone.nodes_to_remove) == 4
        assert set(gone.nodes_to_drain) == set(gone.nodes_to_remove)
        assert r.provider_nodes(read_pool(api_client, pool)) == []
    finally:
        for node in r.provider_nodes(read_pool(api_client, pool)):
            core.delete_node(node.metadata.name)
        kubectl("delete", "gpunodepool", pool)
