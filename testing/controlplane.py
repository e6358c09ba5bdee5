"""A real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager, scheduler).

The binaries come from ``hack/controlplane/build.sh`` (built from their Go modules and cached
under ``~/.cache/kubeforge``). :class:`ControlPlane` starts them on free loopback ports with RBAC
and the Node authorizer on, a service-account signing key and a static admin token, waits for
``/readyz`` and writes a kubeconfig. Every child process is started in its own process group with
a parent-death signal, so a killed test run leaves no etcd or apiserver behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

_PR_SET_PDEATHSIG = 1


class ControlPlaneError(RuntimeError):
    """The control plane could not be built or started."""


def repo_root() -> Path:
    """Return the Kubeforge checkout that holds ``hack/controlplane``.

    Looks at ``KUBEFORGE_REPO`` first, then walks up from the current directory.
    """
    env = os.environ.get("KUBEFORGE_REPO")
    candidates = [Path(env)] if env else []
    candidates += [Path.cwd(), *Path.cwd().parents]
    for candidate in candidates:
        if (candidate / "hack" / "controlplane" / "build.sh").is_file():
            return candidate
    raise ControlPlaneError(
        "cannot find hack/controlplane/build.sh: run from the Kubeforge checkout or set "
        "KUBEFORGE_REPO"
    )


def build_binaries() -> Path:
    """Build (or reuse from the cache) the control-plane binaries; return their directory."""
    script = repo_root() / "hack" / "controlplane" / "build.sh"
    if shutil.which("go") is None:
        raise ControlPlaneError("Go is required to build the test control plane: 'go' not on PATH")
    proc = subprocess.run(
        ["bash", str(script)], stdout=subprocess.PIPE, stderr=sys.stderr, text=True, check=False
    )
    if proc.returncode != 0:
        raise ControlPlaneError(f"{script} failed with exit code {proc.returncode}")
    return Path(proc.stdout.strip().splitlines()[-1])


def stop_process_groups(procs: Sequence[subprocess.Popen[Any]], grace_s: float = 15.0) -> None:
    """SIGTERM each process's whole group, wait up to ``grace_s`` in all, then SIGKILL the rest."""
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    # Runs in the child before exec: new process group, and SIGKILL when the parent dies
    # (a graceful SIGTERM can hang an apiserver whose etcd is going away too).
    os.setpgid(0, 0)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(
    command: Sequence[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``command`` in its own process group, dying with this process, logging to ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen(  # noqa: S603 - binaries we built ourselves
            list(command),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - needed for the parent-death signal
        )


@dataclass
class _Certs:
    ca: Path
    serving_cert: Path
    serving_key: Path
    sa_key: Path
    sa_pub: Path
    kubelet_client_cert: Path
    kubelet_client_key: Path


# The names and the ClusterIP of the ``kubernetes`` Service, as a pod's in-cluster config uses them.
KUBERNETES_SERVICE_IP = "10.96.0.1"
KUBERNETES_SERVICE_NAMES = (
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)


def _write_certs(directory: Path, node_ip: str | None = None) -> _Certs:
    """Write a CA, the apiserver's serving certificate and a service-account key pair.

    The serving certificate is valid for 127.0.0.1, the ``kubernetes`` Service's names and
    ClusterIP, and ``node_ip`` when pods reach the apiserver there.
    """
    from cryptography.hazmat.primitives import serialization

    from kubeforge.testing.pki import Authority

    authority = Authority.create("kubeforge-test-ca", days=2)
    ips = (KUBERNETES_SERVICE_IP, *((node_ip,) if node_ip else ()))
    serving = authority.issue(
        "kube-apiserver", ["localhost", *KUBERNETES_SERVICE_NAMES], days=2, ips=ips
    )
    sa = Authority.create("service-accounts", days=2)  # only its key pair signs tokens
    # The apiserver's identity towards kubelets (logs, exec, port-forward on a real node).
    kubelet_client = authority.issue_client("kube-apiserver-kubelet-client", "system:masters")
    sa_public = serialization.load_pem_private_key(sa.pair.key, None).public_key()
    out = _Certs(
        ca=directory / "ca.crt",
        serving_cert=directory / "apiserver.crt",
        serving_key=directory / "apiserver.key",
        sa_key=directory / "sa.key",
        sa_pub=directory / "sa.pub",
        kubelet_client_cert=directory / "kubelet-client.crt",
        kubelet_client_key=directory / "kubelet-client.key",
    )
    out.kubelet_client_cert.write_bytes(kubelet_client.cert)
    out.kubelet_client_key.write_bytes(kubelet_client.key)
    out.ca.write_bytes(authority.pair.cert)
    # A real node's kubelet gets its client and serving certificates from this CA.
    (directory / "ca.key").write_bytes(authority.pair.key)
    out.serving_cert.write_bytes(serving.cert)
    out.serving_key.write_bytes(serving.key)
    out.sa_key.write_bytes(sa.pair.key)
    out.sa_pub.write_bytes(
        sa_public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return out


@dataclass
class ControlPlane:
    """etcd + kube-apiserver (and optionally the controller manager and scheduler) on loopback.

    Use as a context manager; :attr:`kubeconfig` is valid between ``start`` and ``stop``.
    With ``node_ip`` (a real node's address, see :mod:`kubeforge.testing.node`) the apiserver
    also listens beyond loopback and advertises that address, so the ``kubernetes`` Service's
    endpoint is where pods reach it; clients on this machine still use 127.0.0.1.
    With ``scheduler_config`` (a ``KubeSchedulerConfiguration``: its profiles and plugin
    settings) the scheduler runs with ``--config``; its client connection is pointed at this
    control plane and leader election is off, as without it.
    """

    bin_dir: Path
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="kubeforge-cp-")))
    with_scheduler: bool = True
    with_controller_manager: bool = True
    admin_token: str = field(default_factory=lambda: secrets.token_hex(16))
    _procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    apiserver_port: int = 0
    node_ip: str | None = None
    scheduler_config: dict[str, Any] | None = None

    @property
    def server(self) -> str:
        """The API server's URL."""
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def kubeconfig(self) -> Path:
        """Path of the admin kubeconfig."""
        return self.workdir / "kubeconfig"

    @property
    def ca_file(self) -> Path:
        """The CA that signed the API server's serving certificate."""
        return self.workdir / "pki" / "ca.crt"

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        proc = spawn([str(self.bin_dir / name), *args], self.workdir / f"{name}.log")
        self._procs.append((name, proc))
        return proc

    def log_tail(self, name: str, lines: int = 30) -> str:
        """Return the last lines a component logged."""
        path = self.workdir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def start(self, timeout: float = 90.0) -> None:
        """Start etcd and kube-apiserver, wait until ready, write the kubeconfig."""
        pki = self.workdir / "pki"
        pki.mkdir(parents=True, exist_ok=True)
        certs = _write_certs(pki, self.node_ip)
        tokens = self.workdir / "tokens.csv"
        tokens.write_text(f'{self.admin_token},kubeforge-admin,kubeforge-admin,"system:masters"\n')

        etcd_client, etcd_peer = free_port(), free_port()
        self._spawn(
            "etcd",
            [
                "--name=default",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{etcd_client}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd_client}",
                f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-cluster=default=http://127.0.0.1:{etcd_peer}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )
        self.apiserver_port = free_port()
        self._spawn(
            "kube-apiserver",
            [
                f"--etcd-servers=http://127.0.0.1:{etcd_client}",
                # The node's address exists only once the node is up: listen on every address.
                f"--bind-address={'0.0.0.0' if self.node_ip else '127.0.0.1'}",  # noqa: S104
                f"--advertise-address={self.node_ip or '127.0.0.1'}",
                f"--secure-port={self.apiserver_port}",
                f"--tls-cert-file={certs.serving_cert}",
                f"--tls-private-key-file={certs.serving_key}",
                f"--client-ca-file={certs.ca}",
                f"--token-auth-file={tokens}",
                "--authorization-mode=Node,RBAC",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={certs.sa_pub}",
                f"--service-account-signing-key-file={certs.sa_key}",
                "--api-audiences=https://kubernetes.default.svc",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--allow-privileged=true",
                "--enable-admission-plugins=NodeRestriction",
                f"--kubelet-client-certificate={certs.kubelet_client_cert}",
                f"--kubelet-client-key={certs.kubelet_client_key}",
                f"--kubelet-certificate-authority={certs.ca}",
                "--kubelet-preferred-address-types=InternalIP",
                "--v=0",
            ],
        )
        self._write_kubeconfig()
        try:
            self._wait_ready(timeout)
        except ControlPlaneError:
            self.stop()
            raise
        # Both talk to the apiserver as admin and serve their own port on loopback only.
        common = [
            f"--kubeconfig={self.kubeconfig}",
            f"--authentication-kubeconfig={self.kubeconfig}",
            f"--authorization-kubeconfig={self.kubeconfig}",
            "--bind-address=127.0.0.1",
            "--leader-elect=false",
        ]
        if self.with_controller_manager:
            self._spawn(
                "kube-controller-manager",
                [
                    *common,
                    f"--secure-port={free_port()}",
                    f"--root-ca-file={certs.ca}",
                    f"--service-account-private-key-file={certs.sa_key}",
                    "--use-service-account-credentials=true",
                    "--service-cluster-ip-range=10.96.0.0/16",
                    "--cluster-cidr=10.244.0.0/16",
                    "--allocate-node-cidrs=true",
                    # Test namespaces go away fast; garbage collection and Jobs react at once.
                    "--concurrent-namespace-syncs=5",
                    "--v=0",
                ],
            )
        if self.with_scheduler:
            scheduler = [*common, f"--secure-port={free_port()}"]
            if self.scheduler_config is not None:
                scheduler.append(f"--config={self._write_scheduler_config()}")
            self._spawn("kube-scheduler", scheduler)

    def _write_scheduler_config(self) -> Path:
        """``scheduler_config`` pointed at this control plane (``--config`` ignores the flags)."""
        assert self.scheduler_config is not None
        config = {
            **self.scheduler_config,
            "clientConnection": {"kubeconfig": str(self.kubeconfig)},
            "leaderElection": {"leaderElect": False},
        }
        path = self.workdir / "kube-scheduler.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    def _write_kubeconfig(self) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "kubeforge-test",
                    "cluster": {"server": self.server, "certificate-authority": str(self.ca_file)},
                }
            ],
            "users": [{"name": "kubeforge-admin", "user": {"token": self.admin_token}}],
            "contexts": [
                {
                    "name": "kubeforge-test",
                    "context": {"cluster": "kubeforge-test", "user": "kubeforge-admin"},
                }
            ],
            "current-context": "kubeforge-test",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))

    def _wait_ready(self, timeout: float) -> None:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        request = urllib.request.Request(
            f"{self.server}/readyz", headers={"Authorization": f"Bearer {self.admin_token}"}
        )
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            for name, proc in self._procs:
                if proc.poll() is not None:
                    raise ControlPlaneError(
                        f"{name} exited with code {proc.returncode}:\n{self.log_tail(name)}"
                    )
            try:
                with urllib.request.urlopen(request, context=ctx, timeout=5) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
            time.sleep(0.25)
        raise ControlPlaneError(
            f"kube-apiserver not ready after {timeout:.0f}s ({last}):\n"
            f"{self.log_tail('kube-apiserver')}"
        )

    def stop(self) -> None:
        """Stop every process, the last started first, and remove the work directory.

        One at a time: the apiserver stops while etcd still serves (about 1 s); stopped together,
        the apiserver's graceful shutdown outlives etcd and ran past the 15 s grace (31 s
        measured), so every teardown waited for the SIGKILL.
        """
        for _name, proc in reversed(self._procs):
            stop_process_groups([proc])
        self._procs.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def pids(self) -> list[int]:
        """PIDs of the processes this control plane started and that still run."""
        return [proc.pid for _name, proc in self._procs if proc.poll() is None]


@contextlib.contextmanager
def running_control_plane() -> Iterator[ControlPlane]:
    """Build (or reuse) the binaries and run a control plane for the ``with`` block."""
    with ControlPlane(bin_dir=build_binaries()) as plane:
        yield plane
