"""kopf handlers of the pipeline-run controller (``pipelinerun``); may import every layer below."""
