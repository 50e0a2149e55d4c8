"""What `pulsetrain run` and `pulsetrain status` print, from facts given as data (no processes, no cluster)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pulsetrain import cli, status_view
from pulsetrain.progress_doc import CheckpointInfo, DeadLettered, ExportInfo, ProgressDocument, parse_rfc3339
from pulsetrain.run_report import RunResult, WorkerEnd, duration, progress_line, summary

NOW = "2026-01-01T12:00:00.000Z"


def doc(worker: int = 0, **fields: object) -> ProgressDocument:
    base: dict[str, object] = dict(pipeline="digits", worker=worker, is_chief=worker == 0, state="training", step=120,
                                   samples=3840, messages_received=4000, messages_acknowledged=3200, loss=0.25,
                                   metrics={"accuracy": 0.93}, samples_per_second=1234.5, started_at=NOW,
                                   updated_at=NOW)
    base.update(fields)
    return ProgressDocument(**base)  # type: ignore[arg-type]


def test_durations() -> None:
    assert [duration(s) for s in (4.4, 65, 3725)] == ["4s", "1m 05s", "1h 02m"]


def test_progress_line_shows_step_rate_loss_metrics_and_state() -> None:
    assert progress_line(None, 3) == "starting workers... 3s"
    line = progress_line(doc(), 42)
    assert line == "step 120 | 1,234 samples/s | loss 0.2500 | accuracy 0.9300 | training | 42s"
    assert progress_line(doc(loss=None, state="source-unavailable", message="Pulsar down"), 1).count("loss -") == 1
    bar = progress_line(doc(), 42, max_steps=480)
    assert bar.startswith("[#####...............]  25% | step 120")
    assert progress_line(doc(samples=10_000), 1, max_messages=5_000).startswith("[####################] 100%")


def finished_result(tmp_path: Path) -> RunResult:
    export = ExportInfo(version=3, path="/state/export/3", time=NOW)
    checkpoint = CheckpointInfo(step=180, time=NOW, path="/state/checkpoints/ckpt-180")
    chief = doc(state="finished", step=180, samples=5752, last_export=export, last_checkpoint=checkpoint,
                dead_lettered=DeadLettered(total=2, by_reason={"json": 2}))
    other = doc(1, state="finished", dead_lettered=DeadLettered(total=1, by_reason={"shape": 1}))
    return RunResult("digits", "finished", 0, 75, [WorkerEnd(0, 0, chief), WorkerEnd(1, 0, other)], tmp_path)


def test_summary_of_a_finished_run(tmp_path: Path) -> None:
    text = summary(finished_result(tmp_path))
    assert text.splitlines()[0] == "pulsetrain run: digits finished after 1m 15s (2 workers, step 180)"
    assert "  trained      5,752 messages, 3 dead-lettered (json 2, shape 1)" in text
    assert "  metrics      accuracy 0.9300" in text
    assert "  model        version 3 at /state/export/3" in text
    assert "  checkpoint   step 180 at /state/checkpoints/ckpt-180" in text
    assert "again" not in text


def test_summary_of_a_failed_and_of_a_stopped_run(tmp_path: Path) -> None:
    failed = RunResult("digits", "failed", 2, 5, [WorkerEnd(0, 2, None), WorkerEnd(1, -9, None)], tmp_path,
                       reason="worker 0 exited with code 2", failed_log_tail="--- end of worker-0.log ---\nboom")
    text = summary(failed)
    assert text.startswith("pulsetrain run: digits FAILED after 5s (2 workers): worker 0 exited with code 2")
    assert text.endswith("--- end of worker-0.log ---\nboom") and "trained" not in text
    stopped = RunResult("digits", "stopped", 130, 5, [WorkerEnd(0, 0, doc(state="stopped"))], tmp_path,
                        reason="stopped on SIGINT", notes=["ran 1 worker instead of 2"])
    text = summary(stopped)
    assert "stopped after 5s (1 worker, step 120): stopped on SIGINT" in text and "model        not exported" in text
    assert "  note         ran 1 worker instead of 2" in text
    assert text.endswith("Run the same command again to continue from the last checkpoint.")


STATUS = {
    "metadata": {"name": "digits", "namespace": "ml"},
    "spec": {"training": {"workers": 2}, "runPolicy": {"backoffLimit": 3}},
    "status": {
        "phase": "Running", "reason": "Training", "message": "training on 2 workers", "attempt": 2, "restarts": 1,
        "workers": {"desired": 2, "ready": 1, "running": 2}, "workersReady": "1/2",
        "progress": {"step": 1200, "samples": 76800, "loss": 0.125, "metrics": {"accuracy": 0.97},
                     "samplesPerSecond": 812.4, "messagesAcknowledged": 76000, "deadLettered": 3, "state": "training",
                     "lastCheckpointStep": 1100, "lastCheckpointTime": "2026-01-01T11:59:00Z"},
        "model": {"exportPath": "/var/lib/pulsetrain/ml/digits/export/2", "version": 2},
        "startTime": "2026-01-01T11:00:00Z",
        "conditions": [{"type": "Ready", "status": "True", "reason": "WorkersReady", "message": "all ready",
                        "lastTransitionTime": "2026-01-01T11:58:00Z"},
                       {"type": "Succeeded", "status": "False", "reason": "Training",
                        "lastTransitionTime": "2026-01-01T11:00:00Z"}],
    },
}


def test_status_is_rendered_readably() -> None:
    text = status_view.render(STATUS, parse_rfc3339("2026-01-01T12:00:00Z"))
    for line in ("Phase:       Running (Training)", "Message:     training on 2 workers",
                 "Attempt:     2 (restarts 1, backoff limit 3)", "Workers:     1/2 ready (running 2)",
                 "Progress:    step 1,200, 76,800 samples, loss 0.1250, accuracy 0.9700, 812 samples/s",
                 "Messages:    76,000 acknowledged, 3 dead-lettered", "Checkpoint:  step 1,100, 1m ago",
                 "Model:       version 2 at /var/lib/pulsetrain/ml/digits/export/2",
                 "Started:     2026-01-01T11:00:00Z (1h ago)", "Conditions:",
                 "  TYPE       STATUS  REASON        AGE  MESSAGE", "  Ready      True    WorkersReady  2m   all ready",
                 "  Succeeded  False   Training      1h"):
        assert line in text.splitlines(), f"{line!r} not in\n{text}"
    assert json.loads(status_view.status_json(STATUS)) == STATUS["status"]


def test_a_pipeline_without_status_says_so() -> None:
    text = status_view.render({"metadata": {"name": "x", "namespace": "y"}}, 0)
    assert "Phase:       (no status yet: is the operator running?)" in text and "Conditions" not in text


def test_cli_refuses_an_invalid_pipeline_with_exit_code_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text((Path(__file__).resolve().parents[2] / "examples" / "digits.yaml").read_text()
                    .replace("workers: 2", "workers: 0"))
    assert cli.main(["run", str(path), "--state-dir", str(tmp_path / "state")]) == 2
    assert "spec.training.workers in body should be greater than or equal to 1" in capsys.readouterr().err
    assert not (tmp_path / "state").exists()  # refused before anything started
    assert cli.main(["run", str(path).replace("bad", "good"), "--workers", "2"]) == 2  # missing file
    assert "cannot read it" in capsys.readouterr().err
    example = str(Path(__file__).resolve().parents[2] / "examples" / "digits.yaml")
    assert cli.main(["run", example, "--workers", "2", "--state-dir", str(tmp_path / "state")]) == 2
    assert "the embedded broker serves 1 worker process per subscription" in capsys.readouterr().err
