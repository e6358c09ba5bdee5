"""The upstream controllers users run beside Kubeforge, run for real against the test cluster.

- :class:`Kwok` runs simulated nodes and their pods' lifecycles (Pending -> Running ->
  Succeeded/Failed) with the Stage configurations kwok's module ships, widened so pods owned by a
  ``PyTorchJob`` complete like a Job's.
- :class:`TrainingOperator` runs Kubeflow's training operator (``PyTorchJob``), with its
  validating webhook served on loopback.
- :class:`ClusterAutoscaler` runs the Cluster Autoscaler with its kwok cloud provider: it adds
  and deletes kwok nodes of :class:`NodeGroupTemplate` groups for pending pods.

Each is a child process in its own process group with a parent-death signal (like the control
plane), and leaves no file outside its work directory: the training operator's hard-coded
certificate directory under ``/tmp`` lives in a private mount namespace.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kubeforge.testing.controlplane import (
    ControlPlaneError,
    free_port,
    spawn,
    stop_process_groups,
)
from kubeforge.testing.modules import go_module_dir
from kubeforge.testing.node import BUSYBOX_IMAGE
from kubeforge.testing.pki import Authority, webhook_secret_data

KWOK_MODULE = "sigs.k8s.io/kwok"
TRAINING_OPERATOR_MODULE = "github.com/kubeflow/training-operator"

# Stage files of kwok's module (kustomize/stage/...): node start and heartbeat, a pod's whole
# life, and the chaos stage that fails a pod labelled for it.
_KWOK_STAGES = (
    "node/fast/node-initialize.yaml",
    "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "pod/general/pod-create.yaml",
    "pod/general/pod-init-container-running.yaml",
    "pod/general/pod-init-container-completed.yaml",
    "pod/general/pod-ready.yaml",
    "pod/general/pod-complete.yaml",
    "pod/general/pod-delete.yaml",
    "pod/chaos/pod-container-running-failed.yaml",
)
# Owners whose pods run to completion (kwok's own stages complete only a Job's pods).
TRAINING_OWNER_KINDS = ("Job", "PyTorchJob")
# Pods of this image fail once Running (kwok's chaos stage, selected by image instead of label),
# so a test can fail a pod whose labels it does not write (a Job that an operator builds).
FAILING_IMAGE = "kubeforge.test/fails:always"
# kwok waits this long (plus jitter) before each stage: short, so tests do not wait on
# simulation. A pod that must run longer sets both ``pod-complete.stage.kwok.x-k8s.io/delay`` and
# ``.../jitter-delay`` (Go durations): in kwok v0.8.0 a jitter below the delay replaces it.
STAGE_DELAY_MS = 200
STAGE_JITTER_MS = 300


def kwok_stages() -> list[dict[str, Any]]:
    """Kwok's shipped Stages, tuned for tests: short delays; training pods complete too."""
    root = go_module_dir(KWOK_MODULE) / "kustomize" / "stage"
    stages = []
    for name in _KWOK_STAGES:
        stage = yaml.safe_load((root / name).read_text())
        spec = stage["spec"]
        delay = spec.get("delay")
        if delay and stage["metadata"]["name"] != "node-heartbeat-with-lease":
            delay["durationMilliseconds"] = STAGE_DELAY_MS
            delay["jitterDurationMilliseconds"] = STAGE_JITTER_MS
        for expr in spec.get("selector", {}).get("matchExpressions", []):
            if expr["key"] == ".metadata.ownerReferences.[].kind":
                expr["values"] = sorted(set(expr["values"]) | set(TRAINING_OWNER_KINDS))
        stages.append(stage)
        if stage["metadata"]["name"] == "pod-container-running-failed":
            stages.append(_failing_image_stage(stage))
    return stages


def _failing_image_stage(chaos: dict[str, Any]) -> dict[str, Any]:
    stage: dict[str, Any] = json.loads(json.dumps(chaos))
    stage["metadata"]["name"] = "pod-failing-image"
    expressions = stage["spec"]["selector"]["matchExpressions"]
    expressions[0] = {
        "key": ".spec.containers.[].image",
        "operator": "In",
        "values": [FAILING_IMAGE],
    }
    return stage


def _wait_http_ok(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ControlPlaneError(f"{log.stem} exited with code {proc.returncode}:\n{_tail(log)}")
        with (
            contextlib.suppress(urllib.error.URLError, OSError),
            urllib.request.urlopen(url, timeout=2) as resp,
        ):
            if resp.status == 200:
                return
        time.sleep(0.25)
    raise ControlPlaneError(f"{log.stem} not ready after {timeout:.0f}s:\n{_tail(log)}")


def _tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Kwok:
    """kwok managing every node annotated ``kwok.x-k8s.io/node: fake`` and the pods bound there."""

    bin_dir: Path
    kubeconfig: Path
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="kubeforge-kwok-")))
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        """Kwok's log file."""
        return self.workdir / "kwok.log"

    def start(self, timeout: float = 60.0) -> Kwok:
        """Start kwok and wait until its health endpoint answers."""
        config = self.workdir / "stages.yaml"
        config.write_text(yaml.safe_dump_all(kwok_stages(), sort_keys=False))
        port = free_port()
        self._proc = spawn(
            [
                str(self.bin_dir / "kwok"),
                f"--kubeconfig={self.kubeconfig}",
                f"--config={config}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                "--cidr=10.0.0.1/16",
                "--node-ip=10.0.0.1",
                f"--server-address=127.0.0.1:{port}",
            ],
            self.log,
        )
        _wait_http_ok(f"http://127.0.0.1:{port}/healthz", self._proc, self.log, timeout)
        return self

    def stop(self) -> None:
        """Stop kwok and remove its work directory."""
        if self._proc is not None:
            stop_process_groups([self._proc])
            self._proc = None
        shutil.rmtree(self.workdir, ignore_errors=True)


def _webhook_pki(service_dns: str, ca_name: str) -> dict[str, bytes]:
    """A CA and a serving certificate valid for the webhook's Service name and 127.0.0.1.

    controller-runtime's certificate rotator keeps a Secret whose certificates are still valid,
    so the apiserver can call the webhook on loopback with this CA. In a pod the kubelet mounts
    that Secret into the certificate directory; the classes here write the same files there.
    """
    authority = Authority.create(ca_name, organization=ca_name.removesuffix("-ca"))
    return webhook_secret_data(authority, authority.issue(service_dns, [service_dns]))


def _write_serving_pair(pki: dict[str, bytes], *folders: Path) -> None:
    """Write the serving certificate and key where a controller reads them."""
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("tls.crt", "tls.key"):
            (folder / name).write_bytes(pki[name])


def _private_tmp(workdir: Path, kubeconfig: Path, pki: dict[str, bytes]) -> Path:
    """A /tmp for a controller that hard-codes controller-runtime's certificate directory.

    It holds the serving certificate there and a kubeconfig of its own at ``/tmp/kubeconfig``
    (the CA inline, since the host's /tmp is out of its sight).
    """
    private_tmp = workdir / "tmp"
    _write_serving_pair(pki, private_tmp / "k8s-webhook-server" / "serving-certs")
    (private_tmp / "kubeconfig").write_text(yaml.safe_dump(_inline_ca(kubeconfig)))
    return private_tmp


def _inline_ca(kubeconfig: Path) -> dict[str, Any]:
    """The kubeconfig with its clusters' CA files read inline."""
    config: dict[str, Any] = yaml.safe_load(kubeconfig.read_text())
    for entry in config["clusters"]:
        cluster = entry["cluster"]
        ca_file = cluster.pop("certificate-authority", None)
        if ca_file:
            data = Path(ca_file).read_bytes()
            cluster["certificate-authority-data"] = base64.b64encode(data).decode()
    return config


@dataclass
class _WebhookController:
    """A controller process whose admission webhooks the apiserver calls on loopback.

    One that hard-codes paths runs in a private mount namespace (``mounts`` is the shell that
    prepares it, with the mount arguments as ``$0``, ``$1``...), so they stay out of the host.
    """

    bin_dir: Path
    kubeconfig: Path
    api_client: Any
    workdir: Path = field(
        default_factory=lambda: Path(tempfile.mkdtemp(prefix="kubeforge-controller-"))
    )
    _proc: subprocess.Popen[bytes] | None = None
    _webhooks: list[tuple[str, str]] = field(default_factory=list)

    name = "controller"

    @property
    def log(self) -> Path:
        """The controller's log file."""
        return self.workdir / f"{self.name}.log"

    def _register_webhooks(self, configs: list[dict[str, Any]]) -> None:
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        admission = client.AdmissionregistrationV1Api(self.api_client)
        for config in configs:
            kind, name = config["kind"], config["metadata"]["name"]
            mutating = kind == "MutatingWebhookConfiguration"
            with contextlib.suppress(ApiException):  # left by an earlier, killed run
                self._delete_webhook(admission, mutating, name)
            if mutating:
                admission.create_mutating_webhook_configuration(config)
            else:
                admission.create_validating_webhook_configuration(config)
            self._webhooks.append((kind, name))

    @staticmethod
    def _delete_webhook(admission: Any, mutating: bool, name: str) -> None:
        if mutating:
            admission.delete_mutating_webhook_configuration(name)
        else:
            admission.delete_validating_webhook_configuration(name)

    def _spawn(
        self, mounts: str, mount_args: list[str], args: list[str], env: dict[str, str]
    ) -> subprocess.Popen[bytes]:
        # sh -c takes the first argument as $0 and the rest as $1...: drop the other mount
        # arguments so "$@" is the command.
        command = [str(self.bin_dir / self.name), *args]
        if mounts:
            script = f'{mounts} && shift {len(mount_args) - 1} && exec "$@"'
            isolate = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]
            command = [*isolate, *mount_args, *command]
        self._proc = spawn(command, self.log, env=env)
        return self._proc

    def stop(self) -> None:
        """Stop the process, remove its webhook configurations and its work directory."""
        if self._proc is not None:
            stop_process_groups([self._proc])
            self._proc = None
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        admission = client.AdmissionregistrationV1Api(self.api_client)
        for kind, name in self._webhooks:
            with contextlib.suppress(ApiException, OSError):
                self._delete_webhook(admission, kind == "MutatingWebhookConfiguration", name)
        self._webhooks.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)


# The operator's own init container template, but its check reads nslookup's answer: busybox's
# nslookup asks every search domain and exits 1 when any says NXDOMAIN, even once one answered.
_WAIT_FOR_MASTER = (
    "err=1; for i in $(seq {{.MaxTries}}); do "
    'if nslookup {{.MasterAddr}} | grep -q "^Name:"; then err=0 && break; fi; '
    "echo waiting for master; sleep 2; done; exit $err"
)
PYTORCH_INIT_CONTAINER = f"""
- name: init-pytorch
  image: {{{{.InitContainerImage}}}}
  imagePullPolicy: IfNotPresent
  resources:
    limits: {{cpu: 100m, memory: 20Mi}}
    requests: {{cpu: 50m, memory: 10Mi}}
  command: ["sh", "-c", {json.dumps(_WAIT_FOR_MASTER)}]
"""


@dataclass
class TrainingOperator(_WebhookController):
    """Kubeflow's training operator (PyTorchJob only), its webhook called by the apiserver.

    Its certificate directory is hard-coded under ``/tmp``: it gets a private ``/tmp``.
    """

    namespace: str = "kubeflow"

    name = "training-operator"
    SECRET = "training-operator-webhook-cert"

    def _install_objects(self, webhook_port: int) -> dict[str, bytes]:
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        core = client.CoreV1Api(self.api_client)
        with contextlib.suppress(ApiException):  # already there from an earlier start
            core.create_namespace({"metadata": {"name": self.namespace}})
        pki = _webhook_pki(f"training-operator.{self.namespace}.svc", "training-operator-ca")
        secret = {
            "metadata": {"name": self.SECRET, "namespace": self.namespace},
            "data": {k: base64.b64encode(v).decode() for k, v in pki.items()},
        }
        try:
            core.create_namespaced_secret(self.namespace, secret)
        except ApiException as exc:
            if exc.status != 409:
                raise
            core.replace_namespaced_secret(self.SECRET, self.namespace, secret)
        path = "/validate-kubeflow-org-v1-pytorchjob"
        rule = {
            "apiGroups": ["kubeflow.org"],
            "apiVersions": ["v1"],
            "operations": ["CREATE", "UPDATE"],
            "resources": ["pytorchjobs"],
        }
        hook = {
            "name": "validator.pytorchjob.training-operator.kubeflow.org",
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Fail",
            "clientConfig": {
                "url": f"https://127.0.0.1:{webhook_port}{path}",
                "caBundle": base64.b64encode(pki["ca.crt"]).decode(),
            },
            "rules": [rule],
        }
        self._register_webhooks(
            [
                {
                    "apiVersion": "admissionregistration.k8s.io/v1",
                    "kind": "ValidatingWebhookConfiguration",
                    # The name its certificate rotator looks for.
                    "metadata": {"name": "validator.training-operator.kubeflow.org"},
                    "webhooks": [hook],
                }
            ]
        )
        return pki

    def start(self, timeout: float = 90.0) -> TrainingOperator:
        """Install its namespace, Secret and webhook configuration, start it, wait for ready."""
        webhook_port, probe_port = free_port(), free_port()
        pki = self._install_objects(webhook_port)
        private_tmp = _private_tmp(self.workdir, self.kubeconfig, pki)
        (private_tmp / "init-container.yaml").write_text(PYTORCH_INIT_CONTAINER)
        args = [
            "--kubeconfig=/tmp/kubeconfig",
            "--enable-scheme=pytorchjob",
            # A Worker's init container waits for the Master's DNS name (nslookup); its default
            # image is alpine:3.10 from a registry. The real node holds this busybox instead.
            f"--pytorch-init-container-image={BUSYBOX_IMAGE}",
            "--pytorch-init-container-template-file=/tmp/init-container.yaml",
            f"--webhook-server-port={webhook_port}",
            f"--metrics-bind-address=127.0.0.1:{free_port()}",
            f"--health-probe-bind-address=127.0.0.1:{probe_port}",
            "--leader-elect=false",
        ]
        proc = self._spawn(
            'mount --bind "$0" /tmp',
            [str(private_tmp)],
            args,
            env={"MY_POD_NAMESPACE": self.namespace},
        )
        _wait_http_ok(f"http://127.0.0.1:{probe_port}/readyz", proc, self.log, timeout)
        return self


KUEUE_MODULE = "sigs.k8s.io/kueue"
# The job kinds Kueue queues in the test cluster, and its own resources' webhooks.
KUEUE_FRAMEWORKS = ("batch/job", "kubeflow.org/pytorchjob")
_KUEUE_WEBHOOK_PATHS = (
    "-kueue-x-k8s-io-",
    "-batch-v1-job",
    "-kubeflow-org-v1-pytorchjob",
)


def module_webhooks(
    module: str,
    manifest: str,
    port: int,
    ca_bundle: bytes,
    keep: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """A controller's webhook configurations from its module, called on loopback.

    ``manifest`` is the kubebuilder webhook manifest's path in the module; each webhook's Service
    becomes ``https://127.0.0.1:port/<path>`` with ``ca_bundle``; ``keep`` (substrings of the
    paths) selects the webhooks to register, all when empty. Names get the module's last part as
    a prefix, so two controllers' ``mutating-webhook-configuration`` do not collide.
    """
    prefix = module.rstrip("/").split("/")[-1].split("@")[0]
    if prefix.startswith("v") and prefix[1:].isdigit():  # github.com/kubeflow/trainer/v2
        prefix = module.split("/")[-2]
    configs = []
    for config in yaml.safe_load_all((go_module_dir(module) / manifest).read_text()):
        if not config:
            continue
        config["metadata"]["name"] = f"{prefix}-{config['metadata']['name']}"
        hooks = []
        for hook in config["webhooks"]:
            route = hook["clientConfig"]["service"]["path"]
            if keep and not any(part in route for part in keep):
                continue
            hook["clientConfig"] = {
                "url": f"https://127.0.0.1:{port}{route}",
                "caBundle": base64.b64encode(ca_bundle).decode(),
            }
            hooks.append(hook)
        config["webhooks"] = hooks
        configs.append(config)
    return configs


def kueue_webhooks(port: int, ca_bundle: bytes) -> list[dict[str, Any]]:
    """Kueue's webhooks for its own resources and the job kinds it queues here."""
    manifest = "config/components/webhook/manifests.yaml"
    return module_webhooks(KUEUE_MODULE, manifest, port, ca_bundle, _KUEUE_WEBHOOK_PATHS)


def kueue_crds() -> list[Path]:
    """Kueue's CRD manifests in its module."""
    bases = go_module_dir(KUEUE_MODULE) / "config" / "components" / "crd" / "bases"
    return sorted(bases.glob("*.yaml"))


@dataclass
class Kueue(_WebhookController):
    """Kueue queueing batch Jobs and PyTorchJobs, its webhooks called by the apiserver.

    Its CRDs must be Established before it starts (install them with :func:`kueue_crds`).
    Kueue reads metrics certificates from a hard-coded ``/etc/kueue/metrics/certs``: it runs
    with ``/etc`` an overlay over the host's.
    """

    name = "kueue"

    def start(self, timeout: float = 120.0) -> Kueue:
        """Write its configuration and certificates, register its webhooks, start, wait ready."""
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        webhook_port, probe_port = free_port(), free_port()
        pki = _webhook_pki("kueue-webhook-service.kueue-system.svc", "kueue-ca")
        upper, work = self.workdir / "etc-upper", self.workdir / "etc-work"
        work.mkdir(parents=True, exist_ok=True)
        certs = self.workdir / "certs"
        _write_serving_pair(pki, certs, upper / "kueue" / "metrics" / "certs")
        config = {
            "apiVersion": "config.kueue.x-k8s.io/v1beta2",
            "kind": "Configuration",
            "health": {"healthProbeBindAddress": f"127.0.0.1:{probe_port}"},
            "metrics": {"bindAddress": f"127.0.0.1:{free_port()}"},
            "webhook": {"port": webhook_port, "host": "127.0.0.1", "certDir": str(certs)},
            "leaderElection": {"leaderElect": False},
            "internalCertManagement": {"enable": False},
            "manageJobsWithoutQueueName": False,
            "integrations": {"frameworks": list(KUEUE_FRAMEWORKS)},
        }
        config_file = self.workdir / "config.yaml"
        config_file.write_text(yaml.safe_dump(config))
        with contextlib.suppress(ApiException):
            client.CoreV1Api(self.api_client).create_namespace(
                {"metadata": {"name": "kueue-system"}}
            )
        self._register_webhooks(kueue_webhooks(webhook_port, pki["ca.crt"]))
        proc = self._spawn(
            'mount -t overlay overlay -o "lowerdir=/etc,upperdir=$0,workdir=$1" /etc',
            [str(upper), str(work)],
            [
                f"--config={config_file}",
                f"--kubeconfig={self.kubeconfig}",
                "--feature-gates=VisibilityOnDemand=false",
            ],
            env={"POD_NAMESPACE": "kueue-system"},
        )
        _wait_http_ok(f"http://127.0.0.1:{probe_port}/readyz", proc, self.log, timeout)
        return self


JOBSET_MODULE = "sigs.k8s.io/jobset"
TRAINER_MODULE = "github.com/kubeflow/trainer/v2"


def jobset_crds() -> list[Path]:
    """JobSet's CRD manifests in its module."""
    return sorted((go_module_dir(JOBSET_MODULE) / "config/components/crd/bases").glob("*.yaml"))


def trainer_crds() -> list[Path]:
    """Kubeflow Trainer v2's CRD manifests (TrainJob, TrainingRuntime, ClusterTrainingRuntime)."""
    return sorted((go_module_dir(TRAINER_MODULE) / "manifests/base/crds").glob("trainer.*.yaml"))


def trainer_runtime(name: str = "torch_distributed") -> dict[str, Any]:
    """A ClusterTrainingRuntime that Trainer v2 ships (``manifests/base/runtimes/<name>.yaml``)."""
    path = go_module_dir(TRAINER_MODULE) / "manifests/base/runtimes" / f"{name}.yaml"
    runtime: dict[str, Any] = yaml.safe_load(path.read_text())
    return runtime


@dataclass
class JobSet(_WebhookController):
    """The JobSet controller (Trainer v2 runs a TrainJob as a JobSet), webhooks on loopback."""

    name = "jobset"

    def start(self, timeout: float = 90.0) -> JobSet:
        """Write its configuration and certificates, register its webhooks, start, wait ready."""
        webhook_port, probe_port = free_port(), free_port()
        pki = _webhook_pki("jobset-webhook-service.jobset-system.svc", "jobset-ca")
        certs = self.workdir / "certs"
        _write_serving_pair(pki, certs)
        config = {
            "apiVersion": "config.jobset.x-k8s.io/v1alpha1",
            "kind": "Configuration",
            "leaderElection": {"leaderElect": False},
            "internalCertManagement": {"enable": False},
            "webhook": {"port": webhook_port, "host": "127.0.0.1", "certDir": str(certs)},
            "metrics": {"bindAddress": "0"},
            "health": {"healthProbeBindAddress": f"127.0.0.1:{probe_port}"},
        }
        config_file = self.workdir / "config.yaml"
        config_file.write_text(yaml.safe_dump(config))
        manifest = "config/components/webhook/manifests.yaml"
        self._register_webhooks(
            module_webhooks(JOBSET_MODULE, manifest, webhook_port, pki["ca.crt"])
        )
        proc = self._spawn(
            "", [], [f"--config={config_file}", f"--kubeconfig={self.kubeconfig}"], env={}
        )
        _wait_http_ok(f"http://127.0.0.1:{probe_port}/readyz", proc, self.log, timeout)
        return self


@dataclass
class Trainer(_WebhookController):
    """Kubeflow Trainer v2's controller manager (TrainJob), webhooks on loopback.

    Like the training operator it reads webhook certificates from a hard-coded directory under
    ``/tmp``: it gets a private ``/tmp``.
    """

    name = "trainer-controller-manager"

    def start(self, timeout: float = 90.0) -> Trainer:
        """Write its configuration and certificates, register its webhooks, start, wait ready."""
        webhook_port, probe_port = free_port(), free_port()
        pki = _webhook_pki("kubeflow-trainer-controller-manager.kubeflow-system.svc", "trainer-ca")
        private_tmp = _private_tmp(self.workdir, self.kubeconfig, pki)
        config = {
            "apiVersion": "config.trainer.kubeflow.org/v1alpha1",
            "kind": "Configuration",
            "health": {
                "healthProbeBindAddress": f"127.0.0.1:{probe_port}",
                "readinessEndpointName": "readyz",
                "livenessEndpointName": "healthz",
            },
            "metrics": {"bindAddress": "0"},
            "webhook": {"port": webhook_port, "host": "127.0.0.1"},
            "leaderElection": {"leaderElect": False},
            "certManagement": {"enable": False},
            "statusServer": {"port": free_port()},
        }
        (private_tmp / "config.yaml").write_text(yaml.safe_dump(config))
        manifest = "manifests/base/webhook/manifests.yaml"
        self._register_webhooks(
            module_webhooks(TRAINER_MODULE, manifest, webhook_port, pki["ca.crt"])
        )
        proc = self._spawn(
            'mount --bind "$0" /tmp',
            [str(private_tmp)],
            ["--config=/tmp/config.yaml", "--kubeconfig=/tmp/kubeconfig"],
            env={},
        )
        _wait_http_ok(f"http://127.0.0.1:{probe_port}/readyz", proc, self.log, timeout)
        return self


AUTOSCALER_MODULE = "k8s.io/autoscaler/cluster-autoscaler"
# The kwok provider's own node annotations (cloudprovider/kwok/kwok_constants.go).
CA_NODEGROUP_ANNOTATION = "cluster-autoscaler.kwok.nodegroup/name"
CA_MAX_COUNT_ANNOTATION = "cluster-autoscaler.kwok.nodegroup/max-count"
# The taint the kwok provider puts on its nodes unless told not to (``nodes.skipTaint``).
CA_KWOK_TAINT = ("kwok-provider", "true", "NoSchedule")
CA_GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"  # as a pool's nodes carry it (core/nodes.py)


@dataclass
class NodeGroupTemplate:
    """One node group of the Cluster Autoscaler's kwok provider: the Node it copies.

    Its nodes carry ``labels`` plus ``group_label=name`` (the provider groups nodes by that label)
    and advertise ``gpus`` GPUs from the moment they exist, like a pool's kwok nodes.
    """

    name: str
    gpus: int = 8
    max_nodes: int = 10
    labels: dict[str, str] = field(default_factory=dict)
    product: str = "NVIDIA-H100"

    def node(self, group_label: str) -> dict[str, Any]:
        """The template Node (what ``kwok-provider-templates`` lists)."""
        amounts = {"nvidia.com/gpu": str(self.gpus), "cpu": "64", "memory": "512Gi", "pods": "110"}
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": f"template-{self.name}",
                "labels": {
                    **self.labels,
                    group_label: self.name,
                    CA_GPU_PRODUCT_LABEL: self.product,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                },
                "annotations": {CA_MAX_COUNT_ANNOTATION: str(self.max_nodes)},
            },
            "spec": {},
            "status": {
                "capacity": amounts,
                "allocatable": amounts,
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            },
        }


@dataclass
class ClusterAutoscaler:
    """The real Cluster Autoscaler (1.33, kwok cloud provider) scaling kwok node groups.

    It runs outside the cluster (``KWOK_PROVIDER_MODE=local``), reads its provider configuration
    and node templates from the ConfigMaps ``kwok-provider-config`` and
    ``kwok-provider-templates`` in ``namespace`` (``POD_NAMESPACE``), and creates and deletes
    Nodes that the session's kwok then runs. Its nodes carry the kwok provider's taint
    (:data:`CA_KWOK_TAINT`) unless ``skip_taint``. ``flags`` adds or overrides command-line flags
    (``{"scale-down-unneeded-time": "10s"}``); the defaults keep every delay short.
    :meth:`stop` deletes every node of its groups, its ConfigMaps and its work directory.
    """

    bin_dir: Path
    kubeconfig: Path
    api_client: Any
    groups: list[NodeGroupTemplate]
    group_label: str = "kubeforge.io/ca-group"
    namespace: str = "cluster-autoscaler"
    skip_taint: bool = False
    flags: dict[str, str] = field(default_factory=dict)
    workdir: Path = field(
        default_factory=lambda: Path(tempfile.mkdtemp(prefix="kubeforge-autoscaler-"))
    )
    _proc: subprocess.Popen[bytes] | None = None

    name = "cluster-autoscaler"
    CONFIG_MAP = "kwok-provider-config"
    TEMPLATES_MAP = "kwok-provider-templates"

    @property
    def log(self) -> Path:
        """The autoscaler's log file."""
        return self.workdir / f"{self.name}.log"

    def provider_config(self) -> dict[str, Any]:
        """The kwok provider's configuration (``kwok-provider-config``, key ``config``)."""
        return {
            "apiVersion": "v1alpha1",
            "readNodesFrom": "configmap",
            "nodegroups": {"fromNodeLabelKey": self.group_label},
            "nodes": {
                "skipTaint": self.skip_taint,
                "gpuConfig": {
                    "gpuLabelKey": CA_GPU_PRODUCT_LABEL,
                    "availableGPUTypes": {g.product: {} for g in self.groups},
                },
            },
            "configmap": {"name": self.TEMPLATES_MAP},
        }

    def _install_config_maps(self) -> None:
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        if not self.groups:
            raise ValueError("ClusterAutoscaler needs at least one NodeGroupTemplate in groups")
        core = client.CoreV1Api(self.api_client)
        with contextlib.suppress(ApiException):  # already there from an earlier start
            core.create_namespace({"metadata": {"name": self.namespace}})
        templates = {
            "apiVersion": "v1",
            "kind": "List",
            "metadata": {"resourceVersion": ""},
            "items": [g.node(self.group_label) for g in self.groups],
        }
        maps = {
            self.CONFIG_MAP: {"config": yaml.safe_dump(self.provider_config())},
            self.TEMPLATES_MAP: {"templates": yaml.safe_dump(templates)},
        }
        for name, data in maps.items():
            body = {"metadata": {"name": name, "namespace": self.namespace}, "data": data}
            try:
                core.create_namespaced_config_map(self.namespace, body)
            except ApiException as exc:
                if exc.status != 409:
                    raise
                core.replace_namespaced_config_map(name, self.namespace, body)

    def command(self, port: int) -> list[str]:
        """The command line: kwok provider, no leader election, short delays, ``flags``."""
        flags = {
            "cloud-provider": "kwok",
            "kubeconfig": str(self.kubeconfig),
            "namespace": self.namespace,
            "address": f"127.0.0.1:{port}",
            "leader-elect": "false",
            "write-status-configmap": "false",
            "scan-interval": "2s",
            "expander": "least-waste",
            "new-pod-scale-up-delay": "0s",
            "max-node-provision-time": "2m",
            "scale-down-delay-after-add": "0s",
            "scale-down-delay-after-delete": "0s",
            "scale-down-delay-after-failure": "0s",
            "scale-down-unneeded-time": "10m",
            "node-delete-delay-after-taint": "0s",
            "unremovable-node-recheck-timeout": "10s",
            "skip-nodes-with-local-storage": "false",
            "skip-nodes-with-system-pods": "false",
            "logtostderr": "true",
            "v": "2",
            **self.flags,
        }
        return [str(self.bin_dir / self.name), *(f"--{k}={v}" for k, v in flags.items())]

    def start(self, timeout: float = 90.0) -> ClusterAutoscaler:
        """Install its ConfigMaps, start it, wait until its health check answers."""
        self._install_config_maps()
        port = free_port()
        self._proc = spawn(
            self.command(port),
            self.log,
            env={
                "KWOK_PROVIDER_MODE": "local",
                "POD_NAMESPACE": self.namespace,
                "KUBECONFIG": str(self.kubeconfig),
            },
        )
        _wait_http_ok(f"http://127.0.0.1:{port}/health-check", self._proc, self.log, timeout)
        return self

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """Its process while it runs."""
        return self._proc

    def nodes(self) -> list[str]:
        """Names of the nodes of its groups (those it created)."""
        from kubernetes import client

        core = client.CoreV1Api(self.api_client)
        names = {g.name for g in self.groups}
        return sorted(
            n.metadata.name
            for n in core.list_node().items
            if (n.metadata.annotations or {}).get(CA_NODEGROUP_ANNOTATION) in names
        )

    def stop(self) -> None:
        """Stop it; delete its nodes, its ConfigMaps and its work directory."""
        if self._proc is not None:
            stop_process_groups([self._proc])
            self._proc = None
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        core = client.CoreV1Api(self.api_client)
        with contextlib.suppress(ApiException, OSError):
            for name in self.nodes():
                core.delete_node(name)
        for name in (self.CONFIG_MAP, self.TEMPLATES_MAP):
            with contextlib.suppress(ApiException, OSError):
                core.delete_namespaced_config_map(name, self.namespace)
        shutil.rmtree(self.workdir, ignore_errors=True)
