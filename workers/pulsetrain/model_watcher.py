"""Find, load and hand over exported model versions: the predictor's view of `storage.exportDir`.

Why this exists: a continuous pipeline exports new versions while predictions flow, and the predictor
must pick them up without dropping or stalling an answer. Loading a SavedModel takes from tenths of a
second to minutes, so a background thread polls the folder, loads the version it should serve next and
warms it up (the first call of a loaded function is slow); the serving loop only swaps a reference
between two batches (`take`). Versions are the numbered folders of the TensorFlow Serving layout; the
exporter writes a version under a temporary name and renames it into place, so a numbered folder is
complete; one without `saved_model.pb` (a copy in progress by some other tool) is not a version yet.

`modelVersion: latest` moves forward only (a newer number replaces the current one; a deleted newest
version does not bring an older one back); a pinned number is loaded once it exists and kept. A version
that fails to load, or whose serving signature does not take the pipeline's declared features
(`signature_mismatch`: an export of another pipeline, or of an older schema), or that the predictor `refuse`s
(it failed at run time), is logged and skipped until the predictor restarts, and the current version keeps
answering. TensorFlow is imported only by `load_model`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

Features = Mapping[str, npt.NDArray[Any]]
Outputs = dict[str, npt.NDArray[Any]]


def complete_versions(export_dir: Path) -> list[int]:
    """The version numbers under `export_dir` that are complete SavedModels, ascending."""
    try:
        entries = list(export_dir.iterdir())
    except OSError:  # not created yet (no export so far) or not mounted yet
        return []
    return sorted(int(p.name) for p in entries
                  if p.name.isdigit() and int(p.name) > 0 and (p / "saved_model.pb").is_file())


def select_version(available: Iterable[int], *, pinned: int | None, current: int | None,
                   failed: Collection[int] = ()) -> int | None:
    """The version to load next, or None to keep what is loaded (or keep waiting).

    `current` is the newest version loaded so far; `failed` are versions that did not load."""
    candidates = [v for v in available if v not in failed]
    if pinned is not None:
        return pinned if pinned in candidates and current != pinned else None
    newest = max(candidates, default=None)
    return newest if newest is not None and (current is None or newest > current) else None


def waiting_message(export_dir: Path, pinned: int | None, available: Collection[int]) -> str:
    """What a predictor without a model says it waits for."""
    if pinned is not None:
        found = f"it has {', '.join(map(str, sorted(available)))}" if available else "it has no version yet"
        return f"waiting for pinned model version {pinned} in {export_dir} ({found})"
    return f"waiting for a first model version in {export_dir} (none exported yet)"


@dataclass(frozen=True)
class LoadedModel:
    """One loaded version: `predict` maps named raw features (`[n, *shape]` arrays) to the signature's outputs."""

    version: int
    path: Path
    predict: Callable[[Features], Outputs]
    metadata: Mapping[str, Any] = field(default_factory=dict)
    """The exporter's `pulsetrain.json` (step, samples, metrics...), empty when the folder has none."""


class _Signature:
    """A SavedModel's `serving_default` signature, called with NumPy arrays; holds the module alive."""

    def __init__(self, path: Path) -> None:
        import tensorflow as tf

        self._tf = tf
        self.module = tf.saved_model.load(str(path))
        self.signature = self.module.signatures["serving_default"]
        self.inputs: dict[str, Any] = self.signature.structured_input_signature[1]

    def __call__(self, features: Features) -> Outputs:
        outputs = self.signature(**{name: self._tf.constant(values, dtype=self.inputs[name].dtype)
                                    for name, values in features.items()})
        return {name: tensor.numpy() for name, tensor in outputs.items()}


def signature_mismatch(inputs: Mapping[str, tuple[int | None, ...]],
                       features: Mapping[str, tuple[int, ...]]) -> str | None:
    """Why a serving signature taking `inputs` (name -> shape with the batch dimension first, None where any
    size goes) cannot answer records of the declared `features` (name -> per-record shape); None when it can."""
    if set(inputs) != set(features):
        return (f"its serving signature takes {sorted(inputs)}, the pipeline's data declares {sorted(features)}")
    for name, shape in features.items():
        given = inputs[name][1:]
        if len(given) != len(shape) or any(g is not None and g != d for g, d in zip(given, shape, strict=True)):
            return f"its serving signature takes {name!r} of shape {list(given)} per record, declared {list(shape)}"
    return None


def load_model(path: Path, version: int, warm_sizes: Iterable[int] = (1,),
               features: Mapping[str, tuple[int, ...]] | None = None) -> LoadedModel:
    """Load `path`'s `serving_default` signature and warm it up: one call of zeros per batch size it will see.
    With `features` (name -> per-record shape, the pipeline's data), a version whose signature cannot take
    them is refused with `ValueError` (the watcher then keeps serving the current version)."""
    predict = _Signature(path)
    if features is not None:
        mismatch = signature_mismatch({name: tuple(spec.shape.as_list()) for name, spec in predict.inputs.items()},
                                      features)
        if mismatch:
            raise ValueError(f"model version {version} does not fit this pipeline: {mismatch}")
    for size in warm_sizes:
        predict({name: np.zeros([size, *spec.shape[1:]], spec.dtype.as_numpy_dtype)
                 for name, spec in predict.inputs.items()})
    metadata_file = path / "pulsetrain.json"
    metadata: dict[str, Any] = json.loads(metadata_file.read_text()) if metadata_file.is_file() else {}
    return LoadedModel(version=version, path=path, predict=predict, metadata=metadata)


class ModelWatcher:
    """Polls `export_dir` every `poll_seconds` in a daemon thread and prepares the next version to serve."""

    def __init__(self, export_dir: Path, *, pinned: int | None, poll_seconds: float,
                 loader: Callable[[Path, int], LoadedModel] = load_model) -> None:
        self.export_dir, self.pinned, self.poll_seconds, self.loader = export_dir, pinned, poll_seconds, loader
        self.failed: set[int] = set()
        self.available: list[int] = []
        self._newest: int | None = None  # newest version loaded (handed over or waiting in _ready)
        self._ready: LoadedModel | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._polled = threading.Event()
        self._thread = threading.Thread(target=self._run, name="model-watcher", daemon=True)

    def start(self) -> ModelWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def take(self) -> LoadedModel | None:
        """The version to swap in now, once: None when nothing newer is ready."""
        with self._lock:
            ready, self._ready = self._ready, None
            return ready

    def wait(self, timeout: float) -> LoadedModel | None:
        """Like `take`, but waits up to `timeout` seconds for a version to become ready."""
        deadline = time.monotonic() + timeout
        while True:
            ready = self.take()
            remaining = deadline - time.monotonic()
            if ready is not None or remaining <= 0 or not self._thread.is_alive():
                return ready
            self._polled.wait(min(remaining, 0.1))
            self._polled.clear()

    def waiting_message(self) -> str:
        return waiting_message(self.export_dir, self.pinned, self.available)

    def refuse(self, version: int) -> None:
        """Never offer `version` again (the predictor found it failing at run time): like a failed load."""
        self.failed.add(version)

    def poll(self) -> None:
        """One look at the folder: load the version `select_version` names, if any (run by the thread)."""
        self.available = complete_versions(self.export_dir)
        choice = select_version(self.available, pinned=self.pinned, current=self._newest, failed=self.failed)
        if choice is None:
            return
        path = self.export_dir / str(choice)
        started = time.monotonic()
        try:
            model = self.loader(path, choice)
        except Exception:  # a broken version must not stop the predictor: keep serving the current one
            log.exception("model version %d at %s failed to load; skipping it", choice, path)
            self.failed.add(choice)
            return
        log.info("loaded model version %d from %s in %.1fs", choice, path, time.monotonic() - started)
        with self._lock:
            self._ready, self._newest = model, choice

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._polled.set()
            self._stop.wait(self.poll_seconds)
