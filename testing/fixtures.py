"""Pytest fixtures for tests that need Kubernetes.

Loaded with ``-p kubeforge.testing.fixtures``.

``KUBECONFIG`` set in the environment points the tests at that cluster; otherwise the session
starts a real control plane from :mod:`kubeforge.testing.controlplane` (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler). The controllers users run beside Kubeforge (kwok,
the training operator, Trainer v2 with JobSet, Kueue; :mod:`kubeforge.testing.controllers`)
start, once per session, only for the tests whose fixtures ask for them (the Cluster
Autoscaler, once per test that asks for it). No test plays a
controller that runs here for real.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeforge.testing.builders import (  # noqa: F401 - re-exported; builders live there
    kwok_pool,
    read_pool,
    submit_gang,
)
from kubeforge.testing.controllers import (
    ClusterAutoscaler,
    JobSet,
    Kueue,
    Kwok,
    NodeGroupTemplate,
    Trainer,
    TrainingOperator,
    jobset_crds,
    kueue_crds,
    trainer_crds,
    trainer_runtime,
)
from kubeforge.testing.controlplane import (
    ControlPlane,
    build_binaries,
)
from kubeforge.testing.image import project_image  # noqa: F401 - a fixture
from kubeforge.testing.kfp_contract import kfp_server  # noqa: F401 - a fixture
from kubeforge.testing.modules import (
    CLUSTER_API_CRDS,  # noqa: F401 - tests import it from here
    cluster_api_crd_paths,
    go_module_dir,  # noqa: F401 - tests import it from here
    pytorchjob_crd_path,
)
from kubeforge.testing.node import NODE_IP, NODE_TAINT, NodeHandle
from kubeforge.testing.prometheus import PrometheusServer, prometheus_bin_dir

PYTORCHJOB_CRD = "pytorchjobs.kubeflow.org"


# Fixtures that need binaries built from Go modules (control plane, helm) or Debian's Prometheus.
_CLUSTER_FIXTURES = frozenset({"kube_bin_dir", "prometheus_bin"})
# Fixtures of the real node (``make test-node``).
_NODE_FIXTURES = frozenset(
    {"real_node", "untainted_node", "no_real_node", "import_image", "project_image"}
)


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``cluster`` every test that uses the control plane or Prometheus (for ``make unit``).

    Tests of the real node are marked ``node`` too (``make test-node`` runs them).
    """
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if _CLUSTER_FIXTURES & fixtures:
            item.add_marker(pytest.mark.cluster)
        if _NODE_FIXTURES & fixtures:
            item.add_marker(pytest.mark.cluster)
            item.add_marker(pytest.mark.node)


Kubectl = Callable[..., subprocess.CompletedProcess[str]]
Helm = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def kube_bin_dir() -> Path:
    """Directory of the built kubectl, helm, kube-apiserver, kube-scheduler and etcd."""
    return build_binaries()


@pytest.fixture(scope="session")
def control_plane(
    kube_bin_dir: Path, request: pytest.FixtureRequest
) -> Iterator[ControlPlane | None]:
    """The session's control plane, or None when ``KUBECONFIG`` names an existing cluster.

    A session that runs tests of the real node gets one its pods reach (at the node's address).
    """
    if os.environ.get("KUBECONFIG"):
        yield None
        return
    with_node = any(item.get_closest_marker("node") for item in request.session.items)
    with ControlPlane(bin_dir=kube_bin_dir, node_ip=NODE_IP if with_node else None) as plane:
        yield plane


@pytest.fixture(scope="session")
def _node_handle(control_plane: ControlPlane | None) -> Iterator[NodeHandle]:
    handle = NodeHandle(control_plane)
    yield handle
    handle.stop()


@pytest.fixture
def real_node(_node_handle: NodeHandle) -> str:
    """The session's real node (kubelet, containerd, CNI, kube-proxy, CoreDNS); its name.

    Started on first use (one per machine); pods reach it with
    :func:`kubeforge.testing.node.on_real_node`. Skipped when ``KUBECONFIG`` names a cluster.
    """
    if _node_handle.plane is None:
        pytest.skip("a real node joins only the session's own control plane (KUBECONFIG is set)")
    return _node_handle.ensure()


ImportImage = Callable[[bytes | Path], None]


@pytest.fixture
def untainted_node(real_node: str, api_client: Any) -> Iterator[str]:
    """The real node without its taint for one test (the run's pods carry no toleration)."""
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    core.patch_node(real_node, {"spec": {"taints": None}})
    try:
        yield real_node
    finally:
        taint = {"key": NODE_TAINT, "effect": "NoSchedule"}
        core.patch_node(real_node, {"spec": {"taints": [taint]}})


@pytest.fixture
def import_image(real_node: str, _node_handle: NodeHandle) -> ImportImage:
    """Import an image archive (bytes or a file) into the real node's containerd.

    Pods run it with ``imagePullPolicy: Never``. An import lasts until the node stops.
    """
    return _node_handle.import_image


@pytest.fixture
def no_real_node(_node_handle: NodeHandle) -> None:
    """Stops the session's real node (the next ``real_node`` user starts it again)."""
    _node_handle.stop()


@pytest.fixture(scope="session")
def kubeconfig(control_plane: ControlPlane | None) -> Path:
    """Path of an admin kubeconfig for the test cluster."""
    if control_plane is None:
        return Path(os.environ["KUBECONFIG"])
    return control_plane.kubeconfig


@pytest.fixture(scope="session")
def kubectl(kube_bin_dir: Path, kubeconfig: Path) -> Kubectl:
    """Run the real kubectl against the test cluster; ``check=False`` to inspect failures."""

    def run(
        *args: str, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(kube_bin_dir / "kubectl"), f"--kubeconfig={kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr}")
        return proc

    return run


@pytest.fixture(scope="session")
def helm(kube_bin_dir: Path, kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """Run the real helm against the test cluster, with a helm home of its own.

    ``check=False`` to inspect failures; ``timeout`` in seconds (an install that waits for pods
    on the real node needs more than the default).
    """
    home = tmp_path_factory.mktemp("helm-home")
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }

    def run(
        *args: str, check: bool = True, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(kube_bin_dir / "helm"), *args],
            capture_output=True,
            text=True,
            check=False,
            env=env,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed: {proc.stderr}")
        return proc

    return run


@pytest.fixture(scope="session")
def api_client(kubeconfig: Path) -> Iterator[Any]:
    """A ``kubernetes.client.ApiClient`` for the admin user."""
    from kubernetes import config

    client = config.new_client_from_config(config_file=str(kubeconfig))
    yield client
    client.close()


@pytest.fixture(scope="session")
def pytorchjob_crd(kubectl: Kubectl, api_client: Any) -> str:
    """Install the real Kubeflow PyTorchJob CRD and wait until it is established."""
    path = pytorchjob_crd_path()
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
    wait_for_crd(api_client, PYTORCHJOB_CRD)
    return PYTORCHJOB_CRD


@pytest.fixture(scope="session")
def cluster_api_crds(kubectl: Kubectl, api_client: Any) -> list[str]:
    """Install the real Cluster API MachineDeployment and Machine CRDs; returns their names."""
    names = []
    for path in cluster_api_crd_paths():
        kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
        name = f"{path.stem.split('_', 1)[1]}.cluster.x-k8s.io"
        wait_for_crd(api_client, name)
        names.append(name)
    return names


@pytest.fixture(scope="session")
def prometheus_bin() -> Path:
    """Directory of Debian's ``prometheus`` and ``promtool`` (installed by hack/prometheus.sh)."""
    return prometheus_bin_dir()


StartPrometheus = Callable[..., PrometheusServer]


@pytest.fixture
def start_prometheus(prometheus_bin: Path) -> Iterator[StartPrometheus]:
    """Start real Prometheus servers (see :class:`PrometheusServer`); stopped after the test."""
    servers: list[PrometheusServer] = []

    def start(
        targets: dict[str, list[str]], rule_files: list[Path] | None = None, interval: str = "1s"
    ) -> PrometheusServer:
        server = PrometheusServer(prometheus_bin, targets, list(rule_files or []), interval)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def namespace(api_client: Any) -> Iterator[str]:
    """A fresh namespace for one test, once it has its ``default`` ServiceAccount; deleted after.

    The namespace controller removes it and everything in it (a test proves it goes away).
    """
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    name = f"kf-test-{secrets.token_hex(4)}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    # The controller manager's ServiceAccount controller creates it: pods need it.
    wait_for(lambda: _has_default_service_account(core, name), timeout=60)
    yield name
    core.delete_namespace(name)


def _has_default_service_account(core: Any, namespace: str) -> bool:
    from kubernetes.client.rest import ApiException

    try:
        core.read_namespaced_service_account("default", namespace)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


@pytest.fixture(scope="session")
def kwok(kube_bin_dir: Path, kubeconfig: Path) -> Iterator[Kwok]:
    """Kwok running every node annotated ``kwok.x-k8s.io/node: fake`` and its pods."""
    running = Kwok(kube_bin_dir, kubeconfig).start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def kwok_node(api_client: Any, kwok: Kwok) -> str:
    """A plain (GPU-less) kwok node where ordinary pods (Jobs, Deployments) run."""
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    name = "kwok-general"
    with contextlib.suppress(client.ApiException):  # left by a run against the same cluster
        core.create_node(
            {
                "metadata": {
                    "name": name,
                    "labels": {"type": "kwok", "kubernetes.io/hostname": name},
                    "annotations": {"kwok.x-k8s.io/node": "fake"},
                }
            }
        )

    def ready() -> bool:
        conditions = core.read_node(name).status.conditions or []
        return any(c.type == "Ready" and c.status == "True" for c in conditions)

    wait_for(ready, timeout=60)
    return name


@pytest.fixture(scope="session")
def kueue(
    kube_bin_dir: Path, kubeconfig: Path, kubectl: Kubectl, api_client: Any, pytorchjob_crd: str
) -> Iterator[Kueue]:
    """Kueue queueing batch Jobs and PyTorchJobs (those labelled with a queue name)."""
    _install_crds(kubectl, api_client, kueue_crds())
    running = Kueue(kube_bin_dir, kubeconfig, api_client).start()
    yield running
    running.stop()


def _install_crds(kubectl: Kubectl, api_client: Any, paths: list[Path]) -> None:
    for path in paths:
        kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
        manifest = yaml.safe_load(path.read_text())
        wait_for_crd(api_client, manifest["metadata"]["name"])


@pytest.fixture(scope="session")
def trainer(
    kube_bin_dir: Path, kubeconfig: Path, kubectl: Kubectl, api_client: Any
) -> Iterator[Trainer]:
    """Kubeflow Trainer v2 with JobSet: TrainJobs run as JobSets; its torch runtime installed."""
    _install_crds(kubectl, api_client, jobset_crds() + trainer_crds())
    jobset = JobSet(kube_bin_dir, kubeconfig, api_client).start()
    running = Trainer(kube_bin_dir, kubeconfig, api_client).start()
    runtime = trainer_runtime("torch_distributed")
    kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=yaml.safe_dump(runtime))
    yield running
    running.stop()
    jobset.stop()


@pytest.fixture(scope="session")
def training_operator(
    kube_bin_dir: Path, kubeconfig: Path, api_client: Any, pytorchjob_crd: str
) -> Iterator[TrainingOperator]:
    """Kubeflow's training operator running PyTorchJobs, its validating webhook on."""
    running = TrainingOperator(kube_bin_dir, kubeconfig, api_client).start()
    yield running
    running.stop()


@pytest.fixture
def cluster_autoscaler(
    kube_bin_dir: Path, kubeconfig: Path, api_client: Any, kwok: Kwok
) -> Iterator[ClusterAutoscaler]:
    """The real Cluster Autoscaler (kwok provider) for one test, with short scale-down delays.

    One group of 8-GPU kwok nodes (``groups[0].name``, at most 4), selected by
    ``kubeforge.io/ca-group``; its nodes carry the provider's taint ``kwok-provider=true``.
    Stopped after the test, which deletes every node it made.
    """
    group = NodeGroupTemplate(f"ca-gpu-{secrets.token_hex(3)}", gpus=8, max_nodes=4)
    flags = {"scan-interval": "1s", "scale-down-unneeded-time": "5s"}
    running = ClusterAutoscaler(kube_bin_dir, kubeconfig, api_client, [group], flags=flags)
    try:
        yield running.start()
    finally:
        running.stop()


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, interval: float = 0.2) -> None:
    """Poll ``predicate`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


@pytest.fixture(scope="session")
def digits_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scikit-learn's digits as a CSV with a ``label`` column."""
    from sklearn.datasets import load_digits

    path = tmp_path_factory.mktemp("digits") / "digits.csv"
    load_digits(as_frame=True).frame.rename(columns={"target": "label"}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def digits_splits(digits_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Digits ingested into ``train.parquet`` / ``val.parquet`` / ``test.parquet``."""
    from kubeforge.components.ingest.prepare import IngestParams, prepare_splits

    out = tmp_path_factory.mktemp("digits-splits")
    prepare_splits(IngestParams.defaults(data_uri=str(digits_csv)), out)
    return out


@pytest.fixture(scope="session")
def digits_labelled(digits_splits: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits training split labelled by the label stage (5% gold)."""
    from kubeforge.components.common.splits import load_split
    from kubeforge.components.label.labeling import LabelParams, label_split

    out = tmp_path_factory.mktemp("digits-labelled")
    label_split(
        load_split(digits_splits / "train.parquet"),
        out,
        LabelParams.defaults(labeling_functions="kubeforge.components.label.examples.digits"),
    )
    return out


@pytest.fixture
def mlflow_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A private Kubeforge home with MLflow on SQLite; returns the tracking URI."""
    monkeypatch.setenv("KUBEFORGE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    from kubeforge.core.tracking import connect

    return connect(f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}")


@pytest.fixture(scope="session")
def digits_teacher(
    digits_labelled: Path, digits_splits: Path, tmp_path_factory: pytest.TempPathFactory
) -> Any:
    """A classifier trained on the labelled digits (in-process, 15 epochs)."""
    from kubeforge.components.common.model import load
    from kubeforge.components.train.trainer import TrainConfig, TrainParams, run_local

    out = tmp_path_factory.mktemp("digits-teacher")
    config = TrainConfig(
        str(digits_labelled / "train.parquet"),
        str(digits_splits / "val.parquet"),
        str(out),
        TrainParams.defaults(hidden="256,256", epochs=15, nproc=1),
    )
    run_local(config)
    return load(out / "model.pt")


def wait_for_crd(api_client: Any, name: str, timeout: float = 60.0) -> None:
    """Wait until the CRD ``name`` is Established (its conditions start empty)."""
    from kubernetes import client

    ext = client.ApiextensionsV1Api(api_client)

    def established() -> bool:
        conditions = ext.read_custom_resource_definition(name).status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    wait_for(established, timeout=timeout)
