"""Run a gang of workers as local processes: the engine of `pulsetrain run` and of the trainer tests.

Each worker gets TF_CONFIG with `127.0.0.1:{port}` addresses (`base_port + i`, or the given free
ports: different ones, because the collective server binds 0.0.0.0 and these processes share one
network namespace), its own metrics port and the same configuration file. Stopping sends SIGTERM,
waits, then SIGKILLs, as a kubelet would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from pulsetrain.cpus import WORKERS_PER_HOST_ENV


@dataclass
class LocalGang:
    config_path: Path
    workers: int
    base_port: int = 23400
    metrics_base_port: int = 9100
    log_dir: Path | None = None
    command: list[str] = field(default_factory=lambda: [sys.executable, "-m", "pulsetrain.worker"])
    """The worker program; `--config FILE` (and `--summary FILE`, `--termination-log FILE`) are appended."""
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    ports: list[int] | None = None
    """Collective ports, one per worker (`pulsetrain run` picks free ones); default `base_port + i`."""
    metrics_ports: list[int] | None = None
    """HTTP ports (/metrics, /progress), one per worker; default `metrics_base_port + i`."""
    extra_env: dict[str, str] = field(default_factory=dict)
    """Added to every worker's environment (`spec.worker.env` of a pipeline run locally)."""

    def addresses(self) -> list[str]:
        ports = self.ports or [self.base_port + i for i in range(self.workers)]
        return [f"127.0.0.1:{port}" for port in ports[: self.workers]]

    def metrics_port(self, index: int) -> int:
        return self.metrics_ports[index] if self.metrics_ports else self.metrics_base_port + index

    def env(self, index: int) -> dict[str, str]:
        tf_config = {"cluster": {"worker": self.addresses()}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, **self.extra_env}
        env.update(TF_CONFIG=json.dumps(tf_config), PULSETRAIN_METRICS_PORT=str(self.metrics_port(index)),
                   TF_CPP_MIN_LOG_LEVEL=env.get("TF_CPP_MIN_LOG_LEVEL", "2"))
        env.setdefault(WORKERS_PER_HOST_ENV, str(self.workers))  # they share this machine's CPUs (see cpus.py)
        return env

    def start_worker(self, index: int, summary: Path | None = None,
                     termination_log: Path | None = None) -> subprocess.Popen[bytes]:
        argv = [*self.command, "--config", str(self.config_path)]
        if summary is not None:
            argv += ["--summary", str(summary)]
        if termination_log is not None:
            argv += ["--termination-log", str(termination_log)]
        log_dir = self.log_dir or self.config_path.parent
        log = open(log_dir / f"worker-{index}.log", "ab")  # noqa: SIM115 - owned by the child process
        proc = subprocess.Popen(argv, env=self.env(index), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        log.close()
        return proc

    def start(self, summaries: Path | None = None, termination_logs: Path | None = None) -> None:
        """Start every worker; each writes `summary-{i}.json` and `termination-{i}.json` where asked."""
        self.processes = [
            self.start_worker(i, summaries / f"summary-{i}.json" if summaries else None,
                              termination_logs / f"termination-{i}.json" if termination_logs else None)
            for i in range(self.workers)]

    def wait(self, timeout: float) -> list[int | None]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(p.poll() is None for p in self.processes):
            time.sleep(0.2)
        return [p.poll() for p in self.processes]

    def stop(self, grace: float = 30.0) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        self.wait(grace)
        for proc in self.processes:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
