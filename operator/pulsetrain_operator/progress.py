"""Reads a worker's or a predictor's progress document over HTTP, the way the operator learns how they go.

Why this exists: workers and predictors hold no credentials for the Kubernetes API (least privilege), so
the operator pulls `GET http://{pod IP}:{metricsPort}/progress` from the chief (→ `status.progress`) and
from every ready predictor (→ `status.serving`). A pod that does not answer in time is not an error: the
status keeps the last known figures.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import TypeVar

from pulsetrain.predict_progress import PredictorProgress
from pulsetrain.progress_doc import ProgressDocument

log = logging.getLogger(__name__)
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
Document = TypeVar("Document")


def _read(ip: str, port: int, timeout: float, parse: Callable[[bytes], Document]) -> Document | None:
    host = f"[{ip}]" if ":" in ip else ip
    url = f"http://{host}:{port}/progress"
    try:
        with _NO_PROXY.open(url, timeout=timeout) as response:
            return parse(response.read(1 << 20))
    except (OSError, urllib.error.URLError, ValueError) as exc:
        log.debug("progress from %s unavailable: %s", url, exc)
        return None


def read_progress(ip: str, port: int, timeout: float) -> ProgressDocument | None:
    """A training worker's progress document, or None if it cannot be had right now (logged at debug level)."""
    return _read(ip, port, timeout, ProgressDocument.from_json)


def read_predictor_progress(ip: str, port: int, timeout: float) -> PredictorProgress | None:
    """A predictor's progress document, or None if it cannot be had right now."""
    return _read(ip, port, timeout, PredictorProgress.from_json)
