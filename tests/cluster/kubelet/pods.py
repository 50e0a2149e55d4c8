"""One pod's life on the process kubelet: sandbox, volumes, init containers, containers, deletion.

A `PodWorker` thread owns one pod. Each tick it starts what should run, reaps what exited, restarts
by the pod's restartPolicy with exponential back-off, runs probes, and patches the pod's status when
it changed. On deletion it sends SIGTERM, waits the grace period, SIGKILLs, reports the containers
terminated and removes the pod object, as a kubelet does.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tests.cluster import network
from tests.cluster.kubelet import termination
from tests.cluster.kubelet.api import NotFound, Obj, pod_path
from tests.cluster.kubelet.env import ConfigError, Lookup, container_env
from tests.cluster.kubelet.probes import ProbeState
from tests.cluster.kubelet.runtime import ContainerProcess, base_env, container_argv, image_prefix
from tests.cluster.kubelet.status import ContainerRecord, now, pod_status
from tests.cluster.kubelet.volumes import VolumeBuilder, container_mounts

if TYPE_CHECKING:
    from tests.cluster.kubelet.kubelet import Kubelet

log = logging.getLogger(__name__)
TICK = 0.5


class Slot:
    """A container spec, its current process, its record and its probes."""

    def __init__(self, spec: Obj) -> None:
        self.spec = spec
        self.record = ContainerRecord(spec["name"], spec.get("image", ""))
        self.process: ContainerProcess | None = None
        self.restart_at = 0.0
        self.readiness: ProbeState | None = None
        self.liveness: ProbeState | None = None


class PodWorker(threading.Thread):
    def __init__(self, kubelet: Kubelet, pod: Obj) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.kubelet, self.pod = kubelet, pod
        self.key = f"{meta['namespace']}/{meta['name']}"
        self.uid: str = meta["uid"]
        self.dir: Path = kubelet.config.pods_dir / f"{meta['namespace']}_{meta['name']}_{self.uid}"
        self.netns = network.sandbox_name(self.uid)
        self.ip: str | None = None
        self.volumes: dict[str, Path] | None = None
        self.init_slots = [Slot(c) for c in pod["spec"].get("initContainers") or []]
        self.slots = [Slot(c) for c in pod["spec"]["containers"]]
        self.start_time = now()
        self.init_done = not self.init_slots
        self.init_failed = False
        self.terminal = False
        self.gone = threading.Event()
        self.last_status: Obj | None = None

    # -- helpers --------------------------------------------------------------------------------
    @property
    def spec(self) -> Obj:
        spec: Obj = self.pod["spec"]
        return spec

    def hostname(self) -> str:
        return str(self.spec.get("hostname") or self.pod["metadata"]["name"])

    def log_path(self, container: str, restart: int) -> Path:
        return self.dir / "logs" / container / f"{restart}.log"

    def _lookup(self, kind: str) -> Lookup:
        """Data of a ConfigMap or Secret of the pod's namespace by name; None when it does not exist."""
        namespace = self.pod["metadata"]["namespace"]

        def lookup(name: str) -> dict[str, str] | None:
            try:
                data: dict[str, str] = self.kubelet.kube.get(f"/api/v1/namespaces/{namespace}/{kind}/{name}").get(
                    "data"
                ) or {}
            except NotFound:
                return None
            return data

        return lookup

    def _etc_files(self) -> dict[str, str]:
        assert self.ip is not None
        files = {
            "hosts": self.kubelet.hosts_content(self.pod, self.ip),
            "resolv.conf": self.kubelet.resolv_content(self.pod),
            "hostname": self.hostname() + "\n",
        }
        etc = self.dir / "etc"
        etc.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            _write_in_place(etc / name, text)
        return {name: str(etc / name) for name in files}

    def refresh_hosts(self) -> None:
        if self.ip and (self.dir / "etc" / "hosts").exists():
            _write_in_place(self.dir / "etc" / "hosts", self.kubelet.hosts_content(self.pod, self.ip))

    # -- containers -----------------------------------------------------------------------------
    def _start(self, slot: Slot) -> None:
        assert self.ip is not None and self.volumes is not None
        cfg = self.kubelet.config
        spec = slot.spec
        prefix = image_prefix(spec.get("image", ""), cfg.image_envs)
        env = base_env(prefix, self.hostname(), cfg.host_ip, cfg.apiserver_port)
        env.update(container_env(self.pod, spec, pod_ip=self.ip, host_ip=cfg.host_ip,
                                 configmaps=self._lookup("configmaps"), secrets=self._lookup("secrets")))
        argv = container_argv(spec, env)
        mounts = container_mounts(spec, self.volumes)
        record = slot.record
        slot.process = ContainerProcess.start(
            netns=self.netns,
            spec_path=self.dir / "containers" / f"{spec['name']}.json",
            log_path=self.log_path(spec["name"], record.restart_count),
            argv=argv, env=env, hostname=self.hostname(), workdir=spec.get("workingDir"),
            mounts=mounts, etc_files=self._etc_files(),
            termination=termination.prepare(self.dir / "containers", spec),
        )
        record.state, record.reason, record.message = "running", "", ""
        record.pid, record.started_at, record.ever_started = slot.process.pid, now(), True
        record.exit_code, record.finished_at = None, None
        slot.readiness = ProbeState.begin(spec["readinessProbe"]) if spec.get("readinessProbe") else None
        slot.liveness = ProbeState.begin(spec["livenessProbe"]) if spec.get("livenessProbe") else None
        log.info("%s: started container %s (pid %s)", self.key, spec["name"], slot.process.pid)

    def _finished(self, slot: Slot, code: int, reason: str | None = None, note: str = "") -> None:
        """The run ended with `code`: its termination message (or else `note`) goes into the record."""
        record, process = slot.record, slot.process
        message = "" if process is None else termination.read_message(
            process.termination_file, process.log_path, code, termination.falls_back_to_logs(slot.spec))
        record.state, record.exit_code, record.finished_at = "terminated", code, now()
        record.reason = reason or ("Completed" if code == 0 else "Error")
        record.message = message or note
        record.ready, slot.process = False, None
        log.info("%s: container %s exited with %s", self.key, record.name, code)

    def _should_restart(self, slot: Slot, init: bool) -> bool:
        policy = self.spec.get("restartPolicy", "Always")
        code = slot.record.exit_code
        if init:
            return code != 0 and policy != "Never"
        return policy == "Always" or (policy == "OnFailure" and code != 0)

    def _restart_later(self, slot: Slot) -> None:
        record = slot.record
        cfg = self.kubelet.config
        delay = 0.0 if record.restart_count == 0 else min(
            cfg.backoff_base * 2 ** (record.restart_count - 1), cfg.backoff_max
        )
        record.last_state = record.terminated_dict()
        record.restart_count += 1
        record.state, record.reason = "waiting", "CrashLoopBackOff" if delay else "ContainerCreating"
        record.message = f"back-off {delay:.0f}s restarting failed container" if delay else ""
        slot.restart_at = time.monotonic() + delay

    def _tick_slot(self, slot: Slot, init: bool) -> None:
        record = slot.record
        if slot.process is not None:
            code = slot.process.poll()
            if code is not None:
                self._finished(slot, code)
                if self._should_restart(slot, init):
                    self._restart_later(slot)
            elif not init:
                self._probe(slot)
        elif record.state == "waiting" and time.monotonic() >= slot.restart_at:
            try:
                self._start(slot)
            except ConfigError as exc:
                record.reason, record.message = "CreateContainerConfigError", str(exc)

    def _probe(self, slot: Slot) -> None:
        assert self.ip is not None and slot.process is not None
        if slot.liveness:
            slot.liveness.tick(slot.spec, self.ip, self.netns)
            if slot.liveness.failed:
                log.info("%s: liveness probe failed for %s, restarting", self.key, slot.record.name)
                code = slot.process.terminate(float(self.spec.get("terminationGracePeriodSeconds", 30)))
                self._finished(slot, code, "Error", "Container failed liveness probe, will be restarted")
                if self._should_restart(slot, init=False):
                    self._restart_later(slot)
                return
        if slot.readiness:
            slot.readiness.tick(slot.spec, self.ip, self.netns)
            slot.record.ready = slot.readiness.ok
        else:
            slot.record.ready = True

    def _setup(self) -> bool:
        """Sandbox and volumes; False (and a waiting reason) while a dependency is missing."""
        if self.ip is None:
            self.ip = self.kubelet.allocate_ip(self.uid)
            network.create_sandbox(self.kubelet.config.network, self.netns, self.ip)
        if self.volumes is None:
            try:
                self.volumes = VolumeBuilder(self.kubelet.kube, self.pod, self.dir, self.kubelet.config.host_ip
                                             ).build_all()
            except ConfigError as exc:
                for slot in self.init_slots + self.slots:
                    slot.record.reason, slot.record.message = "CreateContainerConfigError", str(exc)
                return False
        return True

    def _tick(self) -> None:
        if self.terminal or not self._setup():
            return
        if not self.init_done:
            for slot in self.init_slots:
                if slot.record.state == "terminated" and slot.record.exit_code == 0:
                    continue
                self._tick_slot(slot, init=True)
                if slot.record.state == "terminated" and slot.record.exit_code != 0:
                    self.init_failed = not self._should_restart(slot, init=True)
                break
            self.init_done = all(s.record.exit_code == 0 for s in self.init_slots)
            return
        for slot in self.slots:
            if slot.record.state == "terminated" and not self._should_restart(slot, init=False):
                continue
            self._tick_slot(slot, init=False)

    def _report(self) -> None:
        status = pod_status(
            self.pod, pod_ip=self.ip, host_ip=self.kubelet.config.host_ip, start_time=self.start_time,
            sandbox_ready=self.ip is not None, initialized=self.init_done, init_failed=self.init_failed,
            init_records=[s.record for s in self.init_slots], records=[s.record for s in self.slots],
        )
        if status == self.last_status:
            return
        meta = self.pod["metadata"]
        try:
            updated = self.kubelet.kube.patch(pod_path(meta["namespace"], meta["name"], "status"), {"status": status})
        except NotFound:
            return
        self.pod["status"] = updated.get("status", status)
        self.last_status = status
        if status["phase"] in ("Succeeded", "Failed") and not self.terminal:
            self.terminal = True
            self._teardown_sandbox()

    # -- deletion -------------------------------------------------------------------------------
    def _terminate_all(self) -> None:
        grace = self.pod["metadata"].get("deletionGracePeriodSeconds")
        if grace is None:
            grace = self.spec.get("terminationGracePeriodSeconds", 30)
        running = [s for s in self.init_slots + self.slots if s.process is not None]
        threads = [threading.Thread(target=self._stop_slot, args=(s, float(grace))) for s in running]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for slot in self.init_slots + self.slots:
            if slot.record.state == "waiting":
                slot.record.reason = "ContainerStatusUnknown" if slot.record.ever_started else "PodInitializing"

    def _stop_slot(self, slot: Slot, grace: float) -> None:
        assert slot.process is not None
        code = slot.process.terminate(grace)
        self._finished(slot, code)

    def _teardown_sandbox(self) -> None:
        network.delete_sandbox(self.netns)
        self.kubelet.release_ip(self.uid)

    def _delete_object(self) -> None:
        meta = self.pod["metadata"]
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0,
                "preconditions": {"uid": self.uid}}
        try:
            self.kubelet.kube.delete(pod_path(meta["namespace"], meta["name"]), body)
        except RuntimeError as exc:  # a newer pod of the same name: not ours to delete
            log.info("%s: final delete skipped: %s", self.key, exc)

    def run(self) -> None:
        try:
            while not self.gone.is_set() and not self.kubelet.stopping.is_set():
                if self.pod["metadata"].get("deletionTimestamp"):
                    self._terminate_all()
                    self._report()
                    self._delete_object()
                    break
                try:
                    self._tick()
                    self._report()
                except Exception:
                    log.exception("%s: tick failed", self.key)
                self.gone.wait(TICK)
        finally:
            if any(s.process for s in self.init_slots + self.slots):
                self._terminate_all()
            self._teardown_sandbox()
            self.kubelet.forget(self)


def _write_in_place(path: Path, text: str) -> None:
    """Rewrite without replacing the inode, so bind mounts of the file inside pods see the change."""
    if path.exists() and path.read_text() == text:
        return
    with open(path, "a+") as handle:
        handle.seek(0)
        handle.truncate()
        handle.write(text)
