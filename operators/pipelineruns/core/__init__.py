"""Pure decisions of the pipeline-run controller: no Kubernetes, no kopf, no clock.

``manifests`` (the Job and IR ConfigMap a run creates), ``backend_state`` (a Job's or KFP run's
state in PipelineRun terms), ``plan`` (the next step of a reconcile, and its result), ``status``
(the typed status to write, and the Event that goes with it). May import ``api/``.
"""
