"""The test control plane is a real Kubernetes API server with the real PyTorchJob CRD."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from kubeforge.testing.fixtures import Kubectl

pytestmark = pytest.mark.cluster

GROUP, VERSION, PLURAL = "kubeflow.org", "v1", "pytorchjobs"


def _sdk_pytorchjob(name: str, namespace: str, workers: int) -> Any:
    from kubeflow.training import models

    def replica(count: int) -> Any:
        container = client.V1Container(
            name="pytorch",
            image="ghcr.io/example/train:1.0",
            command=["torchrun", "train.py"],
            resources=client.V1ResourceRequirements(limits={"nvidia.com/gpu": "2"}),
        )
        return models.KubeflowOrgV1ReplicaSpec(
            replicas=count,
            restart_policy="OnFailure",
            template=client.V1PodTemplateSpec(spec=client.V1PodSpec(containers=[container])),
        )

    return models.KubeflowOrgV1PyTorchJob(
        api_version=f"{GROUP}/{VERSION}",
        kind="PyTorchJob",
        metadata=client.V1ObjectMeta(name=name, namespace=namespace),
        spec=models.KubeflowOrgV1PyTorchJobSpec(
            run_policy=models.KubeflowOrgV1RunPolicy(clean_pod_policy="None"),
            pytorch_replica_specs={"Master": replica(1), "Worker": replica(workers)},
        ),
    )


def test_pytorchjob_from_sdk_models_round_trips(
    api_client: Any, pytorchjob_crd: str, namespace: str
) -> None:
    job = _sdk_pytorchjob("mnist", namespace, workers=3)
    body = api_client.sanitize_for_serialization(job)
    custom = client.CustomObjectsApi(api_client)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)

    stored = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "mnist")
    specs = stored["spec"]["pytorchReplicaSpecs"]
    assert specs["Worker"]["replicas"] == 3
    assert specs["Master"]["replicas"] == 1
    container = specs["Worker"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert stored["metadata"]["uid"]


def test_kubectl_explain_pytorchjob_spec(kubectl: Kubectl, pytorchjob_crd: str) -> None:
    out = kubectl("explain", "pytorchjobs.spec").stdout
    assert "pytorchReplicaSpecs" in out
    assert "runPolicy" in out


def test_invalid_pytorchjob_is_refused_by_schema(
    api_client: Any, pytorchjob_crd: str, namespace: str
) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "PyTorchJob",
        "metadata": {"name": "broken"},
        "spec": {"pytorchReplicaSpecs": {"Worker": {"replicas": "many"}}},
    }
    custom = client.CustomObjectsApi(api_client)
    with pytest.raises(ApiException) as excinfo:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    # 422 from the CRD's schema; 400 when a mutating webhook that decodes PyTorchJobs runs first
    # (Kueue's, in a session where Kueue started): refused either way, naming the field.
    assert excinfo.value.status in (400, 422)
    assert "replicas" in excinfo.value.body
    with pytest.raises(ApiException) as missing:
        custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "broken")
    assert missing.value.status == 404


def _token_for(api_client: Any, namespace: str, account: str) -> str:
    core = client.CoreV1Api(api_client)
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)
    )
    response = core.create_namespaced_service_account_token(account, namespace, request)
    return str(response.status.token)


def test_rbac_refuses_service_account_until_bound(
    api_client: Any, kubeconfig: Path, namespace: str
) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="reader"))
    )
    token = _token_for(api_client, namespace, "reader")

    sa_config = client.Configuration()
    sa_config.host = api_client.configuration.host
    sa_config.ssl_ca_cert = api_client.configuration.ssl_ca_cert
    sa_config.api_key = {"authorization": f"Bearer {token}"}
    with client.ApiClient(sa_config) as sa_client:
        as_reader = client.CoreV1Api(sa_client)
        with pytest.raises(ApiException) as denied:
            as_reader.list_namespaced_pod(namespace)
        assert denied.value.status == 403
        assert "system:serviceaccount:" + namespace + ":reader" in denied.value.body

        rbac = client.RbacAuthorizationV1Api(api_client)
        rbac.create_namespaced_role(
            namespace,
            client.V1Role(
                metadata=client.V1ObjectMeta(name="pod-reader"),
                rules=[client.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["list"])],
            ),
        )
        rbac.create_namespaced_role_binding(
            namespace,
            client.V1RoleBinding(
                metadata=client.V1ObjectMeta(name="reader-can-read"),
                role_ref=client.V1RoleRef(
                    api_group="rbac.authorization.k8s.io", kind="Role", name="pod-reader"
                ),
                subjects=[
                    client.RbacV1Subject(kind="ServiceAccount", name="reader", namespace=namespace)
                ],
            ),
        )
        deadline = time.monotonic() + 10
        while True:  # RBAC caches refresh within a moment of the binding being stored
            try:
                pods = as_reader.list_namespaced_pod(namespace)
                break
            except ApiException as exc:
                if exc.status != 403 or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert pods.items == []
        with pytest.raises(ApiException) as still_denied:
            as_reader.list_namespaced_secret(namespace)
        assert still_denied.value.status == 403


_CHILD = textwrap.dedent(
    """
    import signal, sys, time
    from pathlib import Path
    from kubeforge.testing.controlplane import ControlPlane
    # Ctrl-C as at a terminal: a run started in the background by a non-interactive shell
    # inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    plane = ControlPlane(bin_dir=Path(sys.argv[1]))
    plane.start()
    print(" ".join(str(p) for p in plane.pids()), plane.apiserver_port, flush=True)
    try:
        time.sleep(300)
    finally:
        plane.stop()
    """
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); its /proc status says so.
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "\nState:\tZ" not in status.read_text()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_stopping_the_run_leaves_no_process_behind(kube_bin_dir: Path, sig: signal.Signals) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(kube_bin_dir)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    fields = child.stdout.readline().split()
    pids = [int(p) for p in fields[:-1]]
    assert len(pids) == 4, fields  # etcd, apiserver, controller manager, scheduler
    assert all(_alive(pid) for pid in pids)

    child.send_signal(sig)
    child.wait(timeout=30)
    deadline = time.monotonic() + 20
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in pids)
