"""What the components share: the split format, the model, stage parameters and their parsers.

``splits`` (the Parquet split format with its schema), ``model`` (the classifier train builds and
distill and deploy load) and ``params`` (:class:`~kubeforge.components.common.params.StageParams`
and the parsers of parameter strings). It imports ``kubeforge.core`` and third-party libraries,
never a component: every component may import it, no component imports another.
"""
