"""Kubeflow Pipelines components: ingest, label, train, distill, deploy, and what they share.

One folder per component (``component.py`` is its KFP interface, ``stage.py`` runs it, plain
modules beside them hold its logic) and ``common/`` for what several of them use. A component
imports ``kubeforge.core``, ``common`` and itself, never another component (import-linter's
independence contract); nothing here imports pipelines, operators, the CLI or the test harness.
"""
