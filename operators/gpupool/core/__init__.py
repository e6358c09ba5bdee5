"""Pure decisions: no Kubernetes calls, no clock, no randomness."""
