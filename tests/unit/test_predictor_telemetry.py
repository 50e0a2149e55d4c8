"""The predictor's telemetry: histograms, Prometheus text, the progress document and readiness over real HTTP."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from pulsetrain.exposition import Histogram
from pulsetrain.http_server import serve
from pulsetrain.predict_progress import NOT_READY, PredictorProgress
from pulsetrain.predict_telemetry import PredictorTelemetry


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_histogram_buckets_sum_count() -> None:
    histogram = Histogram([0.01, 0.1, 1.0])
    for value in (0.005, 0.01, 0.05, 0.5, 3.0):
        histogram.observe(value)
    assert histogram.cumulative() == [("0.01", 2), ("0.1", 3), ("1", 4), ("+Inf", 5)]
    assert histogram.count == 5 and histogram.sum == pytest.approx(3.565)


def test_histogram_quantiles_interpolate_like_prometheus() -> None:
    histogram = Histogram([0.01, 0.02, 0.04])
    assert histogram.quantile(0.5) is None
    for _ in range(50):
        histogram.observe(0.005)  # bucket (0, 0.01]
    for _ in range(50):
        histogram.observe(0.03)  # bucket (0.02, 0.04]
    assert histogram.quantile(0.5) == pytest.approx(0.01)
    assert histogram.quantile(0.99) == pytest.approx(0.02 + 0.02 * 49 / 50)
    histogram.observe(100.0)
    assert histogram.quantile(1.0) == 0.04  # the +Inf bucket reads as the largest bound
    with pytest.raises(ValueError, match=r"outside 0\.\.1"):
        histogram.quantile(1.5)
    with pytest.raises(ValueError, match="distinct and ascending"):
        Histogram([1.0, 0.5])


def test_counts_rate_and_swaps() -> None:
    clock = Clock()
    telemetry = PredictorTelemetry(pipeline="digits", namespace="ml", replica="digits-predictor-0", window=10,
                                   clock=clock, monotonic=clock)
    telemetry.model_loaded(1, "/models/1")
    telemetry.received(120)
    telemetry.batch(64, 0.002)
    clock.now += 2
    telemetry.answered([0.015] * 100)
    telemetry.dead_lettered("shape: field 'pixels' has 2 values, expected 64")
    telemetry.dead_lettered("json: invalid JSON at char 3")
    telemetry.send_failed(3)
    telemetry.model_loaded(2, "/models/2")
    doc = telemetry.snapshot()
    assert (doc.model_version, doc.model_path, doc.model_swaps) == (2, "/models/2", 1)
    assert (doc.messages_received, doc.predictions, doc.messages_acknowledged, doc.send_failures) == (120, 100, 102, 3)
    assert doc.dead_lettered.total == 2 and dict(doc.dead_lettered.by_reason) == {"shape": 1, "json": 1}
    assert doc.predictions_per_second == pytest.approx(50.0)  # 100 answers, 2 s since start
    assert doc.latency_seconds["p50"] == pytest.approx(0.015, abs=0.005)
    clock.now += 30
    assert telemetry.predictions_per_second() == 0.0  # nothing in the last window


def test_prometheus_text() -> None:
    telemetry = PredictorTelemetry(pipeline="digits", namespace="ml", replica="r0")
    telemetry.model_loaded(4, "/m/4")
    telemetry.set_state("serving")
    telemetry.batch(10, 0.001)
    telemetry.answered([0.012, 0.018])
    text = telemetry.prometheus_text()
    labels = 'pipeline="digits",namespace="ml",replica="r0"'
    for line in (f"pulsetrain_predictor_model_version{{{labels}}} 4",
                 f'pulsetrain_predictor_state{{{labels},state="serving"}} 1',
                 f"pulsetrain_predictor_predictions_total{{{labels}}} 2",
                 f'pulsetrain_predictor_latency_seconds_bucket{{{labels},le="0.015"}} 1',
                 f'pulsetrain_predictor_latency_seconds_bucket{{{labels},le="+Inf"}} 2',
                 f"pulsetrain_predictor_latency_seconds_count{{{labels}}} 2",
                 f'pulsetrain_predictor_batch_size_bucket{{{labels},le="16"}} 1',
                 "# TYPE pulsetrain_predictor_latency_seconds histogram"):
        assert line in text.splitlines(), line


def test_progress_document_round_trip_and_refusals() -> None:
    telemetry = PredictorTelemetry(pipeline="digits", replica="r0")
    telemetry.model_loaded(1, "/m/1")
    telemetry.answered([0.01])
    text = telemetry.snapshot().to_json()
    data = json.loads(text)
    assert data["kind"] == "predictor" and data["modelVersion"] == 1 and data["predictions"] == 1
    assert PredictorProgress.from_json(text).latency_seconds == {"p50": pytest.approx(0.0075),
                                                                 "p99": pytest.approx(0.00995)}
    assert PredictorProgress.from_json(text).to_json() == text
    with pytest.raises(ValueError, match="kind: 'worker' is not 'predictor'"):
        PredictorProgress.from_dict({**data, "kind": "worker"})
    with pytest.raises(ValueError, match="state: 'training' is not one of"):
        PredictorProgress.from_dict({**data, "state": "training"})
    with pytest.raises(ValueError, match="predictions: required field is missing"):
        PredictorProgress.from_dict({k: v for k, v in data.items() if k != "predictions"})


def test_ready_only_once_serving() -> None:
    telemetry = PredictorTelemetry(pipeline="digits", replica="r0")
    server = serve(telemetry, "127.0.0.1", 0, not_ready=NOT_READY)

    def readyz() -> tuple[int, str]:
        try:
            with urllib.request.urlopen(server.url + "/readyz", timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.read().decode()

    try:
        telemetry.set_state("waiting-for-model", "waiting for a first model version in /m")
        assert readyz() == (503, "not ready (waiting-for-model: waiting for a first model version in /m)\n")
        telemetry.set_state("serving")
        assert readyz() == (200, "ready (serving)\n")
        with urllib.request.urlopen(server.url + "/progress", timeout=5) as response:
            assert PredictorProgress.from_json(response.read()).state == "serving"
    finally:
        server.close()
