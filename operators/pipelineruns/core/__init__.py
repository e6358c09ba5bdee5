"""Pure decisions of the pipeline-run controller: no Kubernetes calls, no clock."""
