"""Typed models of Pipeline and PipelineRun, and their CRDs; imports no other layer of its own."""
