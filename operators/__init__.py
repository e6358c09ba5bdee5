"""Kubernetes operators (kopf): the GPUNodePool and the Pipeline/PipelineRun controllers.

Each controller is a package (``gpupool/``, ``pipelineruns/``) with the same four layers:
``api/`` (typed spec/status models: the CRD and the parser) < ``core/`` (pure decisions) <
``clients/`` (the only Kubernetes I/O) < ``handlers/`` (thin kopf glue). Beside them live the
modules every controller shares: ``schema`` (models -> CRD, dict -> models -> dict),
``clock`` (the one time type), ``settings`` (every ``KUBEFORGE_*`` variable, read once),
``conditions`` and ``events``; and ``main``, the operator process that loads every controller.

May import ``kubeforge.core`` and ``kubeforge.pipelines`` (and what they import); a controller
never imports another controller, and nothing here imports the CLI or the test harness.
"""
