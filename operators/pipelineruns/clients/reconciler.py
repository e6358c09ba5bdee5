"""Reconcile Pipelines and PipelineRuns: resolve, check, start once, mirror, clean up.

Level-based: each call reads the object and its backend and writes status. Starting is
get-or-create (the Job and ConfigMap have deterministic names; a KFP run is found by its
display name), so a restart between "started" and "status written" starts nothing twice.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from kubeforge.core.config import IMAGE
from kubeforge.core.errors import KubeforgeError
from kubeforge.operators.conditions import by_type, condition
from kubeforge.operators.events import post_event
from kubeforge.operators.pipelineruns.api.crd import GROUP, PIPELINE, RUN, VERSION
from kubeforge.operators.pipelineruns.clients.sources import resolve_source
from kubeforge.operators.pipelineruns.core.manifests import (
    FINAL,
    RUN_LABEL,
    RunState,
    build_ir_configmap,
    build_job,
    duration,
    expired,
    job_state,
    kfp_display_name,
    kfp_state,
    resource_name,
)
from kubeforge.pipelines.ir import PipelineIR, check_parameters

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunConfig:
    """Operator settings for runs (from its environment; the chart sets them)."""

    image: str = IMAGE
    tracking_uri: str = ""
    kfp_host: str = ""

    @classmethod
    def from_env(cls) -> RunConfig:
        """``KUBEFORGE_IMAGE``, ``MLFLOW_TRACKING_URI``, ``KUBEFORGE_KFP_HOST``."""
        return cls(
            image=os.environ.get("KUBEFORGE_IMAGE", IMAGE),
            tracking_uri=os.environ.get("MLFLOW_TRACKING_URI", ""),
            kfp_host=os.environ.get("KUBEFORGE_KFP_HOST", ""),
        )


def _stamp(now: dt.datetime) -> str:
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class RunReconciler:
    """Reconciles the pipeline resources of a cluster; ``kfp`` is built from the config."""

    api_client: Any
    config: RunConfig = field(default_factory=RunConfig.from_env)
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

            if not self.config.kfp_host:
                raise KubeforgeError(
                    "kfpHost: the run is on Kubeflow Pipelines but this operator has no "
                    "KUBEFORGE_KFP_HOST",
                    "kfpHost",
                )

            self.kfp = KfpBackend(self.config.kfp_host)
        return self.kfp

    def _event(self, obj: dict[str, Any], reason: str, message: str, warning: bool) -> None:
        from kubernetes.client.rest import ApiException

        try:
            post_event(self.api_client, obj, reason, message, "Warning" if warning else "Normal")
        except ApiException as exc:  # an Event is a courtesy: status already says it all
            log.warning("could not post Event %s on %s: %s", reason, obj["metadata"]["name"], exc)

    def _write_status(self, obj: dict[str, Any], plural: str, status: dict[str, Any]) -> None:
        meta = obj["metadata"]
        self._custom().patch_namespaced_custom_object_status(
            GROUP, VERSION, meta["namespace"], plural, meta["name"], {"status": status}
        )

    # -- Pipeline --------------------------------------------------------------------------
    def reconcile_pipeline(self, obj: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
        """Resolve the pipeline, check its default parameters, write status (Ready or Failed)."""
        meta, spec = obj["metadata"], obj.get("spec", {})
        stamp, before = _stamp(now), by_type(obj.get("status"))
        try:
            ir = resolve_source(self.api_client, meta["namespace"], spec["source"], "spec.source")
            check_parameters(ir, spec.get("parameters", {}), require_all=False)
        except KubeforgeError as exc:
            status = {
                "observedGeneration": meta.get("generation", 0),
                "phase": "Failed",
                "message": str(exc),
                "conditions": [
                    condition(before, "Ready", False, "InvalidPipeline", str(exc), stamp)
                ],
            }
            if (obj.get("status") or {}).get("message") != str(exc):
                self._event(obj, "InvalidPipeline", str(exc), warning=True)
        else:
            status = {
                "observedGeneration": meta.get("generation", 0),
                "phase": "Ready",
                "pipelineName": ir.name,
                "digest": ir.digest,
                "message": "",
                "parameters": [
                    {"name": p.name, "type": p.type, "required": not p.optional}
                    for p in ir.parameters.values()
                ],
                "conditions": [condition(before, "Ready", True, "Resolved", "", stamp)],
            }
        self._write_status(obj, PIPELINE.plural, status)
        return status

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

    def resolve_run(self, obj: dict[str, Any]) -> tuple[PipelineIR, dict[str, Any]]:
        """The run's compiled pipeline and its checked parameter values."""
        from kubernetes.client.rest import ApiException

        meta, spec = obj["metadata"], obj["spec"]
        defaults: dict[str, Any] = {}
        if spec.get("pipelineRef"):
            ref = spec["pipelineRef"]["name"]
            try:
                pipeline = self._custom().get_namespaced_custom_object(
                    GROUP, VERSION, meta["namespace"], PIPELINE.plural, ref
                )
            except ApiException as exc:
                if exc.status == 404:
                    raise KubeforgeError(
                        f"spec.pipelineRef.name: Pipeline {meta['namespace']}/{ref} does not exist",
                        "spec.pipelineRef.name",
                    ) from exc
                raise
            source, field_name = pipeline["spec"]["source"], f"Pipeline {ref} spec.source"
            defaults = dict(pipeline["spec"].get("parameters", {}))
        else:
            source, field_name = spec["pipeline"], "spec.pipeline"
        ir = resolve_source(self.api_client, meta["namespace"], source, field_name)
        values = check_parameters(ir, {**defaults, **spec.get("parameters", {})})
        return ir, values

    def reconcile_run(self, obj: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
        """Start the run once, then mirror its backend's state; delete it after its TTL."""
        status = dict(obj.get("status") or {})
        if status.get("phase") in FINAL and expired(
            status.get("finishedAt", ""), obj["spec"].get("ttlSecondsAfterFinished"), now
        ):
            self._delete_run_object(obj)
            return status
        if not status.get("backend"):
            return self._start(obj, status, now)
        if status.get("phase") in FINAL:
            return status
        return self._mirror(obj, status, now)

    def _start(
        self, obj: dict[str, Any], status: dict[str, Any], now: dt.datetime
    ) -> dict[str, Any]:
        meta = obj["metadata"]
        stamp, before = _stamp(now), by_type(status)
        try:
            ir, values = self.resolve_run(obj)
            if self.config.kfp_host:
                started = self._start_kfp(obj, ir, values)
            else:
                started = self._start_job(obj, ir, values)
        except KubeforgeError as exc:
            reason = "KfpUnavailable" if exc.parameter == "kfpHost" else "InvalidSpec"
            new = {
                "observedGeneration": meta.get("generation", 0),
                "phase": "Failed",
                "message": f"not started: {exc}",
                "conditions": [
                    condition(before, "Started", False, reason, str(exc), stamp),
                    condition(before, "Failed", True, reason, str(exc), stamp),
                ],
            }
            if status.get("message") != new["message"]:
                self._event(obj, reason, str(exc), warning=True)
            self._write_status(obj, RUN.plural, new)
            return new
        new = {
            "observedGeneration": meta.get("generation", 0),
            "phase": "Pending",
            "pipelineName": ir.name,
            "digest": ir.digest,
            "message": f"started on the {started['backend']} backend",
            "conditions": [
                condition(before, "Started", True, "Started", "", stamp),
                condition(before, "Failed", False, "Started", "", stamp),
            ],
            **started,
        }
        self._write_status(obj, RUN.plural, new)
        where = started.get("url") or f"Job {started.get('jobName')}"
        self._event(obj, "Started", f"pipeline {ir.name} started: {where}", warning=False)
        return new

    def _start_job(
        self, obj: dict[str, Any], ir: PipelineIR, values: dict[str, Any]
    ) -> dict[str, Any]:
        from kubernetes.client.rest import ApiException

        ns = obj["metadata"]["namespace"]
        cm = build_ir_configmap(obj, ir.text, ir.digest)
        job = build_job(obj, values, self.config.image, self.config.tracking_uri)
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
        return {"backend": "job", "jobName": job["metadata"]["name"]}

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
        self, obj: dict[str, Any], ir: PipelineIR, values: dict[str, Any]
    ) -> dict[str, Any]:
        meta, spec = obj["metadata"], obj["spec"]
        kfp = self._kfp()
        params = dict(values)
        if "mlflow_tracking_uri" in ir.parameters and self.config.tracking_uri:
            params.setdefault("mlflow_tracking_uri", self.config.tracking_uri)
        pipeline_id, version_id = kfp.ensure_pipeline_version(ir.name, ir.text, ir.digest)
        experiment_id = kfp.ensure_experiment(spec.get("experiment", "kubeforge"))
        run_id = kfp.create_run(
            kfp_display_name(meta["namespace"], meta["name"], meta["uid"]),
            experiment_id,
            pipeline_id,
            version_id,
            params,
            spec.get("serviceAccountName", ""),
        )
        return {"backend": "kfp", "kfpRunId": run_id, "url": kfp.run_url(run_id)}

    def _observe(self, obj: dict[str, Any], status: dict[str, Any]) -> RunState:
        from kubernetes.client.rest import ApiException

        ns = obj["metadata"]["namespace"]
        if status["backend"] == "kfp":
            run = self._kfp().get_run(status["kfpRunId"])
            return kfp_state(run.state, run.error, run.created_at, run.finished_at)
        serialize = self.api_client.sanitize_for_serialization
        job_name = status.get("jobName") or resource_name(obj["metadata"]["name"])
        try:
            job = serialize(self._batch().read_namespaced_job(job_name, ns))
        except ApiException as exc:
            if exc.status == 404:
                return RunState("Failed", f"Job {ns}/{job_name} was deleted")
            raise
        selector = f"{RUN_LABEL}={obj['metadata']['name']}"
        pods = [
            serialize(p)
            for p in self._core().list_namespaced_pod(ns, label_selector=selector).items
        ]
        return job_state(job, pods)

    def _mirror(
        self, obj: dict[str, Any], status: dict[str, Any], now: dt.datetime
    ) -> dict[str, Any]:
        stamp, before = _stamp(now), by_type(status)
        try:
            state = self._observe(obj, status)
        except KubeforgeError as exc:  # e.g. KFP unreachable: keep the phase, say why
            if status.get("message") != str(exc):
                self._event(obj, "BackendUnavailable", str(exc), warning=True)
            self._write_status(obj, RUN.plural, {"message": str(exc)})
            return {**status, "message": str(exc)}
        failed = state.phase == "Failed"
        new: dict[str, Any] = {
            "phase": state.phase,
            "message": state.message,
            "startedAt": state.started_at or status.get("startedAt", ""),
            "finishedAt": state.finished_at,
            "duration": duration(state.started_at, state.finished_at, now),
            "mlflowRunId": state.mlflow_run_id or status.get("mlflowRunId", ""),
            "conditions": [
                condition(before, "Started", True, "Started", "", stamp),
                condition(
                    before,
                    "Failed",
                    failed,
                    "RunFailed" if failed else "Started",
                    state.message if failed else "",
                    stamp,
                ),
            ],
        }
        new = {k: v for k, v in new.items() if v != "" or k in ("message",)}
        self._write_status(obj, RUN.plural, new)
        if state.phase != status.get("phase") and state.phase in FINAL:
            self._event(obj, state.phase, state.message, warning=failed)
        return {**status, **new}

    # -- deletion --------------------------------------------------------------------------
    def delete_run(self, obj: dict[str, Any]) -> None:
        """Stop what the run started: terminate the KFP run, or delete its Job and ConfigMap."""
        from kubernetes.client.rest import ApiException

        status = obj.get("status") or {}
        ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        if status.get("backend") == "kfp" and status.get("phase") not in FINAL:
            self._kfp().terminate(status["kfpRunId"])
        if status.get("backend") == "job":
            deletes = (
                (self._batch().delete_namespaced_job, status.get("jobName") or resource_name(name)),
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
