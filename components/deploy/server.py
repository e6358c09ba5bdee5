"""A real local model server: ``/healthz``, KServe-v1 style predict, Prometheus ``/metrics``."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from torch import nn

from kubeforge.components.common.model import predict


class ModelServer:
    """Serves one classifier over HTTP on ``host:port`` (port 0 picks a free one).

    Routes: ``GET /healthz``, ``POST /v1/models/<name>:predict`` with ``{"instances": [[...]]}``,
    ``GET /metrics``.
    """

    def __init__(
        self,
        model: nn.Module,
        classes: list[str],
        name: str,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.model, self.classes, self.name = model, classes, name
        self.n_features = int(getattr(getattr(model, "spec", None), "n_features", 0))
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "kubeforge_serving_request_duration_seconds",
            "Predict request latency",
            ["model"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )
        self.requests = Counter(
            "kubeforge_serving_requests",
            "Predict requests by outcome",
            ["model", "code"],
            registry=self.registry,
        )
        self.rows = Counter(
            "kubeforge_serving_predictions", "Rows predicted", ["model"], registry=self.registry
        )
        self.httpd = ThreadingHTTPServer((host, port), self._handler())
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL of the running server."""
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def predict_url(self) -> str:
        """The predict endpoint."""
        return f"{self.url}/v1/models/{self.name}:predict"

    def start(self) -> ModelServer:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted."""
        self.httpd.serve_forever()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.httpd.shutdown()
        self.httpd.server_close()

    def predict_rows(self, instances: Any) -> dict[str, Any]:
        """Predictions for a list of feature rows."""
        x = np.asarray(instances, dtype=np.float32)
        if x.ndim != 2 or (self.n_features and x.shape[1] != self.n_features):
            raise ValueError(
                f"'instances' must be a list of rows with {self.n_features} numbers each"
            )
        probs = predict(self.model, x)
        best = probs.argmax(axis=1)
        return {
            "predictions": [self.classes[i] for i in best],
            "probabilities": probs.max(axis=1).round(4).tolist(),
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

            def _send(self, code: int, body: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _json(self, code: int, payload: dict[str, Any]) -> None:
                self._send(code, json.dumps(payload).encode(), "application/json")

            def do_GET(self) -> None:  # noqa: N802
                if self.path == "/healthz":
                    self._json(200, {"status": "ok", "model": server.name})
                elif self.path == "/metrics":
                    self._send(200, generate_latest(server.registry), CONTENT_TYPE_LATEST)
                else:
                    self._json(404, {"error": f"no route {self.path}"})

            def do_POST(self) -> None:  # noqa: N802
                if self.path != f"/v1/models/{server.name}:predict":
                    self._json(404, {"error": f"no route {self.path}"})
                    return
                started = time.perf_counter()
                code = 200
                try:
                    length = int(self.headers.get("Content-Length", "0"))
                    body = json.loads(self.rfile.read(length) or b"{}")
                    result = server.predict_rows(body["instances"])
                    server.rows.labels(server.name).inc(len(result["predictions"]))
                    self._json(200, result)
                except (KeyError, ValueError, TypeError) as exc:
                    code = 400
                    self._json(400, {"error": f"bad request: {exc}"})
                except Exception as exc:  # noqa: BLE001 - answer and count it as a server error
                    code = 500
                    self._json(500, {"error": f"{type(exc).__name__}: {exc}"})
                finally:
                    server.latency.labels(server.name).observe(time.perf_counter() - started)
                    server.requests.labels(server.name, str(code)).inc()

        return Handler
