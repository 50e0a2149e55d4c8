"""Which messages a checkpoint contains: the bookkeeping behind effectively-once training.

Why this exists: a message may be acknowledged only once the checkpoint that contains it is durable,
and a message redelivered after a restart must not be trained twice. So each worker records the IDs
it trains on (`record`), and after every checkpoint writes them to a ledger file beside it
(`{checkpoint_name}.ledger-{worker_index}`, `commit`); only the IDs `commit` returns are then
acknowledged. On restore, every worker loads *all* workers' ledger files of that checkpoint (after a
gang restart a message may come back to a different worker) and acknowledges-and-skips whatever is
already inside (`is_duplicate`).

Why only the last `keep_windows` windows: Pulsar redelivers unacknowledged messages only, so a message
whose acknowledgement reached the broker never returns and its ID need not be kept forever (the set
would grow without bound over a long stream). But an acknowledgement is not fully durable: the
broker persists the cursor lazily, and a broker crash can lose recent acks, so messages acknowledged
just before it come back once. Those are the messages of the last few windows, so the ledger keeps
the IDs of the last `keep_windows` checkpoint windows (default 3), and every file carries all the
windows its writer retains, so that they survive restarts too. A window in which this worker trained
on nothing is not kept, so idle checkpoints do not push real windows out.

Why sometimes more windows: a producer that batches puts many messages into one entry, and a broker with
Pulsar's default `acknowledgmentAtBatchIndexLevelEnabled=false` redelivers an entry whole unless every
message in it was acknowledged. A worker trains an entry's messages in order, over as many windows as it
takes, so when it stops with the last entry half committed, that entry's committed part may lie further
back than `keep_windows` windows (seen in CI: a resumed run trained such messages twice). So a commit also
keeps as many older windows as it takes to hold the last trained message's entry size
(`message_ids.entry_size`) times the number of partitions the worker reads (each may have an entry
under way, their messages interleaved). Windows restored from a checkpoint count for nothing there (which
worker trained what is not known after the merge), so they stay until this worker's own windows reach
that far. The one case left out: an entry redelivered after a restart only once this worker has trained
that many other messages, and stopped again half committed.

IDs are opaque bytes (`pulsar.MessageId.serialize()`) but for the entry size read from them, so this
module needs no Pulsar library.
The file format (little-endian): magic `PTLEDGER`, version u16, worker index u32, number of workers
u32, number of windows u32, a u32 that is 1 when the last window is this commit's new one (what
`commit_check.py` reads); then per window an ID count u32, the IDs' lengths (u32 each) and the IDs
back to back, so that a reader can skip a window or split it without a loop per ID; then a CRC-32 u32
of everything before it. Version 1 files (no new-window flag; each ID as length u32 plus bytes) are
still read. Truncated or corrupt files are rejected, naming the file.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import zlib
from collections import deque
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np

from pulsetrain.message_ids import entry_size

__all__ = ["Ledger", "LedgerError", "MissingLedger", "ledger_path", "read_checkpoint_ledgers"]

log = logging.getLogger(__name__)

_FILE = re.compile(r"^\.?(?P<name>.+)\.ledger-(?P<index>\d+)(?P<tmp>\.tmp\.\d+)?$")


MAGIC = b"PTLEDGER"
VERSION = 2
SUPPORTED_VERSIONS = (1, 2)
_HEADER = struct.Struct("<8sHIII")
_FRESH = struct.Struct("<I")  # version 2: whether the last window is the commit's new one
_LENGTHS = np.dtype("<u4")
_U32 = struct.Struct("<I")


class LedgerError(Exception):
    """A ledger file is unreadable, or a checkpoint's ledger files do not fit together."""


class MissingLedger(LedgerError):
    """A checkpoint's ledger files are incomplete: a worker died before writing its file.

    Such a checkpoint is not durable under the protocol (its messages were never acknowledged and
    will be redelivered, though the model already contains some of them): restore an earlier one.
    """


@dataclass(frozen=True)
class LedgerFile:
    """The contents of one ledger file."""

    worker_index: int
    num_workers: int
    windows: tuple[frozenset[bytes], ...]  # oldest first (read with `new_only`: the new window alone, or none)
    fresh: bool = False  # the last window holds what the writer trained since its previous commit

    @property
    def new_ids(self) -> frozenset[bytes]:
        """The IDs this commit adds (none when the writer trained nothing, or for a version 1 file)."""
        return self.windows[-1] if self.fresh else frozenset()


def ledger_path(checkpoint_dir: Path, checkpoint_name: str, worker_index: int) -> Path:
    """Where worker `worker_index` keeps the ledger of checkpoint `checkpoint_name`."""
    return Path(checkpoint_dir) / f"{checkpoint_name}.ledger-{worker_index}"


class Ledger:
    """The message IDs one worker has trained on: pending (since the last commit) and covered.

    Covered IDs are those inside a durable checkpoint, retained for the last `keep_windows` windows, or
    more while the last trained message's batch entry reaches further back (see the module docstring).
    """

    def __init__(self, keep_windows: int = 3) -> None:
        if keep_windows < 1:
            raise ValueError(f"keep_windows: {keep_windows} is not allowed; it must be at least 1")
        self.keep_windows = keep_windows
        self._windows: deque[frozenset[bytes]] = deque()
        self._shares: deque[int] = deque()  # per window: the IDs this worker trained in it (0: restored)
        self._pending: dict[bytes, None] = {}  # an ordered set: acknowledged in the order trained

    def record(self, ids: Iterable[bytes]) -> None:
        """Note that this worker trained on these messages (call once the step has run)."""
        for message_id in ids:
            if not isinstance(message_id, bytes):
                raise TypeError(f"message id {message_id!r}: expected bytes (MessageId.serialize()), "
                                f"got {type(message_id).__name__}")
            self._pending[message_id] = None

    def is_duplicate(self, message_id: bytes) -> bool:
        """True when the message is inside a durable checkpoint: acknowledge it and skip it."""
        return any(message_id in window for window in self._windows)

    def is_pending(self, message_id: bytes) -> bool:
        """True when the message was trained on since the last commit (a redelivery after a
        reconnect): skip it; it is acknowledged with the next commit."""
        return message_id in self._pending

    def seen(self, ids: Sequence[bytes], also_pending: Container[bytes] = ()) -> tuple[list[int], set[int]]:
        """Of a received batch: the indices inside a durable checkpoint (acknowledge and skip them), and
        every index to skip: those, plus the pending ones and those in `also_pending` (received again)."""
        duplicates: list[int] = []
        skip: set[int] = set()
        for index, message_id in enumerate(ids):
            if self.is_pending(message_id) or message_id in also_pending:
                skip.add(index)
            elif self.is_duplicate(message_id):
                duplicates.append(index)
                skip.add(index)
        return duplicates, skip

    def pending(self) -> list[bytes]:
        """The IDs trained on since the last commit, in the order recorded."""
        return list(self._pending)

    @property
    def covered(self) -> frozenset[bytes]:
        """Every retained ID inside a durable checkpoint (the union of the kept windows)."""
        return frozenset().union(*self._windows)

    @property
    def windows(self) -> list[frozenset[bytes]]:
        """The kept windows, oldest first."""
        return list(self._windows)

    def commit(self, checkpoint_dir: Path, checkpoint_name: str, worker_index: int, *,
               num_workers: int, partitions: int = 1) -> list[bytes]:
        """Store the ledger of a just-saved checkpoint durably; return the IDs that may now be acked.

        Writes `{checkpoint_dir}/{checkpoint_name}.ledger-{worker_index}` atomically (temporary
        file, fsync, rename, fsync of the directory) with every kept window, the pending one last.
        `num_workers` (the gang size) goes into the file so that `restore` can tell whether every
        worker's file is there. Every worker must commit, even one that trained on nothing.
        `partitions`: how many partitions of the topic this worker reads (see the module docstring).
        """
        if not 0 <= worker_index < num_workers:
            raise ValueError(f"worker_index: {worker_index} is out of range; allowed 0..{num_workers - 1} "
                             f"(num_workers={num_workers})")
        window = frozenset(self._pending)
        if window:  # an idle commit keeps the windows as they are
            self._windows.append(window)
            self._shares.append(len(window))
            self._trim(entry_size(next(reversed(self._pending))) * max(partitions, 1))
        windows = list(self._windows)
        path = ledger_path(checkpoint_dir, checkpoint_name, worker_index)
        write_ledger(path, LedgerFile(worker_index=worker_index, num_workers=num_workers,
                                      windows=tuple(windows), fresh=bool(window)))
        acknowledge = list(self._pending)
        self._pending = {}
        log.info("ledger %s: %d new message id(s), %d window(s) kept", path.name, len(acknowledge),
                 len(windows))
        return acknowledge

    def _trim(self, reach: int) -> None:
        """Drop the oldest windows beyond `keep_windows`, but keep those the newest windows need to hold
        `reach` IDs this worker trained: the entries under way may reach back that far."""
        kept, held = 0, 0
        for share in reversed(self._shares):
            if kept >= self.keep_windows and held >= reach:
                break
            kept, held = kept + 1, held + share
        while len(self._windows) > kept:
            self._windows.popleft()
            self._shares.popleft()

    @classmethod
    def restore(cls, checkpoint_dir: Path, checkpoint_name: str, keep_windows: int = 3) -> Ledger:
        """A ledger whose covered set is every worker's ledger of checkpoint `checkpoint_name`.

        Loads all `{checkpoint_name}.ledger-N` files (the gang that wrote them may have had another
        size than the one restoring; each file records it) and merges the windows newest with
        newest. Raises `MissingLedger` when a writer's file is absent, `LedgerError` when one is
        corrupt or the files disagree.
        """
        loaded = read_checkpoint_ledgers(Path(checkpoint_dir), checkpoint_name)
        ledger = cls(keep_windows)
        depth = max(len(f.windows) for f in loaded.values())  # more than keep_windows: see `commit`
        for age in range(depth, 0, -1):  # oldest kept first
            ledger._windows.append(frozenset().union(*(f.windows[-age] for f in loaded.values()
                                                         if len(f.windows) >= age)))
            ledger._shares.append(0)
        log.info("ledger of %s restored from %d file(s): %d covered id(s) in %d window(s)",
                 checkpoint_name, len(loaded), len(ledger.covered), len(ledger._windows))
        return ledger

    @staticmethod
    def prune(checkpoint_dir: Path, keep: set[str]) -> list[Path]:
        """Delete ledger files (and leftover temporary files) of checkpoints not named in `keep`.

        Returns the paths deleted. Call it after the checkpoints themselves are deleted.
        """
        removed: list[Path] = []
        for path in sorted(Path(checkpoint_dir).iterdir()):
            match = _FILE.match(path.name)
            if match is None or match.group("name") in keep or not path.is_file():
                continue
            if path.name.startswith(".") != bool(match.group("tmp")):
                continue  # not a name this module writes
            path.unlink(missing_ok=True)
            removed.append(path)
        if removed:
            log.info("pruned %d ledger file(s) of deleted checkpoints in %s", len(removed), checkpoint_dir)
        return removed


def read_checkpoint_ledgers(checkpoint_dir: Path, checkpoint_name: str, *,
                            new_only: bool = False) -> dict[int, LedgerFile]:
    """Every worker's ledger file of a checkpoint, by worker index, checked to fit together: raises
    `MissingLedger` when a writer's file is absent, `LedgerError` when one is corrupt or they disagree.
    `new_only`: see `read_ledger`."""
    files = _ledger_files(checkpoint_dir, checkpoint_name)
    if not files:
        raise MissingLedger(f"checkpoint {checkpoint_name!r} in {checkpoint_dir}: no ledger files "
                            f"({checkpoint_name}.ledger-N); the checkpoint is incomplete")
    loaded = {index: read_ledger(path, new_only=new_only) for index, path in sorted(files.items())}
    sizes = {f.num_workers for f in loaded.values()}
    if len(sizes) != 1:
        raise LedgerError(f"checkpoint {checkpoint_name!r} in {checkpoint_dir}: ledger files disagree "
                          f"on the number of workers ({sorted(sizes)})")
    (size,) = sizes
    for index, f in loaded.items():
        if f.worker_index != index:
            raise LedgerError(f"{files[index]}: written by worker {f.worker_index}, "
                              f"but the name says worker {index}")
    missing = [ledger_path(checkpoint_dir, checkpoint_name, i).name for i in range(size) if i not in loaded]
    extra = sorted(i for i in loaded if i >= size)
    if missing or extra:
        raise MissingLedger(f"checkpoint {checkpoint_name!r} in {checkpoint_dir}: written by {size} "
                            f"worker(s) but missing {missing or 'none'}, unexpected workers "
                            f"{extra or 'none'}; the checkpoint is incomplete")
    return loaded


def _ledger_files(checkpoint_dir: Path, checkpoint_name: str) -> dict[int, Path]:
    """This checkpoint's finished ledger files by worker index (temporary files are ignored)."""
    found: dict[int, Path] = {}
    if not checkpoint_dir.is_dir():
        return found
    for path in checkpoint_dir.iterdir():
        match = _FILE.match(path.name)
        if match and not match.group("tmp") and not path.name.startswith(".") \
                and match.group("name") == checkpoint_name:
            found[int(match.group("index"))] = path
    return found



def write_ledger(path: Path, contents: LedgerFile) -> None:
    """Write atomically: a temporary file beside it, fsync, rename over `path`, fsync the directory."""
    parts = [_HEADER.pack(MAGIC, VERSION, contents.worker_index, contents.num_workers,
                          len(contents.windows)), _FRESH.pack(int(contents.fresh))]
    for window in contents.windows:
        ids = sorted(window)
        parts += (_U32.pack(len(ids)), np.fromiter(map(len, ids), _LENGTHS, len(ids)).tobytes(), *ids)
    body = b"".join(parts)
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    with open(tmp, "wb") as out:
        out.write(body + _U32.pack(zlib.crc32(body)))
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_ledger(path: Path, *, new_only: bool = False) -> LedgerFile:
    """Read and check one ledger file; `LedgerError` names the file and what is wrong with it. With `new_only`
    the kept windows are checked and skipped, and `windows` holds the new window alone (or nothing)."""
    data = Path(path).read_bytes()
    if len(data) < _HEADER.size + _U32.size:
        raise LedgerError(f"{path}: truncated ledger file ({len(data)} bytes, the header alone is "
                          f"{_HEADER.size + _U32.size})")
    magic, version, worker_index, num_workers, count = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise LedgerError(f"{path}: not a ledger file (magic {magic!r}, expected {MAGIC!r})")
    if version not in SUPPORTED_VERSIONS:
        raise LedgerError(f"{path}: ledger format version {version} is not supported; allowed "
                          f"{', '.join(map(str, SUPPORTED_VERSIONS))}")
    body, (crc,) = data[:-_U32.size], _U32.unpack_from(data, len(data) - _U32.size)
    if zlib.crc32(body) != crc:
        raise LedgerError(f"{path}: corrupt or truncated ledger file (checksum mismatch)")
    offset, windows, fresh = _HEADER.size, [], False
    if version >= 2:
        if len(body) < offset + _FRESH.size:
            raise LedgerError(f"{path}: truncated ledger file (no new-window flag)")
        fresh = bool(_FRESH.unpack_from(body, offset)[0])
        offset += _FRESH.size
    if fresh and not count:
        raise LedgerError(f"{path}: corrupt ledger file (a new window is flagged, but there are no windows)")
    try:
        for index in range(count):
            wanted = not new_only or (fresh and index == count - 1)
            window, offset = (_read_window_v1 if version == 1 else _read_window)(body, offset, wanted)
            if wanted:
                windows.append(window)
    except struct.error:
        raise LedgerError(f"{path}: corrupt ledger file (window {len(windows) + 1} of {count} "
                          f"runs past the end)") from None
    if offset != len(body):
        raise LedgerError(f"{path}: corrupt ledger file ({len(body) - offset} unexpected trailing bytes)")
    return LedgerFile(worker_index=worker_index, num_workers=num_workers, windows=tuple(windows), fresh=fresh)


def _read_window(body: bytes, offset: int, wanted: bool) -> tuple[frozenset[bytes], int]:
    """One version 2 window at `offset`: its IDs (if `wanted`) and where the next window starts."""
    (n,) = _U32.unpack_from(body, offset)
    offset += _U32.size
    if offset + n * _U32.size > len(body):
        raise struct.error("the lengths run past the end")
    lengths = np.frombuffer(body, _LENGTHS, n, offset).astype(np.int64)
    start = offset + n * _U32.size
    bounds = np.concatenate(([0], np.cumsum(lengths))) + start
    end = int(bounds[-1])
    if end > len(body):
        raise struct.error("the ids run past the end")
    if not wanted:
        return frozenset(), end
    edges = bounds.tolist()
    return frozenset([body[a:b] for a, b in pairwise(edges)]), end


def _read_window_v1(body: bytes, offset: int, wanted: bool) -> tuple[frozenset[bytes], int]:
    """One version 1 window (each ID as length u32 plus bytes) at `offset`."""
    (n,) = _U32.unpack_from(body, offset)
    offset += _U32.size
    ids = []
    for _ in range(n):
        (length,) = _U32.unpack_from(body, offset)
        offset += _U32.size
        if offset + length > len(body):
            raise struct.error("id runs past the end")
        ids.append(body[offset:offset + length])
        offset += length
    return frozenset(ids), offset
