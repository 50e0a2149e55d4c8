"""The operator's own settings, read once from the environment (the chart and manifests set them).

Why this exists: like Kubeflow trainer's config-from-environment dataclasses, every knob the operator
has is a typed, defaulted field here, documented where it is read, instead of `os.environ` lookups
scattered through handlers.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from pulsetrain_operator.crd_schema import DNS_SUBDOMAIN_PATTERN

NAMESPACE_PATTERN: Final = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"


class SettingsError(ValueError):
    """An operator environment variable holds a value it cannot use; the message names the variable."""


def _names(environ: Mapping[str, str], name: str, pattern: str, what: str) -> tuple[str, ...]:
    """A comma-separated list of Kubernetes names; `SettingsError` naming the variable for one that is not `what`."""
    names = tuple(n.strip() for n in environ.get(name, "").split(",") if n.strip())
    bad = [n for n in names if not re.fullmatch(pattern, n)]
    if bad:
        raise SettingsError(f"{name}: {', '.join(map(repr, bad))} is not {what}")
    return names


def _number(environ: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}: {raw!r} is not a number") from None
    if value < minimum:
        raise SettingsError(f"{name}: {raw} is below the minimum {minimum:g}")
    return value


@dataclass(frozen=True, kw_only=True)
class Settings:
    worker_image: str = "ghcr.io/pulsetrain/worker:0.1.0"
    """PULSETRAIN_WORKER_IMAGE: the worker image used when a pipeline's `spec.worker.image` is empty."""
    worker_image_pull_secrets: tuple[str, ...] = ()
    """PULSETRAIN_WORKER_IMAGE_PULL_SECRETS: comma-separated names of the Secrets worker and predictor pods pull
    their image with when a pipeline's `spec.worker.imagePullSecrets` is empty (each in the pipeline's namespace)."""
    namespaces: tuple[str, ...] = ()
    """PULSETRAIN_NAMESPACES: comma-separated namespaces to watch; empty means the whole cluster."""
    progress_interval_seconds: float = 3.0
    """PULSETRAIN_PROGRESS_INTERVAL: how often a running pipeline's chief progress document is read."""
    progress_timeout_seconds: float = 2.0
    """PULSETRAIN_PROGRESS_TIMEOUT: how long one read of a progress document may take."""
    metrics_port: int = 8080
    """PULSETRAIN_OPERATOR_METRICS_PORT: the operator's Prometheus `/metrics` port (0 turns it off)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        return cls(
            worker_image=env.get("PULSETRAIN_WORKER_IMAGE", "").strip() or cls.worker_image,
            worker_image_pull_secrets=_names(env, "PULSETRAIN_WORKER_IMAGE_PULL_SECRETS", DNS_SUBDOMAIN_PATTERN,
                                             "a Secret name"),
            namespaces=_names(env, "PULSETRAIN_NAMESPACES", NAMESPACE_PATTERN, "a namespace name"),
            progress_interval_seconds=_number(env, "PULSETRAIN_PROGRESS_INTERVAL", cls.progress_interval_seconds, 0.1),
            progress_timeout_seconds=_number(env, "PULSETRAIN_PROGRESS_TIMEOUT", cls.progress_timeout_seconds, 0.1),
            metrics_port=int(_number(env, "PULSETRAIN_OPERATOR_METRICS_PORT", cls.metrics_port, 0)),
        )
