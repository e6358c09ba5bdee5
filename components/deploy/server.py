"""The model server: KServe V1 and Open Inference Protocol (V2) routes on FastAPI and uvicorn.

Routes (``<name>`` is the served model's name; any other name answers 404):

- ``POST /v1/models/<name>:predict`` with ``{"instances": [[x, ...], ...]}``; ``GET
  /v1/models/<name>`` (KServe V1 model readiness);
- ``GET /v2/health/live``, ``GET /v2/health/ready``, ``GET /v2``, ``GET /v2/models/<name>``,
  ``GET /v2/models/<name>/ready``, ``POST /v2/models/<name>/infer`` (Open Inference Protocol);
- ``GET /healthz`` (liveness, kept for older probes), ``GET /metrics`` (Prometheus).

Every answer is JSON; every error is one line ``{"error": "..."}`` that names what is wrong and
never carries a Python or numpy message. Bodies are read with a size limit (413, checked while
reading) and a read timeout (408). Readiness is false until a model is loaded and again from the
first SIGTERM on; the server then keeps serving for ``shutdown_delay_s`` (so endpoints drop it),
stops accepting connections and lets the requests in flight finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from types import FrameType
from typing import Any

import numpy as np
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.convertors import StringConvertor, register_url_convertor
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from torch import nn

from kubeforge.components.common.model import predict
from kubeforge.components.deploy.schemas import (
    BadRequest,
    V2Request,
    parse_v1,
    parse_v2,
    rows_matrix,
    v2_matrix,
)
from kubeforge.core.errors import KubeforgeError

log = logging.getLogger("kubeforge.serving")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Probes and scrapes: answered, never counted (a probe every few seconds would drown the traffic).
_UNCOUNTED = ("/metrics", "/healthz", "/v2/health/")
_OUTPUTS = ("predictions", "probabilities")


class _ModelNameConvertor(StringConvertor):
    """A model name in a route: no ``/`` and no ``:`` (so ``<name>:predict`` stays one route)."""

    regex = "[^/:]+"


register_url_convertor("model", _ModelNameConvertor())


@dataclass(frozen=True)
class ServingSettings:
    """Limits and shutdown behaviour of a :class:`ModelServer`."""

    max_body_bytes: int = 4 << 20
    """Largest request body; a bigger one is refused with 413 as soon as it is known."""
    read_timeout_s: float = 10.0
    """Longest wait for a request body to arrive in full; then 408 and the connection closes."""
    shutdown_delay_s: float = 0.0
    """After SIGTERM, how long readiness is false while requests are still served."""
    graceful_timeout_s: float = 30.0
    """After the delay, how long requests in flight may take before they are cancelled."""
    backlog: int = 2048
    """Listen backlog: connections the kernel queues before the server accepts them."""

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1:
            raise KubeforgeError("the body limit must be at least 1 byte", "max_body_bytes")
        if self.read_timeout_s <= 0:
            raise KubeforgeError("the read timeout must be more than 0 s", "read_timeout")
        if self.shutdown_delay_s < 0 or self.graceful_timeout_s < 0:
            raise KubeforgeError("shutdown times cannot be negative", "shutdown_delay")
        if self.backlog < 1:
            raise KubeforgeError("the listen backlog must be at least 1", "backlog")


@dataclass(frozen=True)
class LoadedModel:
    """What a server serves: the model, its class names and the registry version it came from."""

    model: nn.Module
    classes: list[str]
    version: str = ""


class ModelServer:
    """Serves one classifier over HTTP on ``host:port`` (port 0 picks a free one).

    The socket is bound at construction, so :attr:`url` is known before serving starts. Pass the
    model now, or ``None`` and :meth:`set_model` later: until then readiness answers 503.
    """

    def __init__(
        self,
        model: nn.Module | None,
        classes: list[str] | None,
        name: str,
        host: str = "127.0.0.1",
        port: int = 0,
        settings: ServingSettings | None = None,
        version: str = "",
    ) -> None:
        self.name = name
        self.settings = settings or ServingSettings()
        self.loaded: LoadedModel | None = None
        self.draining = False
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "kubeforge_serving_request_duration_seconds",
            "Request latency (every counted request, whatever its code)",
            ["model"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )
        self.requests = Counter(
            "kubeforge_serving_requests",
            "Requests by status code (probes and /metrics are not counted)",
            ["model", "code"],
            registry=self.registry,
        )
        self.rows = Counter(
            "kubeforge_serving_predictions", "Rows predicted", ["model"], registry=self.registry
        )
        self.in_flight = Gauge(
            "kubeforge_serving_requests_in_flight",
            "Requests being answered now",
            ["model"],
            registry=self.registry,
        )
        self.socket = _listen(host, port, self.settings.backlog)
        self.app = _build_app(self)
        self._server = _UvicornServer(
            uvicorn.Config(
                _Accounting(self.app, self),
                lifespan="off",
                access_log=False,
                log_config=None,
                timeout_graceful_shutdown=int(self.settings.graceful_timeout_s),
                backlog=self.settings.backlog,
            ),
            self,
        )
        self._thread: threading.Thread | None = None
        self._drain_deadline: float | None = None
        if model is not None:
            self.set_model(model, classes, version)

    @property
    def url(self) -> str:
        """Base URL of the server."""
        host, port = self.socket.getsockname()[:2]
        return f"http://{host!s}:{port}"

    @property
    def predict_url(self) -> str:
        """The KServe V1 predict endpoint."""
        return f"{self.url}/v1/models/{self.name}:predict"

    @property
    def infer_url(self) -> str:
        """The Open Inference Protocol (V2) infer endpoint."""
        return f"{self.url}/v2/models/{self.name}/infer"

    @property
    def ready(self) -> bool:
        """True while a model is loaded and no shutdown has begun."""
        return self.loaded is not None and not self.draining

    @property
    def n_features(self) -> int:
        """Features per row the loaded model takes (0 before a model is loaded)."""
        if self.loaded is None:
            return 0
        return int(getattr(getattr(self.loaded.model, "spec", None), "n_features", 0))

    def set_model(self, model: nn.Module, classes: list[str] | None, version: str = "") -> None:
        """Serve ``model``; readiness turns true."""
        model.eval()
        names = list(classes) if classes is not None else [str(c) for c in model.spec.classes]  # type: ignore[union-attr]
        self.loaded = LoadedModel(model, names, version)

    def start(self) -> ModelServer:
        """Serve in a background thread; returns once the server accepts connections."""
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise KubeforgeError(f"the model server at {self.url} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Readiness false, finish the requests in flight, close the socket."""
        self.draining = True
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=self.settings.graceful_timeout_s + 5)
        self.socket.close()

    def serve_forever(self, loader: Callable[[], LoadedModel] | None = None) -> None:
        """Serve in this (main) thread until SIGTERM or SIGINT; then shut down gracefully.

        With ``loader`` the server listens first (readiness false) and loads the model in a
        background thread; a loader that fails stops the server and raises its error here.
        """
        failure: list[BaseException] = []

        def load() -> None:
            try:
                assert loader is not None
                loaded = loader()
                self.set_model(loaded.model, loaded.classes, loaded.version)
                log.info("model %s ready (version %s)", self.name, loaded.version or "-")
            except BaseException as exc:  # noqa: BLE001 - reported to the caller below
                failure.append(exc)
                self._server.should_exit = True

        if loader is not None:
            threading.Thread(target=load, name="model-loader", daemon=True).start()
        try:
            self._server.run(sockets=[self.socket])
        finally:
            self.socket.close()
        if failure:
            raise failure[0]

    def begin_shutdown(self, reason: str) -> None:
        """First call: readiness false, serve on for the delay; a second call: stop now."""
        if self.draining:
            log.info("%s again: stopping now, letting requests in flight finish", reason)
            self._server.should_exit = True
            return
        self.draining = True
        delay = self.settings.shutdown_delay_s
        log.info("%s: readiness false; serving %.1f s more, then finishing requests", reason, delay)
        self._drain_deadline = time.monotonic() + delay
        if delay <= 0:
            self._server.should_exit = True

    def drain_over(self) -> bool:
        """Whether the shutdown delay has passed."""
        return self._drain_deadline is not None and time.monotonic() >= self._drain_deadline

    def predict_matrix(self, x: np.ndarray, field: str) -> tuple[list[str], list[float]]:
        """Class names and their probabilities for each row of ``x``."""
        assert self.loaded is not None
        probs = predict(self.loaded.model, x)
        finite = np.isfinite(probs).all(axis=1)
        if not finite.all():
            row = int(np.argmin(finite))
            raise BadRequest(f"{field}[{row}]: the model's output is not finite for this row")
        best = probs.argmax(axis=1)
        classes = self.loaded.classes
        self.rows.labels(self.name).inc(len(best))
        return [classes[i] for i in best], probs.max(axis=1).astype(np.float64).round(4).tolist()


def _listen(host: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and
    # without it Nagle + delayed ACKs hold each response's body back by ~40 ms.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise KubeforgeError(f"cannot listen on {host}:{port}: {exc.strerror}", "port") from exc
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


class _UvicornServer(uvicorn.Server):
    """uvicorn's server with Kubernetes-style shutdown: readiness goes false first."""

    def __init__(self, config: uvicorn.Config, owner: ModelServer) -> None:
        super().__init__(config)
        self.owner = owner

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """SIGTERM/SIGINT begin a graceful shutdown; nothing is re-raised afterwards."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        originals = {
            sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """A signal: tell the owner."""
        self.owner.begin_shutdown(signal.Signals(sig).name)

    async def on_tick(self, counter: int) -> bool:
        """The tick of uvicorn, plus the end of the shutdown delay."""
        if self.owner.drain_over():
            self.should_exit = True
        return await super().on_tick(counter)


class _Accounting:
    """ASGI middleware: every response counted by code, latency, requests in flight."""

    def __init__(self, app: ASGIApp, server: ModelServer) -> None:
        self.app, self.server = app, server
        self.in_flight = server.in_flight.labels(server.name)
        self.latency = server.latency.labels(server.name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(_UNCOUNTED):
            await self.app(scope, receive, send)
            return
        if scope["path"].endswith("/ready") and scope["method"] == "GET":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.in_flight.inc()
        try:
            await self.app(scope, receive, counting_send)
        finally:
            self.in_flight.dec()
            self.latency.observe(time.perf_counter() - started)
            self.server.requests.labels(self.server.name, str(status)).inc()


def _json(
    status: int, payload: dict[str, Any], headers: Mapping[str, str] | None = None
) -> Response:
    body = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
    return Response(body, status, headers=headers, media_type="application/json")


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return _json(status, {"error": message}, headers)


async def _read_body(request: Request, settings: ServingSettings) -> bytes:
    """The body, refused as soon as it is known to be over the limit, within the read timeout."""
    limit = settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest(f"Content-Length {declared[:20]!r} is not a number of bytes")
        if int(declared) > limit:
            raise BadRequest(f"the body of {declared} bytes is over the limit of {limit}", 413)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(settings.read_timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise BadRequest(f"the body is over the limit of {limit} bytes", 413)
                chunks.append(chunk)
    except TimeoutError:
        raise BadRequest(
            f"the body did not arrive within {settings.read_timeout_s:g} s"
            f" ({size} of {declared or 'unknown'} bytes)",
            408,
        ) from None
    return b"".join(chunks)


def _build_app(server: ModelServer) -> FastAPI:
    """The FastAPI application of ``server``."""
    app = FastAPI(
        title="Kubeforge model server",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    settings = server.settings

    def unknown(name: str) -> Response | None:
        if name != server.name:
            return _error(
                404, f"model {name[:100]!r} is not served here; this server serves {server.name!r}"
            )
        if server.loaded is None:
            return _error(503, f"model {server.name!r} is not loaded yet")
        return None

    async def guarded(request: Request, answer: Callable[[bytes], dict[str, Any]]) -> Response:
        close = {"Connection": "close"}
        try:
            body = await _read_body(request, settings)
            return _json(200, answer(body))
        except BadRequest as exc:
            return _error(exc.status, exc.message, close if exc.status in (408, 413) else None)
        except ClientDisconnect:
            return _error(400, "the client closed the connection before the body arrived", close)
        except Exception:  # noqa: BLE001 - logged with its traceback; the client learns no internals
            log.exception("predict failed for model %s", server.name)
            return _error(500, f"model {server.name!r} failed on this request; see the server log")

    @app.post("/v1/models/{name:model}:predict")
    async def v1_predict(name: str, request: Request) -> Response:
        refused = unknown(name)
        if refused is not None:
            return refused

        def answer(body: bytes) -> dict[str, Any]:
            rows = parse_v1(body).instances
            x = rows_matrix(rows, server.n_features or len(rows[0] if rows else []), "instances")
            predictions, probabilities = server.predict_matrix(x, "instances")
            return {"predictions": predictions, "probabilities": probabilities}

        return await guarded(request, answer)

    @app.get("/v1/models/{name:model}")
    async def v1_model(name: str) -> Response:
        refused = unknown(name)
        return refused or _json(200, {"name": server.name, "ready": server.ready})

    @app.post("/v2/models/{name:model}/infer")
    async def v2_infer(name: str, request: Request) -> Response:
        refused = unknown(name)
        if refused is not None:
            return refused

        def answer(body: bytes) -> dict[str, Any]:
            req = parse_v2(body)
            x = v2_matrix(req, server.n_features or _v2_width(req))
            wanted = _requested_outputs(req)
            predictions, probabilities = server.predict_matrix(x, "inputs[0].data")
            outputs: dict[str, dict[str, Any]] = {
                "predictions": {"datatype": "BYTES", "data": predictions},
                "probabilities": {"datatype": "FP32", "data": probabilities},
            }
            assert server.loaded is not None
            reply: dict[str, Any] = {
                "model_name": server.name,
                "outputs": [
                    {"name": out, "shape": [len(predictions)], **outputs[out]} for out in wanted
                ],
            }
            if server.loaded.version:
                reply["model_version"] = server.loaded.version
            if req.id is not None:
                reply["id"] = req.id
            return reply

        return await guarded(request, answer)

    @app.get("/v2/models/{name:model}")
    async def v2_model(name: str) -> Response:
        refused = unknown(name)
        if refused is not None:
            return refused
        assert server.loaded is not None
        return _json(
            200,
            {
                "name": server.name,
                "versions": [server.loaded.version] if server.loaded.version else [],
                "platform": "pytorch",
                "inputs": [
                    {"name": "features", "datatype": "FP32", "shape": [-1, server.n_features]}
                ],
                "outputs": [
                    {"name": "predictions", "datatype": "BYTES", "shape": [-1]},
                    {"name": "probabilities", "datatype": "FP32", "shape": [-1]},
                ],
            },
        )

    @app.get("/v2/models/{name:model}/ready")
    async def v2_model_ready(name: str) -> Response:
        if name != server.name:
            return _error(
                404, f"model {name[:100]!r} is not served here; this server serves {server.name!r}"
            )
        return _json(200 if server.ready else 503, {"name": server.name, "ready": server.ready})

    @app.get("/v2/health/live")
    async def live() -> Response:
        return _json(200, {"live": True})

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        return _json(200 if server.ready else 503, {"ready": server.ready})

    @app.get("/healthz")
    async def healthz() -> Response:
        return _json(200, {"status": "ok", "model": server.name, "ready": server.ready})

    @app.get("/v2")
    async def metadata() -> Response:
        return _json(200, {"name": "kubeforge", "version": "1", "extensions": []})

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(server.registry), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        path = request.url.path[:200]
        if exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow", "")
            return _error(
                405, f"{request.method} is not allowed on {path}; use {allowed}", exc.headers
            )
        if exc.status_code == 404:
            return _error(404, f"no route {path}")
        return _error(exc.status_code, str(exc.detail)[:200])

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        log.error("unhandled error on %s", request.url.path, exc_info=exc)
        return _error(500, "internal server error; see the server log")

    return app


def _v2_width(req: V2Request) -> int:
    shape = req.inputs[0].shape if req.inputs else []
    return shape[1] if len(shape) == 2 else 0


def _requested_outputs(req: V2Request) -> list[str]:
    if not req.outputs:
        return list(_OUTPUTS)
    names = []
    for i, out in enumerate(req.outputs):
        if out.name not in _OUTPUTS:
            raise BadRequest(f"outputs[{i}].name {out.name[:50]!r} is not one of {list(_OUTPUTS)}")
        names.append(out.name)
    return names
