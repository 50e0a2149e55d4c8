"""The `serving` section of the worker configuration: defaults, bounds, model versions, topics that must differ."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pulsetrain.config import ConfigError, ServingConfig, load_config
from tests.unit.test_worker_config import DIGITS


def with_serving(**serving: Any) -> dict[str, Any]:
    document = copy.deepcopy(DIGITS)
    document["serving"] = {"inputTopic": "digits-in", "outputTopic": "digits-out", **serving}
    return document


def problems_of(document: dict[str, Any]) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        load_config(document)
    return info.value.problems


def test_serving_is_optional() -> None:
    assert load_config(copy.deepcopy(DIGITS)).serving is None


def test_defaults() -> None:
    serving = load_config(with_serving()).serving
    assert serving == ServingConfig(input_topic="digits-in", output_topic="digits-out", subscription="digits-predictor")
    assert serving.subscription_type == "Shared"
    assert (serving.max_batch_size, serving.max_latency_ms, serving.model_poll_seconds) == (64, 20, 5.0)
    assert serving.model_version == "latest" and serving.pinned_version is None
    assert serving.dlq_topic == "digits-in-digits-predictor-DLQ"


def test_every_field_given() -> None:
    serving = load_config(with_serving(subscription="answers", subscriptionType="KeyShared", maxBatchSize=4096,
                                       maxLatencyMs=1, modelVersion=3, deadLetterTopic="bad-inputs",
                                       modelPollSeconds=0.5)).serving
    assert serving is not None
    assert (serving.subscription, serving.subscription_type, serving.max_batch_size, serving.max_latency_ms) == (
        "answers", "KeyShared", 4096, 1)
    assert serving.pinned_version == 3 and serving.dlq_topic == "bad-inputs" and serving.model_poll_seconds == 0.5


def test_default_subscription_follows_the_pipeline_name() -> None:
    document = with_serving()
    document["pipeline"]["name"] = "mnist"
    serving = load_config(document).serving
    assert serving is not None and serving.subscription == "mnist-predictor"


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("maxBatchSize", 0, "serving.maxBatchSize: 0 is out of range; allowed 1 <= x <= 4096"),
    ("maxBatchSize", 4097, "serving.maxBatchSize: 4097 is out of range; allowed 1 <= x <= 4096"),
    ("maxLatencyMs", 0, "serving.maxLatencyMs: 0 is out of range; allowed 1 <= x <= 10000"),
    ("maxLatencyMs", 10_001, "serving.maxLatencyMs: 10001 is out of range; allowed 1 <= x <= 10000"),
    ("modelPollSeconds", 0, "serving.modelPollSeconds: 0 is out of range; allowed 0.1 <= x <= 3600"),
    ("subscriptionType", "Exclusive", "serving.subscriptionType: 'Exclusive' is not one of Shared, KeyShared"),
    ("subscription", "has space", "serving.subscription: 'has space' is not a subscription name"),
    ("modelVersion", 0, "serving.modelVersion: 0 is neither 'latest' nor a positive integer"),
    ("modelVersion", "newest", "serving.modelVersion: 'newest' is neither 'latest' nor a positive integer"),
    ("modelVersion", True, "serving.modelVersion: True is neither 'latest' nor a positive integer"),
    ("modelVersion", 2.5, "serving.modelVersion: 2.5 is neither 'latest' nor a positive integer"),
    ("maxBatchSize", "64", "serving.maxBatchSize: expected an integer, got '64' (string)"),
])
def test_bad_values_name_the_field(field: str, value: object, expected: str) -> None:
    (problem,) = problems_of(with_serving(**{field: value}))
    assert problem.startswith(expected), problem


def test_required_topics_and_unknown_fields() -> None:
    document = with_serving(batchSize=64)
    del document["serving"]["inputTopic"]
    problems = problems_of(document)
    assert "serving.inputTopic: required field is missing" in problems
    assert any(p.startswith("serving.batchSize: unknown field") for p in problems), problems


@pytest.mark.parametrize(("serving", "expected"), [
    ({"outputTopic": "digits-in"}, "serving.outputTopic: 'digits-in' is also serving.inputTopic"),
    ({"outputTopic": "persistent://public/default/digits-in"},
     "serving.outputTopic: 'persistent://public/default/digits-in' is also serving.inputTopic"),
    ({"outputTopic": "digits"}, "serving.outputTopic: 'digits' is also source.pulsar.topic"),
    ({"deadLetterTopic": "public/default/digits-in"},
     "serving.deadLetterTopic: 'public/default/digits-in' is also serving.inputTopic"),
    ({"deadLetterTopic": "digits-out"}, "serving.deadLetterTopic: 'digits-out' is also serving.outputTopic"),
])
def test_topics_that_would_loop_are_refused(serving: dict[str, str], expected: str) -> None:
    (problem,) = problems_of(with_serving(**serving))
    assert problem.startswith(expected), problem


def test_predicting_the_training_topic_is_allowed() -> None:
    serving = load_config(with_serving(inputTopic="persistent://public/default/digits")).serving
    assert serving is not None and serving.input_topic == "persistent://public/default/digits"
