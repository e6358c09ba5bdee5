"""Kubernetes operators (kopf) for GPU node pools and pipeline resources."""
