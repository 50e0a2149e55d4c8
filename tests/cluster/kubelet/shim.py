"""Container start-up shim: runs inside a pod's network, mount and UTS namespaces, then execs.

The process kubelet starts `nsenter --net=<sandbox> unshare --mount --uts --propagation private
python shim.py <spec.json>`. Here, in the private mount namespace, the pod's volumes are bind-mounted
at their mount paths and its hosts/resolv.conf over /etc, the hostname is set, and the container's
command replaces this process, keeping its pid (so signals reach it directly).

Standard library only, and no project imports: it runs before anything else of the pod.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys


def _bind(source: str, target: str, read_only: bool) -> None:
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target) or "/", exist_ok=True)
        if not os.path.exists(target):
            open(target, "a").close()
    subprocess.run(["mount", "--bind", source, target], check=True)
    if read_only:
        subprocess.run(["mount", "-o", "remount,bind,ro", target], check=True)


def main() -> None:
    with open(sys.argv[1]) as handle:
        spec = json.load(handle)
    try:
        for etc_name, source in spec.get("etc", {}).items():
            _bind(source, f"/etc/{etc_name}", read_only=False)
        for mount in spec.get("mounts", []):
            _bind(mount["source"], mount["target"], mount["read_only"])
        socket.sethostname(spec["hostname"])
        os.chdir(spec.get("workdir") or "/")
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"pulsetrain process kubelet: container set-up failed: {exc}", file=sys.stderr, flush=True)
        sys.exit(128)
    argv = spec["argv"]
    try:
        os.execvpe(argv[0], argv, spec["env"])
    except OSError as exc:
        print(f"pulsetrain process kubelet: exec {argv[0]!r} failed: {exc}", file=sys.stderr, flush=True)
        sys.exit(127)


if __name__ == "__main__":
    main()
