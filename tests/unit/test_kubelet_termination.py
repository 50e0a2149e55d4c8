"""Termination messages of the process kubelet: the kubelet's read and fallback rules, the pod-wide
12 KiB share, and how the shim puts the message file at a path that does not exist."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cluster.kubelet import termination
from tests.cluster.kubelet.shim import termination_plan
from tests.cluster.kubelet.status import ContainerRecord, pod_status


def test_path_and_policy_defaults() -> None:
    assert termination.message_path({"name": "c"}) == "/dev/termination-log"
    assert termination.message_path({"name": "c", "terminationMessagePath": "/tmp//x/../msg"}) == "/tmp/msg"
    assert not termination.falls_back_to_logs({"name": "c"})
    assert not termination.falls_back_to_logs({"name": "c", "terminationMessagePolicy": "File"})
    assert termination.falls_back_to_logs({"name": "c", "terminationMessagePolicy": "FallbackToLogsOnError"})


def test_prepare_gives_each_run_an_empty_writable_file(tmp_path: Path) -> None:
    first = termination.prepare(tmp_path, {"name": "c"})
    Path(first.source).write_text("last run's words")
    again = termination.prepare(tmp_path, {"name": "c", "terminationMessagePath": "/run/msg"})
    assert again.source == first.source and Path(again.source).read_bytes() == b""
    assert Path(again.source).stat().st_mode & 0o777 == 0o666
    assert again.target == "/run/msg"
    assert Path(again.stage).is_dir() and not any(Path(again.stage).iterdir())


def test_file_content_is_the_message_and_a_long_file_keeps_its_end(tmp_path: Path) -> None:
    source, log = tmp_path / "msg", tmp_path / "0.log"
    log.write_text("some log\n")
    source.write_text('{"ok": 1}')
    assert termination.read_message(source, log, 1, fallback_to_logs=True) == '{"ok": 1}'
    source.write_bytes(b"a" * 100 + b"b" * 4096)
    assert termination.read_message(source, log, 0, fallback_to_logs=False) == "b" * 4096


@pytest.mark.parametrize(("code", "fallback", "expected"), [
    (1, True, "boom\n"),  # FallbackToLogsOnError, empty file, failed: the log tail
    (0, True, ""),  # succeeded: no fallback
    (1, False, ""),  # policy File: no fallback
])
def test_fallback_to_logs_only_on_error(tmp_path: Path, code: int, fallback: bool, expected: str) -> None:
    source, log = tmp_path / "msg", tmp_path / "0.log"
    source.write_bytes(b"")
    log.write_text("boom\n")
    assert termination.read_message(source, log, code, fallback) == expected
    assert termination.read_message(None, log, code, fallback) == expected  # no file at all: the same


def test_log_tail_is_80_lines_and_at_most_2048_bytes(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    log.write_text("".join(f"line {i}\n" for i in range(200)))
    tail = termination.log_tail(log)
    assert tail.splitlines() == [f"line {i}" for i in range(120, 200)]
    log.write_text("x" * 5000 + "\nlast line without newline")
    tail = termination.log_tail(log)
    assert len(tail) == 2048 and tail.endswith("x\nlast line without newline")
    assert termination.log_tail(tmp_path / "missing.log") == ""


def test_pod_messages_share_12_kib(tmp_path: Path) -> None:
    assert termination.trim_message("m" * 4096, 1) == "m" * 4096
    assert termination.trim_message("m" * 4096, 4) == "m" * 3072
    assert termination.trim_message("é" * 2000, 4) == "é" * 1536  # whole characters: 3072 bytes
    records = []
    for name in ("a", "b", "c", "d"):
        record = ContainerRecord(name, "img", state="terminated", exit_code=1, ever_started=True,
                                 message="n" * 4000)
        record.last_state = record.terminated_dict()
        records.append(record)
    pod = {"metadata": {"name": "p"}, "spec": {"restartPolicy": "Never"}}
    status = pod_status(pod, pod_ip=None, host_ip="10.0.0.1", start_time="S", sandbox_ready=False,
                        initialized=True, init_failed=False, init_records=records[:1], records=records[1:])
    statuses = status["initContainerStatuses"] + status["containerStatuses"]
    assert [len(s["state"]["terminated"]["message"]) for s in statuses] == [3072] * 4
    assert [len(s["lastState"]["terminated"]["message"]) for s in statuses] == [3072] * 4
    assert records[0].message == "n" * 4000  # the record keeps it whole


def test_shim_plan_for_the_message_file(tmp_path: Path) -> None:
    existing = tmp_path / "existing"
    existing.write_text("")
    (tmp_path / "vol").mkdir()
    volume = {"source": str(tmp_path / "vol"), "target": str(tmp_path / "mnt"), "read_only": False}
    (tmp_path / "mnt").mkdir()
    assert termination_plan(str(existing), []) == ("bind", str(existing))
    assert termination_plan(str(tmp_path / "missing"), []) == ("shadow", str(tmp_path))
    assert termination_plan(str(tmp_path / "a" / "b" / "missing"), []) == ("shadow", str(tmp_path))
    inside = str(tmp_path / "mnt" / "sub" / "msg")
    assert termination_plan(inside, [volume]) == ("create", inside)
    assert termination_plan(inside, [{**volume, "read_only": True}]) == ("shadow", str(tmp_path / "mnt"))
    assert termination_plan("/pulsetrain-no-such-file", []) == ("create", "/pulsetrain-no-such-file")
    with pytest.raises(IsADirectoryError):
        termination_plan(str(tmp_path), [])
    with pytest.raises(NotADirectoryError):
        termination_plan(str(existing / "below"), [])


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare")
def test_shim_shadows_dev_in_the_container_only(tmp_path: Path) -> None:
    """The shim, in a private mount namespace as the kubelet runs it, without a network namespace."""
    if os.path.lexists("/dev/termination-log"):
        pytest.skip("this host has a /dev/termination-log of its own")
    source, stage = tmp_path / "msg", tmp_path / "stage"
    source.write_bytes(b"")
    stage.mkdir()
    script = ('set -e; printf \'{"ok": 1}\' > /dev/termination-log; echo discarded > /dev/null; '
              'test -c /dev/null; test -d /dev/pts; ls /dev | wc -l')
    spec = {"argv": ["sh", "-c", script], "env": {"PATH": "/usr/bin:/bin"}, "hostname": "shim-test",
            "workdir": None, "mounts": [], "etc": {},
            "termination": {"source": str(source), "target": "/dev/termination-log", "stage": str(stage)}}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    shim = Path(__file__).parents[1] / "cluster" / "kubelet" / "shim.py"
    result = subprocess.run(["unshare", "--mount", "--uts", "--propagation", "private", "--",
                             sys.executable, str(shim), str(tmp_path / "spec.json")],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert source.read_text() == '{"ok": 1}'
    assert int(result.stdout.strip()) == len(os.listdir("/dev")) + 1  # all of /dev, plus the file
    assert not os.path.lexists("/dev/termination-log")  # the node's /dev is untouched
    assert not any(stage.iterdir())
