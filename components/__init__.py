"""Kubeflow Pipelines components: ingest, label, train, distill, deploy."""
