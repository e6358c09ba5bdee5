"""Stopping a run that holds a real node leaves nothing on the machine, even after kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from kubeforge.testing.node import (
    CHAIN_PREFIXES,
    HARD_CODED_PATHS,
    NETNS_DIR,
    NODE_BRIDGE,
    POD_BRIDGE,
    SYSCTLS,
)

pytestmark = pytest.mark.cluster

# A run that starts a control plane and a node with a running pod, then waits to be stopped.
_CHILD = textwrap.dedent(
    """
    import signal, subprocess, sys, time, yaml
    from pathlib import Path
    from kubeforge.testing.controlplane import ControlPlane
    from kubeforge.testing.fixtures import wait_for
    from kubeforge.testing.node import BUSYBOX_IMAGE, on_real_node, start_node

    # Ctrl-C as at a terminal: a run started in the background by a non-interactive shell
    # inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    bin_dir = Path(sys.argv[1])
    plane = ControlPlane(bin_dir=bin_dir)
    plane.start()
    node = start_node(plane)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
           "spec": on_real_node({"containers": [{"name": "c", "image": BUSYBOX_IMAGE,
               "imagePullPolicy": "Never", "command": ["sleep", "3600"]}]})}
    kubectl = [str(bin_dir / "kubectl"), f"--kubeconfig={plane.kubeconfig}"]
    # The controller manager makes the namespace's default ServiceAccount soon after start:
    # until then the apiserver refuses the pod, so apply until it is taken.
    def applied():
        return subprocess.run([*kubectl, "apply", "-f", "-"], input=yaml.safe_dump(pod),
                              text=True, capture_output=True).returncode == 0
    wait_for(applied, timeout=60)
    def running():
        out = subprocess.run([*kubectl, "get", "pod", "p", "-o", "jsonpath={.status.phase}"],
                             capture_output=True, text=True).stdout
        return out == "Running"
    wait_for(running, timeout=90)
    print(node.pid, node.workdir, " ".join(str(p) for p in plane.pids()), flush=True)
    time.sleep(600)
    """
)


def _chains() -> set[str]:
    found = set()
    for binary in ("iptables", "ip6tables"):
        for table in ("nat", "filter", "mangle"):
            out = subprocess.run(
                [binary, "-w", "-t", table, "-S"], capture_output=True, text=True, check=False
            ).stdout
            found |= {line for line in out.splitlines() if any(p in line for p in CHAIN_PREFIXES)}
    return found


def _machine() -> dict[str, object]:
    """What a node could leave behind: links, chains, cgroups, mounts, paths, netns, sysctls."""
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    mounts = Path("/proc/self/mountinfo").read_text()
    return {
        "links": sorted(line.split(":")[1].strip() for line in links.splitlines()),
        "chains": _chains(),
        "cgroups": sorted(str(p) for p in Path("/sys/fs/cgroup").glob("*/kubepods")),
        # Where a node mounts (its work folder under the temp dir, pods' netns, kubelet paths);
        # other tools on the machine (buildah's storage) mount and unmount elsewhere meanwhile.
        "mounts": sorted(
            point
            for point in (line.split()[4] for line in mounts.splitlines())
            if point.startswith((tempfile.gettempdir(), str(NETNS_DIR), *HARD_CODED_PATHS))
        ),
        "paths": [p for p in HARD_CODED_PATHS if os.path.lexists(p)],
        "netns": sorted(os.listdir(NETNS_DIR)) if NETNS_DIR.is_dir() else [],
        "sysctls": {
            name: (Path("/proc/sys") / name).read_text()
            for name in SYSCTLS
            if (Path("/proc/sys") / name).exists()
        },
    }


def _alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    try:
        return "\nState:\tZ" not in status.read_text()
    except OSError:
        return False


def _node_processes(workdir: str) -> list[int]:
    """Processes whose command line names the node's work folder (kubelet, containerd, shims)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if workdir.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_stopping_a_run_with_a_node_leaves_nothing_behind(
    kube_bin_dir: Path, no_real_node: None, sig: signal.Signals
) -> None:
    before = _machine()
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(kube_bin_dir)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    fields = child.stdout.readline().split()
    assert len(fields) == 6, fields  # supervisor, work folder, four control-plane processes
    supervisor, workdir = int(fields[0]), fields[1]
    plane_pids = [int(p) for p in fields[2:]]
    node_pids = _node_processes(workdir)
    during = _machine()
    assert {POD_BRIDGE, NODE_BRIDGE} <= set(during["links"])  # type: ignore[call-overload]
    assert during["chains"] != before["chains"]
    assert during["cgroups"]
    assert len(node_pids) >= 5  # containerd, kubelet, kube-proxy, coredns, a shim

    child.send_signal(sig)
    child.wait(timeout=30)
    deadline = time.monotonic() + 120
    while _alive(supervisor) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(supervisor)
    assert not [pid for pid in [*node_pids, *plane_pids] if _alive(pid)]
    assert not _node_processes(workdir)
    assert not Path(workdir).exists()
    assert _machine() == before
