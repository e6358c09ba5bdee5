"""The ``kubeforge`` command line (``kubeforge.cli``).

It sits on top of everything: it may import the core, the components, the pipelines and the
operators; nothing in the product imports it.
"""
