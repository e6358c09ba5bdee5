"""Thin kopf glue of the pipeline-run controller."""
