"""Typed spec and status of the GPUNodePool resource: the one source of its CRD and defaults.

The bottom layer of the controller: imports only :mod:`kubeforge.operators.schema`.
"""
