"""Kubeforge's shared core: configuration, MLflow and Kubernetes helpers, the CLI."""
