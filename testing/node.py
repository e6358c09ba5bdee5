"""A real Kubernetes node beside the test control plane.

kubelet and kube-proxy (built from the same ``k8s.io/kubernetes`` module as the control plane),
containerd + runc with the CNI ``bridge`` and ``portmap`` plugins (Debian packages), CoreDNS (our
wrapper module) and a static ``pause`` sandbox image: pods run real containers, talk over a pod
network, find each other by DNS name and are reached through ClusterIPs programmed by kube-proxy.

A :class:`NodeSupervisor` process owns every node process. It outlives the process that started
it: when that one stops, is interrupted or is killed (its pipe closes), the supervisor tears the
node down in the order that leaves nothing behind (force-deletes the pods while the kubelet runs,
stops the kubelet, removes the sandboxes through CRI, ``kube-proxy --cleanup``, stops containerd
and its shims, then sweeps mounts, network namespaces, links, iptables chains, cgroups, the host
paths the kubelet and CNI hard-code, and restores the sysctls the node changed).

One node per machine (fixed ports 10250/10256 and hard-coded host paths): a machine-wide lock
under the cache makes a second node wait. ``python -m kubeforge.testing.node up`` starts a control
plane and a node for a person (``make cluster``); ``down`` removes them (``make cluster-down``).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import io
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kubeforge.testing.controlplane import (
    ControlPlane,
    ControlPlaneError,
    repo_root,
    spawn,
    stop_process_groups,
)

NODE_NAME = "kubeforge-node"
NODE_IP = "10.240.255.1"
NODE_BRIDGE = "kfnode0"  # port-less bridge holding the node IP (no dummy links in this kernel)
POD_BRIDGE = "kfcni0"
POD_CIDR = "10.244.255.0/24"  # set on the Node before it registers; the allocator starts at .0
CLUSTER_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
DNS_IP = "10.96.0.10"
PAUSE_IMAGE = "localhost/pause:3.10"
BUSYBOX_IMAGE = "localhost/busybox:1.35"
NODE_TAINT = "kubeforge.io/real-node"  # tests' pods tolerate it; other tests' pods stay off
CNI_BIN_DIR = Path("/usr/lib/cni")
BUSYBOX = Path("/bin/busybox")  # Debian's busybox-static
# Written by the kubelet, libcni and containerd whatever their configuration says.
HARD_CODED_PATHS = (
    "/var/lib/kubelet",
    "/var/log/containers",
    "/var/log/pods",
    "/etc/cni",
    "/var/lib/cni",
    "/run/containerd",
    "/opt/containerd",
    "/run/netns",  # the pods' network namespaces (containerd's CRI)
)
NETNS_DIR = Path("/run/netns")
# Sysctls the kubelet, kube-proxy or the node's setup change; restored on teardown.
SYSCTLS = (
    "net/ipv4/ip_forward",
    "net/bridge/bridge-nf-call-iptables",
    "net/ipv4/conf/all/route_localnet",
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
CHAIN_PREFIXES = ("KUBE-", "CNI-")
DEBIAN_TOOLS = {
    "containerd": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    "iptables": "iptables",
    "conntrack": "conntrack",
    "ip": "iproute2",
}


class NodeError(RuntimeError):
    """The node could not be started."""


def cache_dir() -> Path:
    """Where the node keeps its machine-wide lock and the record ``down`` reads."""
    path = Path(os.environ.get("KUBEFORGE_CACHE", Path.home() / ".cache" / "kubeforge")) / "node"
    path.mkdir(parents=True, exist_ok=True)
    return path


def build_node_binaries() -> Path:
    """Build (or reuse) the control plane's and the node's binaries; return their directory."""
    script = repo_root() / "hack" / "controlplane" / "build.sh"
    proc = subprocess.run(
        ["bash", str(script)],
        stdout=subprocess.PIPE,
        stderr=sys.stderr,
        text=True,
        check=False,
        env={**os.environ, "KUBEFORGE_NODE": "1"},
    )
    if proc.returncode != 0:
        raise NodeError(f"{script} failed with exit code {proc.returncode}")
    return Path(proc.stdout.strip().splitlines()[-1])


def missing_tools() -> list[str]:
    """Debian packages the node needs and this machine lacks (``make node-deps`` installs them)."""
    missing = {pkg for tool, pkg in DEBIAN_TOOLS.items() if shutil.which(tool) is None}
    if not (CNI_BIN_DIR / "bridge").exists():
        missing.add("containernetworking-plugins")
    if not BUSYBOX.exists():
        missing.add("busybox-static")
    return sorted(missing)


def _run(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(args), capture_output=True, text=True, check=False, timeout=timeout)
    if check and proc.returncode != 0:
        raise NodeError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


@dataclass
class NodeSpec:
    """What the supervisor needs to start a node against a running control plane."""

    bin_dir: str
    workdir: str
    kubeconfig: str  # admin: creates the Node, kube-system objects, deletes pods at teardown
    ca_cert: str
    ca_key: str
    server: str
    taint: bool = True
    with_control_plane: bool = False  # ``up``: the supervisor runs the control plane too

    def write(self, path: Path) -> None:
        """Store the spec for the supervisor process."""
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def read(cls, path: Path) -> NodeSpec:
        """Load a spec written by :meth:`write`."""
        return cls(**json.loads(path.read_text()))


# --- images without a registry -------------------------------------------------------------


def _tar_bytes(files: dict[str, tuple[bytes | Path, int]], links: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = sorted({str(Path(n).parent) for n in [*files, *links]} - {"."})
        for name in dirs:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, (content, mode) in sorted(files.items()):
            data = content.read_bytes() if isinstance(content, Path) else content
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
        for name, target in sorted(links.items()):
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
            tar.addfile(info)
    return buf.getvalue()


def image_archive(
    ref: str,
    files: dict[str, tuple[bytes | Path, int]],
    entrypoint: list[str],
    links: dict[str, str] | None = None,
) -> bytes:
    """A one-layer image from scratch as a ``docker save`` archive (what ``ctr import`` reads)."""
    layer = _tar_bytes(files, links or {})
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": entrypoint, "Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
    ).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [ref], "Layers": ["layer.tar"]}])
    return _tar_bytes(
        {
            "layer.tar": (layer, 0o644),
            config_name: (config, 0o644),
            "manifest.json": (manifest.encode(), 0o644),
        },
        {},
    )


def busybox_archive() -> bytes:
    """A small image of Debian's static busybox: ``sh``, ``nc``, ``httpd``, ``nslookup``."""
    applets = ["sh", "nc", "httpd", "nslookup", "sleep", "cat", "echo", "hostname", "mkdir", "ls"]
    return image_archive(
        BUSYBOX_IMAGE,
        {"bin/busybox": (BUSYBOX, 0o755), "tmp/.keep": (b"", 0o644)},
        ["/bin/sh"],
        {f"bin/{name}": "busybox" for name in applets},
    )


# --- configuration files --------------------------------------------------------------------


def _containerd_config(work: Path) -> str:
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{work}/containerd/root"
state = "{work}/containerd/state"
[grpc]
  address = "{work}/containerd.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "{work}/containerd/opt"
[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  # root here lacks CAP_SYS_RESOURCE: without it every sandbox fails (child's PID: EOF)
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  disable_apparmor = true
[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  BinaryName = "{shutil.which("runc") or "runc"}"
  Root = "{work}/runc"
[{cri}.cni]
  bin_dir = "{CNI_BIN_DIR}"
  conf_dir = "{work}/cni/net.d"
"""


def _cni_config(work: Path) -> dict[str, Any]:
    return {
        "cniVersion": "0.4.0",
        "name": "kubeforge",
        "plugins": [
            {
                "type": "bridge",
                "bridge": POD_BRIDGE,
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_CIDR}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(work / "cni" / "networks"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def _kubelet_config(work: Path, ca: Path) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,  # this kernel mounts cgroup v1
        "cgroupDriver": "cgroupfs",
        "containerRuntimeEndpoint": f"unix://{work}/containerd.sock",
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca)},
        },
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(work / "pki" / "kubelet.crt"),
        "tlsPrivateKeyFile": str(work / "pki" / "kubelet.key"),
        "clusterDomain": "cluster.local",
        "clusterDNS": [DNS_IP],
        "resolvConf": str(work / "resolv.conf"),
        "podLogsDir": str(work / "pods"),
        "readOnlyPort": 0,
        "healthzPort": 0,
        "failSwapOn": False,
        # Imported images cannot be pulled again: never collect them, evict only when desperate.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "50Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
        },
        "serializeImagePulls": False,
        "maxPods": 50,
    }


def _kube_proxy_config(work: Path, kubeconfig: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": kubeconfig},
        "mode": "iptables",
        "clusterCIDR": CLUSTER_CIDR,
        "hostnameOverride": NODE_NAME,
        "bindAddress": NODE_IP,
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        "iptables": {"localhostNodePorts": False},
        # Leave the machine's conntrack table sizes and timeouts alone.
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
    }


def _corefile(kubeconfig: str, ready_port: int) -> str:
    # No cache plugin and a short TTL: a headless name asked for before its pod exists is
    # answered afresh moments later (a negative cache made a rendezvous take 34 s, not 5 s).
    return f"""cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {{
    bind {NODE_IP}
    errors
    ready 127.0.0.1:{ready_port}
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }}
}}
.:53 {{
    bind {NODE_IP}
    template ANY ANY {{
        rcode NXDOMAIN
    }}
}}
"""


def _create(call: Callable[[], Any]) -> None:
    """Create an object unless it exists (left by a run that was killed hard)."""
    from kubernetes import client

    try:
        call()
    except client.ApiException as exc:
        if exc.status != 409:
            raise NodeError(f"cannot create a node object: {exc.body}") from exc


def resolve(name: str, server: str, timeout: float = 1.0) -> str | None:
    """The first IPv4 address a DNS ``server`` gives for ``name`` (one UDP A query), or None."""
    import socket
    import struct

    query_id = os.getpid() & 0xFFFF
    question = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    packet = struct.pack(">HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + question + b"\0\1\0\1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(packet, (server, 53))
            reply = sock.recv(512)
        except OSError:
            return None
    answers = struct.unpack(">H", reply[6:8])[0]
    if reply[3] & 0x0F or not answers:  # an error code, or no answer
        return None
    # The answer's name (a pointer, or the labels again); then type, class, ttl, length, address.
    pos = 12 + len(question) + 4
    if reply[pos] & 0xC0 == 0xC0:
        pos += 2
    else:
        while reply[pos]:
            pos += reply[pos] + 1
        pos += 1
    rtype, _cls, _ttl, length = struct.unpack(">HHIH", reply[pos : pos + 10])
    if rtype != 1 or length != 4:
        return None
    return socket.inet_ntoa(reply[pos + 10 : pos + 14])


# --- the supervisor -------------------------------------------------------------------------


@dataclass
class HostRecord:
    """What the host looked like before the node started, so teardown restores exactly that."""

    created_paths: list[str] = field(default_factory=list)
    netns_before: list[str] = field(default_factory=list)
    sysctls: dict[str, str] = field(default_factory=dict)

    @classmethod
    def take(cls) -> HostRecord:
        """Record the state of the host paths, network namespaces and sysctls."""
        sysctls = {}
        for name in SYSCTLS:
            path = Path("/proc/sys") / name
            with contextlib.suppress(OSError):
                sysctls[name] = path.read_text().strip()
        return cls(
            created_paths=[p for p in HARD_CODED_PATHS if not os.path.lexists(p)],
            netns_before=sorted(os.listdir(NETNS_DIR)) if NETNS_DIR.is_dir() else [],
            sysctls=sysctls,
        )


class NodeSupervisor:
    """Runs the node's processes and tears them down (``python -m kubeforge.testing.node``)."""

    def __init__(self, spec: NodeSpec) -> None:
        """Prepare (start nothing yet)."""
        self.spec = spec
        self.work = Path(spec.workdir)
        self.bin = Path(spec.bin_dir)
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.plane: ControlPlane | None = None
        self.record_path = self.work / "host-record.json"
        self.record = HostRecord()

    # Starting

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        path = args[0] if "/" in args[0] else str(self.bin / args[0])
        proc = spawn([path, *args[1:]], self.work / f"{name}.log")
        self.procs.append((name, proc))
        return proc

    def log_tail(self, name: str, lines: int = 25) -> str:
        """The last lines a node process logged."""
        path = self.work / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def _check_alive(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise NodeError(f"{name} exited ({proc.returncode}):\n{self.log_tail(name)}")

    def _wait(self, what: str, predicate: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            with contextlib.suppress(Exception):
                if predicate():
                    return
            time.sleep(0.2)
        raise NodeError(f"{what} not ready within {timeout:.0f}s")

    def start(self) -> None:
        """Start the control plane (``up`` only), then the node; return once it is Ready."""
        self.work.mkdir(parents=True, exist_ok=True)
        if self.spec.with_control_plane:
            self.plane = ControlPlane(
                bin_dir=self.bin, workdir=self.work / "controlplane", node_ip=NODE_IP
            )
            self.plane.start()
            self.spec.kubeconfig = str(self.plane.kubeconfig)
            self.spec.ca_cert = str(self.plane.ca_file)
            self.spec.ca_key = str(self.plane.ca_file.with_name("ca.key"))
            self.spec.server = self.plane.server
        self.record = HostRecord.take()
        self.record_path.write_text(json.dumps(asdict(self.record)))
        self._network()
        self._certs()
        self._containerd()
        self._cluster_objects()
        self._kubelet()
        self._kube_proxy_and_dns()

    def _network(self) -> None:
        for name, value in (
            ("net/ipv4/ip_forward", "1"),
            ("net/bridge/bridge-nf-call-iptables", "1"),
        ):
            with contextlib.suppress(OSError):
                (Path("/proc/sys") / name).write_text(value)
        _run("ip", "link", "add", NODE_BRIDGE, "type", "bridge")
        _run("ip", "addr", "add", f"{NODE_IP}/32", "dev", NODE_BRIDGE)
        _run("ip", "link", "set", NODE_BRIDGE, "up")
        # An unprogrammed ClusterIP then times out instead of reaching the default gateway.
        _run("ip", "route", "add", SERVICE_CIDR, "dev", NODE_BRIDGE, "src", NODE_IP)
        (self.work / "resolv.conf").write_text("nameserver 127.0.0.1\n")
        net_d = self.work / "cni" / "net.d"
        net_d.mkdir(parents=True, exist_ok=True)
        (net_d / "10-kubeforge.conflist").write_text(json.dumps(_cni_config(self.work), indent=1))

    def _certs(self) -> None:
        from kubeforge.testing.pki import Authority, KeyPair

        ca = Authority.load(
            "kubeforge-test-ca",
            KeyPair(Path(self.spec.ca_cert).read_bytes(), Path(self.spec.ca_key).read_bytes()),
        )
        pki = self.work / "pki"
        pki.mkdir(exist_ok=True)
        serving = ca.issue(NODE_NAME, [NODE_NAME], days=2, ips=(NODE_IP,))
        (pki / "kubelet.crt").write_bytes(serving.cert)
        (pki / "kubelet.key").write_bytes(serving.key)
        client = ca.issue_client(f"system:node:{NODE_NAME}", "system:nodes", days=2)
        (pki / "node.crt").write_bytes(client.cert)
        (pki / "node.key").write_bytes(client.key)
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "kubeforge",
                    "cluster": {
                        "server": self.spec.server,
                        "certificate-authority": self.spec.ca_cert,
                    },
                }
            ],
            "users": [
                {
                    "name": NODE_NAME,
                    "user": {
                        "client-certificate": str(pki / "node.crt"),
                        "client-key": str(pki / "node.key"),
                    },
                }
            ],
            "contexts": [{"name": "node", "context": {"cluster": "kubeforge", "user": NODE_NAME}}],
            "current-context": "node",
        }
        (self.work / "kubelet.kubeconfig").write_text(yaml.safe_dump(config))

    def _ctr(self, *args: str, stdin: bytes | None = None) -> None:
        proc = subprocess.run(
            ["ctr", "--address", str(self.work / "containerd.sock"), "-n", "k8s.io", *args],
            input=stdin,
            capture_output=True,
            check=False,
            timeout=600,
        )
        if proc.returncode != 0:
            raise NodeError(f"ctr {' '.join(args)} failed: {proc.stderr.decode(errors='replace')}")

    def _containerd(self) -> None:
        config = self.work / "containerd.toml"
        config.write_text(_containerd_config(self.work))
        self._spawn(
            "containerd", [shutil.which("containerd") or "containerd", "--config", str(config)]
        )
        sock = self.work / "containerd.sock"
        self._wait("containerd", lambda: sock.exists() and self._crictl("info").returncode == 0)
        pause = image_archive(PAUSE_IMAGE, {"pause": (self.bin / "pause", 0o755)}, ["/pause"])
        self._ctr("images", "import", "-", stdin=pause)
        self._ctr("images", "import", "-", stdin=busybox_archive())

    def _crictl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        endpoint = f"unix://{self.work / 'containerd.sock'}"
        return _run(
            str(self.bin / "crictl"),
            f"--runtime-endpoint={endpoint}",
            f"--image-endpoint={endpoint}",
            "--timeout=20s",
            *args,
            check=False,
            timeout=timeout,
        )

    def _api(self) -> Any:
        from kubernetes import config

        return config.new_client_from_config(config_file=self.spec.kubeconfig)

    def _cluster_objects(self) -> None:
        from kubernetes import client

        with self._api() as api:
            core = client.CoreV1Api(api)
            node: dict[str, Any] = {
                "metadata": {
                    "name": NODE_NAME,
                    "labels": {"kubernetes.io/hostname": NODE_NAME, "kubeforge.io/node": "real"},
                },
                # Chosen before the kubelet starts so the CNI configuration can name it.
                "spec": {"podCIDR": POD_CIDR, "podCIDRs": [POD_CIDR]},
            }
            if self.spec.taint:
                node["spec"]["taints"] = [{"key": NODE_TAINT, "effect": "NoSchedule"}]
            with contextlib.suppress(client.ApiException):
                core.delete_node(NODE_NAME)  # a record left by a run that was killed hard
            core.create_node(node)
            service = {
                "metadata": {"name": "kube-dns", "namespace": "kube-system"},
                "spec": {
                    "clusterIP": DNS_IP,
                    "ports": [
                        {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                        {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                    ],
                },
            }
            _create(lambda: core.create_namespaced_service("kube-system", service))
            # CoreDNS runs on the node itself: its endpoint is the node IP.
            slice_ = {
                "metadata": {
                    "name": "kube-dns-node",
                    "namespace": "kube-system",
                    "labels": {
                        "kubernetes.io/service-name": "kube-dns",
                        "endpointslice.kubernetes.io/managed-by": "kubeforge-node",
                    },
                },
                "addressType": "IPv4",
                "endpoints": [{"addresses": [NODE_IP], "conditions": {"ready": True}}],
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                ],
            }
            discovery = client.DiscoveryV1Api(api)
            _create(lambda: discovery.create_namespaced_endpoint_slice("kube-system", slice_))

    def _dns_answers(self) -> bool:
        return resolve("kubernetes.default.svc.cluster.local", DNS_IP) is not None

    def _node_ready(self) -> bool:
        from kubernetes import client

        with self._api() as api:
            conditions = client.CoreV1Api(api).read_node(NODE_NAME).status.conditions or []
        return any(c.type == "Ready" and c.status == "True" for c in conditions)

    def _kubelet(self) -> None:
        config = self.work / "kubelet.yaml"
        config.write_text(yaml.safe_dump(_kubelet_config(self.work, Path(self.spec.ca_cert))))
        self._spawn(
            "kubelet",
            [
                "kubelet",
                f"--config={config}",
                f"--kubeconfig={self.work / 'kubelet.kubeconfig'}",
                f"--root-dir={self.work / 'kubelet'}",
                f"--cert-dir={self.work / 'pki'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={NODE_IP}",
                "--v=1",
            ],
        )
        self._wait("node (kubelet)", self._node_ready, timeout=90)

    def _kube_proxy_and_dns(self) -> None:
        proxy_config = self.work / "kube-proxy.yaml"
        proxy_config.write_text(yaml.safe_dump(_kube_proxy_config(self.work, self.spec.kubeconfig)))
        self._spawn("kube-proxy", ["kube-proxy", f"--config={proxy_config}", "--v=1"])
        from kubeforge.testing.controlplane import free_port

        ready_port = free_port()
        corefile = self.work / "Corefile"
        corefile.write_text(_corefile(self.spec.kubeconfig, ready_port))
        self._spawn("coredns", ["coredns", "-conf", str(corefile)])

        def answers(url: str) -> bool:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback
                return bool(resp.status == 200)

        self._wait("kube-proxy", lambda: answers("http://127.0.0.1:10256/healthz"))
        self._wait("coredns", lambda: answers(f"http://127.0.0.1:{ready_port}/ready"))
        # Through the kube-dns ClusterIP: kube-proxy has programmed it and CoreDNS answers.
        self._wait("cluster DNS", self._dns_answers)

    # Stopping

    def stop(self) -> None:
        """Tear the node down (and the control plane for ``up``); safe to call more than once."""
        if self.record_path.exists():
            self.record = HostRecord(**json.loads(self.record_path.read_text()))
        with contextlib.suppress(Exception):
            self._delete_pods()
        self._stop("kubelet")
        with contextlib.suppress(Exception):
            self._remove_sandboxes()
        self._stop("kube-proxy")
        self._stop("coredns")
        with contextlib.suppress(Exception):
            _run(str(self.bin / "kube-proxy"), "--cleanup", check=False)
        with contextlib.suppress(Exception):
            self._delete_cluster_objects()
        self._stop("containerd")
        stop_process_groups([proc for _name, proc in self.procs])
        sweep_host(self.work, self.record)
        if self.plane is not None:
            self.plane.stop()
        shutil.rmtree(self.work, ignore_errors=True)

    def _stop(self, name: str) -> None:
        stop_process_groups([proc for n, proc in self.procs if n == name], grace_s=10)

    def _delete_pods(self) -> None:
        from kubernetes import client

        with self._api() as api:
            core = client.CoreV1Api(api)
            # No new pods land here while the kubelet cleans up (unmounts, CNI DEL).
            core.patch_node(NODE_NAME, {"spec": {"unschedulable": True}})
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                pods = core.list_pod_for_all_namespaces(
                    field_selector=f"spec.nodeName={NODE_NAME}"
                ).items
                for pod in pods:
                    with contextlib.suppress(client.ApiException):
                        core.delete_namespaced_pod(
                            pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0
                        )
                running = self._crictl("pods", "-q").stdout.split()
                if not pods and not running:
                    return
                time.sleep(0.5)

    def _remove_sandboxes(self) -> None:
        for pod in self._crictl("pods", "-q").stdout.split():
            self._crictl("stopp", pod)
            self._crictl("rmp", "-f", pod)

    def _delete_cluster_objects(self) -> None:
        from kubernetes import client

        with self._api() as api:
            core = client.CoreV1Api(api)
            with contextlib.suppress(client.ApiException):
                client.DiscoveryV1Api(api).delete_namespaced_endpoint_slice(
                    "kube-dns-node", "kube-system"
                )
            with contextlib.suppress(client.ApiException):
                core.delete_namespaced_service("kube-dns", "kube-system")
            with contextlib.suppress(client.ApiException):
                core.delete_node(NODE_NAME)


# --- sweeping what processes leave on the host ----------------------------------------------


def _pids_using(sock: Path) -> list[int]:
    """The containerd shims of this node: their command line names its socket."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            if str(sock).encode() in cmdline and b"containerd-shim" in cmdline[0]:
                pids.append(int(entry.name))
    return pids


def _kubepods_cgroups() -> list[Path]:
    root = Path("/sys/fs/cgroup")
    found = []
    for top in [root / "kubepods", *(c / "kubepods" for c in root.iterdir() if c.is_dir())]:
        if top.is_dir():
            found += sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
            found.append(top)
    return found


def _mounts_under(prefixes: list[str]) -> list[str]:
    points = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if any(point == p or point.startswith(p.rstrip("/") + "/") for p in prefixes):
                points.append(point)
    return sorted(set(points), key=lambda p: -len(p))


def _iptables_sweep() -> None:
    for binary in ("iptables", "ip6tables"):
        if shutil.which(binary) is None:
            continue
        for table in ("nat", "filter", "mangle"):
            proc = _run(binary, "-w", "-t", table, "-S", check=False)
            if proc.returncode != 0:
                continue
            ours = set()
            for line in proc.stdout.splitlines():
                parts = line.split()
                if parts[:1] == ["-N"] and parts[1].startswith(CHAIN_PREFIXES):
                    ours.add(parts[1])
            for line in proc.stdout.splitlines():
                parts = line.split()
                if parts[:1] == ["-A"] and parts[1] not in ours and "-j" in parts:
                    target = parts[parts.index("-j") + 1]
                    if target.startswith(CHAIN_PREFIXES):
                        _run(binary, "-w", "-t", table, "-D", *parts[1:], check=False)
            for chain in ours:
                _run(binary, "-w", "-t", table, "-F", chain, check=False)
            for chain in ours:
                _run(binary, "-w", "-t", table, "-X", chain, check=False)


def sweep_host(work: Path, record: HostRecord) -> None:
    """Remove what the node's processes leave on the host once they are stopped."""
    for pid in _pids_using(work / "containerd.sock"):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    cgroups = _kubepods_cgroups()
    for cgroup in cgroups:  # the containers' own processes, whatever is left of them
        with contextlib.suppress(OSError):
            for member in (cgroup / "cgroup.procs").read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(member), signal.SIGKILL)
    new_netns = [
        str(NETNS_DIR / n)
        for n in (sorted(os.listdir(NETNS_DIR)) if NETNS_DIR.is_dir() else [])
        if n not in record.netns_before
    ]
    for point in _mounts_under([str(work), *record.created_paths, *new_netns]):
        _run("umount", "-l", point, check=False)
    for path in new_netns:
        with contextlib.suppress(OSError):
            os.unlink(path)
    veths = _run("ip", "-o", "link", "show", "master", POD_BRIDGE, check=False).stdout
    for line in veths.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        _run("ip", "link", "delete", name, check=False)
    for bridge in (POD_BRIDGE, NODE_BRIDGE):
        _run("ip", "link", "delete", bridge, check=False)
    _iptables_sweep()
    deadline = time.monotonic() + 10
    for cgroup in cgroups:
        while cgroup.exists():
            try:
                cgroup.rmdir()
            except OSError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)
    for path in record.created_paths:
        if os.path.islink(path) or os.path.isfile(path):
            os.unlink(path)
        else:
            shutil.rmtree(path, ignore_errors=True)
    for name, value in record.sysctls.items():
        with contextlib.suppress(OSError):
            (Path("/proc/sys") / name).write_text(value)


# --- the process that starts the supervisor -------------------------------------------------


@dataclass
class RunningNode:
    """A node started by :func:`start_node`; :meth:`stop` tears it down."""

    proc: subprocess.Popen[str]
    workdir: Path
    lock: Any

    @property
    def pid(self) -> int:
        """The supervisor's PID."""
        return self.proc.pid

    def import_image(self, archive: bytes | Path) -> None:
        """Import a ``docker save`` or OCI archive (bytes or a file) into the node's containerd.

        Pods then run it with ``imagePullPolicy: Never`` (there is no registry).
        """
        command = ["ctr", "--address", str(self.workdir / "containerd.sock"), "-n", "k8s.io"]
        command += ["images", "import", "-" if isinstance(archive, bytes) else str(archive)]
        proc = subprocess.run(
            command,
            input=archive if isinstance(archive, bytes) else None,
            capture_output=True,
            check=False,
            timeout=900,
        )
        if proc.returncode != 0:
            raise NodeError(f"ctr images import failed: {proc.stderr.decode(errors='replace')}")

    def stop(self, timeout: float = 180) -> None:
        """Ask the supervisor to tear down and wait for it."""
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.lock.close()


def _lock(wait_s: float) -> Any:
    handle = (cache_dir() / "lock").open("w")
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if time.monotonic() > deadline:
                handle.close()
                raise NodeError(
                    f"another Kubeforge node runs on this machine (lock {cache_dir() / 'lock'}); "
                    "stop it with `make cluster-down` or wait for its test run"
                ) from None
            time.sleep(1)


def _spawn_supervisor(
    spec_path: Path, log_name: str, lock: Any, stdin: int
) -> subprocess.Popen[str]:
    """Start the supervisor of ``spec_path`` in its own session, its stderr in ``log_name``."""
    with (cache_dir() / log_name).open("w") as log:
        return subprocess.Popen(  # noqa: S603 - our own module
            [sys.executable, "-m", "kubeforge.testing.node", "serve", str(spec_path)],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            start_new_session=True,
            pass_fds=(lock.fileno(),),
        )


def start_node(plane: ControlPlane, taint: bool = True, wait_s: float = 1800) -> RunningNode:
    """Start a real node for ``plane``; it tears itself down when this process goes away."""
    bin_dir = build_node_binaries()
    missing = missing_tools()
    if missing:
        raise NodeError(
            f"the real node needs Debian packages: {' '.join(missing)} (make node-deps)"
        )
    lock = _lock(wait_s)
    workdir = Path(tempfile.mkdtemp(prefix="kubeforge-node-"))
    spec = NodeSpec(
        bin_dir=str(bin_dir),
        workdir=str(workdir),
        kubeconfig=str(plane.kubeconfig),
        ca_cert=str(plane.ca_file),
        ca_key=str(plane.ca_file.with_name("ca.key")),
        server=plane.server,
        taint=taint,
    )
    spec.write(workdir / "spec.json")
    # Its own session: a Ctrl-C or kill of this process reaches it only as the pipe's end.
    proc = _spawn_supervisor(workdir / "spec.json", "supervisor.log", lock, subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != "ready":
        proc.wait(timeout=300)
        tail = (cache_dir() / "supervisor.log").read_text(errors="replace")[-4000:]
        shutil.rmtree(workdir, ignore_errors=True)
        lock.close()
        raise NodeError(f"the node did not start:\n{tail}")
    return RunningNode(proc, workdir, lock)


@contextlib.contextmanager
def running_node(plane: ControlPlane, taint: bool = True) -> Iterator[RunningNode]:
    """A real node for the ``with`` block."""
    node = start_node(plane, taint)
    try:
        yield node
    finally:
        node.stop()


class NodeHandle:
    """The test session's node: started on first use, stopped on demand or at the end."""

    def __init__(self, plane: ControlPlane | None) -> None:
        """Start nothing yet."""
        self.plane = plane
        self.node: RunningNode | None = None
        self._loaders: list[Callable[[RunningNode], None]] = []

    def ensure(self) -> str:
        """Start the node unless it runs (and run the :meth:`on_start` callbacks); its name."""
        if self.node is None or self.node.proc.poll() is not None:
            assert self.plane is not None
            self.node = start_node(self.plane)
            for load in self._loaders:
                load(self.node)
        return NODE_NAME

    def on_start(self, load: Callable[[RunningNode], None]) -> None:
        """Run ``load`` on the running node now and on every node started later.

        For what a node's fresh containerd must hold (images imported into it).
        """
        self.ensure()
        assert self.node is not None
        load(self.node)
        self._loaders.append(load)

    def import_image(self, archive: bytes | Path) -> None:
        """Import an image archive into the running node (see :meth:`RunningNode.import_image`)."""
        self.ensure()
        assert self.node is not None
        self.node.import_image(archive)

    def stop(self) -> None:
        """Tear the node down if it runs."""
        if self.node is not None:
            self.node.stop()
            self.node = None


def on_real_node(pod_spec: dict[str, Any]) -> dict[str, Any]:
    """``pod_spec`` placed on the real node (its selector and taint toleration added)."""
    return {
        **pod_spec,
        "nodeSelector": {"kubeforge.io/node": "real"},
        "tolerations": [{"key": NODE_TAINT, "operator": "Exists", "effect": "NoSchedule"}],
    }


# --- command line ---------------------------------------------------------------------------


def _serve(spec_path: Path) -> int:
    spec = NodeSpec.read(spec_path)
    supervisor = NodeSupervisor(spec)
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    try:
        supervisor.start()
        if spec.with_control_plane and supervisor.plane is not None:
            print(supervisor.plane.kubeconfig, flush=True)
        print("ready", flush=True)
        # Until a signal, or (a test's node) the end of the starter's pipe: it stopped or died.
        watch = [] if spec.with_control_plane else [sys.stdin]
        while not stopping:
            readable, _, _ = select.select(watch, [], [], 1.0)
            if readable and not sys.stdin.readline():
                break
    except (NodeError, ControlPlaneError, OSError) as exc:
        print(f"node: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        supervisor.stop()
    return 0


def _up() -> int:
    lock = _lock(wait_s=0)
    bin_dir = build_node_binaries()
    missing = missing_tools()
    if missing:
        print(f"error: the node needs Debian packages: {' '.join(missing)}", file=sys.stderr)
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="kubeforge-cluster-"))
    spec = NodeSpec(
        str(bin_dir), str(workdir), "", "", "", "", taint=False, with_control_plane=True
    )
    spec.write(workdir / "spec.json")
    proc = _spawn_supervisor(workdir / "spec.json", "cluster.log", lock, subprocess.DEVNULL)
    assert proc.stdout is not None
    kubeconfig = proc.stdout.readline().strip()
    if proc.stdout.readline().strip() != "ready":
        proc.wait(timeout=300)
        print((cache_dir() / "cluster.log").read_text()[-4000:], file=sys.stderr)
        return 1
    (cache_dir() / "cluster.json").write_text(
        json.dumps({"pid": proc.pid, "workdir": str(workdir), "kubeconfig": kubeconfig})
    )
    print(f"export KUBECONFIG={kubeconfig}")
    print(f"# node {NODE_NAME} Ready; `make cluster-down` removes everything", file=sys.stderr)
    return 0


def _down() -> int:
    record_file = cache_dir() / "cluster.json"
    if not record_file.exists():
        print("no cluster started by `make cluster` is recorded", file=sys.stderr)
        return 0
    info = json.loads(record_file.read_text())
    pid, workdir = int(info["pid"]), Path(info["workdir"])
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 180
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    if workdir.exists():  # the supervisor itself was killed: sweep what it left
        host = workdir / "host-record.json"
        record = HostRecord(**json.loads(host.read_text())) if host.exists() else HostRecord()
        sweep_host(workdir, record)
        shutil.rmtree(workdir, ignore_errors=True)
    record_file.unlink()
    print("cluster removed", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``serve SPEC`` (internal), ``up`` (make cluster), ``down`` (make cluster-down)."""
    parser = argparse.ArgumentParser(prog="python -m kubeforge.testing.node")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve")
    serve.add_argument("spec", type=Path)
    sub.add_parser("up")
    sub.add_parser("down")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args.spec)
    if args.command == "up":
        return _up()
    return _down()


if __name__ == "__main__":
    sys.exit(main())
