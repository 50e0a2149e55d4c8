"""Reads a worker's progress document over HTTP, the way the operator learns how training goes.

Why this exists: workers hold no credentials for the Kubernetes API (least privilege), so the operator
pulls `GET http://{pod IP}:{metricsPort}/progress` from the chief and copies it into `status.progress`.
A worker that does not answer in time is not an error: the status keeps the last known progress.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.request

from pulsetrain.progress_doc import ProgressDocument

log = logging.getLogger(__name__)
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def read_progress(ip: str, port: int, timeout: float) -> ProgressDocument | None:
    """The worker's progress document, or None if it cannot be had right now (logged at debug level)."""
    host = f"[{ip}]" if ":" in ip else ip
    url = f"http://{host}:{port}/progress"
    try:
        with _NO_PROXY.open(url, timeout=timeout) as response:
            return ProgressDocument.from_json(response.read(1 << 20))
    except (OSError, urllib.error.URLError, ValueError) as exc:
        log.debug("progress from %s unavailable: %s", url, exc)
        return None
