"""GPUNodePool: scale GPU node pools for whole PyTorchJobs (gang demand).

Layers (import-linter keeps them in order): ``api/`` (the typed spec and status: the CRD and the
parser) < ``core/`` (pure: demand, the planner, the status) < ``clients/`` (providers, the plan
executor, the reconciler: the only Kubernetes I/O) < ``handlers/`` (kopf glue, metrics).
``sim/`` replays job traces through ``core/`` and the executor without a cluster.

May import ``kubeforge.core`` and the operators' shared modules (schema, clock, settings,
conditions, events); never the other controller.
"""
