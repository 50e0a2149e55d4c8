"""The `TrainingPipeline` CustomResourceDefinition, built in Python: the one source of truth for the API.

Why this exists: the schema, its descriptions (what `kubectl explain tp.spec...` prints), defaults, CEL
rules and printer columns must agree with the operator and with the worker. Building the CRD here lets
it read the operator's defaults (`defaults.py`) and the worker configuration's own enums and field
docstrings (`pulsetrain.config_model`: `data`, `model` and most of `training` are copied into the worker
configuration unchanged, so they must mean the same), instead of repeating them in hand-written YAML.
`hack/render_manifests.py` writes the result to `manifests/` (and later the chart); a unit test fails
when the committed YAML drifts from this module.

Schema defaults come only from `defaults.py`; fields the worker defaults itself (batch size, learning
rate...) are left out of the stored object, and their descriptions say what the worker assumes. The
status schema lives in `crd_status.py`, built with the `_string`/`_int`/`_object`... helpers below.
"""

from __future__ import annotations

import ast
import functools
import inspect
import itertools
import re
import textwrap
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from pulsetrain import config_model as worker
from pulsetrain_operator import defaults

Schema = dict[str, Any]

GROUP: Final = "pulsetrain.dev"
VERSION: Final = "v1alpha1"
KIND: Final = "TrainingPipeline"
PLURAL: Final = "trainingpipelines"
SINGULAR: Final = "trainingpipeline"
NAME: Final = f"{PLURAL}.{GROUP}"
SHORT_NAMES: Final = ("tp",)
CATEGORIES: Final = ("ml",)

BOUNDED, CONTINUOUS = defaults.MODES
MAX_FEATURES: Final = 256
"""Bound on `data.features`, so that the API server can price the CEL rules that compare feature names."""
MAX_NAME_LENGTH: Final = 63 - len("-worker-") - len(str(defaults.MAX_WORKERS - 1))
"""Longest pipeline name whose worker pods (`{name}-worker-{i}`, also their host names) fit a DNS label."""

SERVICE_URL_PATTERN: Final = r"^pulsar(\+ssl)?://"
ADMIN_URL_PATTERN: Final = r"^https?://"
HOOK_PATTERN: Final = r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$"
TOPIC_PATTERN: Final = (r"^((persistent|non-persistent)://[^\s/]+/[^\s/]+/[^\s/]+"
                        r"|[^\s/:]+(/[^\s/:]+/[^\s/:]+)?)$")
SUBSCRIPTION_PATTERN: Final = r"^[^\s/]+$"
FIELD_NAME_PATTERN: Final = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$"
CSV_DELIMITER_PATTERN: Final = r'^[^0-9.+eE"\r\n-]$'
DNS_1035_LABEL_PATTERN: Final = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
SECRET_KEY_PATTERN: Final = r"^[-._a-zA-Z0-9]+$"
ABSOLUTE_PATH_PATTERN: Final = r"^/"
QUANTITY_PATTERN: Final = (r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
                           r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$")


# --- schema building blocks ------------------------------------------------------------------------------

def _bounds(ge: float | None, gt: float | None, le: float | None, lt: float | None) -> Schema:
    """OpenAPI v3.0 bounds from the `ge`/`gt`/`le`/`lt` keywords the worker's configuration checks use."""
    bounds: Schema = {}
    if ge is not None or gt is not None:
        bounds["minimum"] = ge if ge is not None else gt
        if gt is not None:
            bounds["exclusiveMinimum"] = True
    if le is not None or lt is not None:
        bounds["maximum"] = le if le is not None else lt
        if lt is not None:
            bounds["exclusiveMaximum"] = True
    return bounds


def _string(description: str, **constraints: Any) -> Schema:
    return {"type": "string", "description": description, **constraints}


def _choice(description: str, choices: Iterable[str], default: str | None = None) -> Schema:
    schema = _string(description, enum=list(choices))
    if default is not None:
        schema["default"] = default
    return schema


def _int(description: str, *, ge: int | None = None, le: int | None = None, default: int | None = None) -> Schema:
    schema: Schema = {"type": "integer", "description": description, **_bounds(ge, None, le, None)}
    if default is not None:
        schema["default"] = default
    return schema


def _number(description: str, *, ge: float | None = None, gt: float | None = None,
            le: float | None = None, lt: float | None = None) -> Schema:
    return {"type": "number", "description": description, **_bounds(ge, gt, le, lt)}


def _bool(description: str) -> Schema:
    return {"type": "boolean", "description": description}


def _array(description: str, items: Schema, *, min_items: int | None = None, max_items: int | None = None,
           default: Sequence[Any] | None = None, map_keys: Sequence[str] = ()) -> Schema:
    """A list; with `map_keys`, a list of objects keyed (and kept unique) on those fields, merged per item."""
    schema: Schema = {"type": "array", "description": description, "items": items}
    if map_keys:
        schema.update({"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": list(map_keys)})
    if min_items is not None:
        schema["minItems"] = min_items
    if max_items is not None:
        schema["maxItems"] = max_items
    if default is not None:
        schema["default"] = list(default)
    return schema


def _map(description: str, values: Schema) -> Schema:
    """An object with free keys, each holding a value of the `values` schema."""
    return {"type": "object", "description": description, "additionalProperties": values}


def _object(description: str, properties: Mapping[str, Schema], *, required: Sequence[str] = (),
            rules: Sequence[Schema] = (), default: Mapping[str, Any] | None = None) -> Schema:
    schema: Schema = {"type": "object", "description": description, "properties": dict(properties)}
    if required:
        schema["required"] = list(required)
    if default is not None:
        schema["default"] = dict(default)
    if rules:
        schema["x-kubernetes-validations"] = list(rules)
    return schema


def _rule(rule: str, message: str, *, field_path: str | None = None) -> Schema:
    """A CEL validation rule; `field_path` (relative to the node) is where the API server reports it."""
    validation: Schema = {"rule": rule, "message": message}
    if field_path is not None:
        validation["fieldPath"] = field_path
    return validation


def _immutable(schema: Schema, path: str, advice: str) -> Schema:
    """`schema` with a transition rule that refuses any change once the object exists."""
    rules = schema.setdefault("x-kubernetes-validations", [])
    rules.append(_rule("self == oldSelf", f"{path} is immutable: {advice}"))
    schema["description"] += " Immutable."
    return schema


# --- what the worker configuration already says ----------------------------------------------------------

_DOC_KEY = re.compile(r"^`(?P<key>[A-Za-z.]+)`(?: \([^)]*\))?[:.]?\s*", re.DOTALL)


@functools.cache
def _attribute_docs(cls: type) -> dict[str, str]:
    """The docstrings written under a dataclass's fields (Python keeps none at run time, so parse the source)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = typing.cast(ast.ClassDef, tree.body[0]).body
    docs: dict[str, str] = {}
    for field, following in itertools.pairwise(body):
        if (isinstance(field, ast.AnnAssign) and isinstance(field.target, ast.Name)
                and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)):
            docs[field.target.id] = following.value.value
    return docs


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(part.title() for part in rest)


def _sentence(text: str, lead: str) -> str:
    """`text` with its JSON key prefix removed and `lead` (what the field is) put in front where given.

    The worker's docstrings are terse (`learningRate`: > 0. Default 0.001.), written for readers who see
    the field's name; `kubectl explain` readers get `lead` first where the rest does not say what it is.
    """
    match = _DOC_KEY.match(text)
    rest = text[match.end():] if match else text
    if not lead:
        return rest[:1].upper() + rest[1:]
    if not rest:
        return f"{lead}."
    if lead.endswith("."):
        return f"{lead} {rest[:1].upper()}{rest[1:]}"
    return f"{lead}. {rest}" if rest[:1].isupper() else f"{lead}: {rest}"


def _doc(cls: type, attribute: str, lead: str = "") -> str:
    """The worker configuration's docstring for `cls.attribute`, as a CRD description.

    The docstring must start with the camelCase key of `attribute` (the key the worker configuration and the
    CRD share); a field renamed on one side only fails here, loudly, when the CRD is built.
    """
    text = _attribute_docs(cls)[attribute]
    match = _DOC_KEY.match(text)
    if match is None or match.group("key") != _camel(attribute):
        raise ValueError(f"{cls.__name__}.{attribute}: docstring does not start with `{_camel(attribute)}`")
    return _sentence(text, lead)


def _class_doc(cls: type, extra: str = "") -> str:
    return f"{_sentence(inspect.getdoc(cls) or '', '')} {extra}".strip()


def _literals(cls: type, attribute: str) -> list[str]:
    """The values a worker configuration field's `Literal[...]` annotation allows (None left out)."""
    def values(hint: Any) -> list[str]:
        if typing.get_origin(hint) is typing.Literal:
            return [str(value) for value in typing.get_args(hint)]
        return [value for arg in typing.get_args(hint) for value in values(arg)]

    return values(typing.get_type_hints(cls)[attribute])


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
    }, required=["serviceUrl", "topic"], rules=[
        _rule("!has(self.deadLetterTopic) || self.deadLetterTopic != self.topic",
              "source.pulsar.deadLetterTopic must differ from source.pulsar.topic", field_path=".deadLetterTopic"),
        _rule("!(has(self.tlsTrustCerts) || has(self.authentication) && has(self.authentication.tls))"
              " || self.serviceUrl.startsWith('pulsar+ssl://')",
              "source.pulsar.serviceUrl must start with pulsar+ssl:// when tlsTrustCerts or authentication.tls "
              "is given", field_path=".serviceUrl"),
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
                             "worker so that checkpoints and exported models outlive the pods.",
                             pattern=DNS_SUBDOMAIN_PATTERN, maxLength=253),
        "path": _string(f"Where the files go inside every worker (the claim's mount path). "
                        f"Default `{defaults.STORAGE_PATH}`.", pattern=ABSOLUTE_PATH_PATTERN,
                        default=defaults.STORAGE_PATH),
    }), "spec.storage", "checkpoints and exported models stay where they were written")


def _resources(who: str = "worker") -> Schema:
    quantity = {"anyOf": [{"type": "integer"}, {"type": "string"}], "pattern": QUANTITY_PATTERN,
                "x-kubernetes-int-or-string": True, "description": "A quantity, such as `2`, `500m` or `4Gi`."}
    return _object(f"Compute resources of each {who} container, as in a Pod (`nvidia.com/gpu` for GPUs).", {
        "limits": _map(f"Most of each resource a {who} may use.", quantity),
        "requests": _map(f"Resources reserved for each {who}; default: the limits.", quantity),
    })


def _toleration() -> Schema:
    return _object("One toleration, as in a Pod.", {
        "key": _string("The taint key; empty with operator `Exists` matches every taint."),
        "operator": _choice("`Equal` (default) or `Exists`.", ("Equal", "Exists")),
        "value": _string("The taint value to match (empty with `Exists`)."),
        "effect": _choice("The taint effect to match; empty matches all.", ("NoSchedule", "PreferNoSchedule",
                                                                             "NoExecute")),
        "tolerationSeconds": _int("How long a `NoExecute` taint is tolerated; default forever.", ge=0),
    })


def _env_var() -> Schema:
    return _object("One environment variable, as in a Pod.", {
        "name": _string("The variable's name.", minLength=1),
        "value": _string("The value; `$(VAR)` references are expanded as in a Pod."),
        "valueFrom": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                      "description": "Where the value comes from (secretKeyRef, configMapKeyRef, fieldRef, "
                                     "resourceFieldRef), as in a Pod."},
    }, required=["name"])


def _worker() -> Schema:
    return _object("The worker pods. Changes restart the gang gracefully from its last checkpoint.", {
        "image": _string("The worker image. Default: the operator's `PULSETRAIN_WORKER_IMAGE`.", minLength=1),
        "imagePullPolicy": _choice(f"When the image is pulled. Default `{defaults.IMAGE_PULL_POLICY}`.",
                                   defaults.IMAGE_PULL_POLICIES, defaults.IMAGE_PULL_POLICY),
        "command": _array("The worker container's command; the operator appends `--config <file>`.",
                          _string("One argument."), min_items=1, default=defaults.WORKER_COMMAND),
        "resources": _resources(),
        "nodeSelector": _map("Node labels every worker pod's node must have.",
                             _string("The label value the node must have.")),
        "tolerations": _array("Tolerations of every worker pod.", _toleration()),
        "affinity": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                     "description": "Affinity of every worker pod (nodeAffinity, podAffinity, podAntiAffinity), "
                                    "as in a Pod."},
        "env": _array("Extra environment variables of every worker container.", _env_var(), map_keys=["name"]),
        "serviceAccountName": _string("The service account the worker pods run as.",
                                      pattern=DNS_SUBDOMAIN_PATTERN, maxLength=253),
        "port": _int(f"The collective (gRPC) port in `TF_CONFIG`. Default {defaults.COLLECTIVE_PORT}.",
                     ge=1, le=65535, default=defaults.COLLECTIVE_PORT),
        "metricsPort": _int(f"The port of `/metrics`, `/progress`, `/healthz` and `/readyz`. "
                            f"Default {defaults.METRICS_PORT}.", ge=1, le=65535, default=defaults.METRICS_PORT),
    }, default={}, rules=[
        _rule("!has(self.port) || !has(self.metricsPort) || self.port != self.metricsPort",
              "worker.metricsPort must differ from worker.port", field_path=".metricsPort"),
    ])


def _run_policy() -> Schema:
    return _object("When the pipeline gives up, cleans up and pauses.", {
        "backoffLimit": _int(f"Gang restarts allowed after failures before the pipeline is Failed. "
                             f"Default {defaults.BACKOFF_LIMIT}.", ge=0, default=defaults.BACKOFF_LIMIT),
        "activeDeadlineSeconds": _int("The pipeline is Failed once it has run this long. Default: no deadline.",
                                      ge=1),
        "ttlSecondsAfterFinished": _int("The pipeline is deleted this long after it Succeeded or Failed. "
                                        "Default: kept.", ge=0),
        "cleanPodPolicy": _choice(f"Which worker pods are deleted once the pipeline finished: `None` (keep all "
                                  f"pods and their logs), `Running` (only those still running) or `All`. "
                                  f"Default `{defaults.CLEAN_POD_POLICY}`.",
                                  defaults.CLEAN_POD_POLICIES, defaults.CLEAN_POD_POLICY),
        "suspend": _bool("True stops the gang gracefully (a last checkpoint is kept) and keeps it stopped; "
                         "false resumes it. Default false."),
        "pendingTimeoutSeconds": _int(f"A worker pod Pending this long fails the attempt. "
                                      f"Default {defaults.PENDING_TIMEOUT_SECONDS}.",
                                      ge=1, default=defaults.PENDING_TIMEOUT_SECONDS),
        "terminationGracePeriodSeconds": _int(f"How long a stopping worker may take to checkpoint and exit. "
                                              f"Default {defaults.TERMINATION_GRACE_PERIOD_SECONDS}.",
                                              ge=0, default=defaults.TERMINATION_GRACE_PERIOD_SECONDS),
        "restartBackoffSeconds": _int(f"Wait before the first gang restart; it doubles with each restart, capped at "
                                      f"{defaults.RESTART_BACKOFF_CAP_SECONDS}. "
                                      f"Default {defaults.RESTART_BACKOFF_SECONDS}.",
                                      ge=1, le=defaults.RESTART_BACKOFF_CAP_SECONDS,
                                      default=defaults.RESTART_BACKOFF_SECONDS),
    }, default={})


def spec_schema() -> Schema:
    """The schema of `spec`."""
    from pulsetrain_operator.crd_serving import serving_schema  # imported here: it builds on this module's helpers

    return _object("The desired pipeline: where the messages come from, what they hold, what is trained on them "
                   "and how the workers run.", {
        "source": _object(_class_doc(worker.SourceConfig), {
            "pulsar": _pulsar(),
        }, required=["pulsar"]),
        "data": _data(),
        "model": _model(),
        "training": _training(),
        "storage": _storage(),
        "worker": _worker(),
        "runPolicy": _run_policy(),
        "serving": serving_schema(),
    }, required=["source", "data", "model", "storage"])


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
    from pulsetrain_operator.crd_status import status_schema  # imported here: it builds on this module's helpers

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
