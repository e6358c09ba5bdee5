"""Typed models of Pipeline and PipelineRun, and their CRDs."""
