"""Read `TF_CONFIG`, the environment variable that tells a TensorFlow worker who its peers are.

Why this exists: the operator sets `TF_CONFIG` on every worker pod (`cluster.worker` lists the peers'
`host:port`, `task.index` is this worker's place in it) and `MultiWorkerMirroredStrategy` reads it. The
worker checks it first, without TensorFlow, so that a bad value fails at once with the field named, and
so that the peer list is at hand for the reachability check that runs before the strategy is created.
pulsetrain uses only the `worker` job: worker 0 is the chief (it checkpoints and exports).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from pulsetrain._fields import ConfigError, Problems, Section, describe

__all__ = ["TFConfig", "tf_config_from_env"]

_ADDRESS = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s:\[\]/]+):(?P<port>\d{1,5})")


@dataclass(frozen=True, kw_only=True)
class TFConfig:
    """This worker's place in the cluster, from `TF_CONFIG`."""

    workers: tuple[str, ...]
    """`cluster.worker`: every worker's `host:port`, in index order."""
    task_type: str = "worker"
    """`task.type`: always `worker`."""
    task_index: int = 0
    """`task.index`: this worker's index into `workers`."""

    @property
    def is_chief(self) -> bool:
        """Worker 0 is the chief."""
        return self.task_index == 0

    @property
    def num_workers(self) -> int:
        return len(self.workers)

    @property
    def address(self) -> str:
        """This worker's own `host:port`."""
        return self.workers[self.task_index]

    @property
    def peers(self) -> tuple[str, ...]:
        """The other workers' addresses."""
        return tuple(a for i, a in enumerate(self.workers) if i != self.task_index)


def tf_config_from_env(environ: Mapping[str, str] | None = None) -> TFConfig | None:
    """The parsed `TF_CONFIG`, or None when it is unset or empty (a single worker on its own).

    Raises `ConfigError` listing every problem, each with a path such as `TF_CONFIG.task.index`.
    """
    raw = (os.environ if environ is None else environ).get("TF_CONFIG", "").strip()
    if not raw:
        return None
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError([f"TF_CONFIG: not valid JSON at char {exc.pos}: {exc.msg}"]) from None
    problems = Problems()
    root = Section(doc, "TF_CONFIG", problems)
    root.ignore(("environment", "rpc_layer"))
    cluster = root.section("cluster", required=True)
    workers: list[str] = []
    for path, item in cluster.items("worker", required=True, min_len=1):
        if not isinstance(item, str) or not _valid_address(item):
            problems.add(path, f"{describe(item)} is not a 'host:port' address (port 1..65535)")
        elif item in workers:
            problems.add(path, f"{item!r} is listed twice")
        workers.append(str(item))
    for job in ("chief", "ps", "evaluator"):
        if cluster.has(job):
            cluster.error(job, f"job {job!r} is not used by pulsetrain; list every worker under 'worker' "
                               "(worker 0 is the chief)")
            cluster.raw(job)
    cluster.done()
    task = root.section("task", required=True)
    task_type = task.text("type", "worker", choices=("worker",))
    index = task.integer("index", 0, ge=0)
    if workers and problems.clean("TF_CONFIG.task.index") and index >= len(workers):
        task.error("index", f"{index} is out of range; allowed 0..{len(workers) - 1} "
                            f"({len(workers)} worker{'s' if len(workers) != 1 else ''} in cluster.worker)")
    task.done()
    root.done()
    problems.raise_if_any()
    return TFConfig(workers=tuple(workers), task_type=task_type, task_index=index)


def _valid_address(value: str) -> bool:
    match = _ADDRESS.fullmatch(value)
    return match is not None and 1 <= int(match.group("port")) <= 65535
