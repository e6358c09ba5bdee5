"""Train component: PyTorch DDP locally (torchrun) or a Kubeflow PyTorchJob on a cluster."""
