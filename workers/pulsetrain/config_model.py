"""The worker configuration as frozen, typed dataclasses: what every other part of the worker reads.

Why this exists: the operator and the local runner render one JSON document (camelCase keys, as in the
`TrainingPipeline` spec); `pulsetrain.config` checks it and builds these objects, so the trainer, the
source and the decoder get values that are already valid, typed and defaulted, and never look at raw
JSON. Nothing here imports TensorFlow or NumPy. Each field's docstring gives its JSON key and default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pulsetrain._fields import ConfigError

DType = Literal["float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool"]
DTYPES: tuple[DType, ...] = ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool")
Format = Literal["json", "csv", "raw", "tfexample"]
Task = Literal["classification", "binary", "regression"]


class Secret:
    """A secret value (an authentication token) that never shows itself in repr, str or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The value itself: pass it straight to the client library, never to a log line."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, kw_only=True)
class PipelineConfig:
    """`pipeline`: which pipeline this worker belongs to; used to label logs and metrics."""

    name: str = "local"
    """`name`: the TrainingPipeline's name, a DNS-1123 label. Default `local` (for `pulsetrain run`)."""
    namespace: str = "default"
    """`namespace`: the Kubernetes namespace of the pipeline. Default `default`."""


@dataclass(frozen=True, kw_only=True)
class TokenAuth:
    """`authentication.token`: a JWT read from a file (`file`) or an environment variable (`env`), exactly one.

    Only where to find the token is kept here; `read()` fetches it into a `Secret` when connecting.
    """

    file: str | None = None
    """`file`: path of a file holding the token (a mounted Secret); surrounding whitespace is stripped."""
    env: str | None = None
    """`env`: name of the environment variable holding the token."""

    def read(self, environ: Mapping[str, str] | None = None) -> Secret:
        """The token, read now; `ConfigError` names the field when the file or variable gives nothing."""
        path = "source.pulsar.authentication.token"
        if self.file is not None:
            try:
                value = Path(self.file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError([f"{path}.file: cannot read {self.file!r}: {exc.strerror}"]) from None
            where = f"{path}.file: {self.file!r} is empty"
        else:
            value = (os.environ if environ is None else environ).get(self.env or "", "").strip()
            where = f"{path}.env: environment variable {self.env!r} is unset or empty"
        if not value:
            raise ConfigError([where])
        return Secret(value)


@dataclass(frozen=True, kw_only=True)
class TlsAuth:
    """`authentication.tls`: mutual TLS with a client certificate and key (PEM files)."""

    cert_file: str
    """`certFile`: path of the client certificate."""
    key_file: str = field(repr=False)
    """`keyFile`: path of the client private key (left out of repr)."""


@dataclass(frozen=True, kw_only=True)
class PulsarConfig:
    """`source.pulsar`: where the training messages come from and how they are consumed."""

    service_url: str = "pulsar://localhost:6650"
    """`serviceUrl`: `pulsar://host:port` or `pulsar+ssl://host:port` (comma-separated hosts allowed)."""
    admin_url: str | None = None
    """`adminUrl`: optional `http(s)://` admin endpoint, used to read the backlog for progress reports."""
    topic: str
    """`topic` (required): a short name (`digits`) or `persistent://tenant/namespace/topic` (not `non-persistent`: such
    a topic keeps no message to redeliver)."""
    subscription: str = "pulsetrain"
    """`subscription`: the one subscription all workers share. Default `pulsetrain`."""
    subscription_type: Literal["Shared", "KeyShared"] = "Shared"
    """`subscriptionType`: `Shared` (default) or `KeyShared` (per-key ordering)."""
    initial_position: Literal["Earliest", "Latest"] = "Earliest"
    """`initialPosition`: where a new subscription starts: `Earliest` (default) or `Latest`."""
    receiver_queue_size: int = 1000
    """`receiverQueueSize`: messages prefetched per worker, 1..100000 (bounded so no worker hoards). Default 1000."""
    batch_receive_max_messages: int
    """`batchReceiveMaxMessages`: most messages per batch receive, 1..100000. Default: `training.batchSize`."""
    batch_receive_timeout_ms: int = 100
    """`batchReceiveTimeoutMs`: longest wait for a batch to fill while no other worker has rows, 1..600000 ms.
    Default 100."""
    dead_letter_topic: str | None = None
    """`deadLetterTopic`: where malformed messages go; `dlq_topic` gives the default `{topic}-{subscription}-DLQ`."""
    authentication: TokenAuth | TlsAuth | None = None
    """`authentication`: `{"token": {"file"|"env": ...}}` or `{"tls": {"certFile", "keyFile"}}`; none by default."""
    tls_trust_certs_file: str | None = None
    """`tlsTrustCertsFile`: CA bundle that signs the broker's certificate (needs `pulsar+ssl://`)."""
    tls_validate_hostname: bool = False
    """`tlsValidateHostname`: refuse a broker whose certificate does not name the host of `serviceUrl` (needs
    `pulsar+ssl://`). Default false, as in Pulsar's clients: the CA alone is checked."""

    @property
    def dlq_topic(self) -> str:
        """The dead-letter topic actually used."""
        return self.dead_letter_topic or f"{self.topic}-{self.subscription}-DLQ"


@dataclass(frozen=True, kw_only=True)
class SourceConfig:
    """`source`: the message source; only Pulsar for now."""

    pulsar: PulsarConfig
    """`pulsar` (required)."""


@dataclass(frozen=True, kw_only=True)
class FieldSpec:
    """One named tensor of a record: a feature or the label."""

    name: str
    """`name`: the field's name (JSON key, tf.train.Example feature key, serving input name)."""
    dtype: DType
    """`dtype`: one of float16, float32, float64, int8, int16, int32, int64, uint8, bool."""
    shape: tuple[int, ...] = ()
    """`shape`: list of positive dimensions; `[]` (default) is a scalar."""

    @property
    def size(self) -> int:
        """Number of values in one record (the product of the shape; 1 for a scalar)."""
        total = 1
        for dim in self.shape:
            total *= dim
        return total


@dataclass(frozen=True, kw_only=True)
class CsvConfig:
    """`data.csv`: how CSV lines are split. Columns are the features flattened in order, then the label."""

    delimiter: str = ","
    """`delimiter`: one character. Default `,`."""
    header: bool = False
    """`header`: whether CSV *files* given to the producer start with a header line (skipped). Default false."""


@dataclass(frozen=True, kw_only=True)
class NormalizationConfig:
    """`data.normalization`: `(x - mean) / std` over the flattened features, applied inside the model graph."""

    mode: Literal["none", "given", "estimate"] = "none"
    """`mode`: `none` (default), `given` (use `mean`/`std`), `estimate` (from the first `estimateRecords`)."""
    mean: tuple[float, ...] | None = None
    """`mean`: one value per flattened feature value (`given` only)."""
    std: tuple[float, ...] | None = None
    """`std`: one positive value per flattened feature value (`given` only)."""
    estimate_records: int = 1000
    """`estimateRecords`: how many records the estimate uses (`estimate` only), >= 1. Default 1000."""


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """`data`: the declared schema of every message and how it is encoded."""

    format: Format
    """`format` (required): `json`, `csv`, `raw` (little-endian tensor bytes) or `tfexample`."""
    features: tuple[FieldSpec, ...]
    """`features` (required, at least one): in order; the order of raw bytes and CSV columns."""
    label: FieldSpec
    """`label` (required)."""
    csv: CsvConfig = CsvConfig()
    """`csv`: CSV options (only with `format: csv`)."""
    normalization: NormalizationConfig = NormalizationConfig()
    """`normalization`: feature normalisation. Default none."""

    @property
    def fields(self) -> tuple[FieldSpec, ...]:
        """The features, then the label: the order of raw bytes and CSV columns."""
        return (*self.features, self.label)

    @property
    def feature_size(self) -> int:
        """Number of feature values in one record, all features flattened."""
        return sum(f.size for f in self.features)


@dataclass(frozen=True, kw_only=True)
class MlpConfig:
    """`model.mlp`: the built-in multi-layer perceptron."""

    hidden_units: tuple[int, ...] = (64,)
    """`hiddenUnits`: width of each hidden layer, 1..65536 each. Default `[64]`."""
    activation: Literal["relu", "tanh", "gelu", "sigmoid"] = "relu"
    """`activation`: hidden-layer activation. Default `relu`."""
    dropout: float = 0.0
    """`dropout`: dropout rate after each hidden layer, 0 <= x < 1. Default 0."""


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """`model`: what is trained and how. Either `builtin` or `custom`."""

    task: Task
    """`task` (required): `classification` (softmax), `binary` (sigmoid) or `regression`."""
    builtin: Literal["linear", "mlp"] | None = "mlp"
    """`builtin`: `linear` or `mlp` (default, unless `custom` is set)."""
    custom: str | None = None
    """`custom`: `module:function` returning a Keras model, instead of `builtin`."""
    num_classes: int | None = None
    """`numClasses`: number of classes, >= 2 (`classification` only, where it is required)."""
    mlp: MlpConfig = MlpConfig()
    """`mlp`: MLP options (only with `builtin: mlp`)."""
    optimizer: Literal["adam", "sgd", "rmsprop", "adagrad"] = "adam"
    """`optimizer`. Default `adam`."""
    learning_rate: float = 0.001
    """`learningRate`: > 0. Default 0.001."""
    loss: str
    """`loss`: default per task: sparse_categorical_crossentropy, binary_crossentropy, mse."""
    metrics: tuple[str, ...]
    """`metrics`: default `["accuracy"]` for classification and binary, `["mae"]` for regression."""
    preprocess: str | None = None
    """`preprocess`: optional `module:function` called on every decoded batch, in training and serving: a dict
    of NumPy arrays by feature name (one row per record) in, the same names, rows and values per record out.
    A record it raises on, or returns non-finite values for, goes to the dead-letter topic. It runs in Python,
    so the exported SavedModel does not contain it: pulsetrain's predictor applies it, TensorFlow Serving
    would not."""


@dataclass(frozen=True, kw_only=True)
class TrainingConfig:
    """`training`: how long to train and how often to checkpoint and export."""

    mode: Literal["bounded", "continuous"] = "bounded"
    """`mode`: `bounded` (stops when idle or at a limit, exports at the end) or `continuous` (never stops)."""
    batch_size: int = 64
    """`batchSize`: samples per step per worker, 1..65536. Default 64."""
    idle_timeout_seconds: float = 30.0
    """`idleTimeoutSeconds`: bounded mode stops once every worker saw no message this long, > 0. Default 30."""
    max_steps: int | None = None
    """`maxSteps`: bounded mode stops after this many steps, >= 1. Default none."""
    max_messages: int | None = None
    """`maxMessages`: bounded mode stops after this many messages in all, >= 1. Default none."""
    checkpoint_every_steps: int = 100
    """`checkpointEverySteps`: >= 1. Default 100."""
    checkpoint_every_seconds: float | None = None
    """`checkpointEverySeconds`: also checkpoint when the last one is this old, > 0. Default none."""
    keep_checkpoints: int = 3
    """`keepCheckpoints`: how many recent checkpoints to keep, >= 1. Default 3."""
    export_every_steps: int | None = None
    """`exportEverySteps`: continuous mode exports every this many steps, >= 1."""
    export_every_seconds: float | None = None
    """`exportEverySeconds`: continuous mode exports this often, > 0; 600 when neither export field is set."""
    seed: int | None = None
    """`seed`: random seed (model initialisation, dropout), >= 0. Default none (random)."""


@dataclass(frozen=True, kw_only=True)
class StorageConfig:
    """`storage`: where durable state goes (local paths or URIs TensorFlow's file system understands)."""

    checkpoint_dir: str
    """`checkpointDir` (required): checkpoints and the message IDs each one covers."""
    export_dir: str
    """`exportDir` (required): SavedModel versions, `{exportDir}/{version}` (TensorFlow Serving layout)."""
    log_dir: str | None = None
    """`logDir`: TensorBoard summaries; none by default (no summaries)."""


@dataclass(frozen=True, kw_only=True)
class ObservabilityConfig:
    """`observability`: the worker's HTTP endpoint (`/metrics` and the progress document)."""

    host: str = "0.0.0.0"
    """`host`: address to bind. Default `0.0.0.0`."""
    port: int = 9100
    """`port`: 1..65535. Default 9100."""


@dataclass(frozen=True, kw_only=True)
class ServingConfig:
    """`serving`: the streaming predictor (`python -m pulsetrain.predictor`), Pulsar in, Pulsar out.

    It connects like the trainer (`source.pulsar.serviceUrl`, `authentication`, TLS), decodes inputs with
    `data` (the label may be left out, and is ignored when present), and serves the SavedModel versions in the
    export directory (`storage.exportDir`; under the operator `{storage.path}/{namespace}/{name}/export`). A new
    subscription starts at the earliest message the input topic still holds.
    """

    input_topic: str
    """`inputTopic` (required): the topic whose messages are predicted, in the `data` format."""
    output_topic: str
    """`outputTopic` (required): where one JSON answer per input goes (prediction and model version)."""
    subscription: str
    """`subscription`: the subscription all predictor replicas share. Default `{pipeline.name}-predictor`."""
    subscription_type: Literal["Shared", "KeyShared"] = "Shared"
    """`subscriptionType`: `Shared` (default) or `KeyShared` (answers in order per key)."""
    max_batch_size: int = 64
    """`maxBatchSize`: most inputs predicted in one call of the model, 1..4096. Default 64."""
    max_latency_ms: int = 20
    """`maxLatencyMs`: a batch closes at the latest this long after its first input was published, 1..10000 ms.
    Default 20."""
    model_version: int | Literal["latest"] = "latest"
    """`modelVersion`: `latest` (default: the newest version, swapped in as new ones appear) or a version number."""
    dead_letter_topic: str | None = None
    """`deadLetterTopic`: where undecodable inputs go, with the reason. Default `{inputTopic}-{subscription}-DLQ`."""
    model_poll_seconds: float = 5.0
    """`modelPollSeconds`: how often the export directory is checked for a new version, 0.1..3600 s. Default 5."""

    @property
    def pinned_version(self) -> int | None:
        """The version number when `modelVersion` pins one, None for `latest`."""
        return None if self.model_version == "latest" else self.model_version

    @property
    def dlq_topic(self) -> str:
        """The dead-letter topic actually used."""
        return self.dead_letter_topic or f"{self.input_topic}-{self.subscription}-DLQ"


@dataclass(frozen=True, kw_only=True)
class WorkerConfig:
    """The whole worker configuration: one JSON document, one of these."""

    pipeline: PipelineConfig
    source: SourceConfig
    data: DataConfig
    model: ModelConfig
    training: TrainingConfig
    storage: StorageConfig
    observability: ObservabilityConfig
    serving: ServingConfig | None = None
    """`serving`: the streaming predictor's settings; none by default (no predictor)."""
