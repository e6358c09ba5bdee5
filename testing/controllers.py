"""The upstream controllers users run beside Kubeforge, run for real against the test cluster.

- :class:`Kwok` runs simulated nodes and their pods' lifecycles (Pending -> Running ->
  Succeeded/Failed) with the Stage configurations kwok's module ships, widened so pods owned by a
  ``PyTorchJob`` complete like a Job's.
- :class:`TrainingOperator` runs Kubeflow's training operator (``PyTorchJob``), with its
  validating webhook served on loopback.

Each is a child process in its own process group with a parent-death signal (like the control
plane), and leaves no file outside its work directory: the training operator's hard-coded
certificate directory under ``/tmp`` lives in a private mount namespace.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import ipaddress
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
# kwok waits this long (plus jitter) before each stage unless a pod's annotation says otherwise
# (``pod-complete.stage.kwok.x-k8s.io/delay: 30s``): short, so tests do not wait on simulation.
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
    return stages


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


def _webhook_pki(service_dns: str) -> dict[str, bytes]:
    """A CA and a serving certificate valid for the webhook's Service name and 127.0.0.1.

    The training operator's certificate rotator keeps a Secret whose certificates are still
    valid, so the apiserver can call its webhook on loopback with this CA. In a pod the kubelet
    mounts that Secret into the operator's certificate directory; :class:`TrainingOperator`
    writes the same files there.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    until = now + dt.timedelta(days=3650)  # beyond the rotator's look-ahead window
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "training-operator-ca"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "training-operator"),
        ]
    )
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        # The rotator checks its CA by verifying it for this name.
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("training-operator-ca")]), critical=False
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, service_dns)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(until)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(service_dns), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    pkcs1 = serialization.PrivateFormat.TraditionalOpenSSL
    none = serialization.NoEncryption()
    return {
        "ca.crt": ca.public_bytes(pem),
        "ca.key": ca_key.private_bytes(pem, pkcs1, none),
        "tls.crt": cert.public_bytes(pem),
        "tls.key": key.private_bytes(pem, pkcs1, none),
    }


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
class TrainingOperator:
    """Kubeflow's training operator (PyTorchJob only), its webhook called by the apiserver."""

    bin_dir: Path
    kubeconfig: Path
    api_client: Any
    workdir: Path = field(
        default_factory=lambda: Path(tempfile.mkdtemp(prefix="kubeforge-training-operator-"))
    )
    namespace: str = "kubeflow"
    _proc: subprocess.Popen[bytes] | None = None

    WEBHOOK_CONFIGURATION = "validator.training-operator.kubeflow.org"
    SECRET = "training-operator-webhook-cert"

    @property
    def log(self) -> Path:
        """The operator's log file."""
        return self.workdir / "training-operator.log"

    def _install_objects(self, webhook_port: int) -> dict[str, bytes]:
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        core = client.CoreV1Api(self.api_client)
        with contextlib.suppress(ApiException):  # already there from an earlier start
            core.create_namespace({"metadata": {"name": self.namespace}})
        pki = _webhook_pki(f"training-operator.{self.namespace}.svc")
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
        webhook = {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": self.WEBHOOK_CONFIGURATION},
            "webhooks": [
                {
                    "name": "validator.pytorchjob.training-operator.kubeflow.org",
                    "admissionReviewVersions": ["v1"],
                    "sideEffects": "None",
                    "failurePolicy": "Fail",
                    "clientConfig": {
                        "url": f"https://127.0.0.1:{webhook_port}{path}",
                        "caBundle": base64.b64encode(pki["ca.crt"]).decode(),
                    },
                    "rules": [
                        {
                            "apiGroups": ["kubeflow.org"],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE", "UPDATE"],
                            "resources": ["pytorchjobs"],
                        }
                    ],
                }
            ],
        }
        admission = client.AdmissionregistrationV1Api(self.api_client)
        with contextlib.suppress(ApiException):
            admission.delete_validating_webhook_configuration(self.WEBHOOK_CONFIGURATION)
        admission.create_validating_webhook_configuration(webhook)
        return pki

    def start(self, timeout: float = 90.0) -> TrainingOperator:
        """Install its namespace, Secret and webhook configuration, start it, wait for ready."""
        webhook_port, probe_port = free_port(), free_port()
        pki = self._install_objects(webhook_port)
        # Its certificate directory is hard-coded under /tmp: it gets a private /tmp, holding a
        # kubeconfig of its own (the CA inline, since the host's /tmp is out of its sight).
        private_tmp = self.workdir / "tmp"
        private_tmp.mkdir(parents=True, exist_ok=True)
        (private_tmp / "kubeconfig").write_text(yaml.safe_dump(_inline_ca(self.kubeconfig)))
        certs = private_tmp / "k8s-webhook-server" / "serving-certs"
        certs.mkdir(parents=True, exist_ok=True)
        for name in ("tls.crt", "tls.key"):
            (certs / name).write_bytes(pki[name])
        binary = self.bin_dir / "training-operator"
        args = [
            "--kubeconfig=/tmp/kubeconfig",
            "--enable-scheme=pytorchjob",
            f"--webhook-server-port={webhook_port}",
            f"--metrics-bind-address=127.0.0.1:{free_port()}",
            f"--health-probe-bind-address=127.0.0.1:{probe_port}",
            "--leader-elect=false",
        ]
        script = 'mount --bind "$0" /tmp && exec "$@"'
        self._proc = spawn(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
                str(private_tmp),
                str(binary),
                *args,
            ],
            self.log,
            env={"MY_POD_NAMESPACE": self.namespace},
        )
        _wait_http_ok(f"http://127.0.0.1:{probe_port}/readyz", self._proc, self.log, timeout)
        return self

    def stop(self) -> None:
        """Stop the operator, remove its webhook configuration and its work directory."""
        if self._proc is not None:
            stop_process_groups([self._proc])
            self._proc = None
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        with contextlib.suppress(ApiException, OSError):
            client.AdmissionregistrationV1Api(
                self.api_client
            ).delete_validating_webhook_configuration(self.WEBHOOK_CONFIGURATION)
        shutil.rmtree(self.workdir, ignore_errors=True)
