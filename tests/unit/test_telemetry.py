"""Telemetry: counters, throughput, checkpoint age, dead letters by kind, and valid Prometheus text."""

from __future__ import annotations

import math
import re
import sys
import threading
from collections.abc import Callable

import pytest

from pulsetrain.exposition import escape_label, format_value
from pulsetrain.progress_doc import ProgressDocument, parse_rfc3339
from pulsetrain.telemetry import Telemetry, reason_kind


class FakeClock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def make(clock: FakeClock | None = None, **kw: object) -> tuple[Telemetry, FakeClock]:
    clock = clock or FakeClock()
    return Telemetry(pipeline="digits", namespace="ml", worker=1, clock=clock, monotonic=clock,
                     **kw), clock  # type: ignore[arg-type]


# -- a small parser for the text format, strict enough to catch malformed output ------------------------

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\\\|\\"|\\n)*"'
SAMPLE = re.compile(rf"^({NAME})\{{((?:{LABEL})(?:,{LABEL})*)?\}} (\S+)$")
VALUE = re.compile(r"^(?:[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+)|NaN|[+-]Inf)$")


def parse(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """{metric name: [(labels, value)]}; asserts HELP and TYPE precede every family's samples."""
    assert text.endswith("\n")
    helped: set[str] = set()
    typed: dict[str, str] = {}
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            assert name not in helped, f"duplicate HELP for {name}"
            helped.add(name)
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in {"counter", "gauge", "summary", "histogram", "untyped"}
            typed[name] = kind
        else:
            match = SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            name, labels, value = match.groups()
            assert VALUE.match(value), f"bad value in {line!r}"
            assert name in helped and name in typed, f"{name} has no HELP/TYPE before its samples"
            pairs = re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', labels or "")
            unescaped = {k: re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], v) for k, v in pairs}
            samples.setdefault(name, []).append((unescaped, float(value)))
    assert helped == set(typed), "every family has both HELP and TYPE"
    return samples


def value(samples: dict[str, list[tuple[dict[str, str], float]]], metric: str, /, **labels: str) -> float:
    found = [v for lab, v in samples.get(metric, []) if all(lab.get(k) == want for k, want in labels.items())]
    assert len(found) == 1, f"{metric}{labels}: {found}"
    return found[0]


# -- tests ----------------------------------------------------------------------------------------------

def test_counters_accumulate_and_show_in_both_readings() -> None:
    t, _ = make()
    t.received(100)
    t.received()
    t.acknowledged(64)
    t.step_done(1, 32, loss=1.5, metrics={"accuracy": 0.5}, seconds=0.1)
    t.step_done(2, 30, loss=1.25, metrics={"accuracy": 0.75}, seconds=0.1)
    doc = t.snapshot()
    assert (doc.step, doc.samples, doc.messages_received, doc.messages_acknowledged) == (2, 62, 101, 64)
    assert doc.loss == 1.25 and doc.metrics == {"accuracy": 0.75} and doc.step_time_seconds == 0.1
    s = parse(t.prometheus_text())
    assert value(s, "pulsetrain_samples_total") == 62
    assert value(s, "pulsetrain_step") == 2
    assert value(s, "pulsetrain_messages_received_total") == 101
    assert value(s, "pulsetrain_messages_acknowledged_total") == 64
    assert value(s, "pulsetrain_loss") == 1.25
    assert value(s, "pulsetrain_metric", name="accuracy") == 0.75
    assert value(s, "pulsetrain_step_time_seconds") == 0.1


def test_negative_counts_are_refused() -> None:
    t, _ = make()
    calls: list[Callable[[], None]] = [lambda: t.received(-1), lambda: t.acknowledged(-1),
                                       lambda: t.dead_lettered("shape", -1), lambda: t.step_done(1, -5)]
    for call in calls:
        with pytest.raises(ValueError):
            call()
    assert t.snapshot().messages_received == 0


def test_throughput_over_the_window_and_falls_to_zero_when_stalled() -> None:
    t, clock = make(window=10.0)
    assert t.samples_per_second() == 0.0
    for step in range(1, 11):  # 100 samples per 0.5 s step: 200/s
        clock.now += 0.5
        t.step_done(step, 100, seconds=0.5)
    assert t.samples_per_second() == pytest.approx(200.0)
    clock.now += 5.0  # a 5 s stall: 1000 samples over the last 10 s
    assert t.samples_per_second() == pytest.approx(100.0)
    clock.now += 10.1
    assert t.samples_per_second() == 0.0
    assert parse(t.prometheus_text())["pulsetrain_samples_per_second"][0][1] == 0.0


def test_checkpoint_age_and_step() -> None:
    t, clock = make()
    assert t.checkpoint_age() is None
    s = parse(t.prometheus_text())
    assert "pulsetrain_checkpoint_age_seconds" not in s and "pulsetrain_last_checkpoint_step" not in s
    t.checkpointed(100, "/ckpt/ckpt-100")
    clock.now += 42.0
    assert t.checkpoint_age() == pytest.approx(42.0)
    s = parse(t.prometheus_text())
    assert value(s, "pulsetrain_checkpoint_age_seconds") == pytest.approx(42.0)
    assert value(s, "pulsetrain_last_checkpoint_step") == 100
    ckpt = t.snapshot().last_checkpoint
    assert ckpt is not None and ckpt.step == 100 and ckpt.path == "/ckpt/ckpt-100"
    assert parse_rfc3339(ckpt.time) == pytest.approx(clock.now - 42.0, abs=1e-3)


def test_dead_letters_by_reason_kind() -> None:
    t, _ = make()
    t.dead_lettered("shape: field 'pixels' has 63 values, expected 64")
    t.dead_lettered("shape")
    t.dead_lettered("json: Expecting value", 3)
    doc = t.snapshot()
    assert doc.dead_lettered.total == 5
    assert doc.dead_lettered.by_reason == {"shape": 2, "json": 3}
    s = parse(t.prometheus_text())
    assert value(s, "pulsetrain_messages_dead_lettered_total", reason="shape") == 2
    assert value(s, "pulsetrain_messages_dead_lettered_total", reason="json") == 3
    assert reason_kind("non-finite: NaN") == "non-finite" and reason_kind(": x") == "unknown"


def test_every_sample_has_the_identity_labels_and_info_has_the_version() -> None:
    t, _ = make(version="9.9.9")
    t.set_backlog(7)
    t.exported(3, "/export/3")
    s = parse(t.prometheus_text())
    for name, rows in s.items():
        for labels, _ in rows:
            assert (labels["pipeline"], labels["namespace"], labels["worker"]) == ("digits", "ml", "1"), name
    assert value(s, "pulsetrain_info", version="9.9.9") == 1
    assert value(s, "pulsetrain_backlog_messages") == 7
    assert value(s, "pulsetrain_last_export_version") == 3
    assert value(s, "pulsetrain_state", state="starting") == 1
    assert sum(v for _, v in s["pulsetrain_state"]) == 1


def test_label_values_are_escaped() -> None:
    nasty = 'a "quoted" back\\slash\nnewline, not\\n one'
    assert escape_label(nasty) == 'a \\"quoted\\" back\\\\slash\\nnewline, not\\\\n one'
    t = Telemetry(pipeline=nasty, namespace="ns", worker=0)
    t.step_done(1, 1, metrics={'we"ird\\': 1.0})
    text = t.prometheus_text()
    s = parse(text)
    assert value(s, "pulsetrain_step", pipeline=nasty) == 1
    assert value(s, "pulsetrain_metric", name='we"ird\\') == 1.0
    assert "\nnewline" not in text


def test_values_format_per_the_spec() -> None:
    assert [format_value(v) for v in (3, 2.0, 0.5, math.nan, math.inf, -math.inf)] == \
        ["3", "2", "0.5", "NaN", "+Inf", "-Inf"]
    t, _ = make()
    t.step_done(1, 1, loss=math.nan)
    assert math.isnan(value(parse(t.prometheus_text()), "pulsetrain_loss"))


def test_state_snapshot_and_restore() -> None:
    t, _ = make()
    with pytest.raises(ValueError, match="unknown state"):
        t.set_state("running")  # type: ignore[arg-type]
    t.set_state("source-unavailable", "cannot reach pulsar://pulsar:6650")
    t.restored(step=500, samples=16_000)
    t.step_done(501, 32)
    doc = t.snapshot()
    assert (doc.state, doc.message, doc.step, doc.samples) == ("source-unavailable", "cannot reach pulsar://pulsar:6650",
                                                               501, 16_032)
    assert ProgressDocument.from_json(doc.to_json()) == doc


def test_a_rollback_takes_step_and_samples_back_and_is_counted() -> None:
    t, _ = make()
    assert value(parse(t.prometheus_text()), "pulsetrain_rollbacks_total") == 0
    t.step_done(30, 960)
    t.rolled_back(step=20, samples=640)
    t.step_done(21, 32)
    doc = t.snapshot()
    assert (doc.step, doc.samples) == (21, 672)
    s = parse(t.prometheus_text())
    assert value(s, "pulsetrain_rollbacks_total") == 1 and value(s, "pulsetrain_step") == 21


def test_concurrent_updates_lose_nothing() -> None:
    t = Telemetry()

    def work() -> None:
        for _ in range(2000):
            t.received()
            t.acknowledged()
            t.dead_lettered("shape")
            t.step_done(1, 2)

    threads = [threading.Thread(target=work) for _ in range(8)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, so an unguarded read-modify-write loses counts
    try:
        for thread in threads:
            thread.start()
        for _ in range(50):
            parse(t.prometheus_text())  # reads while writers run stay well-formed
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    doc = t.snapshot()
    assert (doc.messages_received, doc.messages_acknowledged, doc.dead_lettered.total, doc.samples) == \
        (16_000, 16_000, 16_000, 32_000)
