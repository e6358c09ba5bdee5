"""Pipeline and PipelineRun: `kubectl apply` a pipeline run; the operator runs it.

The controller of the two resources, in four layers (import-linter keeps them in order):
``api/`` (typed models: the CRDs and the parser) < ``core/`` (pure decisions: manifests, backend
states, the next step, the status) < ``clients/`` (the only Kubernetes and KFP I/O) <
``handlers/`` (thin kopf glue). It may import ``kubeforge.core``, ``kubeforge.pipelines`` (the
pipelines it runs, their IR and parameter checks) and the operators' shared modules (schema,
clock, settings, conditions, events); never another controller.
"""
