"""Where the test bed keeps its things: a version-keyed tool cache outside the repo, and a state dir.

The cache survives between runs (a second install takes seconds); the state directory holds one
running test bed (certificates, etcd data, logs, pod sandboxes) and is removed by `down`.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The tool cache: `$PULSETRAIN_CACHE`, else `~/.cache/pulsetrain`."""
    root = os.environ.get("PULSETRAIN_CACHE") or str(Path.home() / ".cache" / "pulsetrain")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def state_dir() -> Path:
    """The running test bed's state: `$PULSETRAIN_TESTBED_DIR`, else `<cache>/testbed`."""
    root = os.environ.get("PULSETRAIN_TESTBED_DIR") or str(cache_dir() / "testbed")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path
