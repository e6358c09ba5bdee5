"""Small fluent builders of the objects tests create, and readers of what the operator wrote.

A builder starts from a sensible object and each call changes one thing; ``obj()`` returns the
plain dict (what the API server takes and returns), so a test reads as the case it sets up::

    pytorchjob("llm").namespace("ml").workers(3).gpus(8).runs_for("20s").obj()
    training_pod("llm", "worker").on("node-1").gpus(4).obj()  # pure tests only
    gpu_pool("h100").kwok(gpu_delay="30s").scaling(maxNodes=3).obj()
    pipelinerun("digits-1", ns).pipeline("main").parameters(data_uri="x").obj()

Part of the test harness (``kubeforge.testing``): it may import the product packages below it.
"""

from __future__ import annotations

import copy
import importlib.resources
import json
import secrets
from typing import Any, Self

from kubeforge.components.train.pytorchjob import build_pytorchjob, submit_pytorchjob

GPU = "nvidia.com/gpu"
# kwok's pod-complete stage reads its delay (and jitter bound) from these pod annotations.
KWOK_COMPLETE_DELAY = "pod-complete.stage.kwok.x-k8s.io/delay"
KWOK_COMPLETE_JITTER = "pod-complete.stage.kwok.x-k8s.io/jitter-delay"
KWOK_NODE = "kwok.x-k8s.io/node"  # kwok runs the nodes annotated with this key and "fake"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
POOL_SELECTOR = "kubeforge.io/pool"  # the node label a pool's kwok nodes carry
JOB_NAME_LABEL = "training.kubeflow.org/job-name"
REPLICA_TYPE_LABEL = "training.kubeflow.org/replica-type"
CREATED = "2026-11-23T10:00:00Z"  # a fixed creation time for objects that never reach a cluster


class PyTorchJobBuilder:
    """A PyTorchJob of one Master and some Workers (kubeflow.org/v1), built by the product code."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._namespace = "default"
        self._workers = 1
        self._gpus = 8
        self._node_selector: dict[str, str] = {}
        self._tolerations: list[dict[str, str]] = []
        self._pod_annotations: dict[str, str] = {}
        self._labels: dict[str, str] = {}
        self._created = ""
        self._status: dict[str, Any] = {}

    def namespace(self, namespace: str) -> PyTorchJobBuilder:
        """In ``namespace``."""
        self._namespace = namespace
        return self

    def workers(self, workers: int) -> PyTorchJobBuilder:
        """``workers`` Workers beside the Master."""
        self._workers = workers
        return self

    def gpus(self, gpus: int) -> PyTorchJobBuilder:
        """Each replica asks for ``gpus`` GPUs."""
        self._gpus = gpus
        return self

    def pool(self, pool: str) -> PyTorchJobBuilder:
        """Its pods select the nodes of the kwok pool ``pool`` (see ``GpuPoolBuilder.serving``)."""
        self._node_selector = {POOL_SELECTOR: pool}
        return self

    def selects(self, **labels: str) -> PyTorchJobBuilder:
        """Its pods select nodes with these labels (a pool's node labels)."""
        self._node_selector = {**self._node_selector, **labels}
        return self

    def tolerates(self, key: str, value: str, effect: str = "NoSchedule") -> PyTorchJobBuilder:
        """Its pods tolerate the taint ``key=value:effect`` (see ``GpuPoolBuilder.taint``)."""
        self._tolerations.append(
            {"key": key, "operator": "Equal", "value": value, "effect": effect}
        )
        return self

    def runs_for(self, duration: str) -> PyTorchJobBuilder:
        """Each pod runs ``duration`` (Go syntax: ``20s``, ``1h``) after Ready, then kwok ends it.

        kwok reads the delay of its ``pod-complete`` stage from the pod's annotations; its
        jitter bound is set too, because kwok uses the jitter alone when it is below the delay
        (the test cluster's is 300 ms), which would complete the pod at once.
        """
        self._pod_annotations = {
            KWOK_COMPLETE_DELAY: duration,
            KWOK_COMPLETE_JITTER: duration,
        }
        return self

    def queue(self, local_queue: str) -> PyTorchJobBuilder:
        """Queued by Kueue in ``local_queue`` (Kueue suspends it until it is admitted)."""
        self._labels[KUEUE_QUEUE_LABEL] = local_queue
        return self

    def created(self, stamp: str = CREATED) -> PyTorchJobBuilder:
        """With ``metadata.creationTimestamp`` (the API server sets it on a real object)."""
        self._created = stamp
        return self

    def succeeded(self) -> PyTorchJobBuilder:
        """With its Succeeded condition true."""
        self._status = {"conditions": [{"type": "Succeeded", "status": "True"}]}
        return self

    def obj(self) -> dict[str, Any]:
        """The manifest."""
        job = build_pytorchjob(
            self._name,
            self._namespace,
            "img",
            ["train"],
            workers=self._workers,
            gpus_per_replica=self._gpus,
            node_selector=self._node_selector or None,
            tolerations=self._tolerations or None,
        )
        job["metadata"]["labels"].update(self._labels)
        if self._pod_annotations:
            for spec in job["spec"]["pytorchReplicaSpecs"].values():
                meta = spec["template"].setdefault("metadata", {})
                meta.setdefault("annotations", {}).update(self._pod_annotations)
        if self._created:
            job["metadata"]["creationTimestamp"] = self._created
        if self._status:
            job["status"] = copy.deepcopy(self._status)
        return job

    def submit(self, api_client: Any) -> dict[str, Any]:
        """Create it (get-or-create) in the cluster; returns the stored object."""
        return submit_pytorchjob(api_client, self.obj())


def pytorchjob(name: str = "train") -> PyTorchJobBuilder:
    """A PyTorchJob ``name``: one Master and one Worker of 8 GPUs each, in ``default``."""
    return PyTorchJobBuilder(name)


class TrainingPodBuilder:
    """A pod of a training job, labelled as the training operator labels it.

    For pure tests only: in the test cluster the real training operator creates the pods, the
    real scheduler binds them and kwok runs them.
    """

    def __init__(self, job: str, kind: str) -> None:
        self._job = job
        self._kind = kind
        self._name = ""
        self._node = ""
        self._phase = "Running"
        self._gpus = 8
        self._scheduled = ""

    def named(self, name: str) -> TrainingPodBuilder:
        """Named ``name`` (else ``<job>-<kind>-<random>``)."""
        self._name = name
        return self

    def on(self, node: str) -> TrainingPodBuilder:
        """Bound to ``node`` (``spec.nodeName``)."""
        self._node = node
        return self

    def phase(self, phase: str) -> TrainingPodBuilder:
        """In ``phase`` (``Running`` unless told)."""
        self._phase = phase
        return self

    def gpus(self, gpus: int) -> TrainingPodBuilder:
        """Asking for ``gpus`` GPUs (limits)."""
        self._gpus = gpus
        return self

    def scheduled(self, stamp: str) -> TrainingPodBuilder:
        """With its PodScheduled condition true since ``stamp``."""
        self._scheduled = stamp
        return self

    def obj(self) -> dict[str, Any]:
        """The pod."""
        status: dict[str, Any] = {"phase": self._phase}
        if self._scheduled:
            status["conditions"] = [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": self._scheduled}
            ]
        container = {
            "name": "pytorch",
            "image": "img",
            "resources": {"limits": {GPU: str(self._gpus)}},
        }
        spec: dict[str, Any] = {"containers": [container]}
        if self._node:
            spec["nodeName"] = self._node
        return {
            "metadata": {
                "name": self._name or f"{self._job}-{self._kind}-{secrets.token_hex(2)}",
                "labels": {JOB_NAME_LABEL: self._job, REPLICA_TYPE_LABEL: self._kind},
            },
            "spec": spec,
            "status": status,
        }


def training_pod(job: str = "train", kind: str = "worker") -> TrainingPodBuilder:
    """A running pod of replica type ``kind`` of the job ``job``, 8 GPUs, not bound yet."""
    return TrainingPodBuilder(job, kind)


class GpuPoolBuilder:
    """A GPUNodePool (kubeforge.io/v1alpha1). Unset fields keep the CRD's defaults."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._spec: dict[str, Any] = {"gpu": {"perNode": 8}, "provider": {"kwok": {}}}

    def _section(self, key: str, **fields: Any) -> GpuPoolBuilder:
        self._spec[key] = {**self._spec.get(key, {}), **fields}
        return self

    def per_node(self, gpus: int) -> GpuPoolBuilder:
        """Nodes of ``gpus`` GPUs (8 unless told)."""
        return self._section("gpu", perNode=gpus)

    def product(self, product: str) -> GpuPoolBuilder:
        """The GPU product label of its nodes."""
        return self._section("gpu", product=product)

    def kwok(self, **fields: Any) -> GpuPoolBuilder:
        """Nodes from the kwok provider (the default), e.g. ``kwok(gpuDelay="30s")``."""
        self._spec["provider"] = {"kwok": dict(fields)}
        return self

    def cluster_api(self, namespace: str, deployment: str) -> GpuPoolBuilder:
        """Nodes from the Cluster API MachineDeployment ``namespace/deployment``."""
        self._spec["provider"] = {
            "clusterAPI": {"namespace": namespace, "machineDeployment": deployment}
        }
        return self

    def scaling(self, **fields: Any) -> GpuPoolBuilder:
        """``spec.scaling`` fields, e.g. ``scaling(maxNodes=3)``."""
        return self._section("scaling", **fields)

    def scale_down(self, **fields: Any) -> GpuPoolBuilder:
        """``spec.scaleDown`` fields, e.g. ``scale_down(idleAfter="5m", minNodeAge="1m")``."""
        return self._section("scaleDown", **fields)

    def serving(self) -> GpuPoolBuilder:
        """It serves the jobs whose pods select its nodes (:meth:`PyTorchJobBuilder.pool`)."""
        return self._section("jobSelector", nodeSelector={POOL_SELECTOR: self._name})

    def job_namespaces(self, *namespaces: str) -> GpuPoolBuilder:
        """It serves the jobs of ``namespaces``."""
        return self._section("jobSelector", namespaces=list(namespaces))

    def node_labels(self, **labels: str) -> GpuPoolBuilder:
        """Labels it puts on its nodes."""
        template = self._spec.setdefault("nodeTemplate", {})
        template["labels"] = {**template.get("labels", {}), **labels}
        return self

    def taint(self, key: str, value: str, effect: str = "NoSchedule") -> GpuPoolBuilder:
        """A taint it puts on its nodes."""
        template = self._spec.setdefault("nodeTemplate", {})
        template.setdefault("taints", []).append({"key": key, "value": value, "effect": effect})
        return self

    def spec(self, **fields: Any) -> GpuPoolBuilder:
        """Replace whole ``spec`` entries as given (e.g. an invalid one the API server refuses)."""
        self._spec.update(copy.deepcopy(fields))
        return self

    def obj(self) -> dict[str, Any]:
        """The manifest."""
        return {
            "apiVersion": "kubeforge.io/v1alpha1",
            "kind": "GPUNodePool",
            "metadata": {"name": self._name},
            "spec": copy.deepcopy(self._spec),
        }


def gpu_pool(name: str) -> GpuPoolBuilder:
    """A pool ``name`` of 8-GPU kwok nodes, serving no job until told (:meth:`~.serving`)."""
    return GpuPoolBuilder(name)


class NodeBuilder:
    """A Node object: registered, no GPUs advertised until :meth:`gpus`."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._created = ""
        self._gpus: int | None = None
        self._allocatable: dict[str, str] = {}
        self._cordoned = False
        self._kwok = False

    def kwok(self) -> NodeBuilder:
        """Run by kwok (annotated ``kwok.x-k8s.io/node: fake``): its kubelet, simulated."""
        self._kwok = True
        return self

    def created(self, stamp: str = CREATED) -> NodeBuilder:
        """With ``metadata.creationTimestamp``."""
        self._created = stamp
        return self

    def gpus(self, gpus: int) -> NodeBuilder:
        """Advertising ``gpus`` GPUs (capacity and allocatable), as a device plugin makes it."""
        self._gpus = gpus
        return self

    def allocatable(self, **amounts: str) -> NodeBuilder:
        """Other allocatable resources, e.g. ``allocatable(cpu="16")``."""
        self._allocatable.update(amounts)
        return self

    def cordoned(self) -> NodeBuilder:
        """Unschedulable."""
        self._cordoned = True
        return self

    def obj(self) -> dict[str, Any]:
        """The Node."""
        meta: dict[str, Any] = {"name": self._name}
        if self._created:
            meta["creationTimestamp"] = self._created
        if self._kwok:
            meta["annotations"] = {KWOK_NODE: "fake"}
        node: dict[str, Any] = {"metadata": meta}
        if self._cordoned:
            node["spec"] = {"unschedulable": True}
        allocatable = dict(self._allocatable)
        if self._gpus is not None:
            allocatable[GPU] = str(self._gpus)
            node["status"] = {"capacity": {GPU: str(self._gpus)}}
        if allocatable:
            node.setdefault("status", {})["allocatable"] = allocatable
        return node


def node(name: str) -> NodeBuilder:
    """A Node ``name`` with no GPUs advertised yet."""
    return NodeBuilder(name)


CLUSTER_API = ("cluster.x-k8s.io", "v1beta2")
DEPLOYMENT_LABEL = "cluster.x-k8s.io/deployment-name"


class MachineDeploymentBuilder:
    """A Cluster API MachineDeployment (v1beta2) valid for the real CRD, 0 replicas."""

    def __init__(self, name: str, namespace: str) -> None:
        self._name = name
        self._namespace = namespace
        self._replicas = 0
        self._created = ""
        self._generation = 0
        self._annotations: dict[str, str] = {}

    def replicas(self, replicas: int) -> MachineDeploymentBuilder:
        """``spec.replicas``."""
        self._replicas = replicas
        return self

    def created(self, stamp: str = CREATED) -> MachineDeploymentBuilder:
        """With ``metadata.creationTimestamp``."""
        self._created = stamp
        return self

    def generation(self, generation: int) -> MachineDeploymentBuilder:
        """With ``metadata.generation`` (the API server sets it on a real object)."""
        self._generation = generation
        return self

    def annotated(self, **annotations: str) -> MachineDeploymentBuilder:
        """With these annotations."""
        self._annotations.update(annotations)
        return self

    def machine_template(self) -> dict[str, Any]:
        """What each of its Machines is made from: labels and spec."""
        return {
            "metadata": {"labels": {DEPLOYMENT_LABEL: self._name}},
            "spec": {
                "clusterName": "gpu-cluster",
                "bootstrap": {"dataSecretName": f"{self._name}-bootstrap"},
                "infrastructureRef": {
                    "apiGroup": "infrastructure.cluster.x-k8s.io",
                    "kind": "DockerMachineTemplate",
                    "name": f"{self._name}-infra",
                },
            },
        }

    def obj(self) -> dict[str, Any]:
        """The manifest."""
        meta: dict[str, Any] = {"name": self._name, "namespace": self._namespace}
        if self._created:
            meta["creationTimestamp"] = self._created
        if self._generation:
            meta["generation"] = self._generation
        if self._annotations:
            meta["annotations"] = dict(self._annotations)
        return {
            "apiVersion": "/".join(CLUSTER_API),
            "kind": "MachineDeployment",
            "metadata": meta,
            "spec": {
                "clusterName": "gpu-cluster",
                "replicas": self._replicas,
                "selector": {"matchLabels": {DEPLOYMENT_LABEL: self._name}},
                "template": self.machine_template(),
            },
        }


def machine_deployment(name: str, namespace: str = "default") -> MachineDeploymentBuilder:
    """A MachineDeployment ``namespace/name`` of 0 replicas."""
    return MachineDeploymentBuilder(name, namespace)


class MachineBuilder:
    """A Cluster API Machine of a MachineDeployment, as the MachineSet controller makes it."""

    def __init__(self, name: str, deployment: MachineDeploymentBuilder) -> None:
        self._name = name
        self._deployment = deployment
        self._node = ""
        self._created = ""
        self._annotations: dict[str, str] = {}
        self._deleting = ""

    def node(self, node: str) -> MachineBuilder:
        """It became the Node ``node`` (``status.nodeRef``)."""
        self._node = node
        return self

    def created(self, stamp: str = CREATED) -> MachineBuilder:
        """With ``metadata.creationTimestamp``."""
        self._created = stamp
        return self

    def annotated(self, **annotations: str) -> MachineBuilder:
        """With these annotations (e.g. Cluster API's delete-machine mark)."""
        self._annotations.update(annotations)
        return self

    def deleting(self, stamp: str = CREATED) -> MachineBuilder:
        """Being deleted (``metadata.deletionTimestamp``)."""
        self._deleting = stamp
        return self

    def obj(self) -> dict[str, Any]:
        """The Machine."""
        template = self._deployment.machine_template()
        meta: dict[str, Any] = {
            "name": self._name,
            "namespace": self._deployment.obj()["metadata"]["namespace"],
            "labels": template["metadata"]["labels"],
            "annotations": dict(self._annotations),
        }
        if self._created:
            meta["creationTimestamp"] = self._created
        if self._deleting:
            meta["deletionTimestamp"] = self._deleting
        machine: dict[str, Any] = {
            "apiVersion": "/".join(CLUSTER_API),
            "kind": "Machine",
            "metadata": meta,
            "spec": template["spec"],
        }
        if self._node:
            machine["status"] = {"nodeRef": {"name": self._node}}
        return machine


def machine(name: str, deployment: MachineDeploymentBuilder) -> MachineBuilder:
    """A Machine ``name`` of ``deployment``, with no Node yet."""
    return MachineBuilder(name, deployment)


def kwok_pool(name: str, **spec: Any) -> dict[str, Any]:
    """A pool of 8-GPU kwok nodes serving the jobs that select ``pool=name``; ``spec`` overrides."""
    return gpu_pool(name).serving().spec(**spec).obj()


def submit_gang(
    api_client: Any, namespace: str, pool: str, workers: int, name: str = "train"
) -> None:
    """A PyTorchJob of one Master plus ``workers`` Workers, 8 GPUs each, for ``pool``."""
    pytorchjob(name).namespace(namespace).workers(workers).gpus(8).pool(pool).submit(api_client)


def job_pods(api_client: Any, namespace: str, job: str) -> list[Any]:
    """The pods the training operator made for the PyTorchJob ``job``, by name."""
    from kubernetes import client

    pods = client.CoreV1Api(api_client).list_namespaced_pod(
        namespace, label_selector=f"{JOB_NAME_LABEL}={job}"
    )
    return sorted(pods.items, key=lambda p: p.metadata.name)


def read_pytorchjob(api_client: Any, namespace: str, name: str) -> dict[str, Any]:
    """The PyTorchJob as the API server stores it."""
    from kubernetes import client

    obj: dict[str, Any] = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
        "kubeflow.org", "v1", namespace, "pytorchjobs", name
    )
    return obj


def job_conditions(api_client: Any, namespace: str, name: str) -> dict[str, str]:
    """The PyTorchJob's conditions as its operator set them: type -> status."""
    job = read_pytorchjob(api_client, namespace, name)
    return {c["type"]: c["status"] for c in job.get("status", {}).get("conditions", [])}


def job_suspended(api_client: Any, namespace: str, name: str) -> bool:
    """Whether the PyTorchJob is suspended (``spec.runPolicy.suspend``, as Kueue sets it)."""
    job = read_pytorchjob(api_client, namespace, name)
    return bool(job["spec"].get("runPolicy", {}).get("suspend"))


KUEUE_API = ("kueue.x-k8s.io", "v1beta2")


def kueue_queue(api_client: Any, namespace: str, gpus: int) -> str:
    """A ResourceFlavor, a ClusterQueue of ``gpus`` GPUs of quota, its LocalQueue in ``namespace``.

    All three share one random name, returned (the LocalQueue's: :meth:`PyTorchJobBuilder.queue`).
    """
    from kubernetes import client

    custom = client.CustomObjectsApi(api_client)
    group, version = KUEUE_API
    name = f"q-{secrets.token_hex(3)}"
    api_version = f"{group}/{version}"
    flavor = {"apiVersion": api_version, "kind": "ResourceFlavor", "metadata": {"name": name}}
    custom.create_cluster_custom_object(group, version, "resourceflavors", flavor)
    quota = {"name": name, "resources": [{"name": GPU, "nominalQuota": gpus}]}
    cluster_queue = {
        "apiVersion": api_version,
        "kind": "ClusterQueue",
        "metadata": {"name": name},
        "spec": {
            "namespaceSelector": {},
            "resourceGroups": [{"coveredResources": [GPU], "flavors": [quota]}],
        },
    }
    custom.create_cluster_custom_object(group, version, "clusterqueues", cluster_queue)
    local_queue = {
        "apiVersion": api_version,
        "kind": "LocalQueue",
        "metadata": {"name": name},
        "spec": {"clusterQueue": name},
    }
    custom.create_namespaced_custom_object(group, version, namespace, "localqueues", local_queue)
    return name


def set_kueue_quota(api_client: Any, queue: str, gpus: int) -> None:
    """Give the ClusterQueue ``queue`` (from :func:`kueue_queue`) ``gpus`` GPUs of quota."""
    from kubernetes import client

    quota = {"name": queue, "resources": [{"name": GPU, "nominalQuota": gpus}]}
    patch = {"spec": {"resourceGroups": [{"coveredResources": [GPU], "flavors": [quota]}]}}
    client.CustomObjectsApi(api_client).patch_cluster_custom_object(
        *KUEUE_API, "clusterqueues", queue, patch
    )


def delete_kueue_queue(api_client: Any, queue: str) -> None:
    """Delete the ClusterQueue and ResourceFlavor of :func:`kueue_queue` (not its LocalQueue)."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    custom = client.CustomObjectsApi(api_client)
    for plural in ("clusterqueues", "resourceflavors"):
        try:
            custom.delete_cluster_custom_object(*KUEUE_API, plural, queue)
        except ApiException as exc:
            if exc.status != 404:
                raise


def read_pool(api_client: Any, name: str) -> dict[str, Any]:
    """The GPUNodePool ``name`` as the API server stores it."""
    from kubernetes import client

    obj: dict[str, Any] = client.CustomObjectsApi(api_client).get_cluster_custom_object(
        "kubeforge.io", "v1alpha1", "gpunodepools", name
    )
    return obj


Sample = tuple[str, tuple[tuple[str, str], ...]]


def parse_metrics(text: str) -> dict[Sample, float]:
    """Prometheus text -> {(sample name, sorted labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


# -- Pipeline and PipelineRun (kubeforge.operators.pipelineruns) --------------------------------
#
#     pipelinerun("digits-1", ns).pipeline("main").parameters(data_uri="x").obj()
#     pipeline("digits", ns).source("main").parameters(epochs=3).obj()

PIPELINE_API_VERSION = "kubeforge.io/v1alpha1"


def main_pipeline_ir() -> str:
    """The compiled main pipeline as committed (its golden compile test keeps it current)."""
    return (importlib.resources.files("kubeforge.pipelines.main") / "main.yaml").read_text()


class _PipelineResourceBuilder:
    kind = ""

    def __init__(self, name: str, namespace: str) -> None:
        self._obj: dict[str, Any] = {
            "apiVersion": PIPELINE_API_VERSION,
            "kind": self.kind,
            "metadata": {"name": name, "namespace": namespace},
            "spec": {},
        }

    def uid(self, uid: str) -> Self:
        """With ``metadata.uid`` (the API server sets it on a real object)."""
        self._obj["metadata"]["uid"] = uid
        return self

    def spec(self, **fields: Any) -> Self:
        """Spec fields exactly as given (e.g. invalid ones the API server must refuse)."""
        self._obj["spec"].update(fields)
        return self

    def obj(self) -> dict[str, Any]:
        """The manifest."""
        return copy.deepcopy(self._obj)

    def json(self) -> str:
        """The manifest as JSON (``kubectl apply -f -``)."""
        return json.dumps(self._obj)


class PipelineBuilder(_PipelineResourceBuilder):
    """A ``Pipeline``."""

    kind = "Pipeline"

    def source(self, name: str = "", **source: Any) -> PipelineBuilder:
        """``spec.source``: a Kubeforge pipeline by ``name``, or ``ir=`` / ``configMap=``."""
        self._obj["spec"]["source"] = {**({"name": name} if name else {}), **source}
        return self

    def parameters(self, **values: Any) -> PipelineBuilder:
        """Default parameter values."""
        self._obj["spec"]["parameters"] = values
        return self


class PipelineRunBuilder(_PipelineResourceBuilder):
    """A ``PipelineRun``."""

    kind = "PipelineRun"

    def pipeline(self, name: str = "", **source: Any) -> PipelineRunBuilder:
        """``spec.pipeline`` inline: by ``name`` (``version=``), or ``ir=`` / ``configMap=``."""
        self._obj["spec"]["pipeline"] = {**({"name": name} if name else {}), **source}
        return self

    def ref(self, pipeline: str) -> PipelineRunBuilder:
        """``spec.pipelineRef``: a Pipeline of its namespace."""
        self._obj["spec"]["pipelineRef"] = {"name": pipeline}
        return self

    def parameters(self, **values: Any) -> PipelineRunBuilder:
        """Parameter values of the run."""
        self._obj["spec"]["parameters"] = values
        return self

    def experiment(self, name: str) -> PipelineRunBuilder:
        """In experiment ``name``."""
        self._obj["spec"]["experiment"] = name
        return self

    def service_account(self, name: str) -> PipelineRunBuilder:
        """Its pods run as service account ``name``."""
        self._obj["spec"]["serviceAccountName"] = name
        return self

    def ttl(self, seconds: int) -> PipelineRunBuilder:
        """Deleted ``seconds`` after it finished."""
        self._obj["spec"]["ttlSecondsAfterFinished"] = seconds
        return self


def pipeline(name: str, namespace: str = "default") -> PipelineBuilder:
    """A Pipeline named ``name`` (give it a ``source``)."""
    return PipelineBuilder(name, namespace)


def pipelinerun(name: str, namespace: str = "default") -> PipelineRunBuilder:
    """A PipelineRun named ``name`` (give it a ``pipeline`` or a ``ref``)."""
    return PipelineRunBuilder(name, namespace)


def finished_run_pod(message: str) -> dict[str, Any]:
    """A run's pod whose container terminated with ``message`` (its summary, or its error)."""
    terminated = {"state": {"terminated": {"exitCode": 0, "message": message}}}
    return {"status": {"containerStatuses": [terminated]}}


def unscheduled_run_pod(message: str) -> dict[str, Any]:
    """A run's pod still Pending because the scheduler found no node (``message`` says why)."""
    unscheduled = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}
    return {"status": {"phase": "Pending", "conditions": [{**unscheduled, "message": message}]}}


def running_run_pod() -> dict[str, Any]:
    """A run's pod whose container runs."""
    return {"status": {"phase": "Running", "containerStatuses": [{"state": {"running": {}}}]}}


def scale_up_events(kubectl: Any, pool: str) -> list[dict[str, Any]]:
    """The pool's ``ScaleUp`` Events as ``kubectl`` returns them, first posted first.

    They are posted in ``default`` (the pool is cluster-scoped); the order is the reconciler's
    clock, since the API server's own stamps are whole seconds.
    """
    out = kubectl(
        "get",
        "events",
        "-n",
        "default",
        "--field-selector",
        f"involvedObject.name={pool},reason=ScaleUp",
        "-o",
        "json",
    ).stdout
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return sorted(items, key=lambda e: str(e["firstTimestamp"]))
