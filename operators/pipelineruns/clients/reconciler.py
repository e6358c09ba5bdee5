"""Reconcile Pipelines and PipelineRuns: resolve, check, start once, mirror, clean up.

Level-based: each call reads the object and its backend and writes status. Starting is
get-or-create (the Job and ConfigMap have deterministic names; a KFP run is found by its
display name), so a restart between "started" and "status written" starts nothing twice.

Client code, the only part of the controller that talks to the API server and to Kubeflow
Pipelines: what to do and what status to write come from ``core/`` (:func:`next_step`, the
status builders), the time from the injected clock. May import the controller's ``api/`` and
``core/``, and the operators' shared clock, settings and Events.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from kubeforge.core.errors import KubeforgeError
from kubeforge.operators.clock import Clock
from kubeforge.operators.events import post_event
from kubeforge.operators.pipelineruns.api.crd import GROUP, PIPELINE, RUN, VERSION
from kubeforge.operators.pipelineruns.api.models import (
    FINISHED,
    Backend,
    PipelineRunSpec,
    PipelineRunStatus,
    PipelineSpec,
    PipelineStatus,
    RunPhase,
)
from kubeforge.operators.pipelineruns.clients.sources import resolve_source
from kubeforge.operators.pipelineruns.core.backend_state import RunState, job_state, kfp_state
from kubeforge.operators.pipelineruns.core.manifests import (
    RUN_LABEL,
    build_ir_configmap,
    build_job,
    kfp_display_name,
    resource_name,
)
from kubeforge.operators.pipelineruns.core.plan import (
    PipelineResult,
    RunResult,
    RunStep,
    next_step,
)
from kubeforge.operators.pipelineruns.core.status import (
    EventNote,
    StartedRun,
    backend_unavailable,
    merged,
    pipeline_invalid,
    pipeline_ready,
    run_mirrored,
    run_not_started,
    run_started,
)
from kubeforge.operators.schema import from_dict, to_dict
from kubeforge.operators.settings import OperatorSettings
from kubeforge.pipelines.ir import PipelineIR, check_parameters

log = logging.getLogger(__name__)


def _json(response: Any) -> dict[str, Any]:
    """The body of a response read with ``_preload_content=False``."""
    body: dict[str, Any] = json.loads(response.data)
    return body


@dataclass
class RunReconciler:
    """Reconciles the pipeline resources of a cluster.

    Attributes:
        api_client: A ``kubernetes.client.ApiClient``.
        settings: The operator's settings (image, MLflow tracking URI, KFP host).
        clock: Tells the time of status conditions, durations, TTLs and Events.
        kfp: The KFP client; built from ``settings.kfp_host`` on first use when None.
    """

    api_client: Any
    settings: OperatorSettings
    clock: Clock
    kfp: Any = None

    # -- helpers ---------------------------------------------------------------------------
    def _custom(self) -> Any:
        from kubernetes import client

        return client.CustomObjectsApi(self.api_client)

    def _core(self) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self.api_client)

    def _batch(self) -> Any:
        from kubernetes import client

        return client.BatchV1Api(self.api_client)

    def _kfp(self) -> Any:
        if self.kfp is None:
            from kubeforge.core.kfp import KfpBackend

            if not self.settings.kfp_host:
                raise KubeforgeError(
                    "kfpHost: the run is on Kubeflow Pipelines but this operator has no "
                    "KUBEFORGE_KFP_HOST",
                    "kfpHost",
                )

            self.kfp = KfpBackend(self.settings.kfp_host)
        return self.kfp

    def _event(self, obj: dict[str, Any], note: EventNote | None) -> None:
        from kubernetes.client.rest import ApiException

        if note is None:
            return
        kind = "Warning" if note.warning else "Normal"
        try:
            post_event(self.api_client, obj, note.reason, note.message, kind, clock=self.clock)
        except ApiException as exc:  # an Event is a courtesy: status already says it all
            name = obj["metadata"]["name"]
            log.warning("could not post Event %s on %s: %s", note.reason, name, exc)

    def _write_status(
        self, obj: dict[str, Any], plural: str, status: PipelineStatus | PipelineRunStatus
    ) -> None:
        meta = obj["metadata"]
        self._custom().patch_namespaced_custom_object_status(
            GROUP, VERSION, meta["namespace"], plural, meta["name"], {"status": to_dict(status)}
        )

    # -- Pipeline --------------------------------------------------------------------------
    def reconcile_pipeline(self, obj: dict[str, Any]) -> PipelineResult:
        """Resolve the pipeline, check its default parameters, write status (Ready or Failed)."""
        meta, now = obj["metadata"], self.clock.now()
        spec = from_dict(PipelineSpec, obj.get("spec"))
        before = from_dict(PipelineStatus, obj.get("status"))
        generation = meta.get("generation", 0)
        event = None
        try:
            ir = resolve_source(self.api_client, meta["namespace"], spec.source, "spec.source")
            check_parameters(ir, spec.parameters, require_all=False)
        except KubeforgeError as exc:
            status, event = pipeline_invalid(before, generation, exc, now)
        else:
            status = pipeline_ready(before, generation, ir, now)
        self._write_status(obj, PIPELINE.plural, status)
        self._event(obj, event)
        return PipelineResult(status, event)

    # -- PipelineRun -----------------------------------------------------------------------
    def get_run(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The PipelineRun ``namespace/name``, or None when it is gone."""
        from kubernetes.client.rest import ApiException

        try:
            return dict(
                self._custom().get_namespaced_custom_object(
                    GROUP, VERSION, namespace, RUN.plural, name
                )
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def resolve_run(
        self, obj: dict[str, Any], spec: PipelineRunSpec
    ) -> tuple[PipelineIR, dict[str, Any]]:
        """The run's compiled pipeline and its checked parameter values."""
        from kubernetes.client.rest import ApiException

        namespace = obj["metadata"]["namespace"]
        defaults: dict[str, Any] = {}
        if spec.pipelineRef is not None:
            ref = spec.pipelineRef.name
            try:
                found = self._custom().get_namespaced_custom_object(
                    GROUP, VERSION, namespace, PIPELINE.plural, ref
                )
            except ApiException as exc:
                if exc.status == 404:
                    raise KubeforgeError(
                        f"spec.pipelineRef.name: Pipeline {namespace}/{ref} does not exist",
                        "spec.pipelineRef.name",
                    ) from exc
                raise
            pipeline = from_dict(PipelineSpec, found["spec"])
            source, field_name = pipeline.source, f"Pipeline {ref} spec.source"
            defaults = dict(pipeline.parameters)
        else:
            assert spec.pipeline is not None  # the CRD requires exactly one of the two
            source, field_name = spec.pipeline, "spec.pipeline"
        ir = resolve_source(self.api_client, namespace, source, field_name)
        values = check_parameters(ir, {**defaults, **spec.parameters})
        return ir, values

    def reconcile_run(self, obj: dict[str, Any]) -> RunResult:
        """Start the run once, then mirror its backend's state; delete it after its TTL."""
        spec = from_dict(PipelineRunSpec, obj["spec"])
        before = from_dict(PipelineRunStatus, obj.get("status"))
        step = next_step(before, spec, self.clock.now())
        if step is RunStep.DELETE:
            self._delete_run_object(obj)
            return RunResult(step, before)
        if step is RunStep.KEEP:
            return RunResult(step, before)
        if step is RunStep.START:
            patch, event = self._start(obj, spec, before)
        else:
            patch, event = self._mirror(obj, before)
        self._write_status(obj, RUN.plural, patch)
        self._event(obj, event)
        return RunResult(step, merged(before, patch), event)

    def _start(
        self, obj: dict[str, Any], spec: PipelineRunSpec, before: PipelineRunStatus
    ) -> tuple[PipelineRunStatus, EventNote | None]:
        generation = obj["metadata"].get("generation", 0)
        try:
            ir, values = self.resolve_run(obj, spec)
            if self.settings.kfp_host:
                started = self._start_kfp(obj, spec, ir, values)
            else:
                started = self._start_job(obj, spec, ir, values)
        except KubeforgeError as exc:
            return run_not_started(before, generation, exc, self.clock.now())
        return run_started(before, generation, ir, started, self.clock.now())

    def _start_job(
        self, obj: dict[str, Any], spec: PipelineRunSpec, ir: PipelineIR, values: dict[str, Any]
    ) -> StartedRun:
        from kubernetes.client.rest import ApiException

        ns = obj["metadata"]["namespace"]
        cm = build_ir_configmap(obj, ir.text, ir.digest)
        job = build_job(obj, spec, values, self.settings.image, self.settings.tracking_uri)
        for create, body in (
            (self._core().create_namespaced_config_map, cm),
            (self._batch().create_namespaced_job, job),
        ):
            try:
                create(ns, body)
            except ApiException as exc:
                if exc.status != 409:
                    raise KubeforgeError(
                        f"creating {body['kind']} {body['metadata']['name']} failed: {exc.reason}"
                    ) from exc
                self._check_owned(body)
        return StartedRun(Backend.JOB, job_name=job["metadata"]["name"])

    def _check_owned(self, body: dict[str, Any]) -> None:
        """A name taken already must be this run's own object (a repeated start), not another's."""
        meta = body["metadata"]
        if body["kind"] == "Job":
            found = self._batch().read_namespaced_job(meta["name"], meta["namespace"]).metadata
        else:
            found = (
                self._core().read_namespaced_config_map(meta["name"], meta["namespace"]).metadata
            )
        owners = {o.uid for o in found.owner_references or []}
        if meta["ownerReferences"][0]["uid"] not in owners:
            raise KubeforgeError(
                f"{body['kind']} {meta['namespace']}/{meta['name']} exists and is not this run's",
                "metadata.name",
            )

    def _start_kfp(
        self, obj: dict[str, Any], spec: PipelineRunSpec, ir: PipelineIR, values: dict[str, Any]
    ) -> StartedRun:
        meta = obj["metadata"]
        kfp = self._kfp()
        params = dict(values)
        if "mlflow_tracking_uri" in ir.parameters and self.settings.tracking_uri:
            params.setdefault("mlflow_tracking_uri", self.settings.tracking_uri)
        pipeline_id, version_id = kfp.ensure_pipeline_version(ir.name, ir.text, ir.digest)
        experiment_id = kfp.ensure_experiment(spec.experiment)
        run_id = kfp.create_run(
            kfp_display_name(meta["namespace"], meta["name"], meta["uid"]),
            experiment_id,
            pipeline_id,
            version_id,
            params,
            spec.serviceAccountName,
        )
        return StartedRun(Backend.KFP, kfp_run_id=run_id, url=kfp.run_url(run_id))

    def _observe(self, obj: dict[str, Any], status: PipelineRunStatus) -> RunState:
        from kubernetes.client.rest import ApiException

        ns = obj["metadata"]["namespace"]
        if status.backend == Backend.KFP:
            run = self._kfp().get_run(status.kfpRunId)
            return kfp_state(run.state, run.error, run.created_at, run.finished_at)
        job_name = status.jobName or resource_name(obj["metadata"]["name"])
        # Read raw, so the run shows the Job's timestamps as the API server wrote them.
        try:
            job = _json(self._batch().read_namespaced_job(job_name, ns, _preload_content=False))
        except ApiException as exc:
            if exc.status == 404:
                return RunState(RunPhase.FAILED, f"Job {ns}/{job_name} was deleted")
            raise
        selector = f"{RUN_LABEL}={obj['metadata']['name']}"
        pods = _json(
            self._core().list_namespaced_pod(ns, label_selector=selector, _preload_content=False)
        )
        return job_state(job, pods["items"])

    def _mirror(
        self, obj: dict[str, Any], before: PipelineRunStatus
    ) -> tuple[PipelineRunStatus, EventNote | None]:
        try:
            state = self._observe(obj, before)
        except KubeforgeError as exc:  # e.g. KFP unreachable: keep the phase, say why
            return backend_unavailable(before, exc)
        return run_mirrored(before, state, self.clock.now())

    # -- deletion --------------------------------------------------------------------------
    def delete_run(self, obj: dict[str, Any]) -> None:
        """Stop what the run started: terminate the KFP run, or delete its Job and ConfigMap."""
        from kubernetes.client.rest import ApiException

        status = from_dict(PipelineRunStatus, obj.get("status"))
        ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        if status.backend == Backend.KFP and status.phase not in FINISHED:
            self._kfp().terminate(status.kfpRunId)
        if status.backend == Backend.JOB:
            deletes = (
                (self._batch().delete_namespaced_job, status.jobName or resource_name(name)),
                (self._core().delete_namespaced_config_map, resource_name(name, "-ir")),
            )
            for delete, target in deletes:
                try:
                    delete(target, ns, propagation_policy="Background")
                except ApiException as exc:
                    if exc.status != 404:
                        raise

    def _delete_run_object(self, obj: dict[str, Any]) -> None:
        from kubernetes.client.rest import ApiException

        try:
            self._custom().delete_namespaced_custom_object(
                GROUP, VERSION, obj["metadata"]["namespace"], RUN.plural, obj["metadata"]["name"]
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
