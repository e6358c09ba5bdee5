"""Thin kopf glue of the GPU pool operator."""
