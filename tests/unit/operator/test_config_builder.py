"""Spec → worker configuration: every sample is accepted by the worker's own parser, field by field."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pulsetrain.config import TlsAuth, TokenAuth, load_config
from pulsetrain_operator import defaults
from pulsetrain_operator.builders.config import (
    PULSAR_COPIED,
    PULSAR_DEFAULTS,
    PULSAR_MOUNTED,
    storage_paths,
    worker_config,
    worker_refusal,
)
from pulsetrain_operator.crd import spec_schema
from tests.unit.operator import samples


@pytest.mark.parametrize("make", samples.ALL.values(), ids=list(samples.ALL))
def test_worker_accepts_the_rendered_configuration(make: Callable[[], dict[str, Any]]) -> None:
    tp = make()
    config = load_config(worker_config(tp))
    assert (config.pipeline.name, config.pipeline.namespace) == ("digits", "ml")
    assert config.storage.export_dir == storage_paths(tp)["exportDir"]


def test_full_spec_fields_reach_the_worker() -> None:
    config = load_config(worker_config(samples.full()))
    pulsar = config.source.pulsar
    assert pulsar.admin_url == "http://pulsar.pulsar.svc:8080"
    assert pulsar.subscription == "digits-training"
    assert pulsar.subscription_type == "KeyShared"
    assert pulsar.initial_position == "Latest"
    assert pulsar.receiver_queue_size == 500
    assert pulsar.batch_receive_timeout_ms == 250
    assert pulsar.batch_receive_max_messages == 64
    assert pulsar.dead_letter_topic == "persistent://public/default/digits-dlq"
    assert config.training.batch_size == 32
    assert config.training.max_steps == 1000
    assert config.model.mlp.hidden_units == (128, 64)
    assert config.data.csv.delimiter == ";"
    assert config.observability.port == 9200


def test_every_crd_pulsar_field_reaches_the_worker() -> None:
    # batchReceiveMaxMessages was in the CRD but not copied: the API server took it and the worker never saw it
    fields = set(spec_schema()["properties"]["source"]["properties"]["pulsar"]["properties"])
    assert fields == {*PULSAR_COPIED, *PULSAR_DEFAULTS, *PULSAR_MOUNTED}


def test_pulsar_fields_the_operator_relies_on_are_written_with_the_operator_defaults() -> None:
    pulsar = worker_config(samples.minimal())["source"]["pulsar"]
    assert pulsar == {
        "serviceUrl": "pulsar://pulsar.pulsar.svc:6650",
        "topic": "digits",
        "subscription": defaults.SUBSCRIPTION,
        "subscriptionType": defaults.SUBSCRIPTION_TYPE,
        "initialPosition": defaults.INITIAL_POSITION,
    }


def test_token_secret_becomes_a_file_under_the_token_mount() -> None:
    pulsar = worker_config(samples.token())["source"]["pulsar"]
    assert pulsar["authentication"] == {"token": {"file": f"{defaults.SECRETS_DIR}/token/jwt"}}
    assert isinstance(load_config(worker_config(samples.token())).source.pulsar.authentication, TokenAuth)


def test_token_key_defaults() -> None:
    tp = samples.edited(samples.token(), lambda s: s["source"]["pulsar"]["authentication"]["token"].pop("key"))
    file = worker_config(tp)["source"]["pulsar"]["authentication"]["token"]["file"]
    assert file == f"{defaults.SECRETS_DIR}/token/{defaults.TOKEN_KEY}"


def test_tls_secret_becomes_cert_and_key_files_and_ca_a_trust_file() -> None:
    pulsar = worker_config(samples.tls())["source"]["pulsar"]
    assert pulsar["authentication"] == {"tls": {"certFile": f"{defaults.SECRETS_DIR}/tls/tls.crt",
                                                "keyFile": f"{defaults.SECRETS_DIR}/tls/tls.key"}}
    assert pulsar["tlsTrustCertsFile"] == f"{defaults.SECRETS_DIR}/ca/bundle.pem"
    assert isinstance(load_config(worker_config(samples.tls())).source.pulsar.authentication, TlsAuth)


def test_ca_key_defaults() -> None:
    tp = samples.edited(samples.tls(), lambda s: s["source"]["pulsar"]["tlsTrustCerts"].pop("key"))
    assert worker_config(tp)["source"]["pulsar"]["tlsTrustCertsFile"] == f"{defaults.SECRETS_DIR}/ca/{defaults.CA_KEY}"


def test_no_authentication_without_secrets() -> None:
    pulsar = worker_config(samples.minimal())["source"]["pulsar"]
    assert "authentication" not in pulsar
    assert "tlsTrustCertsFile" not in pulsar


def test_data_and_model_are_copied_as_they_are_without_aliasing_the_spec() -> None:
    tp = samples.full()
    doc = worker_config(tp)
    assert doc["data"] == samples.FULL_SPEC["data"]
    assert doc["model"] == samples.FULL_SPEC["model"]
    doc["model"]["mlp"]["hiddenUnits"].append(1)
    doc["data"]["features"].clear()
    assert tp["spec"]["model"] == samples.FULL_SPEC["model"]
    assert tp["spec"]["data"] == samples.FULL_SPEC["data"]


def test_training_is_copied_without_workers() -> None:
    training = worker_config(samples.full())["training"]
    expected = {k: v for k, v in samples.FULL_SPEC["training"].items() if k != "workers"}
    assert training == expected


def test_training_mode_defaults() -> None:
    assert worker_config(samples.minimal())["training"] == {"mode": defaults.MODE}


def test_storage_paths_default_root() -> None:
    base = f"{defaults.STORAGE_PATH}/ml/digits"
    expected = {"checkpointDir": f"{base}/checkpoints", "exportDir": f"{base}/export", "logDir": f"{base}/logs"}
    assert storage_paths(samples.minimal()) == expected
    assert worker_config(samples.minimal())["storage"] == expected


@pytest.mark.parametrize("path", ["/data/", "/data"])
def test_storage_paths_under_given_root(path: str) -> None:
    tp = samples.edited(samples.minimal(), lambda s: s.update(storage={"path": path}))
    assert storage_paths(tp)["checkpointDir"] == "/data/ml/digits/checkpoints"


def test_observability_port() -> None:
    assert worker_config(samples.minimal())["observability"] == {"port": defaults.METRICS_PORT}
    assert worker_config(samples.full())["observability"] == {"port": 9200}


def test_worker_refusal_is_what_the_workers_parser_says_with_paths_under_spec() -> None:
    assert worker_refusal(samples.full()) is None and worker_refusal(samples.minimal()) is None
    bad = samples.edited(samples.minimal(), lambda spec: (spec["model"].update(metrics=["auc", "accuracy"]),
                                                          spec["data"]["label"].update(dtype="float32")))
    refusal = worker_refusal(bad)
    assert refusal is not None and refusal.count("spec.") == 2, refusal
    assert "spec.model.metrics[0]: 'auc' is not one of" in refusal and "spec.data.label.dtype: 'float32'" in refusal
