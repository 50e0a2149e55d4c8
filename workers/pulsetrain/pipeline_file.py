"""Read a `TrainingPipeline` file, check it as the API server would, and render its local worker configuration.

Why this exists: `pulsetrain run` and `pulsetrain produce --pipeline` take the very file users
`kubectl apply`. It must be refused for the same reasons and in the same words as on a cluster, so it
is checked against the CRD's own schema (`pulsetrain_operator.crd.openapi_schema`, interpreted by
`pulsetrain.structural`): nulls pruned, defaults filled in, then types, enums, bounds, patterns,
required and unknown fields. The CRD's CEL rules (`x-kubernetes-validations`) are evaluated with the
`common-expression-language` package (the `local` extra) when it is installed, and listed as not
checked otherwise; transition rules (`self == oldSelf`, the immutable fields) need a stored object and
never apply to a file, and the cluster-only rules (`crd.CLUSTER_ONLY_RULES`: the shared claim, no TTL with
serving) mean nothing on one machine (`cluster_refusals` names them for `pulsetrain run --check`). The worker
configuration is then rendered by the operator's own builder
(`pulsetrain_operator.builders.config.worker_config`), with only what differs on one machine replaced:
the storage paths (under the state directory), the broker (the embedded one, or `--service-url`), the
HTTP endpoint (loopback) and where Secrets are read from.

A pipeline that names no `serviceUrl`, or `serviceUrl: embedded`, runs on the embedded broker. Such a
file is for one machine only: the API server requires a `pulsar://` URL.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pulsetrain.structural import (
    FieldError,
    Rule,
    apply_defaults,
    cel_rules,
    normalize,
    rule_error,
    validate,
    within,
)
from pulsetrain_operator import crd, defaults
from pulsetrain_operator.builders.config import worker_config as render_worker_config

API_VERSION = f"{crd.GROUP}/{crd.VERSION}"
EMBEDDED = "embedded"
PLACEHOLDER_URL = "pulsar://embedded.invalid:6650"
"""Stands in for the embedded broker's URL while the file is checked (the broker's port is not known yet)."""
NOT_CHECKED = ("some validation rules were not checked because the object was invalid; correct the existing "
               "errors to complete validation")


class PipelineError(ValueError):
    """A pipeline file that cannot run: every problem, one per line, each naming its field."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"{source} is invalid:\n" + "\n".join(f"* {p}" for p in problems))


@dataclass(frozen=True)
class Pipeline:
    """A checked pipeline: the resource as the API server would store it (defaults filled in)."""

    resource: dict[str, Any]
    embedded: bool
    """Whether it runs on the embedded broker (no serviceUrl, `embedded`, or `--service-url embedded`)."""
    unchecked_rules: tuple[str, ...] = ()
    """CEL rules that were not evaluated because no CEL library is installed."""

    @property
    def name(self) -> str:
        return str(self.resource["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.resource["metadata"]["namespace"])

    @property
    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.resource["spec"]
        return spec

    @property
    def workers(self) -> int:
        return int(self.spec["training"]["workers"])


def read(path: Path) -> dict[str, Any]:
    """The one `TrainingPipeline` document of a YAML (or JSON) file; other kinds in the file are ignored."""
    try:
        documents = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    except OSError as exc:
        raise PipelineError(str(path), [f"cannot read it: {exc.strerror}"]) from None
    except yaml.YAMLError as exc:
        raise PipelineError(str(path), [f"not valid YAML: {exc}"]) from None
    found = [d for d in documents if isinstance(d, dict) and d.get("kind") == crd.KIND]
    if len(found) != 1:
        kinds = ", ".join(str(d.get("kind")) if isinstance(d, dict) else type(d).__name__ for d in documents)
        raise PipelineError(str(path), [f"expected exactly one document of kind {crd.KIND}, found "
                                        f"{len(found)} (kinds in the file: {kinds or 'none'})"])
    return found[0]


def load(path: Path, *, workers: int | None = None, service_url: str | None = None) -> Pipeline:
    """Read and check a pipeline file; `workers` and `service_url` override the spec (as flags do)."""
    return check(read(path), source=str(path), workers=workers, service_url=service_url)


def check(document: Mapping[str, Any], *, source: str = "the pipeline", workers: int | None = None,
          service_url: str | None = None) -> Pipeline:
    """Check a decoded `TrainingPipeline`; `PipelineError` lists every problem the API server would name."""
    resource = copy.deepcopy(dict(document))
    resource.pop("status", None)  # the status subresource ignores a status given on create
    problems: list[str] = []
    if resource.get("apiVersion") != API_VERSION:
        problems.append(f"apiVersion: Unsupported value: {resource.get('apiVersion')!r}: supported values: "
                        f"{API_VERSION!r}")
    metadata = resource.get("metadata")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str) or not metadata["name"]:
        problems.append("metadata.name: Required value: name is required")
        metadata = {"name": "", **(metadata if isinstance(metadata, dict) else {})}
    metadata.setdefault("namespace", "default")
    resource["metadata"] = {"name": metadata["name"], "namespace": metadata["namespace"]}
    spec = resource.get("spec")
    embedded = False
    if isinstance(spec, dict):
        if workers is not None:
            training = spec.setdefault("training", {})
            if isinstance(training, dict):
                training["workers"] = workers
        embedded = _use_embedded(spec, service_url)
    schema = crd.openapi_schema()
    resource = apply_defaults(schema, normalize(schema, resource))
    errors = validate(schema, resource)
    cel_errors, unchecked = evaluate_rules(schema, resource, errors)
    problems += [e.message for e in errors + cel_errors]
    if problems:
        raise PipelineError(source, problems)
    return Pipeline(resource, embedded, tuple(unchecked))


def _use_embedded(spec: dict[str, Any], service_url: str | None) -> bool:
    """Put the broker's URL (or a placeholder for the embedded one) into the spec; True if embedded."""
    pulsar = spec.get("source", {}).get("pulsar") if isinstance(spec.get("source"), dict) else None
    if not isinstance(pulsar, dict):
        return False
    given = service_url if service_url is not None else pulsar.get("serviceUrl")
    if given in (None, "", EMBEDDED):
        pulsar["serviceUrl"] = PLACEHOLDER_URL
        pulsar.pop("adminUrl", None)  # the embedded broker has no admin API
        return True
    pulsar["serviceUrl"] = given
    return False


def evaluate_rules(schema: Mapping[str, Any], resource: Any,
                   errors: list[FieldError]) -> tuple[list[FieldError], list[str]]:
    """Evaluate the CEL rules that apply to a new object; returns (refusals, rules not evaluated).

    A rule over a value that already has a structural error is skipped (and said so), as the API
    server does, except the whole object's rule, which reads only `metadata.name` (checked before);
    without the `cel` module every rule is returned as not evaluated."""
    rules = [r for r in cel_rules(schema, resource) if not r.is_transition and r.rule not in crd.CLUSTER_ONLY_RULES]
    return _evaluate(rules, errors)


def cluster_refusals(pipeline: Pipeline) -> tuple[list[str], list[str]]:
    """What the API server would refuse on top of what `check` refuses (`pulsetrain run --check` shows it): the
    cluster-only rules (`crd.CLUSTER_ONLY_RULES`) and a missing `serviceUrl` (a cluster has no embedded broker);
    and the cluster-only rules not evaluated (no CEL library)."""
    rules = [r for r in cel_rules(crd.openapi_schema(), pipeline.resource) if r.rule in crd.CLUSTER_ONLY_RULES]
    refused, unchecked = _evaluate(rules, [])
    found = [e.message for e in refused]
    if pipeline.embedded:
        found.append("spec.source.pulsar.serviceUrl: Required value: a cluster has no embedded broker")
    return found, unchecked


def _evaluate(rules: list[Rule], errors: list[FieldError]) -> tuple[list[FieldError], list[str]]:
    try:
        import cel
    except ImportError:
        return [], [f"{r.path or '(object)'}: {r.rule}" for r in rules]
    refused: list[FieldError] = []
    skipped = False
    for rule in rules:
        if rule.path and within(rule.path, errors):  # the whole object's rule reads only metadata.name
            skipped = True
            continue
        try:
            passed = cel.evaluate(rule.rule, {"self": rule.value})
        except Exception as exc:  # the library raises plain RuntimeError/KeyError/ValueError for evaluation errors
            refused.append(FieldError(rule.field_path, f"{rule.field_path or '(object)'}: Invalid value: "
                                                       f"rule {rule.rule!r} could not be evaluated: {exc}"))
            continue
        if passed is not True:
            refused.append(rule_error(rule))
    if skipped:
        refused.append(FieldError("", NOT_CHECKED))
    return refused, []


# --- the worker configuration on one machine ------------------------------------------------------------

def local_worker_config(pipeline: Pipeline, state_dir: Path, *, service_url: str, admin_url: str | None = None,
                        secrets_dir: Path | None = None) -> dict[str, Any]:
    """The operator's worker configuration for `pipeline`, with one machine's paths, broker and endpoint."""
    doc = render_worker_config(pipeline.resource)
    state = state_dir.resolve()
    doc["storage"] = {"checkpointDir": str(state / "checkpoints"), "exportDir": str(state / "export"),
                      "logDir": str(state / "logs")}
    pulsar = doc["source"]["pulsar"]
    pulsar["serviceUrl"] = service_url
    if pipeline.embedded:
        pulsar.pop("adminUrl", None)
    elif admin_url:
        pulsar["adminUrl"] = admin_url
    doc["observability"] = {"host": "127.0.0.1", "port": doc["observability"]["port"]}
    secrets = str((secrets_dir or state / "secrets").resolve())
    return _replace_prefix(doc, defaults.SECRETS_DIR, secrets)


def _replace_prefix(value: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    """Secret files mounted under `old` in a pod are read under `new` on this machine."""
    replaced: dict[str, Any] = _replaced(value, old, new)
    return replaced


def _replaced(value: Any, old: str, new: str) -> Any:
    if isinstance(value, dict):
        return {k: _replaced(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_replaced(v, old, new) for v in value]
    if isinstance(value, str) and value.startswith(old + "/"):
        return new + value[len(old):]
    return value


def worker_env(pipeline: Pipeline) -> tuple[dict[str, str], list[str]]:
    """`spec.worker.env` with plain values (applied locally) and the names of those with `valueFrom` (not)."""
    plain: dict[str, str] = {}
    skipped: list[str] = []
    for item in pipeline.spec.get("worker", {}).get("env") or []:
        if "value" in item:
            plain[str(item["name"])] = str(item["value"])
        elif "valueFrom" in item:
            skipped.append(str(item["name"]))
    return plain, skipped
