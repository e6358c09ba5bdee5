"""An in-process Kubeflow Pipelines v2beta1 API that checks every request against the contract.

Tests of the KFP backend and ``kubeforge submit`` cannot reach a live Kubeflow, so they talk to
this server instead. Its contract is not written by hand: it is read from the installed
``kfp-server-api`` package, the REST client KFP publishes from its own swagger.

* Operations: every public method of every ``kfp_server_api.api.*ServiceApi`` class is called once
  against a recording ``ApiClient``, which yields the operation's HTTP method, path template,
  which arguments travel in the path, the query, the JSON body or as multipart files, the
  request content type and the response model. The method's docstring (``:param x: ...
  (required)`` / ``:type x: T``) gives each argument's type and whether it is required.
* Bodies: a JSON body is checked recursively against the model's ``attribute_map`` (the JSON
  keys it defines) and ``openapi_types`` (their types; enums against ``allowable_values``).
* Uploads: ``kfp-server-api`` 2.17.3 publishes both multipart endpoints in
  ``PipelineUploadServiceApi``: ``POST /apis/v2beta1/pipelines/upload`` (query ``name``,
  ``display_name``, ``description``, ``namespace``, ``tags``) and ``POST
  /apis/v2beta1/pipelines/upload_version`` (query ``name``, ``display_name``, ``pipelineid``,
  ``description``, ``tags``), each with one required file part ``uploadfile`` and content type
  ``multipart/form-data``. They are checked like every other operation: the content type, the
  query names and types, that the only part is ``uploadfile``, that it is there and carries a
  file name. The published contract says no more about the file, so what the real server
  additionally requires is checked as the server's rules (below).
* Server rules the swagger cannot express (proto3 marks no field required): a pipeline needs a
  ``display_name`` or ``name``; an experiment and a run need a ``display_name``; a run names
  exactly one of ``pipeline_spec`` / ``pipeline_version_reference`` (with both IDs); an uploaded
  version needs ``pipelineid``; an uploaded file must be a compiled KFP pipeline (YAML with
  ``pipelineInfo`` and ``root``), limited to 32 MB as the API documents.

A request that breaks the contract is refused with HTTP 400 and a google.rpc.Status message, and
recorded in :attr:`KfpContractServer.violations`. Accepted requests are played against in-memory
pipelines, versions, experiments and runs, answered in the shapes the models define (through the
package's own serializer, so the real ``kfp.Client`` deserializes them), and recorded in order.
A test moves a run along with :meth:`KfpContractServer.set_run_state`, as the real backend would.
"""

from __future__ import annotations

import datetime as dt
import email.parser
import email.policy
import functools
import inspect
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

API_PREFIX = "/apis/v2beta1"
FINAL_STATES = frozenset({"SUCCEEDED", "SKIPPED", "FAILED", "CANCELED"})
MAX_UPLOAD_BYTES = 32 * 1024 * 1024
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)  # KFP's finished_at of a run still going
_CLIENT_ONLY = {"async_req", "_preload_content", "_request_timeout", "_return_http_data_only"}


# -- the contract, read from kfp-server-api ---------------------------------------------------
@dataclass(frozen=True)
class Operation:
    """One REST operation of the KFP v2beta1 API, as kfp-server-api publishes it.

    Attributes:
        name: The generated method's name, e.g. ``run_service_create_run``.
        method: The HTTP method.
        path: The path template, e.g. ``/apis/v2beta1/runs/{run_id}:terminate``.
        path_params: Template names (``{...}``) of the path.
        query: Query parameter name -> its type.
        body_type: The JSON body's model, or None when the operation takes no JSON body.
        files: Names of the multipart file parts.
        required: Names (wire names) of the required path, query, body and file arguments.
        content_type: The request content type the client sends.
        response_type: The response model, or None.
    """

    name: str
    method: str
    path: str
    path_params: tuple[str, ...]
    query: dict[str, str]
    body_type: str | None
    files: tuple[str, ...]
    required: frozenset[str]
    content_type: str
    response_type: str | None

    @functools.cached_property
    def pattern(self) -> re.Pattern[str]:
        """The path template as a regex with one named group per path parameter."""
        out, pos = "", 0
        for i, match in enumerate(re.finditer(r"\{([^}]+)\}", self.path)):
            out += re.escape(self.path[pos : match.start()]) + f"(?P<p{i}>[^/:]+)"
            pos = match.end()
        return re.compile(out + re.escape(self.path[pos:]) + "$")


_BODY = "body"  # the wire name the contract uses for the JSON body in ``required``


def _doc_params(doc: str) -> tuple[dict[str, str], set[str]]:
    """``:param``/``:type`` lines of a generated method's docstring: types, required names."""
    types = dict(re.findall(r"^\s*:type (\w+): (\S+)\s*$", doc, re.MULTILINE))
    required = {
        name
        for name, text in re.findall(r"^\s*:param (\w+):(.*)$", doc, re.MULTILINE)
        if "(required)" in text
    }
    return {k: v for k, v in types.items() if k not in _CLIENT_ONLY}, required


@functools.cache
def load_contract() -> tuple[Operation, ...]:
    """Every operation of every ``kfp_server_api`` service API, read by calling each one."""
    import kfp_server_api
    from kfp_server_api import api as service_apis

    class Recorder(kfp_server_api.ApiClient):  # type: ignore[misc]  # untyped package
        call: dict[str, Any] = {}

        def call_api(self, resource_path: str, method: str, *args: Any, **kwargs: Any) -> Any:
            names = (
                "path_params",
                "query_params",
                "header_params",
                "body",
                "post_params",
                "files",
                "response_type",
            )
            self.call = {
                "path": resource_path,
                "method": method,
                **dict(zip(names, args, strict=False)),
            }
            self.call.update({k: v for k, v in kwargs.items() if k in names})
            return None

    recorder = Recorder()
    operations = []
    for api_name in sorted(dir(service_apis)):
        if not api_name.endswith("ServiceApi"):
            continue
        service = getattr(service_apis, api_name)(recorder)
        for name, member in inspect.getmembers(service, inspect.ismethod):
            if name.startswith("_") or name.endswith("_with_http_info"):
                continue
            types, required = _doc_params(member.__doc__ or "")
            sentinels = {param: f"<{param}>" for param in types}
            member(**sentinels)
            call = recorder.call
            path_params = call.get("path_params") or {}
            query_params = call.get("query_params") or []
            files = tuple((call.get("files") or {}).keys())
            body_param = next((p for p, s in sentinels.items() if call.get("body") == s), None)
            # Where each argument travels, by the name it has on the wire.
            wire = {param: param for param in files}
            wire.update({value.strip("<>"): key for key, value in path_params.items()})
            wire.update({str(value).strip("<>"): key for key, value in query_params})
            if body_param:
                wire[body_param] = _BODY
            query = {key: types[str(value).strip("<>")] for key, value in query_params}
            operations.append(
                Operation(
                    name=name,
                    method=call["method"],
                    path=call["path"],
                    path_params=tuple(path_params),
                    query=query,
                    body_type=types[body_param] if body_param else None,
                    files=files,
                    required=frozenset(wire[p] for p in required),
                    content_type=(call.get("header_params") or {}).get(
                        "Content-Type", "application/json"
                    ),
                    response_type=call.get("response_type"),
                )
            )
    # Literal paths before templated ones: POST /pipelines/upload is not POST /pipelines/{id}.
    return tuple(sorted(operations, key=lambda op: (len(op.path_params), op.path)))


# -- checking values against the models -------------------------------------------------------
def check_value(value: Any, type_name: str, where: str) -> list[str]:
    """Problems of a JSON value against an openapi type of kfp-server-api ("" path = body)."""
    from kfp_server_api import models

    label = where or "body"
    if value is None:
        return []
    if type_name == "object":
        return []
    if type_name == "str":
        return [] if isinstance(value, str) else [f"{label}: expected a string, got {value!r}"]
    if type_name == "bool":
        return [] if isinstance(value, bool) else [f"{label}: expected a boolean, got {value!r}"]
    if type_name == "int":  # proto3 JSON writes 64-bit integers as strings
        ok = (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, str) and re.fullmatch(r"-?\d+", value) is not None
        )
        return [] if ok else [f"{label}: expected an integer, got {value!r}"]
    if type_name == "float":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return [] if ok else [f"{label}: expected a number, got {value!r}"]
    if type_name in ("datetime", "date"):
        try:
            dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return [f"{label}: expected an RFC 3339 timestamp, got {value!r}"]
        return []
    if type_name.startswith("list["):
        if not isinstance(value, list):
            return [f"{label}: expected a list, got {value!r}"]
        inner = type_name[5:-1]
        return [e for i, v in enumerate(value) for e in check_value(v, inner, f"{label}[{i}]")]
    if type_name.startswith("dict("):
        if not isinstance(value, dict):
            return [f"{label}: expected an object, got {value!r}"]
        inner = type_name[5:-1].split(", ", 1)[1]
        return [e for k, v in value.items() for e in check_value(v, inner, f"{label}.{k}")]
    model = getattr(models, type_name, None)
    if model is None:
        return [f"{label}: the contract names an unknown type {type_name}"]
    if not model.openapi_types and hasattr(model, "allowable_values"):
        if value not in model.allowable_values:
            return [f"{label}: {value!r} is not one of {', '.join(model.allowable_values)}"]
        return []
    if not isinstance(value, dict):
        return [f"{label}: expected a {type_name} object, got {value!r}"]
    by_key = {key: attr for attr, key in model.attribute_map.items()}
    problems = []
    for key, item in value.items():
        if key not in by_key:
            problems.append(
                f"{label}: field {key!r} is not defined by {type_name} "
                f"(it has: {', '.join(sorted(by_key))})"
            )
            continue
        child = f"{where}.{key}" if where else key
        problems += check_value(item, model.openapi_types[by_key[key]], child)
    return problems


def _check_query(op: Operation, query: dict[str, list[str]]) -> list[str]:
    problems = []
    for key, values in query.items():
        if key not in op.query:
            allowed = ", ".join(sorted(op.query)) or "none"
            problems.append(f"query parameter {key!r} is not defined (allowed: {allowed})")
            continue
        kind = op.query[key]
        for value in values:
            if kind == "int" and re.fullmatch(r"-?\d+", value) is None:
                problems.append(f"query parameter {key!r} expects an integer, got {value!r}")
            if kind == "bool" and value not in ("true", "false"):
                problems.append(f"query parameter {key!r} expects true/false, got {value!r}")
    return problems


@dataclass(frozen=True)
class Upload:
    """One multipart file part of an upload request."""

    name: str
    filename: str
    data: bytes


def _parse_multipart(content_type: str, body: bytes) -> list[Upload]:
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise ValueError("the body is not multipart")
    parts = []
    for part in message.iter_parts():
        disposition = part.get("Content-Disposition", "")
        if not str(disposition).startswith("form-data"):
            raise ValueError(f"a part is not form-data: {disposition!r}")
        payload = part.get_payload(decode=True)
        parts.append(
            Upload(
                str(part.get_param("name", header="content-disposition") or ""),
                str(part.get_filename() or ""),
                payload if isinstance(payload, bytes) else b"",
            )
        )
    return parts


# -- the server -------------------------------------------------------------------------------
@dataclass(frozen=True)
class RecordedRequest:
    """A request as the server saw it: its operation (or None) and the status it answered."""

    method: str
    path: str
    operation: str | None
    query: dict[str, list[str]]
    body: Any
    status: int


class ApiError(Exception):
    """An answer other than 200: HTTP status, google.rpc code, message."""

    def __init__(self, status: int, code: int, message: str, violation: bool = False) -> None:
        super().__init__(message)
        self.status, self.code, self.violation = status, code, violation


def _refuse(message: str) -> ApiError:
    return ApiError(400, 3, message, violation=True)  # 3: INVALID_ARGUMENT


def _not_found(what: str) -> ApiError:
    return ApiError(404, 5, f"{what} not found")  # 5: NOT_FOUND


@dataclass
class _Store:
    pipelines: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)
    experiments: dict[str, Any] = field(default_factory=dict)
    runs: dict[str, Any] = field(default_factory=dict)
    uploads: dict[str, bytes] = field(default_factory=dict)  # version id -> the uploaded bytes


class KfpContractServer:
    """A KFP v2beta1 API on ``127.0.0.1`` (port 0) that refuses anything off the contract.

    Use as a context manager; :attr:`host` is the endpoint to give ``kfp.Client``.
    """

    def __init__(self) -> None:
        self.contract = load_contract()
        self.requests: list[RecordedRequest] = []
        self.violations: list[str] = []
        self.outage = False  # True: answer every request 503, as a KFP whose backend is down
        self._store = _Store()
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> KfpContractServer:
        """Listen on a free loopback port and serve in a thread."""
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, payload = server.handle(
                    self.command, self.path, self.headers.get("Content-Type", ""), body
                )
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = _serve

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the port."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> KfpContractServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def host(self) -> str:
        """The endpoint, e.g. ``http://127.0.0.1:40123``."""
        if self._httpd is None:
            raise RuntimeError("the KFP contract server is not started")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    # -- what tests look at ------------------------------------------------------------------
    def operations(self) -> list[str]:
        """Names of the operations of the accepted requests, in order."""
        return [r.operation for r in self.requests if r.operation and r.status < 400]

    def uploaded(self, version_id: str) -> bytes:
        """The file uploaded as pipeline version ``version_id``, byte for byte."""
        return self._store.uploads[version_id]

    def runs(self) -> list[Any]:
        """Every run (``kfp_server_api.V2beta1Run``), in creation order."""
        return list(self._store.runs.values())

    def set_run_state(self, run_id: str, state: str, error: str = "") -> None:
        """Move a run to ``state`` (a V2beta1RuntimeState), as the KFP backend would."""
        from kfp_server_api import models

        if state not in models.V2beta1RuntimeState.allowable_values:
            raise ValueError(f"{state!r} is not a KFP RuntimeState")
        with self._lock:
            run = self._store.runs[run_id]
            run.state = state
            run.error = models.GoogleRpcStatus(code=2, message=error) if error else None
            if state in FINAL_STATES:
                run.finished_at = dt.datetime.now(dt.UTC)
            run.state_history = [
                *(run.state_history or []),
                models.V2beta1RuntimeStatus(update_time=dt.datetime.now(dt.UTC), state=state),
            ]

    # -- request handling --------------------------------------------------------------------
    def handle(
        self, method: str, target: str, content_type: str, raw: bytes
    ) -> tuple[int, dict[str, Any]]:
        """Check one request against the contract and play it: ``(status, JSON answer)``."""
        url = urlsplit(target)
        query = parse_qs(url.query, keep_blank_values=True)
        op: Operation | None = None
        body: Any = None
        try:
            if self.outage:
                raise ApiError(503, 14, "the KFP API server is unavailable")  # 14: UNAVAILABLE
            op, path_args = self._route(method, url.path)
            body, uploads = self._check(op, query, content_type, raw)
            with self._lock:
                status, answer = 200, self._play(op, path_args, query, body, uploads)
        except ApiError as exc:
            if exc.violation:
                self.violations.append(f"{method} {url.path}: {exc}")
            status, answer = exc.status, {"code": exc.code, "message": str(exc), "details": []}
        self.requests.append(
            RecordedRequest(method, url.path, op.name if op else None, query, body, status)
        )
        return status, answer

    def _route(self, method: str, path: str) -> tuple[Operation, dict[str, str]]:
        methods = []
        for op in self.contract:
            match = op.pattern.match(path)
            if match is None:
                continue
            if op.method == method:
                return op, {name: match[f"p{i}"] for i, name in enumerate(op.path_params)}
            methods.append(op.method)
        if methods:
            raise _refuse(f"{method} is not an operation of {path} (allowed: {sorted(methods)})")
        raise _refuse(f"{method} {path} is not an operation of the KFP v2beta1 API")

    def _check(
        self, op: Operation, query: dict[str, list[str]], content_type: str, raw: bytes
    ) -> tuple[Any, list[Upload]]:
        problems = _check_query(op, query)
        problems += [
            f"required query parameter {name!r} is missing"
            for name in op.required
            if name in op.query and name not in query
        ]
        body: Any = None
        uploads: list[Upload] = []
        if op.files:
            if not content_type.startswith("multipart/form-data"):
                problems.append(f"expects multipart/form-data, got {content_type or 'nothing'!r}")
            else:
                try:
                    uploads = _parse_multipart(content_type, raw)
                except ValueError as exc:
                    problems.append(f"malformed multipart body: {exc}")
                names = {u.name for u in uploads}
                problems += [f"form part {n!r} is not defined" for n in names - set(op.files)]
                problems += [
                    f"required file part {n!r} is missing"
                    for n in op.files
                    if n in op.required and n not in names
                ]
                problems += [
                    f"file part {u.name!r} has no filename" for u in uploads if not u.filename
                ]
        elif op.body_type is not None:
            if not content_type.startswith("application/json"):
                problems.append(f"expects application/json, got {content_type or 'nothing'!r}")
            try:
                body = json.loads(raw) if raw else None
            except ValueError as exc:
                problems.append(f"body is not JSON: {exc}")
            if body is None and _BODY in op.required:
                problems.append(f"the required {op.body_type} body is missing")
            problems += check_value(body, op.body_type, "")
        elif raw.strip() not in (b"", b"{}"):
            problems.append(f"{op.name} takes no body, got {raw[:80]!r}")
        if problems:
            raise _refuse(f"{op.name}: " + "; ".join(problems))
        return body, uploads

    # -- playing the API ---------------------------------------------------------------------
    def _play(
        self,
        op: Operation,
        args: dict[str, str],
        query: dict[str, list[str]],
        body: Any,
        uploads: list[Upload],
    ) -> dict[str, Any]:
        from kfp_server_api import ApiClient

        def q(name: str) -> str:
            return query.get(name, [""])[0]

        handler = _PLAYED.get(op.name)
        if handler is None:
            raise ApiError(501, 12, f"{op.name} is in the contract but not played by this server")
        result = handler(self._store, args, q, body, uploads)
        answer: dict[str, Any] = ApiClient().sanitize_for_serialization(result) or {}
        return answer


# -- the operations this server plays -----------------------------------------------------------
Query = Callable[[str], str]
Played = Callable[[_Store, dict[str, str], Query, Any, list[Upload]], Any]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _model(type_name: str, data: Any) -> Any:
    """A request body as its kfp_server_api model, through the package's own deserializer."""
    from kfp_server_api import ApiClient

    class Response:
        def __init__(self, payload: Any) -> None:
            self.data = json.dumps(payload)

    return ApiClient().deserialize(Response(data or {}), type_name)


def _filtered(items: list[Any], q: Query) -> list[Any]:
    raw = q("filter")
    if not raw:
        return items
    try:
        predicates = json.loads(raw).get("predicates", [])
    except (ValueError, AttributeError) as exc:
        raise _refuse(f"filter is not a JSON filter.proto: {exc}") from exc
    for pred in predicates:
        if pred.get("operation") not in ("EQUALS", 1):
            raise ApiError(501, 12, f"filter operation {pred.get('operation')!r} is not played")
        key, value = pred.get("key"), pred.get("string_value", pred.get("stringValue"))
        items = [i for i in items if getattr(i, str(key), None) == value]
    return items


def _page(items: list[Any], q: Query) -> tuple[list[Any], str, int]:
    start = int(q("page_token") or 0)
    size = int(q("page_size") or 0) or 20
    rest = items[start : start + size]
    token = str(start + size) if start + size < len(items) else ""
    return rest, token, len(items)


def _in_namespace(items: list[Any], q: Query) -> list[Any]:
    ns = q("namespace")
    return [i for i in items if not ns or (i.namespace or "") == ns]


def _read_pipeline_file(uploads: list[Upload]) -> tuple[bytes, Any]:
    data = uploads[0].data
    if len(data) > MAX_UPLOAD_BYTES:
        raise _refuse("the uploaded file exceeds 32 MB")
    try:
        doc = yaml.safe_load(data)
    except yaml.YAMLError as exc:
        raise _refuse(f"the uploaded file is not YAML: {exc}") from exc
    if not isinstance(doc, dict) or "pipelineInfo" not in doc or "root" not in doc:
        raise _refuse("the uploaded file is not a compiled KFP pipeline (no pipelineInfo/root)")
    return data, doc


def _new_version(
    store: _Store, pipeline_id: str, name: str, q: Query, data: bytes, doc: Any
) -> Any:
    from kfp_server_api import models

    version = models.V2beta1PipelineVersion(
        pipeline_id=pipeline_id,
        pipeline_version_id=str(uuid.uuid4()),
        display_name=q("display_name") or name,
        name=name,
        description=q("description") or None,
        created_at=_now(),
        pipeline_spec=doc,
    )
    store.versions[version.pipeline_version_id] = version
    store.uploads[version.pipeline_version_id] = data
    return version


def _healthz(store: _Store, args: dict[str, str], q: Query, body: Any, up: list[Upload]) -> Any:
    from kfp_server_api import models

    return models.V2beta1GetHealthzResponse(multi_user=False, pipeline_store="database")


def _create_pipeline(
    store: _Store, args: dict[str, str], q: Query, body: Any, up: list[Upload]
) -> Any:
    pipeline = _model("V2beta1Pipeline", body)
    if not (pipeline.display_name or pipeline.name):
        raise _refuse("pipeline_service_create_pipeline: a pipeline needs a display_name or name")
    pipeline.display_name = pipeline.display_name or pipeline.name
    if any(p.display_name == pipeline.display_name for p in store.pipelines.values()):
        raise ApiError(409, 6, f"pipeline {pipeline.display_name!r} already exists")
    pipeline.pipeline_id, pipeline.created_at = str(uuid.uuid4()), _now()
    store.pipelines[pipeline.pipeline_id] = pipeline
    return pipeline


def _get_pipeline(
    store: _Store, args: dict[str, str], q: Query, body: Any, up: list[Upload]
) -> Any:
    if args["pipeline_id"] not in store.pipelines:
        raise _not_found(f"pipeline {args['pipeline_id']}")
    return store.pipelines[args["pipeline_id"]]


def _list_pipelines(
    store: _Store, args: dict[str, str], q: Query, body: Any, up: list[Upload]
) -> Any:
    from kfp_server_api import models

    items, token, total = _page(_filtered(_in_namespace(list(store.pipelines.values()), q), q), q)
    return models.V2beta1ListPipelinesResponse(
        pipelines=items, next_page_token=token or None, total_size=total
    )


def _list_versions(
    store: _Store, args: dict[str, str], q: Query, body: Any, up: list[Upload]
) -> Any:
    from kfp_server_api import models

    if args["pipeline_id"] not in store.pipelines:
        raise _not_found(f"pipeline {args['pipeline_id']}")
    mine = [v for v in store.versions.values() if v.pipeline_id == args["pipeline_id"]]
    items, token, total = _page(_filtered(mine, q), q)
    return models.V2beta1ListPipelineVersionsResponse(
        pipeline_versions=items, next_page_token=token or None, total_size=total
    )


def _get_version(store: _Store, args: dict[str, str], q: Query, body: Any, up: list[Upload]) -> Any:
    version = store.versions.get(args["pipeline_version_id"])
    if version is None or version.pipeline_id != args["pipeline_id"]:
        raise _not_found(f"pipeline version {args['pipeline_version_id']}")
    return version


def _upload_pipeline(
    store: _Store, args: dict[str, str], q: Query, body: Any, up: list[Upload]
) -> Any:
    from kfp_server_api import models

    data, doc = _read_pipeline_file(up)
    name = q("name") or q("display_name") or up[0].filename.rsplit(".", 1)[0]
    if any(p.display_name == (q("display_name") or name) for p in store.pipelines.values()):
        raise ApiError(409, 6, f"pipeline {name!r} already exists")
    pipeline = models.V2beta1Pipeline(
        pipeline_id=str(uuid.uuid4()),
        display_name=q("display_name") or name,
        name=name,
        description=q("description") or None,
        namespace=q("namespace") or None,
        created_at=_now(),
    )
    store.pipelines[pipeline.pipeline_id] = pipeline
    _new_version(store, pipeline.pipeline_id, name, q, data, doc)
    return pipeline


def _upload_version(
    store: _Store, args: dict[str, str], q: Query, body: Any, up: list[Upload]
) -> Any:
    pipeline_id = q("pipelineid")
    if not pipeline_id:
        raise _refuse("upload_pipeline_version: pipelineid is required")
    if pipeline_id not in store.pipelines:
        raise _not_found(f"pipeline {pipeline_id}")
    data, doc = _read_pipeline_file(up)
    name = q("name") or q("display_name") or up[0].filename.rsplit(".", 1)[0]
    if any(v.pipeline_id == pipeline_id and v.name == name for v in store.versions.values()):
        raise ApiError(409, 6, f"pipeline version {name!r} already exists")
    return _new_version(store, pipeline_id, name, q, data, doc)


def _create_experiment(
    store: _Store, args: dict[str, str], q: Query, body: Any, up: list[Upload]
) -> Any:
    experiment = _model("V2beta1Experiment", body)
    if not experiment.display_name:
        raise _refuse("experiment_service_create_experiment: an experiment needs a display_name")
    experiment.experiment_id, experiment.created_at = str(uuid.uuid4()), _now()
    experiment.storage_state = "AVAILABLE"
    store.experiments[experiment.experiment_id] = experiment
    return experiment


def _get_experiment(
    store: _Store, args: dict[str, str], q: Query, body: Any, up: list[Upload]
) -> Any:
    if args["experiment_id"] not in store.experiments:
        raise _not_found(f"experiment {args['experiment_id']}")
    return store.experiments[args["experiment_id"]]


def _list_experiments(
    store: _Store, args: dict[str, str], q: Query, body: Any, up: list[Upload]
) -> Any:
    from kfp_server_api import models

    found = _filtered(_in_namespace(list(store.experiments.values()), q), q)
    items, token, total = _page(found, q)
    return models.V2beta1ListExperimentsResponse(
        experiments=items, next_page_token=token or None, total_size=total
    )


def _create_run(store: _Store, args: dict[str, str], q: Query, body: Any, up: list[Upload]) -> Any:
    run = _model("V2beta1Run", body)
    where = "run_service_create_run"
    if not run.display_name:
        raise _refuse(f"{where}: a run needs a display_name")
    ref = run.pipeline_version_reference
    if (run.pipeline_spec is None) == (ref is None):
        raise _refuse(f"{where}: give exactly one of pipeline_spec and pipeline_version_reference")
    if ref is not None:
        if not (ref.pipeline_id and ref.pipeline_version_id):
            raise _refuse(f"{where}: pipeline_version_reference needs both IDs")
        version = store.versions.get(ref.pipeline_version_id)
        if version is None or version.pipeline_id != ref.pipeline_id:
            raise _not_found(f"pipeline version {ref.pipeline_version_id}")
        run.pipeline_spec = version.pipeline_spec
    run.experiment_id = run.experiment_id or q("experiment_id") or None
    if run.experiment_id and run.experiment_id not in store.experiments:
        raise _not_found(f"experiment {run.experiment_id}")
    run.run_id, run.created_at, run.scheduled_at = str(uuid.uuid4()), _now(), _now()
    run.finished_at, run.state, run.storage_state = _EPOCH, "PENDING", "AVAILABLE"
    store.runs[run.run_id] = run
    return run


def _get_run(store: _Store, args: dict[str, str], q: Query, body: Any, up: list[Upload]) -> Any:
    if args["run_id"] not in store.runs:
        raise _not_found(f"run {args['run_id']}")
    return store.runs[args["run_id"]]


def _list_runs(store: _Store, args: dict[str, str], q: Query, body: Any, up: list[Upload]) -> Any:
    from kfp_server_api import models

    runs = list(store.runs.values())
    if q("experiment_id"):
        runs = [r for r in runs if r.experiment_id == q("experiment_id")]
    items, token, total = _page(_filtered(runs, q), q)
    return models.V2beta1ListRunsResponse(
        runs=items, next_page_token=token or None, total_size=total
    )


def _terminate_run(
    store: _Store, args: dict[str, str], q: Query, body: Any, up: list[Upload]
) -> Any:
    run = _get_run(store, args, q, body, up)
    if run.state not in FINAL_STATES:
        run.state = "CANCELING"
    return {}


_PLAYED: dict[str, Played] = {
    "healthz_service_get_healthz": _healthz,
    "pipeline_service_create_pipeline": _create_pipeline,
    "pipeline_service_get_pipeline": _get_pipeline,
    "pipeline_service_list_pipelines": _list_pipelines,
    "pipeline_service_list_pipeline_versions": _list_versions,
    "pipeline_service_get_pipeline_version": _get_version,
    "upload_pipeline": _upload_pipeline,
    "upload_pipeline_version": _upload_version,
    "experiment_service_create_experiment": _create_experiment,
    "experiment_service_get_experiment": _get_experiment,
    "experiment_service_list_experiments": _list_experiments,
    "run_service_create_run": _create_run,
    "run_service_get_run": _get_run,
    "run_service_list_runs": _list_runs,
    "run_service_terminate_run": _terminate_run,
}


@pytest.fixture
def kfp_server() -> Iterator[KfpContractServer]:
    """A started :class:`KfpContractServer`; its ``host`` is the KFP endpoint to use."""
    with KfpContractServer() as server:
        yield server
