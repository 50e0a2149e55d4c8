"""Container start-up shim: runs inside a pod's network, mount and UTS namespaces, then execs.

The process kubelet starts `nsenter --net=<sandbox> unshare --mount --uts --propagation private
python shim.py <spec.json>`. Here, in the private mount namespace, the pod's volumes are bind-mounted
at their mount paths, its hosts/resolv.conf over /etc and its termination-message file at its
terminationMessagePath, the hostname is set, and the container's command replaces this process,
keeping its pid (so signals reach it directly).

The termination-message file needs care: a bind mount needs an existing mount point, and the default
path, /dev/termination-log, does not exist. The mount namespace is private but the file systems are
the node's, so creating the file here would create it in the node's real /dev, for every process on
the node to see. Instead, when the path is missing, its nearest existing directory is shadowed, in
this namespace only: a small tmpfs is mounted on the kubelet's (empty) stage directory, every entry
of the original directory is bind-mounted (recursively, so /dev/pts or /dev/shm keep their mounts)
or, for a symlink, copied into it, the missing path is created there and the message file bound on
it, and the tmpfs is then moved over the original directory. The container sees the directory as it
was plus the file; the node sees nothing. Two cases create the path in place instead: inside a
writable volume of the pod (the pod's own storage, where a container runtime would create it too),
and directly under / (which cannot be shadowed without pivot_root; the shim already creates volume
mount points there).

Standard library only, and no project imports: it runs before anything else of the pod.
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import subprocess
import sys
from typing import Any

MS_BIND, MS_MOVE, MS_REC = 0x1000, 0x2000, 0x4000
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]


def _mount(source: str, target: str, flags: int, fstype: str | None = None, data: str | None = None) -> None:
    """mount(2), without a `mount` process per call: shadowing /dev takes a hundred of them."""
    encode = os.fsencode
    if _libc.mount(encode(source), encode(target), fstype and fstype.encode(), flags, data and data.encode()):
        code = ctypes.get_errno()
        raise OSError(code, f"mount {source} on {target}: {os.strerror(code)}")


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


def _under(path: str, root: str) -> bool:
    root = os.path.normpath(root)
    return path == root or path.startswith(root.rstrip("/") + "/")


def termination_plan(target: str, mounts: list[dict[str, Any]]) -> tuple[str, str]:
    """How to put a file at `target` (an absolute path): ("bind", target) when it exists, ("create",
    target) when it may be created in place, else ("shadow", the nearest existing directory)."""
    if os.path.isdir(target):
        raise IsADirectoryError(f"terminationMessagePath {target} is a directory")
    if os.path.lexists(target):
        return "bind", target
    anchor = os.path.dirname(target)
    while not os.path.lexists(anchor):
        anchor = os.path.dirname(anchor)
    if not os.path.isdir(anchor):
        raise NotADirectoryError(f"terminationMessagePath {target}: {anchor} is not a directory")
    in_volume = any(not m["read_only"] and os.path.isdir(m["source"]) and _under(anchor, m["target"])
                    for m in mounts)
    return ("create", target) if anchor == "/" or in_volume else ("shadow", anchor)


def _shadow(directory: str, stage: str) -> None:
    """Mount on `stage` a tmpfs that mirrors `directory`: its entries bound (or symlinks copied)."""
    info = os.stat(directory)
    _mount("tmpfs", stage, 0, "tmpfs", f"mode={info.st_mode & 0o7777:o},uid={info.st_uid},gid={info.st_gid},"
                                       "size=64m")
    for name in os.listdir(directory):
        original, copy = os.path.join(directory, name), os.path.join(stage, name)
        if os.path.islink(original):
            os.symlink(os.readlink(original), copy)
            continue
        is_dir = os.path.isdir(original)
        if is_dir:
            os.mkdir(copy)
        else:
            open(copy, "x").close()
        try:
            _mount(original, copy, MS_BIND | MS_REC)
        except FileNotFoundError:  # removed since listed: leave it out
            (os.rmdir if is_dir else os.unlink)(copy)


def _termination_log(spec: dict[str, Any]) -> None:
    term = spec.get("termination")
    if not term:
        return
    target = os.path.normpath(term["target"])
    how, where = termination_plan(target, spec.get("mounts", []))
    if how == "shadow":
        staged = os.path.join(term["stage"], os.path.relpath(target, where))
        _shadow(where, term["stage"])
        os.makedirs(os.path.dirname(staged), exist_ok=True)
        open(staged, "a").close()
        _mount(term["source"], staged, MS_BIND)
        _mount(term["stage"], where, MS_MOVE)
        return
    if how == "create":
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "a").close()
    _mount(term["source"], target, MS_BIND)


def main() -> None:
    with open(sys.argv[1]) as handle:
        spec = json.load(handle)
    try:
        for etc_name, source in spec.get("etc", {}).items():
            _bind(source, f"/etc/{etc_name}", read_only=False)
        for mount in spec.get("mounts", []):
            _bind(mount["source"], mount["target"], mount["read_only"])
        _termination_log(spec)
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
