"""The only code of the GPU pool operator that talks to the API server.

The node providers (kwok, Cluster API), the one plan executor (``executor.apply_plan``, shared
with the simulator) and the reconciler (read, plan, apply, report). May import ``core/``,
``api/`` and the operators' shared modules; never ``handlers/`` or kopf.
"""
