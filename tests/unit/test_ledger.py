"""The ledger: round trip, restore from several workers, atomic writes, corrupt files, pruning, windows."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from pulsetrain.ledger import Ledger, LedgerError, MissingLedger, ledger_path, read_ledger


def ids(*names: str) -> list[bytes]:
    return [name.encode() for name in names]


def test_record_commit_restore_round_trip(tmp_path: Path) -> None:
    ledger = Ledger()
    ledger.record(ids("a", "b"))
    ledger.record(ids("c", "a"))  # recording twice is harmless
    assert ledger.pending() == ids("a", "b", "c")
    assert ledger.is_pending(b"a") and not ledger.is_duplicate(b"a")

    acked = ledger.commit(tmp_path, "ckpt-1", 0, num_workers=1)

    assert acked == ids("a", "b", "c")
    assert ledger.pending() == []
    assert ledger.is_duplicate(b"b") and not ledger.is_pending(b"b")
    assert ledger_path(tmp_path, "ckpt-1", 0).is_file()
    restored = Ledger.restore(tmp_path, "ckpt-1")
    assert restored.covered == frozenset(ids("a", "b", "c"))
    assert restored.pending() == []
    assert not restored.is_duplicate(b"d")


def test_seen_sorts_a_received_batch_into_duplicates_and_skips(tmp_path: Path) -> None:
    ledger = Ledger()
    ledger.record(ids("a"))
    ledger.commit(tmp_path, "ckpt-1", 0, num_workers=1)  # a: inside a durable checkpoint
    ledger.record(ids("b"))  # b: trained since
    duplicates, skip = ledger.seen(ids("a", "b", "c", "d"), also_pending={b"c"})  # c: received, not trained
    assert duplicates == [0]  # only a is acknowledged and skipped
    assert skip == {0, 1, 2}  # d is new


def test_binary_ids_survive_the_file_format(tmp_path: Path) -> None:
    odd = [b"", b"\x00", bytes(range(256)), b"\xff" * 1000]
    ledger = Ledger()
    ledger.record(odd)
    ledger.commit(tmp_path, "ckpt-1", 0, num_workers=1)
    assert Ledger.restore(tmp_path, "ckpt-1").covered == frozenset(odd)


def test_restore_loads_every_workers_file(tmp_path: Path) -> None:
    for worker, names in enumerate([("a", "b"), ("c",), ()]):
        ledger = Ledger()
        ledger.record(ids(*names))
        ledger.commit(tmp_path, "ckpt-7", worker, num_workers=3)

    restored = Ledger.restore(tmp_path, "ckpt-7")

    # a message worker 0 trained on, redelivered to worker 1 after the restart, is still a duplicate
    assert restored.covered == frozenset(ids("a", "b", "c"))
    assert all(restored.is_duplicate(i) for i in ids("a", "b", "c"))


def test_restore_refuses_a_checkpoint_missing_a_workers_file(tmp_path: Path) -> None:
    ledger = Ledger()
    ledger.record(ids("a"))
    ledger.commit(tmp_path, "ckpt-2", 0, num_workers=2)
    with pytest.raises(MissingLedger, match=r"written by 2 worker\(s\) but missing \['ckpt-2.ledger-1'\]"):
        Ledger.restore(tmp_path, "ckpt-2")
    with pytest.raises(MissingLedger, match="no ledger files"):
        Ledger.restore(tmp_path, "ckpt-3")


def test_a_leftover_temporary_file_is_ignored_and_pruned(tmp_path: Path) -> None:
    ledger = Ledger()
    ledger.record(ids("a"))
    ledger.commit(tmp_path, "ckpt-1", 0, num_workers=1)
    # a crash between writing and renaming leaves a temporary file with garbage in it
    leftover = tmp_path / ".ckpt-1.ledger-1.tmp.4242"
    leftover.write_bytes(b"half-written")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [leftover.name]

    assert Ledger.restore(tmp_path, "ckpt-1").covered == frozenset(ids("a"))
    assert Ledger.prune(tmp_path, keep={"ckpt-9"}) == sorted([leftover, ledger_path(tmp_path, "ckpt-1", 0)])


def test_commit_leaves_no_temporary_file(tmp_path: Path) -> None:
    ledger = Ledger()
    ledger.record(ids("a"))
    ledger.commit(tmp_path, "ckpt-1", 0, num_workers=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-1.ledger-0"]


@pytest.mark.parametrize(("damage", "message"), [
    (lambda b: b[:-3], "corrupt or truncated ledger file"),
    (lambda b: b[:10], r"truncated ledger file \(10 bytes"),
    (lambda b: b[:30] + bytes([b[30] ^ 1]) + b[31:], "checksum mismatch"),
    (lambda b: b"NOTLEDGR" + b[8:], "not a ledger file"),
    (lambda b: b[:8] + b"\x09\x00" + b[10:], "version 9 is not supported; allowed 1, 2"),
])
def test_a_corrupt_file_is_rejected_naming_it(tmp_path: Path, damage: object, message: str) -> None:
    ledger = Ledger()
    ledger.record(ids("message-one", "message-two"))
    ledger.commit(tmp_path, "ckpt-1", 0, num_workers=1)
    path = ledger_path(tmp_path, "ckpt-1", 0)
    assert callable(damage)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(LedgerError, match=message) as caught:
        Ledger.restore(tmp_path, "ckpt-1")
    assert str(path) in str(caught.value)


def test_prune_keeps_ledgers_of_existing_checkpoints_only(tmp_path: Path) -> None:
    for name in ("ckpt-1", "ckpt-2", "ckpt-3"):
        for worker in range(2):
            ledger = Ledger()
            ledger.record(ids(f"{name}-{worker}"))
            ledger.commit(tmp_path, name, worker, num_workers=2)
    (tmp_path / "ckpt-1.index").write_text("not a ledger")

    removed = Ledger.prune(tmp_path, keep={"ckpt-2", "ckpt-3"})

    assert sorted(p.name for p in removed) == ["ckpt-1.ledger-0", "ckpt-1.ledger-1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ckpt-1.index", "ckpt-2.ledger-0", "ckpt-2.ledger-1", "ckpt-3.ledger-0", "ckpt-3.ledger-1"]


def test_only_the_last_windows_are_kept_in_memory_and_on_disk(tmp_path: Path) -> None:
    ledger = Ledger(keep_windows=2)
    for step in range(1, 5):
        ledger.record(ids(f"m{step}"))
        ledger.commit(tmp_path, f"ckpt-{step}", 0, num_workers=1)
        ledger.commit(tmp_path, f"ckpt-{step}-idle", 0, num_workers=1)  # nothing trained: no window
    assert ledger.covered == frozenset(ids("m3", "m4"))
    assert not ledger.is_duplicate(b"m2")
    assert read_ledger(ledger_path(tmp_path, "ckpt-3", 0)).windows == (frozenset(ids("m2")),
                                                                       frozenset(ids("m3")))
    assert Ledger.restore(tmp_path, "ckpt-4-idle", keep_windows=2).covered == frozenset(ids("m3", "m4"))


def test_restored_windows_merge_newest_with_newest_and_carry_forward(tmp_path: Path) -> None:
    workers = [Ledger(keep_windows=2), Ledger(keep_windows=2)]
    for step in (1, 2, 3):
        for w, ledger in enumerate(workers):
            ledger.record(ids(f"w{w}s{step}"))
            ledger.commit(tmp_path, f"ckpt-{step}", w, num_workers=2)

    restored = Ledger.restore(tmp_path, "ckpt-3", keep_windows=2)
    assert restored.windows == [frozenset(ids("w0s2", "w1s2")), frozenset(ids("w0s3", "w1s3"))]
    # after the restart a gang of one: its next checkpoint still remembers the newest restored window
    restored.record(ids("new"))
    restored.commit(tmp_path, "ckpt-4", 0, num_workers=1)
    assert Ledger.restore(tmp_path, "ckpt-4", keep_windows=2).covered == frozenset(ids("w0s3", "w1s3", "new"))


def batched_id(entry: int, index: int, size: int) -> bytes:
    """A serialized Pulsar message ID (ledger 127) of message `index` of an entry of `size` messages."""
    return bytes([0x08, 0x7F, 0x10, entry, 0x20, index, 0x30, size])


def test_windows_reaching_back_to_the_start_of_the_last_batch_entry_are_kept(tmp_path: Path) -> None:
    # a 10-message entry trained 2 messages per commit: while it is unfinished its committed part must
    # stay covered (the broker redelivers the entry whole), though keep_windows is 2
    ledger = Ledger(keep_windows=2)
    entry = [batched_id(5, i, 10) for i in range(10)]
    for step, start in enumerate(range(0, 8, 2), 1):
        ledger.record(entry[start:start + 2])
        ledger.commit(tmp_path, f"ckpt-{step}", 0, num_workers=1)
    assert ledger.covered == frozenset(entry[:8]) and len(ledger.windows) == 4
    assert Ledger.restore(tmp_path, "ckpt-4", keep_windows=2).covered == frozenset(entry[:8])
    # the entry finished and three unbatched messages later: back to two windows
    ledger.record(entry[8:])
    ledger.commit(tmp_path, "ckpt-5", 0, num_workers=1)
    for step, name in enumerate(("a", "b", "c"), 6):
        ledger.record(ids(name))
        ledger.commit(tmp_path, f"ckpt-{step}", 0, num_workers=1)
    assert ledger.covered == frozenset(ids("b", "c"))


def test_restored_windows_stay_until_this_workers_own_windows_hold_the_last_entry(tmp_path: Path) -> None:
    entry = [batched_id(7, i, 6) for i in range(6)]
    stopped, other = Ledger(keep_windows=1), Ledger(keep_windows=1)
    stopped.record(entry[:4])  # committed in part when the gang stopped
    stopped.commit(tmp_path, "ckpt-1", 0, num_workers=2)
    other.record(ids(*(f"other-{i}" for i in range(30))))
    other.commit(tmp_path, "ckpt-1", 1, num_workers=2)
    restored = Ledger.restore(tmp_path, "ckpt-1", keep_windows=1)
    restored.record(entry[4:5])  # the entry came back whole: four skipped, one trained
    restored.commit(tmp_path, "ckpt-2", 0, num_workers=1)
    restored.record(entry[5:])
    restored.commit(tmp_path, "ckpt-3", 0, num_workers=1)
    assert set(entry) <= restored.covered  # the merged window of 34 IDs counts for none of the entry's 6
    for i in range(3):
        restored.record(ids(f"new-{i}"))
        restored.commit(tmp_path, f"ckpt-{4 + i}", 0, num_workers=1)
    assert restored.covered == frozenset(ids("new-2"))


def test_every_partition_may_have_an_entry_under_way(tmp_path: Path) -> None:
    ledger = Ledger(keep_windows=1)
    for step in range(1, 6):
        ledger.record([batched_id(step, 0, 3)])
        ledger.commit(tmp_path, f"ckpt-{step}", 0, num_workers=1, partitions=2)
    assert len(ledger.windows) == 5  # 5 IDs < 3 per entry x 2 partitions would have needed a sixth
    ledger.record([batched_id(6, 0, 3)])
    ledger.commit(tmp_path, "ckpt-6", 0, num_workers=1, partitions=2)
    assert len(ledger.windows) == 6


def test_bad_arguments_name_what_is_allowed(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="keep_windows: 0 is not allowed; it must be at least 1"):
        Ledger(keep_windows=0)
    with pytest.raises(ValueError, match=r"worker_index: 2 is out of range; allowed 0..1"):
        Ledger().commit(tmp_path, "ckpt-1", 2, num_workers=2)
    with pytest.raises(TypeError, match="expected bytes"):
        Ledger().record(["a"])  # type: ignore[list-item]



def test_new_only_reads_the_new_window_and_skips_the_kept_ones(tmp_path: Path) -> None:
    ledger = Ledger()
    for step, names in ((1, ("a", "bb")), (2, ("ccc",)), (3, ("d", "eeee", "f"))):
        ledger.record(ids(*names))
        ledger.commit(tmp_path, f"ckpt-{step}", 0, num_workers=1)
    path = ledger_path(tmp_path, "ckpt-3", 0)
    assert read_ledger(path).windows == (frozenset(ids("a", "bb")), frozenset(ids("ccc")),
                                         frozenset(ids("d", "eeee", "f")))
    new = read_ledger(path, new_only=True)
    assert new.fresh and new.windows == (frozenset(ids("d", "eeee", "f")),)
    assert new.new_ids == frozenset(ids("d", "eeee", "f"))
    ledger.commit(tmp_path, "ckpt-4", 0, num_workers=1)  # nothing trained: no new window
    idle = read_ledger(ledger_path(tmp_path, "ckpt-4", 0), new_only=True)
    assert not idle.fresh and idle.windows == () and idle.new_ids == frozenset()


def test_a_version_1_file_is_still_read(tmp_path: Path) -> None:
    body = struct.pack("<8sHIII", b"PTLEDGER", 1, 0, 1, 1) + struct.pack("<II", 1, 1) + b"a"
    path = ledger_path(tmp_path, "ckpt-1", 0)
    path.write_bytes(body + struct.pack("<I", zlib.crc32(body)))
    contents = read_ledger(path)
    assert contents.windows == (frozenset(ids("a")),) and not contents.fresh
    assert read_ledger(path, new_only=True).new_ids == frozenset()
    assert Ledger.restore(tmp_path, "ckpt-1").covered == frozenset(ids("a"))


def test_id_lengths_that_run_past_the_end_are_rejected(tmp_path: Path) -> None:
    header = struct.pack("<8sHIIII", b"PTLEDGER", 2, 0, 1, 1, 1)
    body = header + struct.pack("<III", 2, 1, 50) + b"ab"  # the second ID claims 50 bytes
    path = ledger_path(tmp_path, "ckpt-1", 0)
    path.write_bytes(body + struct.pack("<I", zlib.crc32(body)))
    with pytest.raises(LedgerError, match="window 1 of 1 runs past the end"):
        read_ledger(path)
