"""Pure decisions of the GPU pool: demand from jobs and pods, the plan, the status, the reasons.

No Kubernetes calls, no clock (``now`` is an argument), no randomness. May import ``api/``, the
operators' pure shared modules (schema, clock helpers, conditions) and ``kubeforge.core``;
never ``clients/``, ``handlers/``, ``kubernetes`` or ``kopf``.
"""
