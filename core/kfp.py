"""The Kubeflow Pipelines API, as the operator and ``kubeforge submit`` use it.

A thin, typed wrapper over kfp's own client (``kfp.Client``): the compiled IR is uploaded byte
for byte as a pipeline version, so what runs in the Kubeflow UI is exactly what ``kubeforge
compile`` wrote. Every step is get-or-create, so a repeated call after a crash adopts what the
first call made instead of making it twice.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import io
import json
import re
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from kubeforge.core.errors import KubeforgeError

T = TypeVar("T")

# (connect, read) seconds for every request: an unreachable host must not hang the operator.
REQUEST_TIMEOUT = (10.0, 60.0)
_PAGE_SIZE = 100
_EQUALS = 1  # KFP filter.proto PredicateOperation EQUALS, as kfp.Client sends it


class KfpUnavailable(KubeforgeError):
    """The Kubeflow Pipelines endpoint cannot be reached or failed on its side (5xx)."""

    def __init__(self, host: str, reason: str) -> None:
        self.host = host
        super().__init__(f"Kubeflow Pipelines at {host} is unavailable: {reason}", "kfpHost")


class KfpRefused(KubeforgeError):
    """The Kubeflow Pipelines API refused a request (HTTP 4xx); the message is KFP's own."""

    def __init__(self, host: str, action: str, status: int, message: str) -> None:
        self.status = status
        super().__init__(
            f"Kubeflow Pipelines at {host} refused to {action}: HTTP {status} {message}"
        )


@dataclass(frozen=True)
class KfpRun:
    """A KFP run as the API reports it.

    Attributes:
        run_id: The run's ID.
        state: The KFP v2beta1 RuntimeState: PENDING, RUNNING, SUCCEEDED, SKIPPED, FAILED,
            CANCELING, CANCELED, PAUSED or RUNTIME_STATE_UNSPECIFIED.
        error: The run's error message; "" if none.
        created_at: When the run was created, RFC 3339, or "".
        finished_at: When the run finished, RFC 3339, or "" while it has not.
    """

    run_id: str
    state: str
    error: str
    created_at: str
    finished_at: str


def _rfc3339(value: Any) -> str:
    """A timestamp from the API as RFC 3339 UTC; "" for none or KFP's "not yet" (the epoch)."""
    if isinstance(value, str) and value:
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if not isinstance(value, dt.datetime):
        return ""
    when: dt.datetime = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if when.timestamp() <= 0:  # KFP reports an unfinished run's finished_at as 1970-01-01
        return ""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _transport_reason(exc: BaseException) -> str:
    """Why a connection failed, without urllib3's pool and object reprs."""
    import urllib3

    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    text = str(exc).split(">: ", 1)[-1]  # NewConnectionError: "<HTTPConnection object ...>: why"
    return re.sub(r"^\w*ConnectionPool\([^)]*\): ", "", text)


def _api_message(body: Any) -> str:
    """KFP's own error message from an error response body (google.rpc.Status JSON)."""
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    if not body:
        return ""
    try:
        doc = json.loads(body)
    except ValueError:
        return str(body).strip()
    if isinstance(doc, dict):
        return str(doc.get("message") or doc.get("error") or body).strip()
    return str(body).strip()


@functools.cache
def _client_class() -> type[Any]:
    """kfp.Client, with its health check tried once (it retries for 25 s by default)."""
    import kfp

    class Client(kfp.Client):  # type: ignore[misc]  # kfp is untyped
        def __init__(self, *args: Any, timeout: tuple[float, float], **kwargs: Any) -> None:
            self._kubeforge_timeout = timeout  # set first: the parent's __init__ calls healthz
            super().__init__(*args, **kwargs)

        def get_kfp_healthz(self, sleep_duration: int = 0) -> Any:
            return self._healthz_api.healthz_service_get_healthz(
                _request_timeout=self._kubeforge_timeout
            )

    return Client


def _with_default_timeout(
    request: Callable[..., Any], timeout: tuple[float, float]
) -> Callable[..., Any]:
    def call(*args: Any, _request_timeout: Any = None, **kwargs: Any) -> Any:
        return request(*args, _request_timeout=_request_timeout or timeout, **kwargs)

    return call


def _next_page(
    list_page: Callable[[Any, str], tuple[list[Any], str]], token: str, client: Any
) -> tuple[list[Any], str]:
    return list_page(client, token)


def _equals(key: str, value: str) -> str:
    return json.dumps({"predicates": [{"operation": _EQUALS, "key": key, "stringValue": value}]})


class KfpBackend:
    """Pipelines, versions, experiments and runs on one Kubeflow Pipelines endpoint.

    Args:
        host: The KFP API endpoint, e.g. ``http://ml-pipeline-ui.kubeflow`` or a port-forward.
        namespace: The Kubeflow profile namespace (multi-user KFP); None for single-user.
        existing_token: A bearer token for the endpoint, if it needs one.
        client: A ready ``kfp.Client`` to use instead of building one from ``host``.
        timeout: (connect, read) seconds for each request; an endpoint that does not answer
            in time is :class:`KfpUnavailable`.
    """

    def __init__(
        self,
        host: str,
        *,
        namespace: str | None = None,
        existing_token: str | None = None,
        client: Any = None,
        timeout: tuple[float, float] = REQUEST_TIMEOUT,
    ) -> None:
        # kfp.Client would warn and assume https; say it here, so the CLI prints one line only.
        self.host = (host if host.startswith("http") else f"https://{host}").rstrip("/")
        self.namespace = namespace
        self._token = existing_token
        self._client = client
        self._timeout = timeout

    # -- plumbing ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _translated(self, action: str) -> Iterator[None]:
        """Turn transport and API errors into errors a user can act on."""
        import urllib3
        from kfp_server_api.exceptions import ApiException

        try:
            # kfp.Client prints links on stdout; the CLI prints its own, the operator logs.
            with contextlib.redirect_stdout(io.StringIO()):
                yield
        except ApiException as exc:
            status = exc.status or 0
            message = _api_message(exc.body) or str(exc.reason or "").strip()
            if status == 0 or status >= 500:
                raise KfpUnavailable(self.host, f"{action}: HTTP {status} {message}") from exc
            raise KfpRefused(self.host, action, status, message) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:  # refused, DNS, timeout, reset
            raise KfpUnavailable(self.host, f"{action}: {_transport_reason(exc)}") from exc
        except ValueError as exc:  # kfp.Client's own checks, e.g. two pipelines with one name
            raise KubeforgeError(f"Kubeflow Pipelines at {self.host}: {action}: {exc}") from exc

    def _kfp(self) -> Any:
        if self._client is None:
            with self._translated("check its health"), warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # kfp's "needs KFP >= 2.0.0b2"
                self._client = _client_class()(
                    host=self.host,
                    namespace=self.namespace or "kubeflow",
                    existing_token=self._token,
                    timeout=self._timeout,
                )
            rest = self._client._run_api.api_client.rest_client  # shared by every service API
            rest.request = _with_default_timeout(rest.request, self._timeout)
        return self._client

    def _call(self, action: str, fn: Callable[[Any], T]) -> T:
        client = self._kfp()
        with self._translated(action):
            return fn(client)
        raise AssertionError("unreachable")  # pragma: no cover - _translated re-raises every error

    def _pages(
        self, action: str, list_page: Callable[[Any, str], tuple[list[Any], str]]
    ) -> list[Any]:
        """Every item of a paginated list call: ``list_page(client, token) -> (items, next)``."""
        items: list[Any] = []
        token = ""
        while True:
            page, token = self._call(action, functools.partial(_next_page, list_page, token))
            items.extend(page)
            if not token:
                return items

    # -- pipelines -----------------------------------------------------------------------------
    def _find_pipeline(self, name: str) -> str | None:
        def page(c: Any, token: str) -> tuple[list[Any], str]:
            r = c.list_pipelines(
                page_token=token,
                page_size=_PAGE_SIZE,
                filter=_equals("display_name", name),
                namespace=self.namespace,
            )
            return list(r.pipelines or []), r.next_page_token or ""

        found = [
            p
            for p in self._pages(f"list pipelines named {name!r}", page)
            if name in (p.display_name, p.name)
        ]
        return str(found[0].pipeline_id) if found else None

    def _find_version(self, pipeline_id: str, version_name: str) -> str | None:
        def page(c: Any, token: str) -> tuple[list[Any], str]:
            r = c.list_pipeline_versions(
                pipeline_id=pipeline_id, page_token=token, page_size=_PAGE_SIZE
            )
            return list(r.pipeline_versions or []), r.next_page_token or ""

        found = [
            v
            for v in self._pages(f"list versions of pipeline {pipeline_id}", page)
            if version_name in (v.display_name, v.name)
        ]
        return str(found[0].pipeline_version_id) if found else None

    def ensure_pipeline_version(
        self, pipeline_name: str, ir_yaml: str, digest: str
    ) -> tuple[str, str]:
        """Get or create the pipeline (by display name) and the version of this IR.

        The version is named by the IR's digest, so the same IR twice never uploads twice; the IR
        is uploaded as-is (the bytes ``kubeforge compile`` wrote).

        Args:
            pipeline_name: The pipeline's display name in Kubeflow (the IR's pipelineInfo.name).
            ir_yaml: The compiled IR YAML.
            digest: The IR's sha256 hex digest.

        Returns:
            ``(pipeline_id, version_id)``.

        Raises:
            KfpUnavailable: The endpoint is unreachable or failed.
            KubeforgeError: KFP refused the pipeline.
        """
        import kfp_server_api

        version_name = digest[:12]
        pipeline_id = self._find_pipeline(pipeline_name)
        if pipeline_id is None:
            body = kfp_server_api.V2beta1Pipeline(
                display_name=pipeline_name,
                name=pipeline_name,
                description="Compiled by Kubeforge; each version is named by its IR digest.",
                namespace=self.namespace,
            )
            created = self._call(
                f"create pipeline {pipeline_name!r}",
                lambda c: c.pipelines.pipeline_service_create_pipeline(pipeline=body),
            )
            pipeline_id = str(created.pipeline_id)
        version_id = self._find_version(pipeline_id, version_name)
        if version_id is None:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / f"{pipeline_name}.yaml"
                path.write_bytes(ir_yaml.encode())
                version = self._call(
                    f"upload version {version_name} of pipeline {pipeline_name!r}",
                    lambda c: c.upload_pipeline_version(
                        str(path),
                        pipeline_version_name=version_name,
                        pipeline_id=pipeline_id,
                        description=f"IR sha256 {digest}",
                    ),
                )
            version_id = str(version.pipeline_version_id)
        return pipeline_id, version_id

    # -- experiments and runs ------------------------------------------------------------------
    def ensure_experiment(self, name: str) -> str:
        """Get or create the experiment ``name``; returns its ID."""
        experiment = self._call(
            f"get or create experiment {name!r}",
            lambda c: c.create_experiment(name, namespace=self.namespace),
        )
        return str(experiment.experiment_id)

    def find_run(self, display_name: str, experiment_id: str) -> str | None:
        """The ID of the run called ``display_name`` in the experiment, or None."""

        def page(c: Any, token: str) -> tuple[list[Any], str]:
            r = c.list_runs(
                page_token=token,
                page_size=_PAGE_SIZE,
                experiment_id=experiment_id,
                filter=_equals("display_name", display_name),
            )
            return list(r.runs or []), r.next_page_token or ""

        found = [
            r
            for r in self._pages(f"list runs named {display_name!r}", page)
            if r.display_name == display_name
        ]
        return str(found[0].run_id) if found else None

    def create_run(
        self,
        display_name: str,
        experiment_id: str,
        pipeline_id: str,
        version_id: str,
        params: dict[str, Any],
        service_account: str = "",
    ) -> str:
        """Get or create the run ``display_name`` of a pipeline version; returns the run ID.

        A run of that name already in the experiment is adopted (a repeated call after a crash
        starts nothing new).
        """
        existing = self.find_run(display_name, experiment_id)
        if existing is not None:
            return existing
        run = self._call(
            f"create run {display_name!r}",
            lambda c: c.run_pipeline(
                experiment_id,
                display_name,
                params=params,
                pipeline_id=pipeline_id,
                version_id=version_id,
                service_account=service_account or None,
            ),
        )
        return str(run.run_id)

    def get_run(self, run_id: str) -> KfpRun:
        """The run's state, error and times."""
        run = self._call(f"get run {run_id}", lambda c: c.get_run(run_id))
        error = getattr(run.error, "message", "") if run.error is not None else ""
        return KfpRun(
            run_id=str(run.run_id or run_id),
            state=str(run.state or "RUNTIME_STATE_UNSPECIFIED"),
            error=str(error or ""),
            created_at=_rfc3339(run.created_at),
            finished_at=_rfc3339(run.finished_at),
        )

    def terminate(self, run_id: str) -> None:
        """Terminate the run; a run KFP no longer has counts as terminated."""
        try:
            self._call(f"terminate run {run_id}", lambda c: c.terminate_run(run_id))
        except KfpRefused as exc:
            if exc.status != 404:
                raise

    def run_url(self, run_id: str) -> str:
        """The run's page in the Kubeflow Pipelines UI."""
        return f"{self.host}/#/runs/details/{run_id}"
