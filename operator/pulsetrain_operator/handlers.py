"""The Kopf handlers: thin glue from watch events to one reconcile loop per pipeline.

Why this shape: every `TrainingPipeline` gets one asyncio task (`PipelineLoop`) that reconciles it
whenever something relevant changes (the pipeline itself, or one of its pods: Kopf routes pod events
here by the `pulsetrain.dev/pipeline` label) and at least every few seconds while it runs (to copy the
chief's progress into the status within the 10 s the users expect). One task per pipeline means one
writer per pipeline: no two reconciles of the same pipeline ever race, and wake-ups that arrive during
a reconcile are coalesced into the next one. Reconciles are level-triggered and rebuild everything
from the resource's status and its pods, so an operator restart simply resumes (Kopf lists every
pipeline on start, which starts its loop). The loop keeps the newest copy of its pipeline (from the
watch, or from its own status patch) so a reconcile need not read it back; child writes and status
writes run on separate thread pools (see `reconciler`), the status pool smaller, so that a burst of
new pipelines gets its pods first. No Kopf state is stored on the resource and no finalizer is
added: children are owned, and the garbage collector removes them with the pipeline.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf
from aiohttp import web

from pulsetrain_operator.kube import GROUP, PLURAL, VERSION, Kube, api_client
from pulsetrain_operator.metrics import OperatorMetrics, serve_metrics
from pulsetrain_operator.names import PIPELINE_LABEL
from pulsetrain_operator.reconciler import act, newest, record
from pulsetrain_operator.settings import Settings
from pulsetrain_operator.status import FINISHED_PHASES

log = logging.getLogger("pulsetrain_operator")
IDLE_RECHECK_SECONDS = 30.0
"""How often a pipeline that is not running is looked at when nothing wakes it (TTL, safety net)."""
ERROR_RETRY_SECONDS = (1.0, 60.0)
RECONCILE_THREADS = 16
"""Reconciles that may run their first half (reads, child writes) at once, each a blocking Kubernetes
client call chain in a thread."""
RECORD_THREADS = 4
"""Status patches and events that may be written at once (the second half of a reconcile)."""


class Runtime:
    """What the handlers share: settings, the API client, the thread pool, metrics, the loops."""

    def __init__(self) -> None:
        self.settings = Settings.from_env()
        self.metrics = OperatorMetrics()
        self.kube = Kube(api_client(on_request=self.metrics.api_request))
        self.executor = ThreadPoolExecutor(max_workers=RECONCILE_THREADS, thread_name_prefix="reconcile")
        self.record_executor = ThreadPoolExecutor(max_workers=RECORD_THREADS, thread_name_prefix="record")
        self.loops: dict[tuple[str, str], PipelineLoop] = {}
        self.metrics_runner: web.AppRunner | None = None


RUNTIME: Runtime | None = None


def runtime() -> Runtime:
    if RUNTIME is None:
        raise RuntimeError("the operator has not started (no kopf.on.startup yet)")
    return RUNTIME


class PipelineLoop:
    """Reconciles one pipeline whenever woken, and periodically; ends when the pipeline is gone."""

    def __init__(self, rt: Runtime, namespace: str, name: str) -> None:
        self.rt, self.namespace, self.name = rt, namespace, name
        self.woken = asyncio.Event()
        self.woken.set()
        self.known: Mapping[str, Any] | None = None
        """The newest copy of the pipeline seen; None → the next reconcile reads it."""
        self.forgotten = 0
        """How many times the known copy was dropped (a reconcile's answer from before is then stale)."""
        self.seen_version: str | None = None
        """The resourceVersion the last reconcile ended with (its own status patch's, usually): the watch
        event that echoes it brings nothing new and must not start another reconcile."""
        self.task = asyncio.create_task(self.run(), name=f"pipeline:{namespace}/{name}")

    def wake(self, pipeline: Mapping[str, Any] | None = None) -> None:
        """Reconcile soon; with `pipeline`, a copy of it from the watch (unless it is our own write's echo:
        without this, every status patch would start the next reconcile at once, and a running pipeline
        whose figures change on every read would be reconciled back to back)."""
        self.remember(pipeline)
        if pipeline is not None and self.seen_version is not None and _version(pipeline) == self.seen_version:
            return
        self.woken.set()

    def remember(self, pipeline: Mapping[str, Any] | None) -> None:
        self.known = newest(self.known, pipeline)

    def forget(self) -> None:
        self.known = None
        self.forgotten += 1

    def current(self) -> Mapping[str, Any] | None:
        return self.known

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        context = {"pipeline": self.name, "namespace": self.namespace}
        while True:
            await self.woken.wait()
            self.woken.clear()
            forgotten = self.forgotten
            try:
                acted = await loop.run_in_executor(self.rt.executor, act, self.rt.kube, self.rt.settings,
                                                   self.namespace, self.name, self.current)
                outcome = await loop.run_in_executor(self.rt.record_executor, record, self.rt.kube, acted)
            except Exception as exc:  # anything: log it, count it, retry with back-off, never kill the loop
                failures += 1
                self.rt.metrics.failed()
                delay = min(ERROR_RETRY_SECONDS[0] * 2 ** (failures - 1), ERROR_RETRY_SECONDS[1])
                log.error("reconcile failed (retry in %.0f s): %s", delay, exc, exc_info=True, extra=context)
                self.forget()  # read the pipeline afresh: a failed write leaves the known copy unsure
            else:
                failures = 0
                if forgotten == self.forgotten:  # else the pipeline was deleted meanwhile: keep nothing
                    self.remember(outcome.pipeline)
                    self.seen_version = _version(outcome.pipeline) if outcome.pipeline is not None else None
                self.rt.metrics.reconciled(self.namespace, self.name, outcome.seconds, outcome.phase,
                                           outcome.restarts, outcome.writes)
                if not outcome.exists:
                    self.rt.metrics.forget(self.namespace, self.name)
                    self.rt.loops.pop((self.namespace, self.name), None)
                    return
                # only a running chief and running predictors have figures to copy; every other change
                # arrives as a pod event
                poll = (self.rt.settings.progress_interval_seconds if outcome.phase == "Running" or outcome.serving
                        else IDLE_RECHECK_SECONDS)
                delay = min(outcome.requeue_after or poll, poll)
                if outcome.phase in FINISHED_PHASES and not outcome.serving:
                    # nothing left to watch but its own events and its pods' (a TTL asks for its time): a
                    # cluster's worth of finished pipelines must not each list their pods every 30 s for ever
                    delay = outcome.requeue_after
            try:
                await asyncio.wait_for(self.woken.wait(), timeout=delay)
            except TimeoutError:
                self.woken.set()


def _version(pipeline: Mapping[str, Any]) -> str | None:
    version = (pipeline.get("metadata") or {}).get("resourceVersion")
    return str(version) if version is not None else None


def _wake(namespace: str, name: str, pipeline: Mapping[str, Any] | None = None, deleted: bool = False) -> None:
    rt = runtime()
    key = (namespace, name)
    existing = rt.loops.get(key)
    if existing is None or existing.task.done():
        rt.loops[key] = existing = PipelineLoop(rt, namespace, name)
    if deleted:
        existing.forget()  # the next reconcile reads the pipeline, finds it gone and ends the loop
    existing.wake(pipeline)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    global RUNTIME
    RUNTIME = Runtime()
    settings.posting.enabled = False  # the operator posts its own, meaningful Events
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # The pod handler's label filter runs here, after the watch has brought every pod of the cluster (or of
    # the watched namespaces); this one runs in the API server, so only the pipelines' pods are sent.
    settings.watching.label_selectors["", "v1", "pods"] = PIPELINE_LABEL
    if RUNTIME.settings.metrics_port:
        RUNTIME.metrics_runner = await serve_metrics(RUNTIME.metrics, RUNTIME.settings.metrics_port)
    log.info("pulsetrain operator started (worker image %s, %s)", RUNTIME.settings.worker_image,
             f"namespaces {', '.join(RUNTIME.settings.namespaces)}" if RUNTIME.settings.namespaces else "cluster-wide")


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    rt = runtime()
    for pipeline_loop in list(rt.loops.values()):
        pipeline_loop.task.cancel()
    await asyncio.gather(*(p.task for p in rt.loops.values()), return_exceptions=True)
    rt.executor.shutdown(wait=False, cancel_futures=True)
    rt.record_executor.shutdown(wait=False, cancel_futures=True)
    if rt.metrics_runner is not None:
        await rt.metrics_runner.cleanup()


@kopf.on.event(GROUP, VERSION, PLURAL)
async def pipeline_event(event: kopf.RawEvent, name: str | None, namespace: str | None, **_: Any) -> None:
    if name and namespace:
        deleted = event.get("type") == "DELETED"
        _wake(namespace, name, None if deleted else event.get("object"), deleted=deleted)


@kopf.on.event("", "v1", "pods", labels={PIPELINE_LABEL: kopf.PRESENT})
async def pod_event(labels: kopf.Labels, namespace: str | None, **_: Any) -> None:
    if namespace and (pipeline := labels.get(PIPELINE_LABEL)) and (namespace, pipeline) in runtime().loops:
        _wake(namespace, pipeline)


@kopf.on.probe(id="pipelines")
def pipelines_probe(**_: Any) -> int:
    """Shown on the liveness endpoint: how many pipelines have a reconcile loop."""
    return len(runtime().loops)
