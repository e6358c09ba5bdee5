"""Pipelines that wire the components into KFP DAGs, and compiled pipelines (IR) as data.

``<name>/pipeline.py`` (one pipeline; its parameters come from its components, see
``signature.py``), ``registry.py`` (pipelines by name, compiled IR), ``ir.py`` (reading IR and the
one parameter type checker for CLI strings and JSON). Imports ``kubeforge.core`` and
``kubeforge.components``; never the operators, the CLI or the test harness.
"""
