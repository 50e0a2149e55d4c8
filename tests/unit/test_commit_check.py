"""The check a commit must pass: no message in two workers' new windows, none again after a commit."""

from __future__ import annotations

from pathlib import Path

from pulsetrain.commit_check import CommitCheck, Retrained, refusal_advice
from pulsetrain.config import load_config
from pulsetrain.ledger import Ledger


def ids(*names: str) -> list[bytes]:
    return [name.encode() for name in names]


def commit_gang(directory: Path, name: str, ledgers: list[Ledger], trained: list[list[str]]) -> None:
    for index, (ledger, names) in enumerate(zip(ledgers, trained, strict=True)):
        ledger.record(ids(*names))
        ledger.commit(directory, name, index, num_workers=len(ledgers))


def test_commits_with_nothing_trained_twice_pass(tmp_path: Path) -> None:
    gang, check = [Ledger(), Ledger()], CommitCheck((), keep=3)
    commit_gang(tmp_path, "ckpt-1", gang, [["a", "b"], ["c"]])
    assert check.check(tmp_path, "ckpt-1") is None
    check.passed()
    commit_gang(tmp_path, "ckpt-2", gang, [["d"], []])  # worker 1 trained nothing: its file has no new window
    assert check.check(tmp_path, "ckpt-2") is None


def test_a_message_two_workers_trained_in_one_window_is_found(tmp_path: Path) -> None:
    commit_gang(tmp_path, "ckpt-1", [Ledger(), Ledger(), Ledger()], [["a", "b", "x"], ["c", "x", "b"], ["e"]])
    assert CommitCheck((), keep=3).check(tmp_path, "ckpt-1") == Retrained(count=2, workers=(0, 1))
    assert "2 message(s) in the new window(s) of worker(s) 0, 1" in Retrained(2, (0, 1)).describe()


def test_a_message_trained_again_after_a_passed_commit_is_found(tmp_path: Path) -> None:
    gang, check = [Ledger(), Ledger()], CommitCheck((), keep=3)
    commit_gang(tmp_path, "ckpt-1", gang, [["a"], ["b"]])
    assert check.check(tmp_path, "ckpt-1") is None
    check.passed()
    commit_gang(tmp_path, "ckpt-2", gang, [["c"], ["a"]])  # a: committed by worker 0, its ack lost, then to worker 1
    assert check.check(tmp_path, "ckpt-2") == Retrained(count=1, workers=(1,))


def test_a_refused_commit_is_not_remembered(tmp_path: Path) -> None:
    check = CommitCheck((), keep=3)
    commit_gang(tmp_path, "ckpt-1", [Ledger(), Ledger()], [["a"], ["a"]])
    assert check.check(tmp_path, "ckpt-1") is not None  # refused: passed() is not called
    commit_gang(tmp_path, "ckpt-2", [Ledger(), Ledger()], [["a"], ["b"]])  # after the rollback, trained once
    assert check.check(tmp_path, "ckpt-2") is None


def test_only_the_last_commits_are_remembered(tmp_path: Path) -> None:
    gang, check = [Ledger(keep_windows=2)], CommitCheck((), keep=2)
    for step, name in enumerate(("a", "b", "c"), 1):
        commit_gang(tmp_path, f"ckpt-{step}", gang, [[name]])
        assert check.check(tmp_path, f"ckpt-{step}") is None
        check.passed()
    commit_gang(tmp_path, "ckpt-4", [Ledger()], [["a", "b"]])  # a fell out of the 2 kept windows, b did not
    assert check.check(tmp_path, "ckpt-4") == Retrained(count=1, workers=(0,))


def test_a_restored_ledger_seeds_the_check_and_is_not_taken_for_duplicates(tmp_path: Path) -> None:
    commit_gang(tmp_path, "ckpt-1", [Ledger(), Ledger()], [["a"], ["b"]])
    restored = Ledger.restore(tmp_path, "ckpt-1")
    check = CommitCheck(restored.windows, keep=3)
    gang = [Ledger.restore(tmp_path, "ckpt-1"), Ledger.restore(tmp_path, "ckpt-1")]  # both hold a and b now
    commit_gang(tmp_path, "ckpt-2", gang, [["c"], []])
    assert check.check(tmp_path, "ckpt-2") is None
    commit_gang(tmp_path, "ckpt-3", [Ledger(), Ledger()], [["d"], ["b"]])  # b: inside the restored commit
    assert check.check(tmp_path, "ckpt-3") == Retrained(count=1, workers=(1,))


def test_refusal_advice_names_what_to_fix() -> None:
    pulsar = load_config({"source": {"pulsar": {"serviceUrl": "pulsar://p:6650", "topic": "digits",
                                                "subscription": "trainer"}},
                          "data": {"format": "raw", "features": [{"name": "x", "dtype": "float32", "shape": [2]}],
                                   "label": {"name": "y", "dtype": "int64", "shape": []}},
                          "model": {"builtin": "linear", "task": "classification", "numClasses": 2},
                          "storage": {"checkpointDir": "/c", "exportDir": "/e"}}).source.pulsar
    assert "one shared checkpoint directory (on a cluster: storage.claimName" in refusal_advice(True, pulsar)
    assert "subscription 'trainer' of digits" in refusal_advice(False, pulsar)
