"""Label component: weak supervision, model-assisted labels, label errors, Label Studio.

``component.py`` (KFP interface, the parameters' defaults), ``stage.py`` (runs it: artifacts,
MLflow), ``labeling.py`` (labelling a split, Label Studio round trip, ``LabelParams``),
``weak.py`` (labelling functions, the label model), ``examples/`` (labelling functions for the
digits). Imports ``kubeforge.core`` and ``kubeforge.components.common``, no other component.
"""
