"""Train component: PyTorch DDP locally (torchrun) or a Kubeflow PyTorchJob on a cluster.

``component.py`` (KFP interface, the parameters' defaults), ``stage.py`` (runs it: checks,
backend, MLflow), ``trainer.py`` (the training worker, ``TrainParams``, ``TrainConfig``),
``pytorchjob.py`` (the PyTorchJob manifest and its submission). Imports ``kubeforge.core`` and
``kubeforge.components.common`` (the model, the split format), no other component.
"""
