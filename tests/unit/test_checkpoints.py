"""The checkpoint store's retention: only committed checkpoints count, and a refused or unfinished one never
pushes a committed one out (with `keepCheckpoints: 1` too)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import tensorflow as tf

from pulsetrain.checkpoints import CheckpointStore
from pulsetrain.ledger import Ledger


def store(directory: Path, keep: int) -> tuple[CheckpointStore, tf.Variable]:
    value = tf.Variable(0, dtype=tf.int64)
    return CheckpointStore(tf.train.Checkpoint(value=value), directory, 0, True, keep), value


def save(checkpoints: CheckpointStore, value: tf.Variable, step: int, *, commit: bool) -> str:
    value.assign(step)
    name = checkpoints.save(step)
    ledger = Ledger()
    ledger.record([f"message-{step}".encode()])
    ledger.commit(checkpoints.directory, name, 0, num_workers=1)
    if commit:
        checkpoints.mark_committed(name)
    return name


def names(directory: Path) -> set[str]:
    return {path.name.split(".")[0] for path in directory.iterdir()}


def test_an_uncommitted_checkpoint_never_displaces_the_only_committed_one(tmp_path: Path) -> None:
    checkpoints, value = store(tmp_path, keep=1)
    save(checkpoints, value, 10, commit=True)
    save(checkpoints, value, 20, commit=False)  # a refused commit, or a crash before the marker

    assert checkpoints.tidy() == ["ckpt-20"]

    assert names(tmp_path) == {"ckpt-10"}
    value.assign(-1)
    step, ledger = checkpoints.restore(keep_windows=3)
    assert step == 10 and int(value.numpy()) == 10
    assert ledger.covered == frozenset({b"message-10"})


def test_the_newest_committed_checkpoints_are_kept_with_their_ledgers(tmp_path: Path) -> None:
    checkpoints, value = store(tmp_path, keep=2)
    for step in (1, 2, 3, 4):
        save(checkpoints, value, step, commit=step != 3)

    assert checkpoints.tidy() == ["ckpt-1", "ckpt-3"]

    assert checkpoints.committed() == [2, 4]
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith("ckpt-4")) == [
        "ckpt-4.committed", "ckpt-4.data-00000-of-00001", "ckpt-4.index", "ckpt-4.ledger-0"]
    assert names(tmp_path) == {"ckpt-2", "ckpt-4"}


def test_the_chiefs_checkpoint_files_and_marker_reach_the_disk_before_the_commit_counts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Messages are acknowledged once the marker is written: TensorFlow's files and the marker are fsynced
    first, so a machine failure cannot leave an acknowledged commit without its checkpoint."""
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    checkpoints, _ = store(tmp_path, keep=1)
    name = checkpoints.save(7)
    files = {str(path) for path in tmp_path.glob(f"{name}.*")}
    assert files and {f"{name}.index", f"{name}.data-00000-of-00001"} <= {Path(f).name for f in files}
    assert files <= set(synced) and synced[-1] == str(tmp_path)  # every file, then the directory
    synced.clear()
    checkpoints.mark_committed(name)
    assert synced == [str(tmp_path / f"{name}.committed"), str(tmp_path)]


def test_a_checkpoint_of_another_model_is_a_configuration_error_naming_the_cause(tmp_path: Path) -> None:
    from pulsetrain.config import ConfigError

    checkpoints, value = store(tmp_path, keep=1)
    save(checkpoints, value, 10, commit=True)
    other = CheckpointStore(tf.train.Checkpoint(value=tf.Variable([0, 0], dtype=tf.int64)), tmp_path, 0, True, 1)
    with pytest.raises(ConfigError, match=r"ckpt-10 does not fit this pipeline's model \(.*shape.*\): it was "
                                          r"written for another `model` or `data`"):
        other.restore(keep_windows=3)
    extra = CheckpointStore(tf.train.Checkpoint(value=tf.Variable(0, dtype=tf.int64), more=tf.Variable(1.0)),
                            tmp_path, 0, True, 1)
    with pytest.raises(ConfigError, match="does not fit this pipeline's model"):
        extra.restore(keep_windows=3)
    step, _ = checkpoints.restore(keep_windows=3)  # the model it was written for still restores it
    assert step == 10
