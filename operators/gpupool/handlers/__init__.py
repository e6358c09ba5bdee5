"""Thin kopf glue of the GPU pool operator: indexes, the per-pool daemon, Prometheus metrics.

The top layer of the controller: may import every layer below it and the operator settings.
"""
