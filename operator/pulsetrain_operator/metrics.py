"""The operator's Prometheus metrics: reconciles, errors, API requests, pipelines by phase, restarts.

Why this exists: an operator that silently stops reconciling looks healthy from the outside; these
numbers (scraped from `/metrics`) show it working, failing, or falling behind. They are kept in plain
dicts and rendered in the Prometheus text format by hand: a handful of series needs no client library.
"""

from __future__ import annotations

import threading
from collections import defaultdict

from aiohttp import web


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class OperatorMetrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reconciles = 0
        self.errors = 0
        self.reconcile_seconds = 0.0
        self.api_writes = 0
        self.api_requests: dict[str, int] = defaultdict(int)
        self.phases: dict[tuple[str, str], str] = {}
        self.restarts: dict[tuple[str, str], int] = {}

    def reconciled(self, namespace: str, name: str, seconds: float, phase: str | None, restarts: int,
                   writes: int) -> None:
        with self._lock:
            self.reconciles += 1
            self.reconcile_seconds += seconds
            self.api_writes += writes
            self.phases[(namespace, name)] = phase or "Pending"
            self.restarts[(namespace, name)] = restarts

    def api_request(self, verb: str) -> None:
        """One Kubernetes API request sent by the operator's own client (any thread)."""
        with self._lock:
            self.api_requests[verb] += 1

    def failed(self) -> None:
        with self._lock:
            self.errors += 1

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self.phases.pop((namespace, name), None)
            self.restarts.pop((namespace, name), None)

    def render(self) -> str:
        with self._lock:
            by_phase: dict[str, int] = defaultdict(int)
            for phase in self.phases.values():
                by_phase[phase] += 1
            lines = [
                "# HELP pulsetrain_operator_reconciles_total Reconciles run.",
                "# TYPE pulsetrain_operator_reconciles_total counter",
                f"pulsetrain_operator_reconciles_total {self.reconciles}",
                "# HELP pulsetrain_operator_reconcile_errors_total Reconciles that raised an error.",
                "# TYPE pulsetrain_operator_reconcile_errors_total counter",
                f"pulsetrain_operator_reconcile_errors_total {self.errors}",
                "# HELP pulsetrain_operator_reconcile_seconds_total Time spent reconciling.",
                "# TYPE pulsetrain_operator_reconcile_seconds_total counter",
                f"pulsetrain_operator_reconcile_seconds_total {self.reconcile_seconds:.6f}",
                "# HELP pulsetrain_operator_api_writes_total Kubernetes API writes made by reconciles.",
                "# TYPE pulsetrain_operator_api_writes_total counter",
                f"pulsetrain_operator_api_writes_total {self.api_writes}",
                "# HELP pulsetrain_operator_api_requests_total Kubernetes API requests sent by the operator's "
                "reconciles, by HTTP method (Kopf's own watches and lists are not included).",
                "# TYPE pulsetrain_operator_api_requests_total counter",
            ]
            lines += [f'pulsetrain_operator_api_requests_total{{verb="{_escape(v)}"}} {n}'
                      for v, n in sorted(self.api_requests.items())]
            lines += ["# HELP pulsetrain_operator_pipelines Pipelines known to the operator, by phase.",
                      "# TYPE pulsetrain_operator_pipelines gauge"]
            lines += [f'pulsetrain_operator_pipelines{{phase="{_escape(p)}"}} {n}' for p, n in sorted(by_phase.items())]
            lines += ["# HELP pulsetrain_pipeline_restarts Gang restarts of each pipeline.",
                      "# TYPE pulsetrain_pipeline_restarts gauge"]
            lines += [f'pulsetrain_pipeline_restarts{{namespace="{_escape(ns)}",name="{_escape(n)}"}} {r}'
                      for (ns, n), r in sorted(self.restarts.items())]
        return "\n".join(lines) + "\n"


async def serve_metrics(metrics: OperatorMetrics, port: int) -> web.AppRunner:
    """Start `GET /metrics` on `port` (all interfaces); the caller cleans the runner up."""
    async def handle(_: web.Request) -> web.Response:
        return web.Response(text=metrics.render(), content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})

    app = web.Application()
    app.router.add_get("/metrics", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()
    return runner
