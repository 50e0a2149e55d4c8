"""The TrainingPipeline CRD as built by `pulsetrain_operator.crd`, checked without an API server.

What the API server cannot tell us, or tells only one object at a time: the committed YAML is what the
code renders; every field explains itself (`kubectl explain`); the schema is structural; each default
passes its own constraints; the samples use only declared fields; and the fields shared with the worker
configuration have the worker's bounds (probed with the worker's own `load_config`).
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pulsetrain.config import ConfigError, load_config
from pulsetrain_operator import crd, crd_schema

ROOT = Path(__file__).resolve().parents[2]
CRD_MANIFEST = "manifests/crd/trainingpipelines.pulsetrain.dev.yaml"
SAMPLES = sorted((ROOT / "manifests" / "samples").glob("*.yaml"))
IMMUTABLE = {"spec.data", "spec.model", "spec.source.pulsar.topic", "spec.source.pulsar.subscription", "spec.storage"}
OPERATOR_ONLY = {"training.workers"}  # spec fields that are not part of the worker configuration

Schema = dict[str, Any]


def schema() -> Schema:
    root: Schema = crd.custom_resource_definition()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return root


def nodes(node: Schema, path: str) -> Iterator[tuple[str, Schema]]:
    """Every schema node under `node` with its dotted path (`[]` for list items, `{}` for map values)."""
    yield path, node
    for key, child in node.get("properties", {}).items():
        yield from nodes(child, f"{path}.{key}" if path else key)
    if isinstance(node.get("items"), dict):
        yield from nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from nodes(node["additionalProperties"], f"{path}{{}}")


def properties(node: Schema, path: str) -> Iterator[tuple[str, Schema]]:
    """The nodes that are named properties (what `kubectl explain` lists), items and map values included."""
    for child_path, child in nodes(node, path):
        if child_path != path:
            yield child_path, child


def _type_problem(value: Any, kind: str) -> bool:
    python_types: dict[str, tuple[type, ...]] = {
        "object": (dict,), "array": (list,), "string": (str,), "boolean": (bool,),
        "integer": (int,), "number": (int, float),
    }
    wrong = not isinstance(value, python_types[kind])
    return wrong or (kind in ("integer", "number") and isinstance(value, bool))


def problems(value: Any, node: Schema, path: str) -> list[str]:
    """What a structural-schema validator would refuse in `value` (types, enums, bounds, patterns, unknown fields).

    CEL rules are left to the API server (tests/integration/test_crd_validation.py).
    """
    if node.get("x-kubernetes-int-or-string"):
        ok = isinstance(value, int | str) and not isinstance(value, bool)
        return [] if ok else [f"{path}: {value!r} is neither an integer nor a string"]
    if node.get("x-kubernetes-preserve-unknown-fields") and "properties" not in node:
        return []
    if _type_problem(value, node["type"]):
        return [f"{path}: {value!r} is not of type {node['type']}"]
    found: list[str] = []
    if "enum" in node and value not in node["enum"]:
        found.append(f"{path}: {value!r} is not one of {node['enum']}")
    if "minimum" in node and (value < node["minimum"] or (node.get("exclusiveMinimum") and value == node["minimum"])):
        found.append(f"{path}: {value!r} is below the minimum {node['minimum']}")
    if "maximum" in node and (value > node["maximum"] or (node.get("exclusiveMaximum") and value == node["maximum"])):
        found.append(f"{path}: {value!r} is above the maximum {node['maximum']}")
    if "pattern" in node and not re.search(node["pattern"], value):
        found.append(f"{path}: {value!r} does not match {node['pattern']}")
    if isinstance(value, str | list):
        shortest, longest = ("minLength", "maxLength") if isinstance(value, str) else ("minItems", "maxItems")
        if shortest in node and len(value) < node[shortest]:
            found.append(f"{path}: {value!r} is shorter than {node[shortest]}")
        if longest in node and len(value) > node[longest]:
            found.append(f"{path}: {value!r} is longer than {node[longest]}")
    if isinstance(value, list):
        for i, item in enumerate(value):
            found += problems(item, node["items"], f"{path}[{i}]")
    if isinstance(value, dict):
        declared = node.get("properties", {})
        found += [f"{path}.{key}: required but missing" for key in node.get("required", []) if key not in value]
        for key, item in value.items():
            if key in declared:
                found += problems(item, declared[key], f"{path}.{key}")
            elif isinstance(node.get("additionalProperties"), dict):
                found += problems(item, node["additionalProperties"], f"{path}.{key}")
            else:
                found.append(f"{path}.{key}: not declared in the schema")
    return found


# --- the committed YAML ---------------------------------------------------------------------------------

def render(*args: str) -> subprocess.CompletedProcess[str]:
    """Run hack/render_manifests.py (a script, not a package module) with this interpreter."""
    return subprocess.run([sys.executable, str(ROOT / "hack" / "render_manifests.py"), *args],
                          capture_output=True, text=True, check=False, timeout=60)


def test_committed_manifests_are_the_rendered_ones() -> None:
    check = render("--check")
    assert check.returncode == 0, f"generated manifests differ from crd.py: run `make render`\n{check.stderr}"


def test_check_names_each_stale_file_until_written(tmp_path: Path) -> None:
    missing = render("--check", "--root", str(tmp_path))
    assert missing.returncode == 1 and f"{CRD_MANIFEST}: differs" in missing.stderr
    assert render("--root", str(tmp_path)).returncode == 0
    assert render("--check", "--root", str(tmp_path)).returncode == 0
    written = tmp_path / CRD_MANIFEST
    written.write_text(written.read_text() + "# edited by hand\n")
    edited = render("--check", "--root", str(tmp_path))
    assert edited.returncode == 1 and f"{CRD_MANIFEST}: differs" in edited.stderr


def test_manifest_starts_with_the_do_not_edit_header() -> None:
    text = (ROOT / CRD_MANIFEST).read_text()
    assert text.startswith("# generated by hack/render_manifests.py from operator/pulsetrain_operator/")
    assert "do not edit" in text.splitlines()[0]
    assert yaml.safe_load(text) == crd.custom_resource_definition()


# --- the schema itself ----------------------------------------------------------------------------------

def test_names_and_printer_columns() -> None:
    definition = crd.custom_resource_definition()
    names = definition["spec"]["names"]
    assert (definition["metadata"]["name"], names["shortNames"], names["categories"]) == (
        "trainingpipelines.pulsetrain.dev", ["tp"], ["ml"])
    version = definition["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = {column["name"]: column for column in version["additionalPrinterColumns"]}
    assert [name for name, column in columns.items() if not column.get("priority")] == [
        "Phase", "Ready", "Step", "Loss", "Age"]
    declared = {path for path, _ in nodes(schema(), "")}
    for column in columns.values():
        if column["jsonPath"] != ".metadata.creationTimestamp":
            assert column["jsonPath"].lstrip(".") in declared, f"column {column['name']} shows an undeclared field"


def test_every_property_has_a_description() -> None:
    missing = [path for path, node in properties(schema(), "")
               if path != "metadata" and not str(node.get("description", "")).strip()]
    assert missing == [], f"fields `kubectl explain` cannot explain: {missing}"
    assert len(list(properties(schema(), ""))) > 100  # spec and status were both walked


def test_schema_is_structural() -> None:
    untyped = [path or "<root>" for path, node in nodes(schema(), "") if "type" not in node
               and not node.get("x-kubernetes-int-or-string") and not node.get("x-kubernetes-preserve-unknown-fields")]
    assert untyped == []


def test_integer_bounds_survive_the_api_servers_float64_parsing() -> None:
    # The API server reads bounds as float64: 2**63-1 becomes 2**63, and every value is then refused.
    inexact = [f"{path}.{bound}" for path, node in nodes(schema(), "") if node.get("type") == "integer"
               for bound in ("minimum", "maximum") if bound in node and float(node[bound]) != node[bound]]
    assert inexact == []


def test_every_default_passes_its_own_constraints() -> None:
    defaults = {path: node for path, node in nodes(schema(), "") if "default" in node}
    assert {"spec.runPolicy.backoffLimit", "spec.training.mode", "spec.source.pulsar.subscription",
            "spec.worker.command"} <= set(defaults)
    bad = [problem for path, node in defaults.items() for problem in problems(node["default"], node, path)]
    assert bad == []


def test_every_rule_has_a_message_naming_a_field() -> None:
    rules = [(path, rule) for path, node in nodes(schema(), "") for rule in node.get("x-kubernetes-validations", [])]
    assert len(rules) >= 15
    for path, rule in rules:
        words = re.findall(r"[a-z]+(?:\.[A-Za-z]+)+", rule.get("message", ""))
        assert words, f"{path}: rule {rule['rule']!r} has no message naming a field"


def test_exactly_the_documented_fields_are_immutable() -> None:
    immutable = {path for path, node in nodes(schema(), "")
                 for rule in node.get("x-kubernetes-validations", []) if "oldSelf" in rule["rule"]}
    assert immutable == IMMUTABLE
    for path in IMMUTABLE:
        node = dict(nodes(schema(), ""))[path]
        messages = [rule["message"] for rule in node["x-kubernetes-validations"] if "oldSelf" in rule["rule"]]
        assert messages[0].startswith(f"{path} is immutable: ")


def test_operator_defaults_are_published() -> None:
    from pulsetrain_operator import defaults

    spec = dict(nodes(schema(), ""))
    assert spec["spec.training.workers"]["default"] == defaults.WORKERS
    assert spec["spec.training.workers"]["maximum"] == defaults.MAX_WORKERS
    assert spec["spec.worker.command"]["default"] == list(defaults.WORKER_COMMAND)
    assert spec["spec.runPolicy.cleanPodPolicy"]["enum"] == list(defaults.CLEAN_POD_POLICIES)


def test_a_renamed_worker_field_is_noticed(monkeypatch: pytest.MonkeyPatch) -> None:
    from pulsetrain.config_model import ModelConfig

    renamed = {**crd_schema._attribute_docs(ModelConfig), "num_classes": "`classes`: number of classes."}
    monkeypatch.setattr(crd_schema, "_attribute_docs", lambda cls: renamed)
    with pytest.raises(ValueError, match="does not start with `numClasses`"):
        crd_schema._doc(ModelConfig, "num_classes")


# --- the samples ----------------------------------------------------------------------------------------

def load_sample(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    return document


@pytest.mark.parametrize("path", SAMPLES, ids=[path.name for path in SAMPLES])
def test_sample_uses_only_declared_fields(path: Path) -> None:
    document = load_sample(path)
    assert (document["apiVersion"], document["kind"]) == (f"{crd.GROUP}/{crd.VERSION}", crd.KIND)
    assert problems(document["spec"], schema()["properties"]["spec"], "spec") == []


def test_the_walk_catches_an_undeclared_field() -> None:
    spec = load_sample(ROOT / "manifests" / "samples" / "digits.yaml")["spec"]
    spec["training"]["epochs"] = 3
    spec["model"]["task"] = "clustering"
    assert problems(spec, schema()["properties"]["spec"], "spec") == [
        "spec.model.task: 'clustering' is not one of ['classification', 'binary', 'regression']",
        "spec.training.epochs: not declared in the schema",
    ]


def worker_configuration(spec: dict[str, Any]) -> dict[str, Any]:
    """The parts of a spec the worker reads, as its configuration (no Secrets in the samples)."""
    return {
        "pipeline": {"name": "sample", "namespace": "default"},
        "source": {"pulsar": dict(spec["source"]["pulsar"])},
        "data": copy.deepcopy(spec["data"]),
        "model": copy.deepcopy(spec["model"]),
        "training": {k: v for k, v in spec.get("training", {}).items() if f"training.{k}" not in OPERATOR_ONLY},
        "storage": {"checkpointDir": "/tmp/checkpoints", "exportDir": "/tmp/export"},
    }


@pytest.mark.parametrize("path", SAMPLES, ids=[path.name for path in SAMPLES])
def test_sample_is_a_valid_worker_configuration(path: Path) -> None:
    load_config(worker_configuration(load_sample(path)["spec"]))


# --- bounds shared with the worker configuration ----------------------------------------------------------

SHARED_SECTIONS = ("source.pulsar", "data.normalization", "model", "model.mlp", "training")
CONTEXT: dict[str, dict[str, Any]] = {
    # what else a field needs before the worker accepts it at all
    "training.exportEverySteps": {"mode": "continuous", "idleTimeoutSeconds": None},
    "training.exportEverySeconds": {"mode": "continuous", "idleTimeoutSeconds": None},
    "data.normalization.estimateRecords": {"mode": "estimate"},
}


def bound_probes() -> Iterator[tuple[str, float, bool]]:
    """(field, value, accepted) at and just past every bound the CRD declares on a shared numeric field."""
    spec = schema()["properties"]["spec"]
    for section in SHARED_SECTIONS:
        node = spec
        for part in section.split("."):
            node = node["properties"][part]
        for key, field in node["properties"].items():
            path = f"{section}.{key}"
            if field["type"] not in ("integer", "number") or path in OPERATOR_ONLY:
                continue
            step = 1 if field["type"] == "integer" else 0.5
            if "minimum" in field:
                low, exclusive = field["minimum"], field.get("exclusiveMinimum", False)
                yield path, low, not exclusive
                yield path, (low + step if exclusive else low - step), exclusive
            if "maximum" in field:
                high, exclusive = field["maximum"], field.get("exclusiveMaximum", False)
                yield path, high, not exclusive
                yield path, (high - step if exclusive else high + step), exclusive


PROBES = list(bound_probes())


@pytest.mark.parametrize(("path", "value", "accepted"), PROBES,
                         ids=[f"{path}={value}-{'ok' if ok else 'refused'}" for path, value, ok in PROBES])
def test_worker_configuration_has_the_same_bounds(path: str, value: float, accepted: bool) -> None:
    document = worker_configuration(load_sample(ROOT / "manifests" / "samples" / "digits.yaml")["spec"])
    section, key = path.rsplit(".", 1)
    target = document
    for part in section.split("."):
        target = target.setdefault(part, {})
    for other, setting in CONTEXT.get(path, {}).items():
        if setting is None:
            target.pop(other, None)
        else:
            target[other] = setting
    target[key] = value
    if accepted:
        load_config(document)
    else:
        with pytest.raises(ConfigError) as refused:
            load_config(document)
        assert any(problem.startswith(path) for problem in refused.value.problems), refused.value.problems


def test_bounds_are_probed() -> None:
    probed = {path for path, _, _ in PROBES}
    assert {"training.batchSize", "model.learningRate", "model.mlp.dropout", "source.pulsar.receiverQueueSize",
            "data.normalization.estimateRecords"} <= probed
