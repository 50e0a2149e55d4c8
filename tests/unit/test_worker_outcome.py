"""The worker's termination document: the outcome as `state`, always valid JSON within 4096 bytes, and
written however the worker exits (a bad configuration included)."""

from __future__ import annotations

import dataclasses
import json
import signal
from pathlib import Path

import pytest

from pulsetrain import worker
from pulsetrain.outcome import (
    MAX_BYTES,
    TerminationLog,
    nothing_trained,
    stop_message,
    termination_document,
    unconfigured,
)
from pulsetrain.progress_doc import CheckpointInfo, DeadLettered, ExportInfo, ProgressDocument
from pulsetrain.telemetry import Telemetry


def progress(**changes: object) -> ProgressDocument:
    doc = ProgressDocument(
        pipeline="digits", namespace="ml", worker=1, is_chief=False, state="training", step=120, samples=3840,
        messages_received=4000, messages_acknowledged=3500,
        dead_lettered=DeadLettered(total=3, by_reason={"shape": 2, "json": 1}), loss=0.25,
        metrics={"accuracy": 0.9375}, last_checkpoint=CheckpointInfo(step=100, time="2024-05-01T12:00:00.000Z",
                                                                     path="/ckpt/ckpt-100"),
        last_export=ExportInfo(version=3, path="/export/3", time="2024-05-01T12:00:01.500Z"),
        started_at="2024-05-01T11:00:00.000Z", updated_at="2024-05-01T12:00:02.000Z", message="training")
    return dataclasses.replace(doc, **changes)  # type: ignore[arg-type]


def parse(text: str) -> ProgressDocument:
    assert len(text.encode()) <= MAX_BYTES
    return ProgressDocument.from_json(text)


def test_small_document_is_the_progress_with_the_outcome() -> None:
    text = termination_document(progress(), "stopped", "stopped on SIGTERM")
    assert " " not in text.replace("stopped on SIGTERM", "")  # compact
    assert parse(text) == progress(state="stopped", message="stopped on SIGTERM")


def test_metrics_go_first_the_last_names_first() -> None:
    metrics = {f"metric_{i:03d}_{'x' * 40}": float(i) for i in range(200)}
    doc = parse(termination_document(progress(metrics=metrics), "finished", "done"))
    assert doc.message == "done" and doc.dead_lettered.by_reason == {"shape": 2, "json": 1}
    kept = sorted(doc.metrics)
    assert 0 < len(kept) < 200 and kept == sorted(metrics)[:len(kept)]


def test_a_long_message_keeps_its_start() -> None:
    message = "ValueError: " + "bad row; " * 2000
    doc = parse(termination_document(progress(), "failed", message))
    assert doc.metrics == {}  # dropped before the message was cut
    assert doc.message.endswith("...") and message.startswith(doc.message[:-3])
    assert len(doc.message) > 3000  # cut only as far as needed
    escaped = parse(termination_document(progress(), "failed", "é" * 3000))  # JSON writes \\u00e9: 6 bytes each
    assert escaped.message.startswith("éé") and escaped.message.endswith("...")


def test_everything_oversized_still_fits_and_keeps_the_counts() -> None:
    huge = progress(
        metrics={f"m{i}": 1.0 for i in range(500)},
        dead_lettered=DeadLettered(total=900, by_reason={f"reason-{i}": 1 for i in range(900)}),
        last_checkpoint=CheckpointInfo(step=100, time="2024-05-01T12:00:00.000Z", path="/c/" + "d" * 3000),
        last_export=ExportInfo(version=3, path="/e/" + "d" * 3000, time="2024-05-01T12:00:01.500Z"))
    doc = parse(termination_document(huge, "failed", "x" * 5000))
    assert doc.state == "failed" and doc.step == 120 and doc.dead_lettered.total == 900
    assert doc.last_checkpoint is not None and doc.last_checkpoint.step == 100
    assert doc.last_export is not None and doc.last_export.version == 3


def test_stopped_is_a_state_telemetry_and_readers_accept() -> None:
    telemetry = Telemetry()
    telemetry.set_state("stopped")
    assert ProgressDocument.from_json(telemetry.snapshot().to_json()).state == "stopped"


def test_stop_messages() -> None:
    assert stop_message(signal.SIGTERM) == "stopped on SIGTERM"
    assert stop_message(None) == "stopped: another worker of the gang was asked to stop"


def test_nothing_trained_says_where_the_worker_read_and_what_it_got() -> None:
    empty = str(nothing_trained("persistent://public/default/digitz", "trainer", "Earliest", 30, 0, 0))
    assert "nothing trained, so nothing exported" in empty and "idleTimeoutSeconds (30s)" in empty
    assert "received no message from persistent://public/default/digitz (subscription 'trainer', " \
        "initialPosition Earliest)" in empty and "skips" not in empty
    all_bad = str(nothing_trained("t", "s", "Earliest", 1.5, 7, 7))
    assert "all 7 messages this worker received were dead-lettered" in all_bad and "(1.5s)" in all_bad
    some = str(nothing_trained("t", "s", "Latest", 1, 3, 1))
    assert "received 3 messages (1 dead-lettered)" in some
    assert "initialPosition Latest (a new subscription at initialPosition Latest skips" in some


def test_unconfigured_worker_reports_an_unknown_pipeline() -> None:
    doc = unconfigured(2, 1714564800.0, 1714564801.0)
    assert (doc.pipeline, doc.worker, doc.is_chief, doc.state) == ("unknown", 2, False, "failed")
    assert (doc.started_at, doc.updated_at) == ("2024-05-01T12:00:00.000Z", "2024-05-01T12:00:01.000Z")


def test_termination_log_reports_an_escaping_exception_and_reraises(tmp_path: Path) -> None:
    path = tmp_path / "termination-log"
    with pytest.raises(RuntimeError, match="boom"), TerminationLog(path) as outcome:
        outcome.progress = progress
        outcome.report("finished")
        raise RuntimeError("boom")
    doc = ProgressDocument.from_json(path.read_text())
    assert (doc.state, doc.message, doc.pipeline) == ("failed", "RuntimeError: boom", "digits")


def test_termination_log_writes_the_reported_outcome_or_nothing_without_a_path(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "termination-log"
    with TerminationLog(path) as outcome:
        outcome.progress = progress
        outcome.report("stopped", "stopped on SIGINT")
    assert ProgressDocument.from_json(path.read_text()).state == "stopped"
    with TerminationLog(None) as outcome:
        outcome.report("finished")
    with TerminationLog(tmp_path / "no-such-dir" / "log") as outcome:  # unwritable: a warning, not an error
        outcome.report("finished")
    assert "cannot write the termination log" in caplog.text


def test_worker_with_a_bad_configuration_reports_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config, path = tmp_path / "worker.json", tmp_path / "termination-log"
    config.write_text('{"pipeline": ')
    tf_config = {"cluster": {"worker": ["w0:2222", "w1:2222", "w2:2222"]}, "task": {"type": "worker", "index": 2}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    assert worker.main(["--config", str(config), "--termination-log", str(path)]) == worker.EXIT_CONFIG
    doc = ProgressDocument.from_json(path.read_text())
    assert (doc.state, doc.pipeline, doc.worker) == ("failed", "unknown", 2)
    assert doc.message.startswith("invalid configuration: ") and "not valid JSON" in doc.message
