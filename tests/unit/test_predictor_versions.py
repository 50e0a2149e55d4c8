"""Which exported model version the predictor serves, and the watcher that loads it in the background."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from pulsetrain.model_watcher import (
    LoadedModel,
    ModelWatcher,
    complete_versions,
    select_version,
    signature_mismatch,
    waiting_message,
)


def make_version(export_dir: Path, version: int, *, complete: bool = True) -> Path:
    folder = export_dir / str(version)
    folder.mkdir(parents=True)
    (folder / "pulsetrain.json").write_text(json.dumps({"version": version}))
    if complete:
        (folder / "saved_model.pb").write_bytes(b"")
    return folder


def test_complete_versions(tmp_path: Path) -> None:
    assert complete_versions(tmp_path / "missing") == []
    for version in (1, 2, 10):
        make_version(tmp_path, version)
    make_version(tmp_path, 11, complete=False)  # a copy in progress
    (tmp_path / ".tmp-12").mkdir()  # the exporter's scratch folder
    (tmp_path / "0").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    assert complete_versions(tmp_path) == [1, 2, 10]


@pytest.mark.parametrize(("available", "pinned", "current", "failed", "expected"), [
    ([], None, None, (), None),
    ([1], None, None, (), 1),
    ([1, 3, 2], None, None, (), 3),
    ([1, 2], None, 2, (), None),
    ([1, 2, 3], None, 2, (), 3),
    ([1], None, 2, (), None),  # the newest was deleted: never go back
    ([1, 2, 3], None, 2, (3,), None),  # 3 failed to load: keep 2
    ([1, 2, 3, 4], None, 2, (3,), 4),
    ([1, 2, 3], 2, None, (), 2),
    ([1, 2, 3], 2, 2, (), None),
    ([1, 3], 2, None, (), None),  # pinned, not there yet
    ([1, 2], 2, None, (2,), None),
])
def test_select_version(available: list[int], pinned: int | None, current: int | None, failed: tuple[int, ...],
                        expected: int | None) -> None:
    assert select_version(available, pinned=pinned, current=current, failed=failed) == expected


def test_waiting_message(tmp_path: Path) -> None:
    assert waiting_message(tmp_path, None, []) == f"waiting for a first model version in {tmp_path} (none exported yet)"
    assert waiting_message(tmp_path, 3, [2, 1]) == f"waiting for pinned model version 3 in {tmp_path} (it has 1, 2)"


def fake_loader(loaded: list[int]) -> Callable[[Path, int], LoadedModel]:
    """Loads the folder's metadata instead of a SavedModel (the thread logic is what is tested here)."""
    def load(path: Path, version: int) -> LoadedModel:
        metadata = json.loads((path / "pulsetrain.json").read_text())
        if metadata.get("broken"):
            raise RuntimeError("not a SavedModel")
        loaded.append(version)
        return LoadedModel(version=version, path=path, predict=lambda f: {"v": np.full(1, version)},
                           metadata=metadata)
    return load


def test_watcher_waits_then_hands_over_each_newer_version_once(tmp_path: Path) -> None:
    loaded: list[int] = []
    watcher = ModelWatcher(tmp_path, pinned=None, poll_seconds=0.05, loader=fake_loader(loaded)).start()
    try:
        assert watcher.wait(0.3) is None
        make_version(tmp_path, 1)
        first = watcher.wait(10)
        assert first is not None and first.version == 1 and first.metadata == {"version": 1}
        assert watcher.take() is None  # handed over once
        make_version(tmp_path, 3)
        second = watcher.wait(10)
        assert second is not None and second.version == 3
        assert watcher.wait(0.3) is None and loaded == [1, 3]
    finally:
        watcher.stop()


def test_a_broken_version_is_skipped_and_the_next_one_loads(tmp_path: Path) -> None:
    loaded: list[int] = []
    make_version(tmp_path, 1)
    watcher = ModelWatcher(tmp_path, pinned=None, poll_seconds=0.05, loader=fake_loader(loaded)).start()
    try:
        assert (model := watcher.wait(10)) is not None and model.version == 1
        (make_version(tmp_path, 2) / "pulsetrain.json").write_text(json.dumps({"broken": True}))
        assert watcher.wait(0.5) is None
        assert watcher.failed == {2}
        make_version(tmp_path, 3)
        assert (model := watcher.wait(10)) is not None and model.version == 3
    finally:
        watcher.stop()


def test_a_pinned_version_is_loaded_once_it_exists_and_kept(tmp_path: Path) -> None:
    loaded: list[int] = []
    make_version(tmp_path, 1)
    watcher = ModelWatcher(tmp_path, pinned=2, poll_seconds=0.05, loader=fake_loader(loaded)).start()
    try:
        assert watcher.wait(0.3) is None and "pinned model version 2" in watcher.waiting_message()
        make_version(tmp_path, 2)
        assert (model := watcher.wait(10)) is not None and model.version == 2
        make_version(tmp_path, 3)
        assert watcher.wait(0.3) is None and loaded == [2]
    finally:
        watcher.stop()


def test_stop_ends_the_thread(tmp_path: Path) -> None:
    watcher = ModelWatcher(tmp_path, pinned=None, poll_seconds=30, loader=fake_loader([])).start()
    watcher.stop()
    assert not any(t.name == "model-watcher" and t.is_alive() for t in threading.enumerate())


@pytest.mark.parametrize(("inputs", "reason"), [
    ({"pixels": (None, 64)}, None),
    ({"pixels": (None, None)}, None),  # any size goes
    ({"image": (None, 64)}, "its serving signature takes ['image'], the pipeline's data declares ['pixels']"),
    ({"pixels": (None, 8, 8)}, "its serving signature takes 'pixels' of shape [8, 8] per record, declared [64]"),
    ({"pixels": (None, 63)}, "its serving signature takes 'pixels' of shape [63] per record, declared [64]"),
])
def test_a_version_whose_signature_does_not_take_the_declared_features_is_named(
        inputs: dict[str, tuple[int | None, ...]], reason: str | None) -> None:
    assert signature_mismatch(inputs, {"pixels": (64,)}) == reason
