"""The worker's HTTP endpoint: Prometheus `/metrics`, the `/progress` document, health and readiness.

Why this exists: the operator reads the chief's progress document and Prometheus scrapes every worker,
neither with API access to the worker; the kubelet probes `/healthz` and `/readyz`. It runs on the
standard library's threading server in a daemon thread, so a slow scrape never blocks training and
a hung scrape never keeps the process alive at exit. Readiness is false while the worker is starting
or has failed, so Service endpoints and `kubectl get` show which workers are really up. The predictor
(`pulsetrain.predictor`) serves its own telemetry through the same endpoint, with its own not-ready states.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Set
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Protocol

from pulsetrain.progress_doc import State

log = logging.getLogger(__name__)

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
NOT_READY: frozenset[State] = frozenset({"starting", "failed"})
ENDPOINTS = {
    "/metrics": "Prometheus metrics (text format 0.0.4)",
    "/progress": "the JSON progress document the operator reads",
    "/healthz": "liveness: 200 while the process serves HTTP",
    "/readyz": "readiness: 200 unless the worker is starting or has failed",
}


class Snapshot(Protocol):
    """A progress document: the training worker's `ProgressDocument` or the predictor's `PredictorProgress`."""

    @property
    def state(self) -> str: ...

    @property
    def message(self) -> str: ...

    def to_json(self) -> str: ...


class Reporter(Protocol):
    """What the endpoint reads: the worker's `Telemetry` or the predictor's `PredictorTelemetry`."""

    def prometheus_text(self) -> str: ...

    def snapshot(self) -> Snapshot: ...


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    telemetry: Reporter
    not_ready: Set[str]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def _reply(self, status: int, content_type: str, body: str, head_only: bool = False) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if not head_only:
            self.wfile.write(data)

    def _route(self, head_only: bool) -> None:
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        telemetry = self.server.telemetry
        text = "text/plain; charset=utf-8"
        try:
            if path == "/metrics":
                self._reply(200, PROMETHEUS_CONTENT_TYPE, telemetry.prometheus_text(), head_only)
            elif path == "/progress":
                self._reply(200, "application/json", telemetry.snapshot().to_json(), head_only)
            elif path == "/healthz":
                self._reply(200, text, "ok\n", head_only)
            elif path == "/readyz":
                doc = telemetry.snapshot()
                detail = f"{doc.state}: {doc.message}" if doc.message else doc.state
                if doc.state in self.server.not_ready:
                    self._reply(503, text, f"not ready ({detail})\n", head_only)
                else:
                    self._reply(200, text, f"ready ({detail})\n", head_only)
            else:
                listing = "".join(f"  {name:<10} {what}\n" for name, what in ENDPOINTS.items())
                self._reply(404, text, f"no such endpoint {path!r}; this worker serves:\n{listing}", head_only)
        except Exception:  # a broken reading must not kill the server thread; report it to the caller
            log.exception("serving %s failed", path)
            self._reply(500, text, "internal error; see the worker's log\n", head_only)

    def do_GET(self) -> None:
        self._route(head_only=False)

    def do_HEAD(self) -> None:
        self._route(head_only=True)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s " + format, self.address_string(), *args)


class TelemetryServer:
    """A running endpoint; `port` is the bound port (useful with port 0). Close it, or use `with`."""

    def __init__(self, telemetry: Reporter, host: str, port: int, not_ready: Set[str] = NOT_READY) -> None:
        self._server = _Server((host, port), _Handler)
        self._server.telemetry = telemetry
        self._server.not_ready = not_ready
        self.host = host
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name=f"pulsetrain-http-{self.port}", daemon=True)
        self._thread.start()
        self._closed = False

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"http://{host}:{self.port}"

    def close(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> TelemetryServer:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


def serve(telemetry: Reporter, host: str = "0.0.0.0", port: int = 9100,
          not_ready: Set[str] = NOT_READY) -> TelemetryServer:
    """Start serving `telemetry` on `host:port` in a daemon thread (port 0: any free port); `/readyz` answers
    503 while the snapshot's state is in `not_ready`."""
    server = TelemetryServer(telemetry, host, port, not_ready)
    log.info("serving /metrics and /progress on %s:%d", host, server.port)
    return server
