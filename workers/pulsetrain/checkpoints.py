"""Checkpoints that are only trusted once every worker's ledger is beside them.

A checkpoint is *committed* when (1) all workers took part in saving it (the chief writes the real one,
the others write to a scratch directory they delete, as MultiWorkerMirroredStrategy requires), (2)
every worker wrote its ledger of covered message IDs beside it, and (3) the chief wrote the
`{name}.committed` marker after a barrier, once its `CommitCheck` found no message in it twice. Restore
picks the newest committed checkpoint, so a crash anywhere in between (or a refused commit) falls back
to the previous one, whose messages were not acknowledged yet.

A committed checkpoint whose variables do not fit the model (the same storage reused by a pipeline with another
`model` or `data`) is a configuration error (exit 2), not a crash to retry.

Why not `tf.train.CheckpointManager`: it deletes the oldest checkpoint the moment a new one is saved,
committed or not, so with `keepCheckpoints: 1` a crash before the marker (or a refused commit) would leave
no committed checkpoint at all while its messages were already acknowledged. Here checkpoints are written
with `Checkpoint.write`, and `tidy` keeps the newest `keep` *committed* ones and deletes everything else.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

import tensorflow as tf

from pulsetrain.config import ConfigError
from pulsetrain.ledger import Ledger

log = logging.getLogger(__name__)
_NAME = re.compile(r"^ckpt-(\d+)\.committed$")
_FILES = re.compile(r"^(?P<name>ckpt-\d+)(\.index|\.data-\d+-of-\d+|\.committed)$")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


class CheckpointStore:
    def __init__(self, checkpoint: tf.train.Checkpoint, directory: Path, worker_index: int, is_chief: bool,
                 keep: int) -> None:
        self.directory, self.worker_index, self.is_chief = directory, worker_index, is_chief
        directory.mkdir(parents=True, exist_ok=True)
        self.write_dir = directory if is_chief else directory / f".worker-{worker_index}-scratch"
        self.keep = keep
        self.checkpoint = checkpoint

    def committed(self) -> list[int]:
        """Steps of committed checkpoints whose files still exist, oldest first."""
        steps = []
        for path in self.directory.iterdir():
            match = _NAME.match(path.name)
            if match and (self.directory / f"ckpt-{match.group(1)}.index").exists():
                steps.append(int(match.group(1)))
        return sorted(steps)

    def restore(self, keep_windows: int, *, variables: bool = True) -> tuple[int | None, Ledger]:
        """Restore the newest committed checkpoint (variables unless told not to, and the ledger merged over
        all workers); (None, empty) if there is none."""
        for step in reversed(self.committed()):
            name = f"ckpt-{step}"
            try:
                ledger = Ledger.restore(self.directory, name, keep_windows)
            except Exception as exc:  # an incomplete or damaged ledger: fall back to an older checkpoint
                log.warning("skipping checkpoint %s: %s", name, exc)
                continue
            if variables:
                self._read(self.directory / name)
            return step, ledger
        return None, Ledger(keep_windows)

    def _read(self, path: Path) -> None:
        """Restore the variables from checkpoint `path`; `ConfigError` when its variables do not fit this model (a
        pipeline re-created with another `model` or `data` under the same storage): retrying cannot fix that, and
        TensorFlow's own words name a tensor, not the cause."""
        try:
            self.checkpoint.read(str(path)).assert_existing_objects_matched()
        except (ValueError, AssertionError) as exc:
            said = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            said = said.split(" Target variable:")[0][:300]  # Keras goes on with the variable's values
            raise ConfigError([
                f"the committed checkpoint {path} does not fit this pipeline's model ({said}): it was written for "
                "another `model` or `data`; give this pipeline storage of its own (another name or `storage.path`; "
                "`pulsetrain run --state-dir`), or delete that checkpoint directory to train from scratch"]) from exc
        log.info("restored %s", path)

    def save(self, step: int) -> str:
        """Every worker calls this at the same step; returns the checkpoint's name (`ckpt-{step}`). The chief's
        files are on disk when it returns (fsync): its messages are acknowledged once the commit is marked,
        so a machine that fails afterwards must not take the checkpoint with it (TensorFlow does not fsync)."""
        name = f"ckpt-{step}"
        self.write_dir.mkdir(parents=True, exist_ok=True)
        self.checkpoint.write(str(self.write_dir / name))
        if self.is_chief:
            for path in self.directory.glob(f"{name}.*"):
                if _FILES.match(path.name):
                    _fsync_file(path)
            _fsync_dir(self.directory)
        return name

    def mark_committed(self, name: str) -> None:
        """The chief's last act of a commit, after every ledger is written: the marker, on disk."""
        marker = self.directory / f"{name}.committed"
        marker.write_text("committed\n")
        _fsync_file(marker)
        _fsync_dir(self.directory)

    def tidy(self) -> list[str]:
        """Drop scratch checkpoints (non-chief); on the chief, delete every checkpoint (files, marker, ledgers)
        but the newest `keep` committed ones, uncommitted leftovers included. Returns the names deleted."""
        if not self.is_chief:
            shutil.rmtree(self.write_dir, ignore_errors=True)
            return []
        alive = {f"ckpt-{step}" for step in self.committed()[-self.keep:]}
        deleted: set[str] = set()
        for path in self.directory.iterdir():
            match = _FILES.match(path.name)
            if match and match.group("name") not in alive:
                path.unlink(missing_ok=True)
                deleted.add(match.group("name"))
        Ledger.prune(self.directory, alive)
        return sorted(deleted)
