"""Typed spec and status of the GPUNodePool resource."""
