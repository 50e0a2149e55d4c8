"""`python -m bench.operator_bench [--pipelines N]`: how fast the operator turns N pipelines into pods.

Why this exists: the operator's goals are about scale, not correctness (the e2e tests cover that):
with N `TrainingPipeline`s applied at once, every pipeline's worker pods should exist within 5 s (p99)
and the operator should stay under 250 MB of memory. Those numbers only mean something next to what the
API server and this machine allow at all, so the same run also measures the floor: the same N
pipelines, their Service, ConfigMap and worker pods created by this script directly, with the
operator's builders, its client (`pulsetrain_operator.kube`, its ServiceAccount's token) and as many
threads as the operator reconciles with, but no watches, no event routing and no status writes.

What is measured, per pipeline: from the moment its create call returned to the moment a watch on the
namespace first saw the last of its worker pods. The operator runs as its own process, started as the
e2e tests start it (`tests.e2e.operator_harness`) but watching only the benchmark's namespace, so it
never touches pipelines an e2e run beside it owns. Its RSS is sampled from `/proc` throughout, and its
Kubernetes API requests are read from its `/metrics` (`pulsetrain_operator_api_requests_total`, which
counts what its reconciles send; Kopf's own watch and list requests are not counted).

No worker ever runs: every pipeline's pods select a node label no node has
(`pulsetrain.dev/benchmark: no-such-node`) and tolerate a day of Pending, so they stay unschedulable,
and the run stops at once should one be bound to a node. The namespaces are deleted at the end, also
when the run fails. Needs the running test bed (`python -m tests.cluster up`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import kubernetes
import numpy as np
from kubernetes.client import ApiClient, Configuration, CoreV1Api, CustomObjectsApi
from kubernetes.watch import watch as kube_watch

from bench.run import cpu_seconds
from pulsetrain_operator.builders.configmap import worker_config_map
from pulsetrain_operator.builders.pod import worker_pod
from pulsetrain_operator.builders.service import worker_service
from pulsetrain_operator.handlers import RECONCILE_THREADS
from pulsetrain_operator.kube import CONNECTION_POOL_SIZE, GROUP, PLURAL, VERSION, CountingApiClient, Kube
from pulsetrain_operator.metrics import OperatorMetrics
from pulsetrain_operator.names import PIPELINE_LABEL
from pulsetrain_operator.settings import Settings
from tests.conftest import Cluster
from tests.e2e.operator_harness import WORKER_IMAGE, OperatorProcess, install_crd, operator_kubeconfig

WORKERS = 2
"""Worker pods per pipeline (the e2e tests' gang size)."""
UNSCHEDULABLE = {"pulsetrain.dev/benchmark": "no-such-node"}
PENDING_TIMEOUT_SECONDS = 86_400
GOAL_P99_SECONDS = 5.0
GOAL_RSS_MB = 250.0
MB = 1_000_000
SERVER_WATCH_SECONDS = 5
"""Each watch request ends after this long and is reopened, so the watcher stops soon after it is told."""


def bench_pipeline(name: str) -> dict[str, Any]:
    """A valid two-worker pipeline (the e2e tests' shape) whose pods can never be scheduled."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingPipeline",
        "metadata": {"name": name, "labels": {"pulsetrain.dev/benchmark": "operator"}},
        "spec": {
            "source": {"pulsar": {"serviceUrl": "pulsar://127.0.0.1:1", "topic": f"bench-{name}"}},
            "data": {"format": "raw", "features": [{"name": "pixels", "dtype": "float32", "shape": [64]}],
                     "label": {"name": "digit", "dtype": "int64", "shape": []}},
            "model": {"task": "classification", "builtin": "mlp", "numClasses": 10, "mlp": {"hiddenUnits": [64]}},
            "training": {"workers": WORKERS, "batchSize": 64, "mode": "bounded", "seed": 7},
            "storage": {"claimName": "bench-data"},  # never provisioned: the pods are never scheduled
            "worker": {"resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
                       "nodeSelector": dict(UNSCHEDULABLE)},
            "runPolicy": {"pendingTimeoutSeconds": PENDING_TIMEOUT_SECONDS},
        },
    }


class PodWatch(threading.Thread):
    """Notes when a watch on `namespace` first saw each pipeline's worker pods (monotonic clock).

    Raw JSON, no model deserialisation, so the time noted is as close to the API server's event as this
    process can get. A pod bound to a node is recorded in `scheduled`: the caller must stop at once.
    """

    def __init__(self, core: CoreV1Api, namespace: str) -> None:
        super().__init__(name=f"watch:{namespace}", daemon=True)
        self.core: Any = core  # raw responses (`_preload_content=False`), not the typed models
        self.namespace = namespace
        self.first_seen: dict[str, float] = {}
        self.pods_of: dict[str, set[str]] = {}
        self.scheduled: list[str] = []
        self.error: BaseException | None = None
        self._stop_event = threading.Event()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._resource_version = self._list()

    def _list(self) -> str:
        response = self.core.list_namespaced_pod(self.namespace, label_selector=PIPELINE_LABEL,
                                                 _preload_content=False)
        listing = json.loads(response.data)
        now = time.monotonic()
        for pod in listing.get("items", []):
            self._saw(pod, now)
        return str(listing["metadata"]["resourceVersion"])

    def _saw(self, pod: Mapping[str, Any], now: float) -> None:
        meta = pod.get("metadata") or {}
        name, pipeline = meta.get("name", ""), (meta.get("labels") or {}).get(PIPELINE_LABEL)
        with self._changed:
            if (pod.get("spec") or {}).get("nodeName") and name not in self.scheduled:
                self.scheduled.append(name)
            if pipeline and name not in self.first_seen:
                self.first_seen[name] = now
                self.pods_of.setdefault(pipeline, set()).add(name)
            self._changed.notify_all()

    def run(self) -> None:
        try:
            while not self._stop_event.is_set():
                response = self.core.list_namespaced_pod(
                    self.namespace, label_selector=PIPELINE_LABEL, watch=True, allow_watch_bookmarks=True,
                    resource_version=self._resource_version, timeout_seconds=SERVER_WATCH_SECONDS,
                    _preload_content=False)
                try:
                    for line in cast(Any, kube_watch).iter_resp_lines(response):
                        if not line:
                            continue
                        event = json.loads(line)
                        obj = event.get("object") or {}
                        if event.get("type") == "ERROR":
                            if obj.get("code") != 410:
                                raise RuntimeError(f"pod watch failed: {obj}")
                            self._resource_version = self._list()  # expired: list again, then watch on
                            break
                        self._resource_version = obj.get("metadata", {}).get("resourceVersion",
                                                                             self._resource_version)
                        if event.get("type") in ("ADDED", "MODIFIED"):
                            self._saw(obj, time.monotonic())
                        if self._stop_event.is_set():
                            break
                finally:
                    response.close()
                    response.release_conn()
        except BaseException as exc:  # handed to the waiting thread, which reports it
            with self._changed:
                self.error = exc
                self._changed.notify_all()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(SERVER_WATCH_SECONDS + 5)

    def wait_complete(self, pipelines: Iterable[str], deadline: float) -> dict[str, float]:
        """For each pipeline, when its last worker pod was first seen; returns early (partial) at `deadline`."""
        wanted = list(pipelines)
        with self._changed:
            while True:
                if self.scheduled:
                    raise RuntimeError(f"benchmark pod(s) bound to a node, stopping: {self.scheduled[:5]}")
                if self.error is not None:
                    raise RuntimeError(f"the pod watch failed: {self.error}") from self.error
                done = {p: max(self.first_seen[n] for n in self.pods_of[p]) for p in wanted
                        if len(self.pods_of.get(p, ())) >= WORKERS}
                left = deadline - time.monotonic()
                if len(done) == len(wanted) or left <= 0:
                    return done
                self._changed.wait(min(left, 1.0))


class MemorySampler(threading.Thread):
    """Samples a process's VmRSS every `interval` seconds; `peak_kb` is the largest seen."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        super().__init__(name="rss", daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_kb = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak_kb = max(self.peak_kb, proc_status_kb(self.pid).get("VmRSS", 0))
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)


def proc_status_kb(pid: int) -> dict[str, int]:
    """The kB-valued lines of /proc/<pid>/status (VmRSS, VmHWM, ...); empty once the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+):\s+(\d+) kB$", text, re.MULTILINE)}


def pids_of(program: str) -> list[int]:
    """Processes whose command line names `program` (argv[0]'s base name or a `-m` module)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if argv and (Path(argv[0]).name == program or program in argv[1:3]):
            found.append(int(entry.name))
    return found


def cpu_of(pids: Iterable[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


def main_thread_cpu(pid: int) -> float:
    """CPU seconds of a process's main thread alone: for the operator, Kopf's asyncio loop (watch streams,
    event dispatch), as against the reconcile threads and the API client they drive."""
    try:
        fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text → {'name{labels}': value} (comments skipped)."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            values[key] = float(value)
    return values


def requests_by_verb(metrics: Mapping[str, float]) -> dict[str, float]:
    prefix = "pulsetrain_operator_api_requests_total{verb=\""
    return {k[len(prefix):-2]: v for k, v in metrics.items() if k.startswith(prefix)}


def minus(after: Mapping[str, float], before: Mapping[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items()}


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def kube_configuration(kubeconfig: str, pool: int) -> Configuration:
    configuration = Configuration()
    cast(Any, kubernetes.config).load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    configuration.connection_pool_maxsize = pool
    return configuration


@dataclass
class Phase:
    """One way of getting N pipelines' pods made, measured the same way."""

    name: str
    pipelines: int
    latencies: list[float] = field(default_factory=list)
    """Per pipeline that completed: its create call returned → its last worker pod first seen (s)."""
    creates_seconds: float = 0.0
    """First create sent → last create returned."""
    wall_seconds: float = 0.0
    """First create sent → the last pod of the last pipeline first seen (or the deadline)."""
    api_requests: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return len(self.latencies) == self.pipelines

    def summary(self) -> dict[str, Any]:
        """The figures as the JSON report names them (seconds unless named otherwise)."""
        return {"complete": self.complete, "pipelinesWithAllPods": len(self.latencies),
                "p50": percentile(self.latencies, 50), "p99": percentile(self.latencies, 99),
                "max": max(self.latencies, default=float("nan")), "wall": self.wall_seconds,
                "creates": self.creates_seconds, "cpuSeconds": self.cpu_seconds,
                "apiRequestsPerPipeline": sum(self.api_requests.values()) / self.pipelines,
                "apiRequestsPerPipelineByVerb": {v: n / self.pipelines for v, n in sorted(self.api_requests.items())},
                "latencies": self.latencies}


def create_all(custom: CustomObjectsApi, namespace: str, count: int, concurrency: int, timeout: float,
               watch: PodWatch, after_create: Callable[[dict[str, Any]], None] | None, phase: Phase) -> None:
    """Create `count` pipelines in parallel, then wait for every pipeline's pods; fills `phase`."""
    names = [f"bench-{i:04d}" for i in range(count)]
    created_at: dict[str, float] = {}

    def create(name: str) -> None:
        obj = cast(dict[str, Any], custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                                          bench_pipeline(name)))
        created_at[name] = time.monotonic()
        if after_create is not None:
            after_create(obj)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="create") as pool:
        list(pool.map(create, names))
    phase.creates_seconds = time.monotonic() - started
    done = watch.wait_complete(names, started + timeout)
    phase.wall_seconds = (max(done.values()) if len(done) == count else time.monotonic()) - started
    phase.latencies = sorted(done[n] - created_at[n] for n in done)


def run_floor(admin: ApiClient, operator_kubeconfig_path: Path, namespace: str, count: int, concurrency: int,
              timeout: float) -> Phase:
    """The floor: the benchmark makes each pipeline's children itself as soon as its create returns."""
    counter = OperatorMetrics()
    configuration = kube_configuration(str(operator_kubeconfig_path), CONNECTION_POOL_SIZE)  # as `api_client()`
    kube = Kube(CountingApiClient(configuration, counter.api_request))
    settings = Settings(worker_image=WORKER_IMAGE)
    phase = Phase("floor", count)
    futures: list[Future[None]] = []

    def children(tp: dict[str, Any]) -> None:  # what a reconcile that creates an attempt must write
        kube.ensure_service(namespace, worker_service(tp))
        kube.ensure_config_map(namespace, worker_config_map(tp))
        for index in range(WORKERS):
            kube.create_pod(namespace, worker_pod(tp, index, 1, settings))

    watch = PodWatch(CoreV1Api(admin), namespace)
    watch.start()
    system = {name: pids_of(name) for name in ("kube-apiserver", "etcd")}
    cpu_before = {name: cpu_of(pids) for name, pids in system.items()}
    try:
        with ThreadPoolExecutor(max_workers=RECONCILE_THREADS, thread_name_prefix="floor") as reconciles:
            create_all(CustomObjectsApi(admin), namespace, count, concurrency, timeout, watch,
                       lambda tp: futures.append(reconciles.submit(children, tp)), phase)
            for future in futures:
                future.result()
    finally:
        watch.stop()
    phase.cpu_seconds = {name: cpu_of(pids) - cpu_before[name] for name, pids in system.items()}
    phase.api_requests = dict(counter.api_requests)
    return phase


@dataclass
class OperatorFigures:
    rss_idle_mb: float = 0.0
    rss_peak_mb: float = 0.0
    hwm_mb: float = 0.0
    reconciles: float = 0.0
    reconcile_errors: float = 0.0
    reconcile_seconds: float = 0.0
    steady_requests_per_second: float = 0.0
    steady_seconds: float = 0.0
    steady_cpu_seconds: dict[str, float] = field(default_factory=dict)
    """CPU used during the steady window, by process."""


def run_operator(admin: ApiClient, operator: OperatorProcess, namespace: str, count: int, concurrency: int,
                 timeout: float, settle: float) -> tuple[Phase, OperatorFigures]:
    assert operator.process is not None
    pid = operator.process.pid
    figures = OperatorFigures(rss_idle_mb=proc_status_kb(pid).get("VmRSS", 0) * 1024 / MB)
    phase = Phase("operator", count)
    sampler = MemorySampler(pid)
    watch = PodWatch(CoreV1Api(admin), namespace)
    system = {name: pids_of(name) for name in ("kube-apiserver", "etcd")} | {"operator": [pid]}
    cpu_before = {name: cpu_of(pids) for name, pids in system.items()}
    loop_before = main_thread_cpu(pid)
    sampler.start()
    watch.start()
    before = parse_metrics(operator.metrics())
    try:
        create_all(CustomObjectsApi(admin), namespace, count, concurrency, timeout, watch, None, phase)
        after = parse_metrics(operator.metrics())
        cpu_after = {name: cpu_of(pids) for name, pids in system.items()}
        phase.cpu_seconds = {name: cpu_after[name] - cpu_before[name] for name in system}
        phase.cpu_seconds["operator main thread (Kopf)"] = main_thread_cpu(pid) - loop_before
        if settle > 0:  # what the operator costs once nothing changes: its periodic re-checks
            time.sleep(settle)
            later = parse_metrics(operator.metrics())
            figures.steady_cpu_seconds = {name: cpu_of(pids) - cpu_after[name] for name, pids in system.items()}
            figures.steady_seconds = settle
            figures.steady_requests_per_second = sum(minus(requests_by_verb(later), requests_by_verb(after))
                                                     .values()) / settle
    finally:
        watch.stop()
        sampler.stop()
    status = proc_status_kb(pid)
    figures.rss_peak_mb = max(sampler.peak_kb, status.get("VmRSS", 0)) * 1024 / MB
    figures.hwm_mb = status.get("VmHWM", 0) * 1024 / MB
    delta = minus(after, before)
    phase.api_requests = {verb: n for verb, n in minus(requests_by_verb(after), requests_by_verb(before)).items()
                          if n}
    figures.reconciles = delta.get("pulsetrain_operator_reconciles_total", 0.0)
    figures.reconcile_errors = delta.get("pulsetrain_operator_reconcile_errors_total", 0.0)
    figures.reconcile_seconds = delta.get("pulsetrain_operator_reconcile_seconds_total", 0.0)
    return phase, figures


def wait_metrics(operator: OperatorProcess, timeout: float = 30) -> None:
    """The `/metrics` endpoint answers once the operator's startup handler has run."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            operator.metrics()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def delete_namespace(cluster: Cluster, namespace: str, wait: bool = True) -> bool:
    result = cluster.kubectl("delete", "namespace", namespace, "--ignore-not-found", f"--wait={str(wait).lower()}",
                             "--timeout=300s", check=False)
    if result.returncode != 0:
        print(f"could not delete namespace {namespace}: {result.stderr.strip()}", file=sys.stderr)
    return result.returncode == 0


def report(floor: Phase, op: Phase, figures: OperatorFigures, count: int, others: list[int]) -> None:
    fs, os_ = floor.summary(), op.summary()
    per = {verb: n / count for verb, n in sorted(op.api_requests.items())}
    steady_cpu = ", ".join(f"{name} {cpu / max(figures.steady_seconds, 1e-9):.0%}"
                           for name, cpu in figures.steady_cpu_seconds.items())
    rows = [
        ("create -> all pods, p50 (s)", os_["p50"], fs["p50"], ""),
        ("create -> all pods, p99 (s)", os_["p99"], fs["p99"], f"< {GOAL_P99_SECONDS:g}"),
        ("create -> all pods, max (s)", os_["max"], fs["max"], ""),
        ("every pipeline's pods exist (wall s)", op.wall_seconds, floor.wall_seconds, ""),
        ("all creates returned (s)", op.creates_seconds, floor.creates_seconds, ""),
        ("API requests per pipeline (*)", os_["apiRequestsPerPipeline"], fs["apiRequestsPerPipeline"], ""),
        ("kube-apiserver CPU (s)", op.cpu_seconds.get("kube-apiserver", 0.0),
         floor.cpu_seconds.get("kube-apiserver", 0.0), ""),
        ("etcd CPU (s)", op.cpu_seconds.get("etcd", 0.0), floor.cpu_seconds.get("etcd", 0.0), ""),
        ("operator CPU (s)", op.cpu_seconds.get("operator", 0.0), float("nan"), ""),
        ("  of which its main thread (Kopf)", op.cpu_seconds.get("operator main thread (Kopf)", 0.0),
         float("nan"), ""),
        ("operator peak RSS (MB)", figures.rss_peak_mb, float("nan"), f"< {GOAL_RSS_MB:g}"),
    ]
    print(f"\n{count} pipelines x {WORKERS} workers ({count * WORKERS} pods, kept Pending) on "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"{'':40} {'operator':>10} {'floor':>10} {'goal':>8}")
    for label, value, base, goal in rows:
        print(f"{label:40} {value:10.2f} {base:10.2f} {goal:>8}")
    print(f"  operator: RSS {figures.rss_idle_mb:.0f} MB idle, {figures.rss_peak_mb:.0f} MB peak (VmHWM "
          f"{figures.hwm_mb:.0f} MB); {figures.reconciles / count:.1f} reconciles per pipeline, "
          f"{figures.reconcile_seconds / max(figures.reconciles, 1) * 1000:.0f} ms each on average, "
          f"{figures.reconcile_errors:.0f} failed")
    print(f"  operator API requests per pipeline by verb: {', '.join(f'{v} {n:.1f}' for v, n in per.items())}; "
          f"afterwards, with every pod Pending: {figures.steady_requests_per_second:.0f} requests/s "
          f"(periodic re-checks, over {figures.steady_seconds:.0f} s, costing {steady_cpu} of a CPU)")
    print("  (*) from the first create until every pod existed, the requests the operator's reconciles sent "
          "through its client (`Kube`); Kopf's own watch and list requests are not counted. The floor's are the "
          "benchmark's Service, ConfigMap and pod creates.")
    if not (op.complete and floor.complete):
        print(f"  INCOMPLETE: operator {len(op.latencies)}/{count}, floor {len(floor.latencies)}/{count} "
              "pipelines got all their pods before the deadline")
    if others:
        print(f"  WARNING: {len(others)} other pulsetrain operator process(es) ran on this machine meanwhile "
              f"(pids {others}); a cluster-wide one also reconciles these pipelines", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.operator_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipelines", type=int, default=200, help="pipelines applied at once (default 200)")
    parser.add_argument("--concurrency", type=int, default=32,
                        help="parallel create calls for the pipelines (default 32)")
    parser.add_argument("--timeout", type=float, default=300, help="give up on a phase after this many seconds")
    parser.add_argument("--settle", type=float, default=10,
                        help="seconds to watch the operator's request rate once every pod exists (default 10)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the operator's log directory")
    args = parser.parse_args()
    if args.pipelines < 1:
        parser.error("--pipelines must be at least 1")

    from tests.cluster.testbed import TestBedInfo

    info = TestBedInfo.load()
    if info is None:
        parser.error("no test bed is running: start one (python -m tests.cluster up)")
    cluster = Cluster(kubeconfig=info.kubeconfig, kubectl_bin=info.kubectl, helm_bin=info.helm,
                      pulsar_service_url=info.pulsar_service_url, pulsar_admin_url=info.pulsar_admin_url,
                      host_ip=info.host_ip, state=Path(info.state))
    suffix = secrets.token_hex(3)
    namespace, floor_namespace = f"bench-operator-{suffix}", f"bench-operator-{suffix}-floor"
    workdir = Path(tempfile.mkdtemp(prefix="pulsetrain-operator-bench-"))
    operator: OperatorProcess | None = None
    others_before = set(pids_of("pulsetrain_operator"))
    try:
        install_crd(cluster)
        kubeconfig = operator_kubeconfig(cluster, workdir)
        admin = ApiClient(kube_configuration(info.kubeconfig, args.concurrency + 8))
        for ns in (floor_namespace, namespace):
            cluster.kubectl("create", "namespace", ns)
            cluster.kubectl("label", "namespace", ns, "pulsetrain.dev/benchmark=operator")

        print(f"floor: {args.pipelines} pipelines' children created by the benchmark in {floor_namespace}",
              file=sys.stderr)
        floor = run_floor(admin, kubeconfig, floor_namespace, args.pipelines, args.concurrency, args.timeout)
        print(f"  p99 {percentile(floor.latencies, 99):.2f} s; deleting {floor_namespace} before the operator "
              "runs", file=sys.stderr)
        delete_namespace(cluster, floor_namespace)

        os.environ["PULSETRAIN_NAMESPACES"] = namespace  # the operator watches the benchmark's namespace only
        operator = OperatorProcess(kubeconfig, workdir / "operator.log")
        operator.start()
        wait_metrics(operator)
        time.sleep(3)  # Kopf opens its watches after the startup handler; let them settle
        print(f"operator: {args.pipelines} pipelines in {namespace} (log {operator.log_path})", file=sys.stderr)
        op, figures = run_operator(admin, operator, namespace, args.pipelines, args.concurrency, args.timeout,
                                   args.settle)
    except BaseException:
        if operator is not None:
            print(f"operator log tail:\n{operator.tail(30)}", file=sys.stderr)
        args.keep = True
        raise
    finally:
        if operator is not None:
            operator.stop()
        others = sorted(set(pids_of("pulsetrain_operator")) | others_before)
        if operator is not None and operator.process is not None and operator.process.pid in others:
            others.remove(operator.process.pid)
        for ns in (namespace, floor_namespace):
            delete_namespace(cluster, ns)
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    report(floor, op, figures, args.pipelines, others)
    if args.json:
        args.json.write_text(json.dumps({
            "pipelines": args.pipelines, "workersPerPipeline": WORKERS, "concurrency": args.concurrency,
            "cpus": os.cpu_count(), "goals": {"p99Seconds": GOAL_P99_SECONDS, "rssMB": GOAL_RSS_MB},
            "operator": {**op.summary(), "rssIdleMB": figures.rss_idle_mb, "rssPeakMB": figures.rss_peak_mb,
                         "vmHWMMB": figures.hwm_mb, "reconciles": figures.reconciles,
                         "reconcileErrors": figures.reconcile_errors, "reconcileSeconds": figures.reconcile_seconds,
                         "steadyRequestsPerSecond": figures.steady_requests_per_second,
                         "steadySeconds": figures.steady_seconds, "steadyCpuSeconds": figures.steady_cpu_seconds},
            "floor": floor.summary(),
            "notes": ["apiRequests: what the operator's reconciles sent through its client from the first create "
                      "until every pod existed; Kopf's own watch and list requests are not counted",
                      "latencies: the pipeline's create call returned -> a watch first saw its last worker pod",
                      "steadyRequestsPerSecond: the operator's request rate afterwards, with every pod Pending"],
            "otherOperatorPids": others,
        }, indent=2))
    return 0 if op.complete and floor.complete else 1


if __name__ == "__main__":
    sys.exit(main())
