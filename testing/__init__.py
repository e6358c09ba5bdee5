"""Test support: a real Kubernetes control plane and the pytest fixtures around it."""
