"""Container processes: how an image maps to a local environment, start in a sandbox, signal, reap.

There are no images here. An image name is matched (shell-style pattern, first match wins) against
the kubelet's `--image-env PATTERN=PREFIX` list, and the container runs with `PREFIX/bin` first on its
PATH; the default maps every image to the Python environment the kubelet itself runs in. The
container's `command` + `args` are its argv (an image entrypoint is unknown, so `command` or `args`
must be given).
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.cluster.kubelet.api import Obj
from tests.cluster.kubelet.env import ConfigError, expand
from tests.cluster.kubelet.termination import TerminationMount
from tests.cluster.kubelet.volumes import Mount
from tests.cluster.process import stop_group

SHIM = Path(__file__).with_name("shim.py")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class ImageEnv:
    pattern: str
    prefix: str

    @classmethod
    def parse(cls, text: str) -> ImageEnv:
        pattern, sep, prefix = text.partition("=")
        if not sep or not pattern or not prefix:
            raise ValueError(f"--image-env wants PATTERN=PREFIX, got {text!r}")
        return cls(pattern, prefix)


def image_prefix(image: str, image_envs: list[ImageEnv]) -> str:
    for entry in image_envs:
        if fnmatch.fnmatchcase(image, entry.pattern):
            return entry.prefix
    return sys.prefix


def container_argv(container: Obj, env: dict[str, str]) -> list[str]:
    argv = [expand(str(a), env) for a in (container.get("command") or []) + (container.get("args") or [])]
    if not argv:
        raise ConfigError(
            f"container {container['name']}: no command or args (the process kubelet runs no image "
            "entrypoints)"
        )
    return argv


def base_env(prefix: str, hostname: str, host_ip: str, api_port: int) -> dict[str, str]:
    env = {
        "PATH": f"{prefix}/bin:{SYSTEM_PATH}",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "HOSTNAME": hostname,
        "KUBERNETES_SERVICE_HOST": host_ip,
        "KUBERNETES_SERVICE_PORT": str(api_port),
        "KUBERNETES_SERVICE_PORT_HTTPS": str(api_port),
        "KUBERNETES_PORT": f"tcp://{host_ip}:{api_port}",
    }
    if Path(prefix, "pyvenv.cfg").exists():
        env["VIRTUAL_ENV"] = prefix
    return env


class ContainerProcess:
    """One run of a container: a process group whose leader is the container's command."""

    def __init__(self, proc: subprocess.Popen[bytes], log_path: Path, termination_file: Path | None = None) -> None:
        self.proc = proc
        self.log_path = log_path
        self.termination_file = termination_file

    @property
    def pid(self) -> int:
        return self.proc.pid

    @classmethod
    def start(
        cls,
        *,
        netns: str,
        spec_path: Path,
        log_path: Path,
        argv: list[str],
        env: dict[str, str],
        hostname: str,
        workdir: str | None,
        mounts: list[Mount],
        etc_files: dict[str, str],
        termination: TerminationMount | None = None,
    ) -> ContainerProcess:
        spec = {
            "argv": argv,
            "env": env,
            "hostname": hostname[:63],
            "workdir": workdir,
            "mounts": [m.__dict__ for m in mounts],
            "etc": etc_files,
            "termination": termination.__dict__ if termination else None,
        }
        spec_path.parent.mkdir(parents=True, exist_ok=True)
        spec_path.write_text(json.dumps(spec))
        log_path.parent.mkdir(parents=True, exist_ok=True)
        launcher = [
            "nsenter", f"--net=/run/netns/{netns}", "--",
            "unshare", "--mount", "--uts", "--propagation", "private", "--",
            sys.executable, str(SHIM), str(spec_path),
        ]
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                launcher, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, env={"PATH": SYSTEM_PATH},
            )
        return cls(proc, log_path, Path(termination.source) if termination else None)

    def poll(self) -> int | None:
        """The exit code once the command has ended; signals map to 128 + signal as in containers."""
        code = self.proc.poll()
        if code is None:
            return None
        self.kill_leftovers()
        return 128 - code if code < 0 else code

    def kill_leftovers(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def terminate(self, grace: float) -> int:
        """SIGTERM the command, SIGKILL the whole group after `grace`; returns the exit code."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + grace
            while self.proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
        stop_group(self.proc.pid, 0.0) if self.proc.poll() is None else self.kill_leftovers()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        code = self.proc.returncode if self.proc.returncode is not None else -9
        return 128 - code if code < 0 else code
