"""The `serving` section of the worker configuration, and the topic-name rules it shares with `source.pulsar`.

Why a module of its own: the streaming predictor's settings (topics, subscription, micro-batching, the model
version to serve) and the rules between them and the training topic are one concern, separate from how the
trainer reads its stream; `pulsetrain.config` calls `serving_section` and `serving_checks` and re-exports
`full_topic`. Like `pulsetrain.config`, this imports neither TensorFlow nor NumPy.
"""

from __future__ import annotations

from typing import Literal, cast

from pulsetrain._fields import Problems, Section, describe, pattern_check
from pulsetrain.config_model import ServingConfig, WorkerConfig
from pulsetrain_operator.crd_schema import TOPIC_PATTERN

TOPIC = pattern_check(TOPIC_PATTERN, "a persistent topic ('name', 'tenant/namespace/name' or "
                      "'persistent://tenant/namespace/name'; a non-persistent topic keeps no message to redeliver)")
SUBSCRIPTION = pattern_check(r"[^\s/]+", "a subscription name (no spaces or '/')")


def serving_section(sec: Section, pipeline: str) -> ServingConfig:
    """The `serving` section: the predictor's topics, subscription, batching and model version."""
    version = _model_version(sec)
    config = ServingConfig(
        input_topic=sec.text("inputTopic", check=TOPIC),
        output_topic=sec.text("outputTopic", check=TOPIC),
        subscription=sec.text("subscription", f"{pipeline}-predictor", check=SUBSCRIPTION),
        subscription_type=cast("Literal['Shared', 'KeyShared']",
                               sec.text("subscriptionType", "Shared", choices=("Shared", "KeyShared"))),
        max_batch_size=sec.integer("maxBatchSize", 64, ge=1, le=4096),
        max_latency_ms=sec.integer("maxLatencyMs", 20, ge=1, le=10_000),
        model_version=version,
        dead_letter_topic=sec.opt_text("deadLetterTopic", check=TOPIC),
        model_poll_seconds=sec.number("modelPollSeconds", 5.0, ge=0.1, le=3600.0),
    )
    sec.done()
    return config


def _model_version(sec: Section) -> int | Literal["latest"]:
    """`serving.modelVersion`: the string `latest` or a positive integer."""
    value = sec.raw("modelVersion")
    if value is None or value == "latest":
        return "latest"
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    sec.error("modelVersion", f"{describe(value)} is neither 'latest' nor a positive integer (a version number "
                              "under storage.exportDir)")
    return "latest"


def full_topic(name: str) -> str:
    """A topic's full name: `digits` and `public/default/digits` are `persistent://public/default/digits`."""
    if "://" in name:
        return name
    return f"persistent://{name}" if "/" in name else f"persistent://public/default/{name}"


def serving_checks(config: WorkerConfig, problems: Problems) -> None:
    """Topics the predictor reads and writes must differ, or answers would loop back as inputs or training data."""
    serving = config.serving
    if serving is None or not problems.clean("serving", "source.pulsar.topic"):
        return
    named = {"serving.inputTopic": serving.input_topic, "source.pulsar.topic": config.source.pulsar.topic}
    for path, topic, why in (
            ("serving.outputTopic", serving.output_topic, "answers would be read back"),
            ("serving.deadLetterTopic", serving.dead_letter_topic, "rejected inputs would be read back")):
        for other_path, other in named.items():
            if topic is not None and full_topic(topic) == full_topic(other):
                what = "as inputs" if other_path == "serving.inputTopic" else "as training data"
                problems.add(path, f"{topic!r} is also {other_path}; {why} {what}; use another topic")
    if serving.dead_letter_topic is not None and full_topic(serving.dead_letter_topic) == full_topic(
            serving.output_topic):
        problems.add("serving.deadLetterTopic", f"{serving.dead_letter_topic!r} is also serving.outputTopic; "
                                                "use another topic")
