"""Worker configuration: parsing, defaults, every rule naming its field, secrets kept out of repr, TF_CONFIG."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pulsetrain.config import (
    ConfigError,
    Secret,
    TlsAuth,
    TokenAuth,
    WorkerConfig,
    load_config,
    load_config_file,
    tf_config_from_env,
)

DIGITS: dict[str, Any] = {
    "pipeline": {"name": "digits", "namespace": "ml"},
    "source": {"pulsar": {"serviceUrl": "pulsar://pulsar:6650", "topic": "persistent://public/default/digits",
                          "authentication": {"token": {"file": "/var/run/secrets/pulsar/token"}}}},
    "data": {"format": "raw",
             "features": [{"name": "pixels", "dtype": "float32", "shape": [64]}],
             "label": {"name": "digit", "dtype": "int64", "shape": []}},
    "model": {"builtin": "mlp", "task": "classification", "numClasses": 10,
              "mlp": {"hiddenUnits": [64, 32], "activation": "relu", "dropout": 0.1}},
    "training": {"batchSize": 128},
    "storage": {"checkpointDir": "/data/ckpt", "exportDir": "/data/models"},
}


def doc(edit: Callable[[dict[str, Any]], object] | None = None) -> dict[str, Any]:
    result = copy.deepcopy(DIGITS)
    if edit:
        edit(result)
    return result


def problems_of(document: dict[str, Any]) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        load_config(document)
    return info.value.problems


def test_digits_example_parses_with_defaults() -> None:
    config = load_config(doc())
    assert isinstance(config, WorkerConfig)
    pulsar = config.source.pulsar
    assert pulsar.subscription == "pulsetrain" and pulsar.subscription_type == "Shared"
    assert pulsar.initial_position == "Earliest" and pulsar.receiver_queue_size == 1000
    assert pulsar.batch_receive_max_messages == 128  # defaults to training.batchSize
    assert pulsar.dlq_topic == "persistent://public/default/digits-pulsetrain-DLQ"
    assert pulsar.authentication == TokenAuth(file="/var/run/secrets/pulsar/token")
    assert config.data.features[0].shape == (64,) and config.data.feature_size == 64
    assert config.data.label.size == 1 and config.data.fields[-1].name == "digit"
    assert config.model.loss == "sparse_categorical_crossentropy" and config.model.metrics == ("accuracy",)
    assert config.model.mlp.hidden_units == (64, 32)
    assert config.training.mode == "bounded" and config.training.checkpoint_every_steps == 100
    assert config.observability.port == 9100 and config.storage.log_dir is None


def test_continuous_mode_defaults_export_interval_and_regression_defaults() -> None:
    def edit(d: dict[str, Any]) -> None:
        d["training"] = {"mode": "continuous"}
        d["model"] = {"builtin": "linear", "task": "regression"}
        d["data"]["label"] = {"name": "y", "dtype": "float32", "shape": []}
        d["source"]["pulsar"]["deadLetterTopic"] = "bad-digits"

    config = load_config(doc(edit))
    assert config.training.export_every_seconds == 600.0 and config.training.export_every_steps is None
    assert config.model.loss == "mse" and config.model.metrics == ("mae",) and config.model.num_classes is None
    assert config.source.pulsar.dlq_topic == "bad-digits"
    assert config.source.pulsar.batch_receive_max_messages == 64


def test_the_documented_dtype_message() -> None:
    def edit(d: dict[str, Any]) -> None:
        d["data"]["features"] += [{"name": "a", "dtype": "int8"}, {"name": "b", "dtype": "float128"}]

    assert problems_of(doc(edit)) == (
        "data.features[2].dtype: 'float128' is not one of float16, float32, float64, int8, int16, int32, int64, "
        "uint8, bool",)


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda d: d["source"]["pulsar"].pop("topic"), "source.pulsar.topic: required field is missing"),
    (lambda d: d["source"]["pulsar"].update(serviceUrl="http://pulsar:6650"),
     "source.pulsar.serviceUrl: 'http://pulsar:6650' is not a Pulsar service URL"),
    (lambda d: d["source"]["pulsar"].update(adminUrl="pulsar://x:8080"),
     "source.pulsar.adminUrl: 'pulsar://x:8080' is not an http:// or https:// URL"),
    (lambda d: d["source"]["pulsar"].update(subscriptionType="Failover"),
     "source.pulsar.subscriptionType: 'Failover' is not one of Shared, KeyShared"),
    (lambda d: d["source"]["pulsar"].update(receiverQueueSize=0),
     "source.pulsar.receiverQueueSize: 0 is out of range; allowed 1 <= x <= 100000"),
    (lambda d: d["source"]["pulsar"].update(authentication={"token": {"file": "/t", "env": "T"}}),
     "source.pulsar.authentication.token: give exactly one of file, env"),
    (lambda d: d["source"]["pulsar"].update(authentication={"tls": {"certFile": "c", "keyFile": "k"}}),
     "source.pulsar.serviceUrl: 'pulsar://pulsar:6650' does not use TLS"),
    (lambda d: d["source"]["pulsar"].update(tlsValidateHostname=True),
     "source.pulsar.serviceUrl: 'pulsar://pulsar:6650' does not use TLS"),
    (lambda d: d["source"]["pulsar"].update(tlsValidateHostname="yes"),
     "source.pulsar.tlsValidateHostname: expected a boolean (true or false), got 'yes' (string)"),
    (lambda d: d["data"]["features"][0].update(shape=[8, 0]),
     "data.features[0].shape[1]: 0 is not a positive integer"),
    (lambda d: d["data"]["label"].update(name="pixels"),
     "data.label.name: 'pixels' is already used by data.features[0]; names must be unique"),
    (lambda d: d["data"].update(csv={"delimiter": ","}), "data.csv: only allowed with format 'csv' (format is 'raw')"),
    (lambda d: d["data"].update(normalization={"mode": "given", "mean": [0.0] * 63, "std": [1.0] * 64}),
     "data.normalization.mean: has 63 values, expected 64 (one per flattened feature value)"),
    (lambda d: d["data"].update(normalization={"mode": "given", "mean": [0.0] * 64}),
     "data.normalization.std: required when mode is 'given'"),
    (lambda d: d["data"].update(normalization={"mode": "none", "estimateRecords": 10}),
     "data.normalization.estimateRecords: only allowed when mode is 'estimate' (mode is 'none')"),
    (lambda d: d["model"].pop("numClasses"),
     "model.numClasses: required for task 'classification' (an integer >= 2)"),
    (lambda d: d["model"].update(numClasses=1), "model.numClasses: 1 is out of range; allowed 2 <= x <= 1000000"),
    (lambda d: d["data"]["label"].update(dtype="float32"),
     "data.label.dtype: 'float32' cannot hold class indices; task 'classification' needs an integer dtype"),
    (lambda d: (d["model"].update(task="regression"), d["model"].pop("numClasses"),
                d["data"]["label"].update(dtype="float32", shape=[2])),
     "data.label.shape: [2] is not allowed; task 'regression' predicts one value per record (shape [] or [1])"),
    (lambda d: d["source"]["pulsar"].update(topic="non-persistent://public/default/digits"),
     "source.pulsar.topic: 'non-persistent://public/default/digits' is not a persistent topic"),
    (lambda d: d["source"]["pulsar"].update(topic="digits", deadLetterTopic="persistent://public/default/digits"),
     "source.pulsar.deadLetterTopic: 'persistent://public/default/digits' is the training topic itself"),
    (lambda d: d["model"].update(custom="mymodels.build"),
     "model.custom: 'mymodels.build' is not in 'module:function' form"),
    (lambda d: d["model"].update(preprocess="pre:"), "model.preprocess: 'pre:' is not in 'module:function' form"),
    (lambda d: d["model"].update(builtin="linear"), "model.mlp: only allowed with builtin 'mlp'"),
    (lambda d: d["model"]["mlp"].update(dropout=1.0), "model.mlp.dropout: 1.0 is out of range; allowed 0 <= x < 1"),
    (lambda d: d["model"].update(learningRate=0), "model.learningRate: 0 is out of range; allowed 0 < x <= 10"),
    (lambda d: d["model"].update(metrics=["accuracy", "mse"]),
     "model.metrics[1]: 'mse' is not one of accuracy, top_k_accuracy (metrics for task 'classification')"),
    (lambda d: d["model"].update(loss="mse"), "model.loss: 'mse' is not one of sparse_categorical_crossentropy"),
    (lambda d: d["training"].update(mode="continuous", maxSteps=10),
     "training.maxSteps: not allowed with mode 'continuous'"),
    (lambda d: d["training"].update(exportEverySteps=10), "training.exportEverySteps: not allowed with mode 'bounded'"),
    (lambda d: d["training"].update(batchSize=True), "training.batchSize: expected an integer, got True (boolean)"),
    (lambda d: d["training"].update(batchSize="64"), "training.batchSize: expected an integer, got '64' (string)"),
    (lambda d: d["storage"].update(exportDir="/data/ckpt/"),
     "storage.exportDir: '/data/ckpt/' is also checkpointDir; use separate directories"),
    (lambda d: d["observability"].__setitem__("port", 70000) if "observability" in d else d.update(
        observability={"port": 70000}), "observability.port: 70000 is out of range; allowed 1 <= x <= 65535"),
    (lambda d: d["pipeline"].update(name="Digits_1"), "pipeline.name: 'Digits_1' is not a DNS-1123 label"),
    (lambda d: d.pop("storage"), "storage: required field is missing"),
    (lambda d: d.update(data=[]), "data: expected an object, got [] (list)"),
])
def test_invalid_values_name_the_field(edit: Callable[[dict[str, Any]], object], expected: str) -> None:
    problems = problems_of(doc(edit))
    assert any(p.startswith(expected) for p in problems), problems


def test_unknown_keys_are_errors_with_a_suggestion() -> None:
    problems = problems_of(doc(lambda d: d["source"]["pulsar"].update(topik="x")))
    assert len(problems) == 1
    assert problems[0].startswith("source.pulsar.topik: unknown field (did you mean 'topic'?); allowed fields: ")
    assert "serviceUrl" in problems[0]
    assert problems_of(doc(lambda d: d.update(extra=1)))[0].startswith("extra: unknown field")


def test_all_problems_are_reported_at_once() -> None:
    def edit(d: dict[str, Any]) -> None:
        d["training"]["batchSize"] = 0
        d["model"]["optimizer"] = "lbfgs"
        d["data"]["features"][0]["dtype"] = "float128"

    with pytest.raises(ConfigError) as info:
        load_config(doc(edit))
    assert [p.split(":")[0] for p in info.value.problems] == [
        "data.features[0].dtype", "model.optimizer", "training.batchSize"]
    assert str(info.value).startswith("3 problems in the configuration:\n  - data.features[0].dtype: ")


def test_cross_field_checks_skip_fields_that_are_already_invalid() -> None:
    problems = problems_of(doc(lambda d: d["data"]["label"].update(dtype="complex64")))
    assert problems == ("data.label.dtype: 'complex64' is not one of float16, float32, float64, int8, int16, int32, "
                        "int64, uint8, bool",)


def test_a_missing_task_is_one_problem_not_a_cascade() -> None:
    assert problems_of(doc(lambda d: d["model"].pop("task"))) == ("model.task: required field is missing",)


def test_load_config_file(tmp_path: Path) -> None:
    good = tmp_path / "worker.json"
    good.write_text(json.dumps(doc()))
    assert load_config_file(good).pipeline.name == "digits"
    bad = tmp_path / "bad.json"
    bad.write_text('{"pipeline": ')
    with pytest.raises(ConfigError, match=r"bad\.json: not valid JSON: Expecting value: line 1 column 14"):
        load_config_file(bad)
    with pytest.raises(ConfigError, match="cannot read the configuration"):
        load_config_file(tmp_path / "missing.json")


def test_token_is_read_on_demand_and_never_shown(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.sig\n")
    auth = TokenAuth(file=str(token_file))
    secret = auth.read()
    assert secret.reveal() == "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.sig"
    assert "c2VjcmV0" not in repr(secret) and "c2VjcmV0" not in str(secret) and "c2VjcmV0" not in f"{secret}"
    assert secret == Secret("eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.sig")
    assert TokenAuth(env="PULSAR_TOKEN").read({"PULSAR_TOKEN": "abc"}).reveal() == "abc"
    with pytest.raises(ConfigError, match=r"authentication\.token\.env: environment variable 'NOPE' is unset"):
        TokenAuth(env="NOPE").read({})
    with pytest.raises(ConfigError, match=r"authentication\.token\.file: cannot read"):
        TokenAuth(file=str(tmp_path / "absent")).read()


def test_tls_key_file_is_left_out_of_repr() -> None:
    def edit(d: dict[str, Any]) -> None:
        d["source"]["pulsar"].update(serviceUrl="pulsar+ssl://pulsar:6651", tlsTrustCertsFile="/ca.pem",
                                     authentication={"tls": {"certFile": "/c.pem", "keyFile": "/secret-key.pem"}})

    config = load_config(doc(edit))
    assert config.source.pulsar.authentication == TlsAuth(cert_file="/c.pem", key_file="/secret-key.pem")
    assert "secret-key" not in repr(config) and "/c.pem" in repr(config)


def test_parsing_imports_neither_numpy_nor_tensorflow() -> None:
    code = ("import sys, pulsetrain.config as c; c.load_config(" + repr(doc()) + ");"
            "print(sorted(m for m in ('numpy', 'tensorflow') if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip() == "[]"


def tf_env(value: object) -> dict[str, str]:
    return {"TF_CONFIG": json.dumps(value)}


def test_tf_config_absent_means_single_worker() -> None:
    assert tf_config_from_env({}) is None
    assert tf_config_from_env({"TF_CONFIG": "  "}) is None


def test_tf_config_parses_workers_and_task() -> None:
    workers = ["d-worker-0.d.ml.svc:2222", "d-worker-1.d.ml.svc:2222", "[fd00::3]:2222"]
    config = tf_config_from_env(tf_env({"cluster": {"worker": workers}, "task": {"type": "worker", "index": 1},
                                        "environment": "cloud"}))
    assert config is not None
    assert config.num_workers == 3 and config.task_index == 1 and not config.is_chief
    assert config.address == "d-worker-1.d.ml.svc:2222"
    assert config.peers == ("d-worker-0.d.ml.svc:2222", "[fd00::3]:2222")
    chief = tf_config_from_env(tf_env({"cluster": {"worker": workers}, "task": {"type": "worker", "index": 0}}))
    assert chief is not None and chief.is_chief


@pytest.mark.parametrize(("value", "expected"), [
    ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}},
     "TF_CONFIG.task.index: 2 is out of range; allowed 0..1 (2 workers in cluster.worker)"),
    ({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": -1}},
     "TF_CONFIG.task.index: -1 is out of range; allowed x >= 0"),
    ({"cluster": {"worker": ["a:1"], "chief": ["c:1"]}, "task": {"type": "worker", "index": 0}},
     "TF_CONFIG.cluster.chief: job 'chief' is not used by pulsetrain"),
    ({"cluster": {"worker": ["a:1"]}, "task": {"type": "ps", "index": 0}},
     "TF_CONFIG.task.type: 'ps' is not one of worker"),
    ({"cluster": {"worker": ["a:1", "no-port"]}, "task": {"index": 0}},
     "TF_CONFIG.cluster.worker[1]: 'no-port' is not a 'host:port' address"),
    ({"cluster": {"worker": ["a:99999"]}, "task": {"index": 0}},
     "TF_CONFIG.cluster.worker[0]: 'a:99999' is not a 'host:port' address"),
    ({"cluster": {"worker": []}, "task": {"index": 0}},
     "TF_CONFIG.cluster.worker: has 0 entries; at least 1 required"),
    ({"task": {"index": 0}}, "TF_CONFIG.cluster: required field is missing"),
    ({"cluster": {"worker": ["a:1"]}, "task": {"index": 0}, "tusk": 1}, "TF_CONFIG.tusk: unknown field"),
])
def test_tf_config_errors_name_the_field(value: object, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        tf_config_from_env(tf_env(value))
    assert any(p.startswith(expected) for p in info.value.problems), info.value.problems


def test_tf_config_invalid_json() -> None:
    with pytest.raises(ConfigError, match=r"^TF_CONFIG: not valid JSON at char 1"):
        tf_config_from_env({"TF_CONFIG": "{cluster"})
