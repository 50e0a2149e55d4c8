"""The schema of `spec.serving`: streaming predictions from the trained model, Pulsar in, Pulsar out.

Why this exists apart from `crd.py`: serving is its own stage with its own pods (a Deployment of
predictors, not the training gang), so its fields are kept together here. Like the training fields,
their descriptions and enums come from the worker configuration (`pulsetrain.config_model.ServingConfig`),
which the predictor reads: the two cannot drift. Changing `spec.serving` never restarts training; the
operator rolls the predictor Deployment instead.
"""

from __future__ import annotations

from pulsetrain import config_model as worker
from pulsetrain_operator import defaults
from pulsetrain_operator.crd_schema import (
    SUBSCRIPTION_PATTERN,
    TOPIC_PATTERN,
    Schema,
    _choice,
    _class_doc,
    _doc,
    _int,
    _literals,
    _number,
    _object,
    _resources,
    _rule,
    _string,
)


def _model_version() -> Schema:
    cfg = worker.ServingConfig
    return {
        "x-kubernetes-int-or-string": True,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "description": _doc(cfg, "model_version", "Which exported model version the predictors serve"),
        "default": "latest",
        "x-kubernetes-validations": [
            _rule("type(self) == int ? self >= 1 : self == 'latest'",
                  "serving.modelVersion must be 'latest' or a version number >= 1"),
        ],
    }


def serving_schema() -> Schema:
    """The schema of `spec.serving`."""
    cfg = worker.ServingConfig
    lead = ("The operator runs the predictors as a Deployment `{name}-predictor` once a first model version "
            "exists (bounded mode: when training succeeded; continuous mode: at the first export) and reports "
            "them in `status.serving`. Changes roll the predictors; training is not restarted. Needs "
            "`storage.claimName`: the predictors mount the workers' claim to read their exports.")
    return _object(_class_doc(cfg, lead), {
        "replicas": _int(f"Predictor pods; they share the input subscription. Default {defaults.SERVING_REPLICAS}.",
                         ge=0, le=defaults.MAX_SERVING_REPLICAS, default=defaults.SERVING_REPLICAS),
        "inputTopic": _string(_doc(cfg, "input_topic"),
                              pattern=TOPIC_PATTERN, maxLength=1024),
        "outputTopic": _string(_doc(cfg, "output_topic", "The topic the answers go to"),
                               pattern=TOPIC_PATTERN, maxLength=1024),
        "subscription": _string(_doc(cfg, "subscription", "The predictors' subscription on the input topic"),
                                pattern=SUBSCRIPTION_PATTERN, maxLength=256),
        "subscriptionType": _choice(_doc(cfg, "subscription_type", "How inputs are spread over the predictors"),
                                    _literals(cfg, "subscription_type")),
        "maxBatchSize": _int(_doc(cfg, "max_batch_size"), ge=1, le=4096),
        "maxLatencyMs": _int(_doc(cfg, "max_latency_ms"), ge=1, le=10000),
        "modelVersion": _model_version(),
        "deadLetterTopic": _string(_doc(cfg, "dead_letter_topic"),
                                   pattern=TOPIC_PATTERN, maxLength=1024),
        "modelPollSeconds": _number(_doc(cfg, "model_poll_seconds"),
                                    ge=0.1, le=3600),
        "resources": _resources("predictor"),
    }, required=["inputTopic", "outputTopic"], rules=[
        _rule("self.inputTopic != self.outputTopic", "serving.outputTopic must differ from serving.inputTopic",
              field_path=".outputTopic"),
    ])
