"""Kubernetes helpers shared by the components and the operators."""

from __future__ import annotations

import os
from typing import Any


def api_client() -> Any:
    """A ``kubernetes.client.ApiClient``: the pod's service account, else the kubeconfig.

    ``KUBECONFIG`` is read when called (the client library reads it once, at import).
    """
    from kubernetes import client, config

    try:
        config.load_incluster_config()
        return client.ApiClient()
    except config.ConfigException:
        return config.new_client_from_config(config_file=os.environ.get("KUBECONFIG"))
