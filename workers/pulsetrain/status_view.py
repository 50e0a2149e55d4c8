"""`pulsetrain status NAME`: a pipeline's status from a cluster, readable in one screen.

Why this exists: `kubectl get tp` shows five columns and `kubectl get tp -o yaml` shows everything in
the order the API stores it; someone watching a training run wants the phase and why, how far it got,
what it learned, where the model is, what the predictors answer (`status.serving`) and what changed when,
without reading YAML. The status itself is written by the operator (`pulsetrain_operator.status`); this
module only reads and presents it. The Kubernetes client is imported when the command runs, so
`pulsetrain produce` and `pulsetrain run` work without it. `render` is pure (status in, text out);
`fetch` is the one API call, with errors that say what is missing: the cluster configuration, the CRD,
or the pipeline.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any, cast

from pulsetrain.progress_doc import parse_rfc3339
from pulsetrain_operator import crd


class StatusError(RuntimeError):
    """The status cannot be shown; the message says what is missing and how to fix it."""


def age(timestamp: str | None, now: float) -> str:
    """`45s`, `12m`, `3h`, `2d` since an RFC 3339 time; `-` when there is none."""
    if not timestamp:
        return "-"
    try:
        seconds = max(0, int(now - parse_rfc3339(timestamp)))
    except ValueError:
        return "?"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _number(value: Any, digits: int = 4) -> str:
    return f"{value:,.{digits}f}" if isinstance(value, int | float) and not isinstance(value, bool) else "-"


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else "-"


def serving_rows(serving: Mapping[str, Any]) -> list[tuple[str, str]]:
    """`status.serving` as (label, text) rows: the predictors, the version they serve, their answers."""
    version = (f"model version {serving['modelVersion']}" if serving.get("modelVersion") is not None
               else "no model yet")
    message = f" ({serving['message']})" if serving.get("message") else ""
    return [
        ("Serving", f"{_count(serving.get('readyReplicas', 0))}/{_count(serving.get('replicas', 0))} predictors "
                    f"ready, {version}{message}"),
        ("Answers", f"{_count(serving.get('predictions', 0))} answered "
                    f"({_number(serving.get('predictionsPerSecond', 0), 1)}/s), "
                    f"{_count(serving.get('deadLettered', 0))} dead-lettered"),
    ]


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in rows]


def render(resource: Mapping[str, Any], now: float) -> str:
    """The pipeline's status as labelled lines and a conditions table."""
    meta = resource.get("metadata") or {}
    status: Mapping[str, Any] = resource.get("status") or {}
    spec: Mapping[str, Any] = resource.get("spec") or {}
    lines: list[str] = []

    def row(label: str, text: str) -> None:
        lines.append(f"{label + ':':<13}{text}")

    row("Name", f"{meta.get('name', '?')}")
    row("Namespace", f"{meta.get('namespace', '?')}")
    phase = status.get("phase") or "(no status yet: is the operator running?)"
    reason = f" ({status['reason']})" if status.get("reason") else ""
    row("Phase", f"{phase}{reason}")
    if status.get("message"):
        row("Message", str(status["message"]))
    if "attempt" in status or "restarts" in status:
        backoff = f", next attempt after {status['nextAttemptAfter']}" if status.get("nextAttemptAfter") else ""
        row("Attempt", f"{status.get('attempt', '-')} (restarts {status.get('restarts', 0)}, backoff limit "
                       f"{(spec.get('runPolicy') or {}).get('backoffLimit', '-')}){backoff}")
    workers: Mapping[str, Any] = status.get("workers") or {}
    desired = workers.get("desired", (spec.get("training") or {}).get("workers", "-"))
    if workers or status.get("workersReady"):
        counts = ", ".join(f"{key} {workers[key]}" for key in ("running", "succeeded", "failed") if key in workers)
        row("Workers", f"{workers.get('ready', 0)}/{desired} ready" + (f" ({counts})" if counts else ""))
    progress: Mapping[str, Any] = status.get("progress") or {}
    if progress:
        metrics = ", ".join(f"{k} {_number(v)}" for k, v in sorted((progress.get("metrics") or {}).items()))
        row("Progress", f"step {progress.get('step', 0):,}, {progress.get('samples', 0):,} samples, loss "
                        f"{_number(progress.get('loss'))}" + (f", {metrics}" if metrics else "") +
            f", {_number(progress.get('samplesPerSecond'), 0)} samples/s")
        row("Messages", f"{progress.get('messagesAcknowledged', 0):,} acknowledged, "
                        f"{progress.get('deadLettered', 0):,} dead-lettered")
        state = progress.get("state")
        if state:
            row("Chief", f"{state}" + (f": {progress['message']}" if progress.get("message") else ""))
        if "lastCheckpointStep" in progress:
            row("Checkpoint", f"step {progress['lastCheckpointStep']:,}, "
                              f"{age(progress.get('lastCheckpointTime'), now)} ago")
    model: Mapping[str, Any] = status.get("model") or {}
    if model:
        row("Model", f"version {model.get('version', '-')} at {model.get('exportPath', '-')}")
    serving: Mapping[str, Any] = status.get("serving") or {}
    if serving:
        for label, text in serving_rows(serving):
            row(label, text)
    row("Started", f"{status.get('startTime', '-')} ({age(status.get('startTime'), now)} ago)"
        if status.get("startTime") else "-")
    if status.get("completionTime"):
        row("Completed", f"{status['completionTime']} ({age(status['completionTime'], now)} ago)")
    conditions: Sequence[Mapping[str, Any]] = status.get("conditions") or []
    if conditions:
        lines.append("Conditions:")
        rows = [["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"]]
        rows += [[str(c.get("type", "")), str(c.get("status", "")), str(c.get("reason", "")),
                  age(c.get("lastTransitionTime"), now), str(c.get("message", ""))] for c in conditions]
        lines += _table(rows)
    return "\n".join(lines)


def status_json(resource: Mapping[str, Any]) -> str:
    """The raw status, as the API server stores it."""
    return json.dumps(resource.get("status") or {}, indent=2, sort_keys=True)


def _api(kubeconfig: str | None, context: str | None) -> tuple[Any, str]:
    """A CustomObjectsApi for the configured cluster and the current context's namespace."""
    try:
        from kubernetes import client
        from kubernetes import config as untyped_config
        from kubernetes.config.config_exception import ConfigException
    except ImportError:
        raise StatusError("pulsetrain status needs the Kubernetes client: pip install 'pulsetrain[operator]'") \
            from None
    config = cast(Any, untyped_config)  # the loaders carry no type hints
    namespace = "default"
    configuration = client.Configuration()
    try:
        if kubeconfig or os.environ.get("KUBECONFIG") or os.path.exists(os.path.expanduser("~/.kube/config")):
            config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=configuration)
            contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
            chosen = next((c for c in contexts if c.get("name") == context), active) if context else active
            namespace = ((chosen or {}).get("context") or {}).get("namespace") or namespace
        else:
            config.load_incluster_config(client_configuration=configuration)
    except (ConfigException, OSError, ValueError) as exc:
        raise StatusError(f"no cluster to ask: {exc} (give --kubeconfig or set KUBECONFIG)") from None
    return client.CustomObjectsApi(client.ApiClient(configuration)), namespace


def fetch(name: str, namespace: str | None = None, *, kubeconfig: str | None = None, context: str | None = None,
          group: str = crd.GROUP, version: str = crd.VERSION, plural: str = crd.PLURAL) -> dict[str, Any]:
    """The pipeline object from the cluster; `StatusError` says whether the CRD or the pipeline is missing."""
    api, default_namespace = _api(kubeconfig, context)
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    namespace = namespace or default_namespace
    try:
        found: dict[str, Any] = api.get_namespaced_custom_object(group, version, namespace, plural, name)
        return found
    except ApiException as exc:
        try:
            body = json.loads(exc.body or "{}")
        except ValueError:
            body = {}
        if exc.status == 404 and (body.get("details") or {}).get("name") == name:
            raise StatusError(f'TrainingPipeline "{name}" not found in namespace "{namespace}" '
                              f"(kubectl get {plural} -n {namespace} lists the pipelines there)") from None
        if exc.status == 404:
            raise StatusError(f"the cluster does not serve {plural}.{group}/{version}: the TrainingPipeline CRD "
                              "is not installed (kubectl apply -f manifests/crd/, or install the Helm chart)") \
                from None
        message = body.get("message") or exc.reason
        raise StatusError(f"the API server refused to read {plural}/{name} in {namespace}: {exc.status} "
                          f"{message}") from None
    except (HTTPError, OSError) as exc:
        raise StatusError(f"cannot reach the API server: {exc}") from None
