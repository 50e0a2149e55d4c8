"""Parse and check the worker configuration: one JSON document in, one frozen `WorkerConfig` out.

Why this exists: every worker pod (and `pulsetrain run`) starts from the JSON document the operator or
the local runner rendered. Mistakes there must stop the worker before it touches Pulsar or TensorFlow,
with every problem listed at once, each naming its dotted field path, the bad value and what is allowed;
unknown keys are refused so that typos never pass silently. This module imports neither TensorFlow nor
NumPy. The dataclasses live in `pulsetrain.config_model`, the `serving` section's rules in
`pulsetrain.config_serving`, `TF_CONFIG` parsing in `pulsetrain.tfconfig`; what callers use is re-exported
here, so they need only `pulsetrain.config`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Literal, cast

from pulsetrain._fields import ConfigError, Problems, Section, pattern_check
from pulsetrain.config_model import (
    DTYPES,
    CsvConfig,
    DataConfig,
    DType,
    FieldSpec,
    Format,
    MlpConfig,
    ModelConfig,
    NormalizationConfig,
    ObservabilityConfig,
    PipelineConfig,
    PulsarConfig,
    Secret,
    ServingConfig,
    SourceConfig,
    StorageConfig,
    Task,
    TlsAuth,
    TokenAuth,
    TrainingConfig,
    WorkerConfig,
)
from pulsetrain.config_serving import SUBSCRIPTION, TOPIC, full_topic, serving_checks, serving_section
from pulsetrain.tfconfig import TFConfig, tf_config_from_env

__all__ = [
    "ConfigError",
    "CsvConfig",
    "DataConfig",
    "FieldSpec",
    "MlpConfig",
    "ModelConfig",
    "NormalizationConfig",
    "ObservabilityConfig",
    "PipelineConfig",
    "PulsarConfig",
    "Secret",
    "ServingConfig",
    "SourceConfig",
    "StorageConfig",
    "TFConfig",
    "TlsAuth",
    "TokenAuth",
    "TrainingConfig",
    "WorkerConfig",
    "full_topic",
    "load_config",
    "load_config_file",
    "tf_config_from_env",
]

_DNS_LABEL = pattern_check(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", "a DNS-1123 label (lower-case letters, digits, '-')")
_SERVICE_URL = pattern_check(r"pulsar(\+ssl)?://[^\s/,]+(,[^\s/,]+)*/?",
                             "a Pulsar service URL (pulsar://host:port or pulsar+ssl://host:port)")
_ADMIN_URL = pattern_check(r"https?://[^\s/]+(/\S*)?", "an http:// or https:// URL")
_NAME = pattern_check(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}",
                      "a field name (letters, digits, '_', '.', '-'; up to 128 characters)")
_HOOK = pattern_check(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*",
                      "in 'module:function' form (for example 'mypkg.models:build')")

_LOSSES: dict[str, tuple[str, ...]] = {
    "classification": ("sparse_categorical_crossentropy",),
    "binary": ("binary_crossentropy",),
    "regression": ("mse", "mae", "huber"),
}
_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy", "top_k_accuracy"),
    "binary": ("accuracy", "auc", "precision", "recall"),
    "regression": ("mae", "mse", "rmse"),
}
_DEFAULT_METRICS = {"classification": "accuracy", "binary": "accuracy", "regression": "mae"}
_DEFAULT_EXPORT_SECONDS = 600.0
_FROM_BATCH_SIZE = -1  # batchReceiveMaxMessages left out: training.batchSize, filled in once training is read


def load_config_file(path: str | os.PathLike[str]) -> WorkerConfig:
    """Read and check the JSON worker configuration at `path`."""
    try:
        with open(path, encoding="utf-8") as handle:
            doc = json.load(handle)
    except OSError as exc:
        raise ConfigError([f"{os.fspath(path)}: cannot read the configuration: {exc.strerror}"]) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{os.fspath(path)}: not valid JSON: {exc}"]) from None
    return load_config(doc)


def load_config(doc: Mapping[str, object]) -> WorkerConfig:
    """Check a parsed JSON worker configuration and build the `WorkerConfig`; `ConfigError` lists every problem."""
    problems = Problems()
    root = Section(doc, "", problems)
    pipeline = _pipeline(root.section("pipeline"))
    config = WorkerConfig(
        pipeline=pipeline,
        source=_source(root.section("source", required=True)),
        data=_data(root.section("data", required=True)),
        model=_model(root.section("model", required=True)),
        training=_training(root.section("training")),
        storage=_storage(root.section("storage", required=True)),
        observability=_observability(root.section("observability")),
        serving=serving_section(root.section("serving"), pipeline.name) if root.has("serving") else None,
    )
    root.raw("serving")
    root.done()
    pulsar = config.source.pulsar
    if pulsar.batch_receive_max_messages == _FROM_BATCH_SIZE:
        pulsar = replace(pulsar, batch_receive_max_messages=min(config.training.batch_size, 100_000))
        config = replace(config, source=replace(config.source, pulsar=pulsar))
    _cross_checks(config, problems)
    problems.raise_if_any()
    return config


def _pipeline(sec: Section) -> PipelineConfig:
    config = PipelineConfig(name=sec.text("name", "local", check=_DNS_LABEL),
                            namespace=sec.text("namespace", "default", check=_DNS_LABEL))
    sec.done()
    return config


def _source(sec: Section) -> SourceConfig:
    config = SourceConfig(pulsar=_pulsar(sec.section("pulsar", required=True)))
    sec.done()
    return config


def _pulsar(sec: Section) -> PulsarConfig:
    config = PulsarConfig(
        service_url=sec.text("serviceUrl", "pulsar://localhost:6650", check=_SERVICE_URL),
        admin_url=sec.opt_text("adminUrl", check=_ADMIN_URL),
        topic=sec.text("topic", check=TOPIC),
        subscription=sec.text("subscription", "pulsetrain", check=SUBSCRIPTION),
        subscription_type=cast("Literal['Shared', 'KeyShared']",
                               sec.text("subscriptionType", "Shared", choices=("Shared", "KeyShared"))),
        initial_position=cast("Literal['Earliest', 'Latest']",
                              sec.text("initialPosition", "Earliest", choices=("Earliest", "Latest"))),
        receiver_queue_size=sec.integer("receiverQueueSize", 1000, ge=1, le=100_000),
        batch_receive_max_messages=sec.integer("batchReceiveMaxMessages", _FROM_BATCH_SIZE, ge=1, le=100_000),
        batch_receive_timeout_ms=sec.integer("batchReceiveTimeoutMs", 100, ge=1, le=600_000),
        dead_letter_topic=sec.opt_text("deadLetterTopic", check=TOPIC),
        authentication=_authentication(sec.section("authentication")) if sec.has("authentication") else None,
        tls_trust_certs_file=sec.opt_text("tlsTrustCertsFile"),
        tls_validate_hostname=sec.boolean("tlsValidateHostname", False),
    )
    sec.raw("authentication")
    sec.done()
    if config.dead_letter_topic is not None and full_topic(config.dead_letter_topic) == full_topic(config.topic):
        sec.error("deadLetterTopic", f"{config.dead_letter_topic!r} is the training topic itself; use another topic")
    uses_tls = (isinstance(config.authentication, TlsAuth) or config.tls_trust_certs_file is not None
                or config.tls_validate_hostname)
    if uses_tls and sec.problems.clean(sec.sub("serviceUrl")) and not config.service_url.startswith("pulsar+ssl://"):
        sec.error("serviceUrl", f"{config.service_url!r} does not use TLS, but TLS settings are given "
                                "(authentication.tls, tlsTrustCertsFile or tlsValidateHostname); use pulsar+ssl://")
    return config


def _authentication(sec: Section) -> TokenAuth | TlsAuth | None:
    kinds = [k for k in ("token", "tls") if sec.has(k)]
    auth: TokenAuth | TlsAuth | None = None
    if len(kinds) != 1:
        sec.problems.add(sec.path, f"give exactly one of token, tls (got {', '.join(kinds) or 'neither'})")
    if sec.has("token"):
        token = sec.section("token")
        auth = TokenAuth(file=token.opt_text("file"), env=token.opt_text("env"))
        if (auth.file is None) == (auth.env is None) and token.problems.clean(token.path):
            token.problems.add(token.path, "give exactly one of file, env")
        token.done()
    if sec.has("tls"):
        tls = sec.section("tls")
        auth = TlsAuth(cert_file=tls.text("certFile"), key_file=tls.text("keyFile"))
        tls.done()
    sec.done()
    return auth


def _field(sec: Section) -> FieldSpec:
    shape: list[int] = []
    for path, dim in sec.items("shape"):
        if isinstance(dim, int) and not isinstance(dim, bool) and dim >= 1:
            shape.append(dim)
        else:
            sec.problems.add(path, f"{dim!r} is not a positive integer (shape dimensions must be >= 1)")
    config = FieldSpec(name=sec.text("name", check=_NAME), dtype=cast(DType, sec.text("dtype", choices=DTYPES)),
                       shape=tuple(shape))
    sec.done()
    return config


def _data(sec: Section) -> DataConfig:
    fmt = cast(Format, sec.text("format", choices=("json", "csv", "raw", "tfexample")))
    features = tuple(_field(Section(item, path, sec.problems))
                     for path, item in sec.items("features", required=True, min_len=1))
    label = _field(sec.section("label", required=True))
    if sec.has("csv") and fmt != "csv" and sec.problems.clean(sec.sub("format")):
        sec.error("csv", f"only allowed with format 'csv' (format is {fmt!r})")
    csv_sec = sec.section("csv")
    csv = CsvConfig(delimiter=csv_sec.text("delimiter", ","), header=csv_sec.boolean("header", False))
    if len(csv.delimiter) != 1 or csv.delimiter in "0123456789.+-eE\"\n\r":
        csv_sec.error("delimiter", f"{csv.delimiter!r} is not allowed; use one character that cannot appear "
                                   "in a number (such as ',', ';', '|' or a tab)")
    csv_sec.done()
    norm = _normalization(sec.section("normalization"))
    sec.done()
    names: dict[str, str] = {}
    for i, spec in enumerate((*features, label)):
        path = f"{sec.path}.features[{i}].name" if i < len(features) else f"{sec.path}.label.name"
        if spec.name and spec.name in names:
            sec.problems.add(path, f"{spec.name!r} is already used by {names[spec.name]}; names must be unique")
        names.setdefault(spec.name, path.removesuffix(".name"))
    config = DataConfig(format=fmt, features=features, label=label, csv=csv, normalization=norm)
    if norm.mode == "given" and sec.problems.clean(sec.sub("features"), sec.sub("normalization")):
        for key, values in (("mean", norm.mean), ("std", norm.std)):
            if values is not None and len(values) != config.feature_size:
                sec.problems.add(f"{sec.path}.normalization.{key}",
                                 f"has {len(values)} values, expected {config.feature_size} "
                                 "(one per flattened feature value)")
    return config


def _normalization(sec: Section) -> NormalizationConfig:
    mode = sec.text("mode", "none", choices=("none", "given", "estimate"))
    config = NormalizationConfig(
        mode=cast("Literal['none', 'given', 'estimate']", mode),
        mean=sec.numbers("mean"), std=sec.numbers("std", gt=0.0),
        estimate_records=sec.integer("estimateRecords", 1000, ge=1, le=10_000_000),
    )
    if mode == "given":
        for key in ("mean", "std"):
            if getattr(config, key) is None:
                sec.error(key, "required when mode is 'given'")
    else:
        for key in ("mean", "std"):
            if sec.has(key):
                sec.error(key, f"only allowed when mode is 'given' (mode is {mode!r})")
    if sec.has("estimateRecords") and mode != "estimate":
        sec.error("estimateRecords", f"only allowed when mode is 'estimate' (mode is {mode!r})")
    sec.done()
    return config


def _model(sec: Section) -> ModelConfig:
    task = cast(Task, sec.text("task", choices=("classification", "binary", "regression")))
    known = sec.problems.clean(sec.sub("task"))  # task-dependent checks and defaults need a valid task
    custom = sec.opt_text("custom", check=_HOOK)
    builtin = sec.opt_text("builtin", choices=("linear", "mlp"))
    if builtin is not None and sec.has("custom"):
        sec.problems.add(sec.path, "give either builtin or custom, not both")
    if builtin is None and not sec.has("custom"):
        builtin = "mlp"
    if sec.has("mlp") and builtin != "mlp" and sec.problems.clean(sec.sub("builtin")):
        sec.error("mlp", f"only allowed with builtin 'mlp' (model is {builtin or 'custom'!r})")
    mlp_sec = sec.section("mlp")
    units: list[int] = []
    for path, item in mlp_sec.items("hiddenUnits", min_len=1) if mlp_sec.has("hiddenUnits") else []:
        if isinstance(item, int) and not isinstance(item, bool) and 1 <= item <= 65536:
            units.append(item)
        else:
            sec.problems.add(path, f"{item!r} is not an integer in 1..65536")
    mlp_sec.raw("hiddenUnits")
    mlp = MlpConfig(hidden_units=tuple(units) if mlp_sec.has("hiddenUnits") else (64,),
                    activation=cast("Literal['relu', 'tanh', 'gelu', 'sigmoid']",
                                    mlp_sec.text("activation", "relu", choices=("relu", "tanh", "gelu", "sigmoid"))),
                    dropout=mlp_sec.number("dropout", 0.0, ge=0.0, lt=1.0))
    mlp_sec.done()
    num_classes = sec.opt_integer("numClasses", ge=2, le=1_000_000)
    if known and task == "classification" and num_classes is None and sec.problems.clean(sec.sub("numClasses")):
        sec.error("numClasses", "required for task 'classification' (an integer >= 2)")
    if known and task != "classification" and sec.has("numClasses"):
        sec.error("numClasses", f"only allowed for task 'classification' (task is {task!r})")
    loss = sec.text("loss", _LOSSES[task][0] if known else "", choices=_LOSSES[task] if known else None)
    metrics: list[str] = []
    for path, item in sec.items("metrics") if sec.has("metrics") else []:
        if not known or item in _METRICS[task]:
            metrics.append(str(item))
        else:
            sec.problems.add(path, f"{item!r} is not one of {', '.join(_METRICS[task])} (metrics for task {task!r})")
    sec.raw("metrics")
    config = ModelConfig(
        task=task, builtin=cast("Literal['linear', 'mlp'] | None", builtin), custom=custom,
        num_classes=num_classes, mlp=mlp,
        optimizer=cast("Literal['adam', 'sgd', 'rmsprop', 'adagrad']",
                       sec.text("optimizer", "adam", choices=("adam", "sgd", "rmsprop", "adagrad"))),
        learning_rate=sec.number("learningRate", 0.001, gt=0.0, le=10.0),
        loss=loss,
        metrics=tuple(metrics) if sec.has("metrics") else ((_DEFAULT_METRICS[task],) if known else ()),
        preprocess=sec.opt_text("preprocess", check=_HOOK),
    )
    sec.done()
    return config


def _training(sec: Section) -> TrainingConfig:
    mode = sec.text("mode", "bounded", choices=("bounded", "continuous"))
    export_steps = sec.opt_integer("exportEverySteps", ge=1)
    export_seconds = sec.opt_number("exportEverySeconds", gt=0.0)
    if mode == "continuous" and export_steps is None and export_seconds is None:
        export_seconds = _DEFAULT_EXPORT_SECONDS
    config = TrainingConfig(
        mode=cast("Literal['bounded', 'continuous']", mode),
        batch_size=sec.integer("batchSize", 64, ge=1, le=65536),
        idle_timeout_seconds=sec.number("idleTimeoutSeconds", 30.0, gt=0.0),
        max_steps=sec.opt_integer("maxSteps", ge=1), max_messages=sec.opt_integer("maxMessages", ge=1),
        checkpoint_every_steps=sec.integer("checkpointEverySteps", 100, ge=1),
        checkpoint_every_seconds=sec.opt_number("checkpointEverySeconds", gt=0.0),
        keep_checkpoints=sec.integer("keepCheckpoints", 3, ge=1, le=1000),
        export_every_steps=export_steps, export_every_seconds=export_seconds,
        seed=sec.opt_integer("seed", ge=0, le=2**63 - 1),
    )
    only = {"continuous": ("maxSteps", "maxMessages", "idleTimeoutSeconds"),
            "bounded": ("exportEverySteps", "exportEverySeconds")}
    for key in only.get(mode, ()):
        if sec.has(key):
            what = "bounded mode stops by itself" if mode == "bounded" else "continuous mode never stops by itself"
            sec.error(key, f"not allowed with mode {mode!r} ({what}; "
                           f"{'it exports once, at the end' if mode == 'bounded' else 'remove this field'})")
    sec.done()
    return config


def _storage(sec: Section) -> StorageConfig:
    config = StorageConfig(checkpoint_dir=sec.text("checkpointDir"), export_dir=sec.text("exportDir"),
                           log_dir=sec.opt_text("logDir"))
    if config.checkpoint_dir and os.path.normpath(config.checkpoint_dir) == os.path.normpath(config.export_dir):
        sec.error("exportDir", f"{config.export_dir!r} is also checkpointDir; use separate directories")
    sec.done()
    return config


def _observability(sec: Section) -> ObservabilityConfig:
    config = ObservabilityConfig(host=sec.text("host", "0.0.0.0"), port=sec.integer("port", 9100, ge=1, le=65535))
    sec.done()
    return config


def _cross_checks(config: WorkerConfig, problems: Problems) -> None:
    """Rules between sections, checked only where the fields involved are valid on their own."""
    serving_checks(config, problems)
    model, label = config.model, config.data.label
    if not problems.clean("model.task", "data.label"):
        return
    path = "data.label"
    if model.task == "classification":
        if not re.fullmatch(r"u?int\d+", label.dtype):
            problems.add(f"{path}.dtype", f"{label.dtype!r} cannot hold class indices; task 'classification' "
                                          "needs an integer dtype (int8, int16, int32, int64, uint8)")
        if label.shape:
            problems.add(f"{path}.shape", f"{list(label.shape)} is not allowed; task 'classification' needs a "
                                          "scalar class index (shape [])")
        if model.num_classes is not None and label.dtype in ("int8", "uint8") and model.num_classes > 128:
            problems.add("model.numClasses", f"{model.num_classes} classes do not fit label dtype {label.dtype!r}")
    elif model.task == "binary" and label.size != 1:
        problems.add(f"{path}.shape", f"{list(label.shape)} is not allowed; task 'binary' needs one 0/1 value "
                                      "per record (shape [] or [1])")
    elif model.task == "regression":
        if label.dtype == "bool":
            problems.add(f"{path}.dtype", "'bool' is not allowed for task 'regression'; use a numeric dtype")
        if label.size != 1:
            problems.add(f"{path}.shape", f"{list(label.shape)} is not allowed; task 'regression' predicts one value "
                                          "per record (shape [] or [1])")
