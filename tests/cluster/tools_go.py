"""Build the test bed's pinned control-plane tools from the Go module proxy into a version-keyed cache.

Why: the test bed needs real kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, etcd
and helm binaries, but the machines it runs on can reach package registries only (no GitHub release
downloads). The Go module proxy serves every source we need, so we compile the tools ourselves:

* Kubernetes: `k8s.io/kubernetes`'s published go.mod requires its staging modules (`k8s.io/api`,
  `k8s.io/client-go`, ...) at `v0.0.0` with `./staging` replaces that only work inside its own
  repo, so `go install` cannot build it. We generate a module that requires it and replaces each
  staging module with its published `v0.<minor>.<patch>` tag, then build all four commands in one
  `go build` (they share most packages, so one invocation saves a lot of compile time).
* etcd: the root module (`go.etcd.io/etcd/v3`) has replace directives and is not served by the
  proxy, so we build a five-line main around `go.etcd.io/etcd/server/v3/etcdmain`, which is all
  the real `etcd` main does.
* helm: plain `go install helm.sh/helm/v3/cmd/helm@<version>`.

Binaries land in `<cache>/bin/<tool>-<version>/`, with a marker written only after a successful,
verified build; the directory is built under a temporary name and renamed into place. A second run
finds the marker and returns at once. GOPATH, the module cache and the build cache live under
`<cache>/go` so that rebuilds (new versions) reuse downloads and compiled packages.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.cluster.paths import cache_dir

KUBERNETES_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.16"
HELM_VERSION = "v3.22.0"

KUBE_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
MARKER = ".complete"
TAIL_LINES = 40
HEARTBEAT_S = 60.0


class ToolBuildError(RuntimeError):
    """A tool could not be built or failed its post-build check."""


@dataclass(frozen=True)
class KubeTools:
    """Paths of the Kubernetes control-plane binaries."""

    apiserver: Path
    controller_manager: Path
    scheduler: Path
    kubectl: Path


def _log(message: str) -> None:
    print(f"[tools] {message}", file=sys.stderr, flush=True)


def _go_env(cache: Path) -> dict[str, str]:
    go = shutil.which("go")
    if go is None:
        raise ToolBuildError("`go` is not on PATH; install Go (>= 1.26) to build the test bed tools")
    gopath = cache / "go"
    env = dict(os.environ)
    env.update(
        GOPATH=str(gopath),
        GOMODCACHE=str(gopath / "pkg" / "mod"),
        GOCACHE=str(gopath / "cache"),
        CGO_ENABLED="0",
        GOTOOLCHAIN="local",
        GOWORK="off",
        GO111MODULE="on",
        GOFLAGS="-buildvcs=false",
    )
    env.pop("GOBIN", None)
    return env


def _run(cmd: Sequence[str], *, cwd: Path, env: dict[str, str], log: Path) -> str:
    """Run `cmd`, output to `log`; raise with the output's tail on failure, else return the output."""
    started = time.monotonic()
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(cmd)}\n".encode())
        out.flush()
        start = out.tell()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        while True:
            try:
                code = proc.wait(timeout=HEARTBEAT_S)
                break
            except subprocess.TimeoutExpired:
                _log(f"  ... still running {Path(cmd[0]).name} {cmd[1]} ({time.monotonic() - started:.0f}s)")
    with log.open("rb") as f:
        f.seek(start)
        output = f.read().decode(errors="replace")
    if code != 0:
        tail = "\n".join(deque(output.splitlines(), maxlen=TAIL_LINES))
        raise ToolBuildError(f"command failed (exit {code}): {' '.join(cmd)}\n(full log: {log})\n{tail}")
    return output


def _complete(bin_dir: Path, names: Sequence[str]) -> bool:
    return (bin_dir / MARKER).is_file() and all(os.access(bin_dir / n, os.X_OK) for n in names)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _install(
    tool: str, version: str, names: Sequence[str], build: Callable[[Path, Path, dict[str, str]], None]
) -> Path:
    """Return `<cache>/bin/<tool>-<version>`, first building it with `build(out_dir, work_dir, env)`."""
    cache = cache_dir()
    bin_dir = cache / "bin" / f"{tool}-{version}"
    if _complete(bin_dir, names):
        return bin_dir
    work = cache / "build" / f"{tool}-{version}"
    work.mkdir(parents=True, exist_ok=True)
    with _locked(cache / "build" / f"{tool}-{version}.lock"):
        if _complete(bin_dir, names):  # another process built it while we waited
            return bin_dir
        tmp = bin_dir.with_name(f".{bin_dir.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        _log(f"building {', '.join(names)} {version} (log: {work / 'build.log'})")
        started = time.monotonic()
        try:
            build(tmp, work, _go_env(cache))
            missing = [n for n in names if not os.access(tmp / n, os.X_OK)]
            if missing:
                raise ToolBuildError(f"build of {tool} {version} produced no {', '.join(missing)}")
            (tmp / MARKER).write_text(json.dumps({"tool": tool, "version": version}) + "\n")
            shutil.rmtree(bin_dir, ignore_errors=True)
            tmp.rename(bin_dir)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        _log(f"built {tool} {version} in {time.monotonic() - started:.0f}s -> {bin_dir}")
    return bin_dir


def _check_version(binary: Path, args: Sequence[str], expected: str, env: dict[str, str], log: Path) -> None:
    output = _run([str(binary), *args], cwd=binary.parent, env=env, log=log)
    if expected not in output:
        raise ToolBuildError(f"`{binary.name} {' '.join(args)}` does not report {expected!r}:\n{output}")


def _download(module: str, version: str, work: Path, env: dict[str, str], log: Path) -> dict[str, str]:
    output = _run(["go", "mod", "download", "-json", f"{module}@{version}"], cwd=work, env=env, log=log)
    info: dict[str, str] = json.loads(output[output.index("{") :])
    if info.get("Error"):
        raise ToolBuildError(f"cannot download {module}@{version}: {info['Error']}")
    return info


def _staging_modules(gomod: str) -> list[str]:
    """The `k8s.io/*` modules k8s.io/kubernetes requires at the placeholder version v0.0.0."""
    return sorted(set(re.findall(r"^\s*(?:require\s+)?(k8s\.io/[\w.-]+)\s+v0\.0\.0\s*$", gomod, re.M)))


def _build_kubernetes(out: Path, work: Path, env: dict[str, str]) -> None:
    log = work / "build.log"
    log.write_text("")
    for stale in ("go.mod", "go.sum"):
        (work / stale).unlink(missing_ok=True)
    _log(f"downloading k8s.io/kubernetes {KUBERNETES_VERSION} go.mod")
    info = _download("k8s.io/kubernetes", KUBERNETES_VERSION, work, env, log)
    staging = _staging_modules(Path(info["GoMod"]).read_text())
    if not staging:
        raise ToolBuildError(f"no k8s.io/* v0.0.0 requirements found in {info['GoMod']}")
    major, minor, patch = KUBERNETES_VERSION.lstrip("v").split(".")
    staging_version = f"v0.{minor}.{patch}"
    packages = [f"k8s.io/kubernetes/cmd/{name}" for name in KUBE_COMMANDS]
    lines = ["module pulsetrain.local/kubetools", "", "go 1.26", ""]
    lines += [
        f"require k8s.io/kubernetes {KUBERNETES_VERSION}",
        "",
        "tool (",
        *(f"\t{p}" for p in packages),
        ")",
        "",
        "replace (",
    ]
    lines += [f"\t{m} => {m} {staging_version}" for m in staging] + [")", ""]
    (work / "go.mod").write_text("\n".join(lines))
    _log(f"resolving dependencies (go mod tidy; {len(staging)} staging modules at {staging_version})")
    _run(["go", "mod", "tidy"], cwd=work, env=env, log=log)
    values = {
        "gitVersion": KUBERNETES_VERSION,
        "gitMajor": major,
        "gitMinor": minor,
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": json.loads(Path(info["Info"]).read_text()).get("Time", "1970-01-01T00:00:00Z"),
    }
    ldflags = ["-s", "-w"] + [
        f"-X {pkg}.{key}={value}"
        for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
        for key, value in values.items()
    ]
    _log(f"compiling {', '.join(KUBE_COMMANDS)} (one go build; several minutes when cold)")
    build = ["go", "build", "-trimpath", "-ldflags", " ".join(ldflags), "-o", f"{out}/", *packages]
    _run(build, cwd=work, env=env, log=log)
    _check_version(out / "kube-apiserver", ["--version"], f"Kubernetes {KUBERNETES_VERSION}", env, log)
    _check_version(out / "kubectl", ["version", "--client"], KUBERNETES_VERSION, env, log)


def _build_etcd(out: Path, work: Path, env: dict[str, str]) -> None:
    log = work / "build.log"
    log.write_text("")
    for stale in ("go.mod", "go.sum"):
        (work / stale).unlink(missing_ok=True)
    (work / "go.mod").write_text(
        f"module pulsetrain.local/etcd\n\ngo 1.26\n\nrequire go.etcd.io/etcd/server/v3 {ETCD_VERSION}\n"
    )
    (work / "main.go").write_text(
        "// Command etcd: the same main as go.etcd.io/etcd/v3, which the proxy cannot build.\n"
        'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\n'
        "func main() { etcdmain.Main(os.Args) }\n"
    )
    _run(["go", "mod", "tidy"], cwd=work, env=env, log=log)
    ldflags = f"-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA={ETCD_VERSION}"
    build = ["go", "build", "-trimpath", "-ldflags", ldflags, "-o", str(out / "etcd"), "."]
    _run(build, cwd=work, env=env, log=log)
    _check_version(out / "etcd", ["--version"], f"etcd Version: {ETCD_VERSION.lstrip('v')}", env, log)


def _build_helm(out: Path, work: Path, env: dict[str, str]) -> None:
    log = work / "build.log"
    log.write_text("")
    base = "helm.sh/helm/v3/internal/version"
    ldflags = f"-s -w -X {base}.version={HELM_VERSION} -X {base}.gitTreeState=clean"
    package = f"helm.sh/helm/v3/cmd/helm@{HELM_VERSION}"
    install = ["go", "install", "-trimpath", "-ldflags", ldflags, package]
    _run(install, cwd=work, env={**env, "GOBIN": str(out)}, log=log)
    _check_version(out / "helm", ["version"], f'Version:"{HELM_VERSION}"', env, log)


def ensure_kubernetes() -> KubeTools:
    """Build (once) and return the Kubernetes control-plane binaries."""
    bin_dir = _install("kubernetes", KUBERNETES_VERSION, KUBE_COMMANDS, _build_kubernetes)
    return KubeTools(*(bin_dir / name for name in KUBE_COMMANDS))


def ensure_etcd() -> Path:
    """Build (once) and return the etcd binary."""
    return _install("etcd", ETCD_VERSION, ["etcd"], _build_etcd) / "etcd"


def ensure_helm() -> Path:
    """Build (once) and return the helm binary."""
    return _install("helm", HELM_VERSION, ["helm"], _build_helm) / "helm"


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m tests.cluster.tools_go [kubernetes|etcd|helm|all]`: build and print tool paths."""
    summary = (__doc__ or "").split("\n")[0]
    parser = argparse.ArgumentParser(prog="python -m tests.cluster.tools_go", description=summary)
    parser.add_argument("tool", nargs="?", default="all", choices=["kubernetes", "etcd", "helm", "all"])
    args = parser.parse_args(argv)
    try:
        if args.tool in ("etcd", "all"):
            print(ensure_etcd())
        if args.tool in ("helm", "all"):
            print(ensure_helm())
        if args.tool in ("kubernetes", "all"):
            for path in vars(ensure_kubernetes()).values():
                print(path)
    except ToolBuildError as err:
        _log(f"error: {err}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
