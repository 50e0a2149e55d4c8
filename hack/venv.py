#!/usr/bin/env python3
"""Create (once) and print the project's virtual environment, keyed by pyproject.toml's dependencies
and package layout.

It lives in the tool cache, not the checkout, so that CI's fresh clone finds it warm on a second run.
Usage: python3 hack/venv.py [--print-only]
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def requirements() -> list[str]:
    """What the environment's contents depend on: the dependency lists and the package layout."""
    doc = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = doc["project"]
    extras = project.get("optional-dependencies", {})
    layout = json.dumps(doc.get("tool", {}).get("setuptools", {}), sort_keys=True)
    scripts = json.dumps(project.get("scripts", {}), sort_keys=True)
    deps = sorted(project.get("dependencies", [])) + [f"{k}:{sorted(v)}" for k, v in sorted(extras.items())]
    return [*deps, layout, scripts]


def venv_path() -> Path:
    cache = Path(os.environ.get("PULSETRAIN_CACHE") or Path.home() / ".cache" / "pulsetrain")
    digest = hashlib.sha256(json.dumps(requirements()).encode()).hexdigest()[:12]
    tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    return cache / "venv" / f"{tag}-{digest}"


def ensure(path: Path) -> None:
    marker = path / ".complete"
    if marker.exists():
        return
    print(f"creating Python environment {path}", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(path)], check=True)
    pip = [str(path / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[test]"], check=True)
    marker.write_text("ok\n")


def main() -> None:
    path = venv_path()
    if "--print-only" not in sys.argv:
        ensure(path)
    print(path)


if __name__ == "__main__":
    main()
