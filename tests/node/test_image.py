"""The project image, built here with buildah, runs as a pod under ``restricted`` Pod Security."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from kubeforge.testing.fixtures import Kubectl, wait_for
from kubeforge.testing.node import on_real_node

pytestmark = pytest.mark.cluster

# What the pod prints: its user, the CLI's commands, the imports every component needs, whether
# a compiler is on its PATH and whether it can change its own virtualenv.
SCRIPT = """
echo "uid=$(id -u) gid=$(id -g)"
kubeforge --help
kubeforge version
python -c 'import torch, kubeforge, mlflow, kfp, kopf; print("torch", torch.__version__)'
python -c 'import torch; x = torch.ones(3, requires_grad=True); (x * 2).sum().backward()
print("grad", x.grad.tolist())'
for tool in gcc cc make git; do command -v "$tool" >/dev/null && echo "build tool: $tool"; done
touch /opt/kubeforge/x 2>/dev/null && echo "virtualenv writable"
echo done
"""


@pytest.mark.timeout(3600)  # a cold build of the image (torch's CUDA wheels) runs in the setup
def test_project_image_runs_as_uid_10001_under_restricted_pod_security(
    real_node: str, project_image: str, api_client: Any, kubectl: Kubectl, namespace: str
) -> None:
    kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "image"},
        "spec": on_real_node(
            {
                "restartPolicy": "Never",
                "securityContext": {
                    "runAsNonRoot": True,  # the image's own USER, not a runAsUser here
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [
                    {
                        "name": "main",
                        "image": project_image,
                        "imagePullPolicy": "Never",  # imported into the node; no registry
                        "command": ["sh", "-c", SCRIPT],
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]},
                        },
                        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                    }
                ],
                "volumes": [{"name": "tmp", "emptyDir": {}}],
            }
        ),
    }
    applied = kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(pod))
    assert "PodSecurity" not in applied.stderr, applied.stderr
    core = client.CoreV1Api(api_client)

    def finished() -> bool:
        phase = core.read_namespaced_pod("image", namespace).status.phase
        return bool(phase in ("Succeeded", "Failed"))

    wait_for(finished, timeout=300)
    status = core.read_namespaced_pod("image", namespace).status
    log = kubectl("logs", "-n", namespace, "image").stdout
    assert status.phase == "Succeeded", log
    assert status.container_statuses[0].image.endswith(project_image.split("/")[-1])
    lines = log.splitlines()
    assert lines[0] == "uid=10001 gid=10001"
    assert "Usage: kubeforge" in log
    for command in ("run", "compile", "serve", "pool"):
        assert any(line.strip("│ ").startswith(f"{command} ") for line in lines), command
    assert any(line.startswith("torch 2.15.0") for line in lines)  # e.g. 2.15.0+cu132
    assert "grad [2.0, 2.0, 2.0]" in log
    assert not [line for line in lines if line.startswith(("build tool", "virtualenv"))]
    assert lines[-1] == "done"


def _build_leftovers(image: str) -> list[str]:
    """Files a build can leave in an image: pip's cache, wheels, sources, a second environment."""
    container = subprocess.run(
        ["buildah", "from", "--pull-never", image], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        root = Path(
            subprocess.run(
                ["buildah", "mount", container], capture_output=True, text=True, check=True
            ).stdout.strip()
        )
        found = [p for p in (root / "root" / ".cache").rglob("*") if p.is_file()]
        found += [p for p in (root / "var" / "cache" / "kubeforge-wheels").rglob("*")]
        found += [p for p in (root / "opt").rglob("*.whl")]
        found += [root / p for p in ("src", "wheels", "opt/build") if (root / p).exists()]
        found += [p for p in (root / "usr" / "bin").glob("gcc*")]
        return [str(p.relative_to(root)) for p in found]
    finally:
        subprocess.run(["buildah", "rm", container], capture_output=True, check=False)


def test_project_image_has_no_build_leftovers(project_image: str) -> None:
    assert _build_leftovers(project_image) == []
