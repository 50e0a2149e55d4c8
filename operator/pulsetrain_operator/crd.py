"""The `TrainingPipeline` CustomResourceDefinition, built in Python: the one source of truth for the API.

Why this exists: the schema, its descriptions (what `kubectl explain tp.spec...` prints), defaults, CEL
rules and printer columns must agree with the operator and with the worker. Building the CRD here lets
it read the operator's defaults (`defaults.py`) and the worker configuration's own enums and field
docstrings (`pulsetrain.config_model`: `data`, `model` and most of `training` are copied into the worker
configuration unchanged, so they must mean the same), instead of repeating them in hand-written YAML.
`hack/render_manifests.py` writes the result to `manifests/` (and later the chart); a unit test fails
when the committed YAML drifts from this module.

Schema defaults come only from `defaults.py`; fields the worker defaults itself (batch size, learning
rate...) are left out of the stored object, and their descriptions say what the worker assumes.
`spec.serving` is built in `crd_serving.py`, `spec.worker` and `spec.runPolicy` in `crd_workload.py`, and
the status in `crd_status.py`, all with the building blocks and field docs of `crd_schema.py`.
"""

from __future__ import annotations

from typing import Any, Final

from pulsetrain import config_model as worker
from pulsetrain_operator import defaults
from pulsetrain_operator.crd_schema import (
    ABSOLUTE_PATH_PATTERN,
    ADMIN_URL_PATTERN,
    CSV_DELIMITER_PATTERN,
    DNS_1035_LABEL_PATTERN,
    DNS_SUBDOMAIN_PATTERN,
    FIELD_NAME_PATTERN,
    HOOK_PATTERN,
    SECRET_KEY_PATTERN,
    SERVICE_URL_PATTERN,
    SUBSCRIPTION_PATTERN,
    TOPIC_PATTERN,
    Schema,
    _array,
    _bool,
    _choice,
    _class_doc,
    _doc,
    _immutable,
    _int,
    _literals,
    _number,
    _object,
    _rule,
    _string,
)
from pulsetrain_operator.crd_serving import serving_schema
from pulsetrain_operator.crd_status import status_schema
from pulsetrain_operator.crd_workload import run_policy_schema, worker_schema

GROUP: Final = "pulsetrain.dev"
VERSION: Final = "v1alpha1"
KIND: Final = "TrainingPipeline"
PLURAL: Final = "trainingpipelines"
SINGULAR: Final = "trainingpipeline"
NAME: Final = f"{PLURAL}.{GROUP}"
SHORT_NAMES: Final = ("tp",)

STORAGE_NEEDS_A_CLAIM: Final = "has(self.claimName)"  # on spec.storage
SERVING_WITHOUT_TTL: Final = ("!has(self.serving) || !has(self.runPolicy)"
                              " || !has(self.runPolicy.ttlSecondsAfterFinished)")
CLUSTER_ONLY_RULES: Final = frozenset({STORAGE_NEEDS_A_CLAIM, SERVING_WITHOUT_TTL})
"""CEL rules about pods sharing a volume and about deleting finished objects: they mean nothing on one machine,
where `pulsetrain run` keeps every file under its state directory and deletes nothing, so it skips them."""
CATEGORIES: Final = ("ml",)

BOUNDED, CONTINUOUS = defaults.MODES
MAX_FEATURES: Final = 256
"""Bound on `data.features`, so that the API server can price the CEL rules that compare feature names."""
MAX_NAME_LENGTH: Final = 63 - len("-worker-") - len(str(defaults.MAX_WORKERS - 1))
"""Longest pipeline name whose worker pods (`{name}-worker-{i}`, also their host names) fit a DNS label."""

# --- spec -------------------------------------------------------------------------------------------------

def _secret_key(description: str, key_default: str) -> Schema:
    return _object(description, {
        "secretName": _string("Name of the Secret, in the pipeline's namespace.",
                              pattern=DNS_SUBDOMAIN_PATTERN, maxLength=253),
        "key": _string(f"The key in the Secret that holds the value. Default `{key_default}`.",
                       pattern=SECRET_KEY_PATTERN, maxLength=253, default=key_default),
    }, required=["secretName"])


def _authentication() -> Schema:
    return _object(
        "How the workers authenticate to the broker: exactly one of `token` or `tls`. None by default.", {
            "token": _secret_key("A JWT kept in a Secret; mounted into every worker and read from the file.",
                                 defaults.TOKEN_KEY),
            "tls": _object("Mutual TLS: a `kubernetes.io/tls` Secret whose `tls.crt` and `tls.key` hold the client "
                           "certificate and private key (PEM). Needs a `pulsar+ssl://` serviceUrl.", {
                               "secretName": _string("Name of the `kubernetes.io/tls` Secret, in the pipeline's "
                                                     "namespace.", pattern=DNS_SUBDOMAIN_PATTERN, maxLength=253),
                           }, required=["secretName"]),
        },
        rules=[_rule("has(self.token) != has(self.tls)",
                     "source.pulsar.authentication needs exactly one of token, tls")])


def _pulsar() -> Schema:
    pulsar = worker.PulsarConfig
    return _object(_class_doc(pulsar), {
        "serviceUrl": _string(_doc(pulsar, "service_url", "The broker's service URL"),
                              pattern=SERVICE_URL_PATTERN, maxLength=2048),
        "adminUrl": _string(_doc(pulsar, "admin_url", "The broker's admin URL"),
                            pattern=ADMIN_URL_PATTERN, maxLength=2048),
        "topic": _immutable(_string(_doc(pulsar, "topic", "The topic the pipeline trains on"),
                                    pattern=TOPIC_PATTERN, maxLength=1024),
                            "spec.source.pulsar.topic", "create another TrainingPipeline to train on another topic"),
        "subscription": _immutable(_string(_doc(pulsar, "subscription"), pattern=SUBSCRIPTION_PATTERN,
                                           maxLength=256, default=defaults.SUBSCRIPTION),
                                   "spec.source.pulsar.subscription",
                                   "the subscription holds the pipeline's position in the topic"),
        "subscriptionType": _choice(_doc(pulsar, "subscription_type"), defaults.SUBSCRIPTION_TYPES,
                                    defaults.SUBSCRIPTION_TYPE),
        "initialPosition": _choice(_doc(pulsar, "initial_position"), defaults.INITIAL_POSITIONS,
                                   defaults.INITIAL_POSITION),
        "receiverQueueSize": _int(_doc(pulsar, "receiver_queue_size"), ge=1, le=100_000),
        "batchReceiveMaxMessages": _int(_doc(pulsar, "batch_receive_max_messages"), ge=1, le=100_000),
        "batchReceiveTimeoutMs": _int(_doc(pulsar, "batch_receive_timeout_ms"), ge=1, le=600_000),
        "deadLetterTopic": _string("Where malformed messages go (never the training topic itself). "
                                   "Default `{topic}-{subscription}-DLQ`.", pattern=TOPIC_PATTERN, maxLength=1024),
        "authentication": _authentication(),
        "tlsTrustCerts": _secret_key("The CA bundle that signs the broker's certificate, kept in a Secret "
                                     "(needs a `pulsar+ssl://` serviceUrl).", defaults.CA_KEY),
        "tlsValidateHostname": _bool(_doc(pulsar, "tls_validate_hostname")),
    }, required=["serviceUrl", "topic"], rules=[
        _rule("!has(self.deadLetterTopic) || self.deadLetterTopic != self.topic",
              "source.pulsar.deadLetterTopic must differ from source.pulsar.topic", field_path=".deadLetterTopic"),
        _rule("!(has(self.tlsTrustCerts) || has(self.authentication) && has(self.authentication.tls)"
              " || has(self.tlsValidateHostname) && self.tlsValidateHostname)"
              " || self.serviceUrl.startsWith('pulsar+ssl://')",
              "source.pulsar.serviceUrl must start with pulsar+ssl:// when tlsTrustCerts, authentication.tls or "
              "tlsValidateHostname is given", field_path=".serviceUrl"),
    ])


def _field_spec(description: str) -> Schema:
    field = worker.FieldSpec
    return _object(description, {
        "name": _string(_doc(field, "name"), pattern=FIELD_NAME_PATTERN, minLength=1, maxLength=128),
        "dtype": _choice(_doc(field, "dtype", "The element type"), worker.DTYPES),
        "shape": _array(_doc(field, "shape", "The tensor's shape"), _int("One dimension, >= 1.", ge=1)),
    }, required=["name", "dtype"])


def _normalization() -> Schema:
    normalization = worker.NormalizationConfig
    given = "self.mode == 'given'"
    return _object(_class_doc(normalization), {
        "mode": _choice(_doc(normalization, "mode"), _literals(normalization, "mode")),
        "mean": _array(_doc(normalization, "mean"), _number("The mean of one flattened feature value.")),
        "std": _array(_doc(normalization, "std"), _number("The standard deviation of one flattened feature "
                                                          "value, > 0.", gt=0)),
        "estimateRecords": _int(_doc(normalization, "estimate_records"), ge=1, le=10_000_000),
    }, rules=[
        _rule(f"!(has(self.mode) && {given}) || has(self.mean) && has(self.std) && size(self.mean) == size(self.std)",
              "data.normalization.mean and data.normalization.std are required, with equally many values, "
              "when data.normalization.mode is given"),
        _rule(f"!(has(self.mean) || has(self.std)) || has(self.mode) && {given}",
              "data.normalization.mean and data.normalization.std are only allowed when data.normalization.mode "
              "is given"),
        _rule("!has(self.estimateRecords) || has(self.mode) && self.mode == 'estimate'",
              "data.normalization.estimateRecords is only allowed when data.normalization.mode is estimate",
              field_path=".estimateRecords"),
    ])


def _data() -> Schema:
    data, csv = worker.DataConfig, worker.CsvConfig
    return _immutable(_object(_class_doc(data, "Copied into the worker configuration as it is."), {
        "format": _choice(_doc(data, "format", "How each message is encoded"), _literals(data, "format")),
        "features": _array(_doc(data, "features", "The model's inputs (at least one)"), _field_spec("One feature."),
                           min_items=1, max_items=MAX_FEATURES),
        "label": _field_spec(_doc(data, "label", "What the model learns to predict; its name differs from "
                                                 "every feature's")),
        "csv": _object(_class_doc(csv, "Only with `format: csv`."), {
            "delimiter": _string(_doc(csv, "delimiter", "The column separator"), pattern=CSV_DELIMITER_PATTERN),
            "header": _bool(_doc(csv, "header")),
        }),
        "normalization": _normalization(),
    }, required=["format", "features", "label"], rules=[
        _rule("!has(self.csv) || self.format == 'csv'", "data.csv is only allowed with data.format csv",
              field_path=".csv"),
        _rule("self.features.all(f, self.features.exists_one(g, g.name == f.name))",
              "data.features names must be unique", field_path=".features"),
        _rule("self.features.all(f, f.name != self.label.name)",
              "data.label.name must differ from every data.features name", field_path=".label.name"),
    ]), "spec.data", "the model and its checkpoints are built for this data schema")


def _model() -> Schema:
    model, mlp = worker.ModelConfig, worker.MlpConfig
    hook = "importable in the worker image"
    return _immutable(_object(_class_doc(model, "Copied into the worker configuration as it is."), {
        "task": _choice(_doc(model, "task", "What the model predicts"), _literals(model, "task")),
        "builtin": _choice(_doc(model, "builtin", "A built-in model"), _literals(model, "builtin")),
        "custom": _string(_doc(model, "custom", f"A model builder, {hook}"), pattern=HOOK_PATTERN, maxLength=512),
        "numClasses": _int(_doc(model, "num_classes"), ge=2, le=1_000_000),
        "mlp": _object(_class_doc(mlp, "Only with `builtin: mlp`."), {
            "hiddenUnits": _array(_doc(mlp, "hidden_units"), _int("Width of one hidden layer.", ge=1, le=65536),
                                  min_items=1),
            "activation": _choice(_doc(mlp, "activation"), _literals(mlp, "activation")),
            "dropout": _number(_doc(mlp, "dropout"), ge=0, lt=1),
        }),
        "optimizer": _choice(_doc(model, "optimizer", "The Keras optimizer"), _literals(model, "optimizer")),
        "learningRate": _number(_doc(model, "learning_rate", "The optimizer's learning rate"), gt=0, le=10),
        "loss": _string(_doc(model, "loss", "The Keras loss; the worker refuses one that does not suit the task.")),
        "metrics": _array(_doc(model, "metrics", "Keras metrics reported with the loss."),
                          _string("One metric name.")),
        "preprocess": _string(_doc(model, "preprocess", f"A preprocessing step, {hook}"), pattern=HOOK_PATTERN,
                              maxLength=512),
    }, required=["task"], rules=[
        _rule("!(has(self.builtin) && has(self.custom))",
              "model.builtin and model.custom are mutually exclusive: give at most one", field_path=".custom"),
        _rule("self.task != 'classification' || has(self.numClasses)",
              "model.numClasses is required when model.task is classification", field_path=".numClasses"),
        _rule("!has(self.numClasses) || self.task == 'classification'",
              "model.numClasses is only allowed when model.task is classification", field_path=".numClasses"),
        _rule("!has(self.mlp) || !has(self.custom) && (!has(self.builtin) || self.builtin == 'mlp')",
              "model.mlp is only allowed with model.builtin mlp", field_path=".mlp"),
    ]), "spec.model", "checkpoints only restore into the model they were written by")


def _training() -> Schema:
    training = worker.TrainingConfig
    only_bounded = ("maxSteps", "maxMessages", "idleTimeoutSeconds")
    only_continuous = ("exportEverySteps", "exportEverySeconds")
    return _object(_class_doc(training, "Changes restart the gang gracefully from its last checkpoint."), {
        "workers": _int(f"Number of worker pods in the gang, 1..{defaults.MAX_WORKERS}; changing it restarts the "
                        f"gang gracefully at the new size. Default {defaults.WORKERS}.",
                        ge=1, le=defaults.MAX_WORKERS, default=defaults.WORKERS),
        "batchSize": _int(_doc(training, "batch_size"), ge=1, le=65536),
        "mode": _choice(_doc(training, "mode"), defaults.MODES, defaults.MODE),
        "idleTimeoutSeconds": _number(_doc(training, "idle_timeout_seconds"), gt=0),
        "maxSteps": _int(_doc(training, "max_steps"), ge=1),
        "maxMessages": _int(_doc(training, "max_messages"), ge=1),
        "checkpointEverySteps": _int(_doc(training, "checkpoint_every_steps", "Steps between checkpoints"), ge=1),
        "checkpointEverySeconds": _number(_doc(training, "checkpoint_every_seconds"), gt=0),
        "keepCheckpoints": _int(_doc(training, "keep_checkpoints"), ge=1, le=1000),
        "exportEverySteps": _int(_doc(training, "export_every_steps"), ge=1),
        "exportEverySeconds": _number(_doc(training, "export_every_seconds"), gt=0),
        "seed": _int(_doc(training, "seed"), ge=0),  # no maximum: 2**63-1 as a float64 bound breaks the API server
    }, default={}, rules=[
        *(_rule(f"!has(self.{key}) || self.mode == '{BOUNDED}'",
                f"training.{key} is only allowed when training.mode is {BOUNDED} (a {CONTINUOUS} run never stops)",
                field_path=f".{key}") for key in only_bounded),
        *(_rule(f"!has(self.{key}) || self.mode == '{CONTINUOUS}'",
                f"training.{key} is only allowed when training.mode is {CONTINUOUS} (a {BOUNDED} run exports once, "
                "at the end)", field_path=f".{key}") for key in only_continuous),
    ])


def _storage() -> Schema:
    return _immutable(_object("Where the pipeline's files live: `{path}/{namespace}/{name}/` holds `checkpoints`, "
                              "`export` (one SavedModel per version) and `logs`.", {
        "claimName": _string("A PersistentVolumeClaim in the pipeline's namespace, mounted at `path` in every "
                             "worker and predictor, so that all of them share the checkpoints and exported models "
                             "and these outlive the pods. Required on a cluster (ReadWriteMany when the pods may "
                             "land on several nodes); `pulsetrain run` keeps the files in its state directory.",
                             pattern=DNS_SUBDOMAIN_PATTERN, maxLength=253),
        "path": _string(f"Where the files go inside every worker (the claim's mount path). "
                        f"Default `{defaults.STORAGE_PATH}`.", pattern=ABSOLUTE_PATH_PATTERN,
                        default=defaults.STORAGE_PATH),
    }, rules=[
        # on the immutable storage object, not on spec: a pipeline stored before the rule existed keeps its storage,
        # so validation ratcheting (Kubernetes 1.30+) lets its other fields and its status be updated
        _rule(STORAGE_NEEDS_A_CLAIM,
              "storage.claimName is required: every worker and predictor mounts that PersistentVolumeClaim, because "
              "the chief commits a checkpoint only once it reads every worker's files there, and the exported "
              "models must outlive the pods (without a claim each pod would write to its own emptyDir); "
              "ReadWriteMany when the pods may land on several nodes",
              field_path=".claimName"),
    ]), "spec.storage", "checkpoints and exported models stay where they were written")


def spec_schema() -> Schema:
    """The schema of `spec`."""

    return _object("The desired pipeline: where the messages come from, what they hold, what is trained on them "
                   "and how the workers run.", {
        "source": _object(_class_doc(worker.SourceConfig), {
            "pulsar": _pulsar(),
        }, required=["pulsar"]),
        "data": _data(),
        "model": _model(),
        "training": _training(),
        "storage": _storage(),
        "worker": worker_schema(),
        "runPolicy": run_policy_schema(),
        "serving": serving_schema(),
    }, required=["source", "data", "model", "storage"], rules=[
        _rule(SERVING_WITHOUT_TTL,
              "runPolicy.ttlSecondsAfterFinished is not allowed with serving: deleting the finished pipeline would "
              "delete its predictors too",
              field_path=".runPolicy.ttlSecondsAfterFinished"),
    ])


# --- the CustomResourceDefinition ---------------------------------------------------------------------------

def _printer_columns() -> list[Schema]:
    def column(name: str, kind: str, path: str, description: str, priority: int = 0) -> Schema:
        col: Schema = {"name": name, "type": kind, "jsonPath": path, "description": description}
        if priority:
            col["priority"] = priority
        return col

    return [
        column("Phase", "string", ".status.phase", "The pipeline's phase."),
        column("Ready", "string", ".status.workersReady", "Ready worker pods / desired worker pods."),
        column("Step", "integer", ".status.progress.step", "Training steps done."),
        column("Loss", "number", ".status.progress.loss", "The latest training loss."),
        column("Age", "date", ".metadata.creationTimestamp", "When the pipeline was created."),
        column("Attempt", "integer", ".status.attempt", "The current gang attempt.", priority=1),
        column("Restarts", "integer", ".status.restarts", "Gang restarts so far.", priority=1),
        column("Samples/s", "number", ".status.progress.samplesPerSecond", "Training throughput.", priority=1),
        column("Model version", "integer", ".status.model.version", "The newest exported model version.",
               priority=1),
        column("Predictors", "integer", ".status.serving.readyReplicas", "Ready predictor pods.", priority=1),
        column("Message", "string", ".status.message", "Why the pipeline is in its phase.", priority=1),
    ]


def openapi_schema() -> Schema:
    """The whole object's schema (`openAPIV3Schema`)."""

    return _object(f"A {KIND} trains a TensorFlow model on the messages of an Apache Pulsar topic, with a gang "
                   "of worker pods that share one subscription.", {
        "apiVersion": _string("The versioned schema of this representation of an object."),
        "kind": _string("The REST resource this object represents."),
        "metadata": {"type": "object"},  # the API server allows nothing more here, not even a description
        "spec": spec_schema(),
        "status": status_schema(),
    }, required=["spec"], rules=[
        _rule(f"size(self.metadata.name) <= {MAX_NAME_LENGTH}"
              f" && self.metadata.name.matches('{DNS_1035_LABEL_PATTERN}')",
              f"metadata.name must be a DNS label (lower-case letters, digits and '-', starting with a letter) of at "
              f"most {MAX_NAME_LENGTH} characters, so that the worker pods and their Service get valid names"),
    ])


def custom_resource_definition() -> dict[str, Any]:
    """The `apiextensions.k8s.io/v1` CustomResourceDefinition of `TrainingPipeline`, as a plain dict."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": NAME},
        "spec": {
            "group": GROUP,
            "names": {"kind": KIND, "listKind": f"{KIND}List", "plural": PLURAL, "singular": SINGULAR,
                      "shortNames": list(SHORT_NAMES), "categories": list(CATEGORIES)},
            "scope": "Namespaced",
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": _printer_columns(),
                "schema": {"openAPIV3Schema": openapi_schema()},
            }],
        },
    }
