"""Deploy component: MLflow registry alias after a smoke test; local server; KServe manifests.

``component.py`` (KFP interface, the parameters' defaults), ``stage.py`` (runs it: MLflow,
applies the objects, ``DeployParams``), ``promote.py`` (register, smoke-test, move the alias),
``manifests.py`` (InferenceService, Deployment, Service), ``server.py`` (the HTTP model server).
Imports ``kubeforge.core`` and ``kubeforge.components.common``, no other component.
"""
