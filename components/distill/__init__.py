"""Distill component: teacher to a smaller student, optional int8, retention gate.

``component.py`` (KFP interface, the parameters' defaults), ``stage.py`` (runs it: artifacts,
MLflow), ``distillation.py`` (the distillation, profiling, the gate, ``DistillParams``). Imports
``kubeforge.core`` and ``kubeforge.components.common`` (the model, the split format), no other
component.
"""
