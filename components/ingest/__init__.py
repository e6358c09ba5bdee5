"""Ingest component: read, validate, clean, split and fingerprint a dataset.

``component.py`` (KFP interface, the parameters' defaults), ``stage.py`` (runs it: artifacts,
MLflow), ``prepare.py`` (the logic and ``IngestParams``). Imports ``kubeforge.core`` and
``kubeforge.components.common``, no other component.
"""
