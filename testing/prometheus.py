"""A real Prometheus server (Debian's package) for tests that check metrics with PromQL.

The binaries come from ``hack/prometheus.sh`` (``apt-get download`` + ``dpkg-deb -x`` into
``~/.cache/kubeforge/prometheus-<version>/``). :class:`PrometheusServer` writes a configuration
with static scrape targets and rule files, starts ``prometheus`` on a free loopback port with its
TSDB in a temporary directory, waits for ``/-/ready`` and answers PromQL through the HTTP API.
Like the control plane, the server runs in its own process group with a parent-death signal.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kubeforge.testing.controlplane import (
    _die_with_parent,
    free_port,
    repo_root,
    stop_process_groups,
)


class PrometheusError(RuntimeError):
    """Prometheus could not be installed or started, or refused a query."""


def prometheus_bin_dir() -> Path:
    """Install (or reuse from the cache) Debian's prometheus; return its binaries' directory."""
    script = repo_root() / "hack" / "prometheus.sh"
    proc = subprocess.run(
        ["bash", str(script)], stdout=subprocess.PIPE, stderr=sys.stderr, text=True, check=False
    )
    if proc.returncode != 0:
        raise PrometheusError(f"{script} failed with exit code {proc.returncode}")
    return Path(proc.stdout.strip().splitlines()[-1])


@dataclass
class PrometheusServer:
    """One Prometheus scraping static targets every ``interval`` and evaluating ``rule_files``.

    Args:
        bin_dir: Directory holding the ``prometheus`` binary.
        targets: Scrape job name -> ``host:port`` targets (``/metrics`` on each).
        rule_files: Rule files to load (checked by Prometheus at start).
        interval: Scrape and rule evaluation interval, as a Prometheus duration.
    """

    bin_dir: Path
    targets: dict[str, list[str]]
    rule_files: list[Path] = field(default_factory=list)
    interval: str = "1s"
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="kubeforge-prom-")))
    port: int = 0
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the server."""
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> PrometheusServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def config(self) -> dict[str, Any]:
        """The ``prometheus.yml`` this server runs with."""
        return {
            "global": {"scrape_interval": self.interval, "evaluation_interval": self.interval},
            "rule_files": [str(path) for path in self.rule_files],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": list(targets)}]}
                for job, targets in self.targets.items()
            ],
        }

    def start(self, timeout: float = 60.0) -> None:
        """Start the server and wait until ``/-/ready`` answers 200."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "prometheus.yml"
        config.write_text(yaml.safe_dump(self.config()))
        self.port = free_port()
        log = (self.workdir / "prometheus.log").open("wb")
        self._proc = subprocess.Popen(  # noqa: S603 - Debian's binary, our arguments
            [
                str(self.bin_dir / "prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - needed for the parent-death signal
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise PrometheusError(
                    f"prometheus exited with code {self._proc.returncode}:\n{self.log_tail()}"
                )
            with (
                contextlib.suppress(urllib.error.URLError, OSError),
                urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp,
            ):
                if resp.status == 200:
                    return
            time.sleep(0.2)
        self.stop()
        raise PrometheusError(f"prometheus not ready after {timeout:.0f}s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Stop the server and remove its TSDB and configuration."""
        if self._proc is not None:
            stop_process_groups([self._proc])
        self._proc = None
        shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        """Return the last lines Prometheus logged."""
        path = self.workdir / "prometheus.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def api(self, path: str, **params: str) -> Any:
        """GET ``/api/v1/<path>``; return ``data``, or raise with Prometheus's error message."""
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                body = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read() or b"{}")
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Evaluate an instant query now; return the result (a vector's samples, else a list).

        Raises:
            PrometheusError: Prometheus refused the expression (a parse or evaluation error).
        """
        data = self.api("query", query=promql)
        result = data["result"]
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": result}]
        return list(result)

    def value(self, promql: str) -> float | None:
        """The single value of an instant query, or None when it returns nothing."""
        result = self.query(promql)
        if not result:
            return None
        if len(result) > 1:
            raise PrometheusError(f"{promql} returned {len(result)} series, expected one")
        return float(result[0]["value"][1])

    def alerts(self) -> list[dict[str, Any]]:
        """Pending and firing alerts (``/api/v1/alerts``)."""
        return list(self.api("alerts")["alerts"])

    def targets_up(self) -> dict[str, str]:
        """Scrape URL -> health (``up``, ``down`` or ``unknown``) of every active target."""
        return {t["scrapeUrl"]: t["health"] for t in self.api("targets")["activeTargets"]}


# What Grafana puts in for its built-in interval variables when a test runs a dashboard query.
GRAFANA_INTERVALS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression of a Grafana dashboard's panels (rows' nested panels included)."""
    panels = [p for top in dashboard.get("panels", []) for p in [top, *top.get("panels", [])]]
    return [t["expr"] for p in panels for t in p.get("targets", []) if t.get("expr")]


def substitute_variables(expr: str, variables: dict[str, str]) -> str:
    """``expr`` with Grafana's interval variables and ``variables`` (name -> value) filled in.

    Raises:
        PrometheusError: A ``$variable`` is left that neither set names.
    """
    values = {**GRAFANA_INTERVALS, **{f"${name}": value for name, value in variables.items()}}
    for var in sorted(values, key=len, reverse=True):  # $__rate_interval before $__interval
        expr = expr.replace(var, values[var])
    if "$" in expr:
        raise PrometheusError(f"unknown template variable left in {expr!r}")
    return expr
