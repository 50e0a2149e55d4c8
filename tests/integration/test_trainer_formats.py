"""The message formats, built-in models and tasks the other trainer tests leave out, trained from a real topic.

Those train raw and JSON digits with the MLP. Here: CSV lines with the linear model, serialized
`tf.train.Example`s with a binary task (scikit-learn's breast cancer set), JSON records with regression (a
generated linear target), each by 2 workers, judged on held-out records through the exported SavedModel; and
`initialPosition: Latest`, which must skip what the topic held before the subscription was made.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pulsetrain import datasets
from pulsetrain.config import DataConfig, FieldSpec
from pulsetrain.encode import encode_batch
from tests.conftest import PulsarURLs
from tests.integration.test_trainer import digits_payloads, finish, gang, make_config, publish
from tests.support import wait_until

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Split:
    data: DataConfig
    train: tuple[dict[str, np.ndarray], np.ndarray]
    test: tuple[dict[str, np.ndarray], np.ndarray]


def bundled(name: str, data_format: str, repeat: int) -> Split:
    train, test = datasets.load(name, data_format).split(0.2, seed=0)  # type: ignore[arg-type]
    features = {key: np.tile(values, (repeat, 1)) for key, values in train.features.items()}
    return Split(train.data, (features, np.tile(train.labels, repeat)), (test.features, test.labels))


def linear_target(data_format: str, rows: int = 8000, size: int = 8) -> Split:
    """y = x . w + 0.5 + noise(0.05), x ~ N(0, 1): a target the linear model can learn to ~0.0025 MSE."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(rows, size)).astype(np.float32)
    y = (x @ rng.uniform(-2, 2, size) + 0.5 + rng.normal(scale=0.05, size=rows)).astype(np.float32)
    data = DataConfig(format=data_format, features=(FieldSpec(name="x", dtype="float32", shape=(size,)),),  # type: ignore[arg-type]
                      label=FieldSpec(name="y", dtype="float32"))
    cut = rows * 4 // 5
    return Split(data, ({"x": x[:cut]}, y[:cut]), ({"x": x[cut:]}, y[cut:]))


def pipeline_config(tmp_path: Path, service_url: str, topic: str, split: Split, model: dict[str, Any]) -> Path:
    data = split.data
    doc = {
        "pipeline": {"name": "formats", "namespace": "default"},
        "source": {"pulsar": {"serviceUrl": service_url, "topic": topic, "subscription": "trainer"}},
        "data": {"format": data.format,
                 "features": [{"name": f.name, "dtype": f.dtype, "shape": list(f.shape)} for f in data.features],
                 "label": {"name": data.label.name, "dtype": data.label.dtype, "shape": []},
                 "normalization": {"mode": "estimate", "estimateRecords": 200}},
        "model": {"optimizer": "adam", "learningRate": 0.01, **model},
        "training": {"mode": "bounded", "batchSize": 32, "idleTimeoutSeconds": 4, "checkpointEverySteps": 20},
        "storage": {"checkpointDir": str(tmp_path / "checkpoints"), "exportDir": str(tmp_path / "models")},
    }
    path = tmp_path / "worker.json"
    path.write_text(json.dumps(doc))
    return path


CASES: dict[str, tuple[Callable[[], Split], dict[str, Any]]] = {
    "csv-linear-classification": (lambda: bundled("digits", "csv", 3),
                                  {"builtin": "linear", "task": "classification", "numClasses": 10}),
    "tfexample-mlp-binary": (lambda: bundled("breast_cancer", "tfexample", 4),
                             {"builtin": "mlp", "task": "binary", "mlp": {"hiddenUnits": [16]}}),
    "json-linear-regression": (lambda: linear_target("json"),
                               {"builtin": "linear", "task": "regression", "learningRate": 0.05}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_format_model_and_task_trains_from_the_topic(pulsar_broker: PulsarURLs, tmp_path: Path,
                                                          case: str) -> None:
    import tensorflow as tf

    make_split, model = CASES[case]
    split = make_split()
    topic = f"persistent://public/default/{case}-{uuid.uuid4().hex[:8]}"
    payloads = encode_batch(split.data, *split.train)
    publish(pulsar_broker.service_url, topic, payloads)
    g = gang(tmp_path, pipeline_config(tmp_path, pulsar_broker.service_url, topic, split, model))
    g.start(tmp_path)
    summaries = finish(g, tmp_path)
    assert [s["trainedSamples"] for s in summaries] == [len(payloads)] * 2
    assert sum(s["deadLettered"] for s in summaries) == 0
    serve = tf.saved_model.load(str(tmp_path / "models" / "1")).signatures["serving_default"]
    features, labels = split.test
    answers = serve(**{name: tf.constant(values) for name, values in features.items()})
    if model["task"] == "regression":
        mse = float(np.mean((answers["prediction"].numpy() - labels) ** 2))
        print(f"{case}: held-out MSE {mse:.4f}, target variance {float(np.var(labels)):.2f}")
        assert mse < 0.02 * float(np.var(labels)), (mse, float(np.var(labels)))
    else:
        accuracy = float(np.mean(answers["class"].numpy() == labels))
        print(f"{case}: held-out accuracy {accuracy:.3f}")
        assert accuracy >= 0.9, accuracy


def subscriptions(admin_url: str, topic: str) -> list[str]:
    path = topic.removeprefix("persistent://")
    try:
        with urllib.request.urlopen(f"{admin_url}/admin/v2/persistent/{path}/subscriptions", timeout=5) as response:
            return list(json.loads(response.read()))
    except OSError:  # the topic does not exist yet
        return []


def test_initial_position_latest_skips_what_the_topic_held_before(pulsar_broker: PulsarURLs, tmp_path: Path) -> None:
    topic = f"persistent://public/default/latest-{uuid.uuid4().hex[:8]}"
    _, payloads = digits_payloads(repeat=1)
    old, new = payloads[:400], payloads[400:700]
    publish(pulsar_broker.service_url, topic, old)
    config = make_config(tmp_path, pulsar_broker.service_url, topic, idleTimeoutSeconds=6)
    doc = json.loads(config.read_text())
    doc["source"]["pulsar"]["initialPosition"] = "Latest"
    config.write_text(json.dumps(doc))
    g = gang(tmp_path, config, workers=1)
    g.start(tmp_path)
    wait_until(lambda: "trainer" in subscriptions(pulsar_broker.admin_url, topic), 120, "the worker's subscription")
    publish(pulsar_broker.service_url, topic, new)
    (summary,) = finish(g, tmp_path)
    assert summary["trainedSamples"] == len(new), summary  # not one of the 400 published before it subscribed
