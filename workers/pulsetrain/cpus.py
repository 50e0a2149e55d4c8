"""How many threads TensorFlow may use in a worker or predictor: its share of the CPUs it may really run on.

Why: TensorFlow sizes its intra-op and inter-op thread pools from the CPUs the process may be scheduled
on (its affinity). A container's CPU limit is a cgroup quota, not an affinity, so a pod limited to 2 CPUs
on a 64-core node gets pools of 64 threads, and the kernel throttles them; and the workers of a local
gang (`pulsetrain run`, the tests, the benchmarks) each size their pools for the whole machine. Either way
the threads outnumber the CPUs, and in a lock-step gang every stall of one worker stalls them all.
Measured on the 2-core test machine with the reference MLP (`bench.run --only memory`), 2 local workers in a
cgroup limited to 1 CPU: 11,200-12,200 samples/s per worker with 1 thread per pool (this module's choice)
against 9,700-10,600 with 2 (TensorFlow's), 4 runs each, taking turns. Without a quota the two sizes
came out even (14,700-15,600 samples/s either way): the gain is where a limit is.

Explicit settings win: `TF_NUM_INTRAOP_THREADS` / `TF_NUM_INTEROP_THREADS` (TensorFlow's own variables)
are left alone. `PULSETRAIN_WORKERS_PER_HOST` (set by `LocalGang`) says how many workers share the host.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger(__name__)

WORKERS_PER_HOST_ENV = "PULSETRAIN_WORKERS_PER_HOST"
TF_THREAD_ENVS = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "<quota> <period>" or "max <period>"
CGROUP_V1_CPU = Path("/sys/fs/cgroup/cpu")  # cgroup v1: cpu.cfs_quota_us (-1: none) and cpu.cfs_period_us


def read_cpu_max(v2: Path = CGROUP_CPU_MAX, v1: Path = CGROUP_V1_CPU) -> str | None:
    """This container's CPU limit in cgroup v2's `cpu.max` form, from v2 or else v1; None when neither is there."""
    try:
        return v2.read_text()
    except OSError:
        pass
    try:
        quota = int((v1 / "cpu.cfs_quota_us").read_text())
        period = int((v1 / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return f"{'max' if quota < 0 else quota} {period}"


def quota_cpus(cpu_max: str) -> float | None:
    """The CPUs a cgroup v2 `cpu.max` allows (quota / period), or None when unlimited or unreadable."""
    fields = cpu_max.split()
    if len(fields) != 2 or fields[0] == "max":
        return None
    try:
        quota, period = int(fields[0]), int(fields[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def cpu_share(affinity: int, cpu_max: str | None, workers_per_host: int) -> int:
    """This worker's whole CPUs: the fewer of its affinity and its quota (rounded up), split evenly among the
    workers on the host; at least 1."""
    cpus = float(affinity)
    quota = quota_cpus(cpu_max) if cpu_max else None
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, int(cpus) // max(1, workers_per_host))


def workers_per_host(environ: Mapping[str, str]) -> int:
    try:
        return max(1, int(environ.get(WORKERS_PER_HOST_ENV, "1")))
    except ValueError:
        log.warning("%s=%r is not a whole number; taking 1", WORKERS_PER_HOST_ENV, environ[WORKERS_PER_HOST_ENV])
        return 1


def tensorflow_threads(environ: Mapping[str, str] | None = None) -> int | None:
    """The pool size to give TensorFlow, or None when the environment sets one itself."""
    environ = os.environ if environ is None else environ
    if any(environ.get(name) for name in TF_THREAD_ENVS):
        return None
    return cpu_share(len(os.sched_getaffinity(0)), read_cpu_max(), workers_per_host(environ))


def size_tensorflow_pools() -> None:
    """Give TensorFlow's intra- and inter-op pools this worker's share of CPUs; before TensorFlow runs an op."""
    threads = tensorflow_threads()
    if threads is None:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError as exc:  # TensorFlow already ran in this process (tests build several trainers)
        log.debug("TensorFlow thread pools already sized: %s", exc)
        return
    log.info("TensorFlow thread pools: %d thread(s) each (this process's share of the CPUs it may use)", threads)
