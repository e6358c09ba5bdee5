"""Pipeline and PipelineRun: `kubectl apply` a pipeline run; the operator runs it."""
