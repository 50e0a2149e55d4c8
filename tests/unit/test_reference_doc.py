"""docs/reference.md, the `TrainingPipeline` reference generated from the CRD by hack/render_reference.py.

Why this exists: the reference is only worth reading if it says what the API server enforces. These tests
fail when the committed file drifts from a fresh render, and check that the render covers every field of
the schema with its default, bounds and immutability, so a field added to `crd.py` cannot be missing.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pulsetrain_operator.crd import custom_resource_definition

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "hack" / "render_reference.py"
REFERENCE = ROOT / "docs" / "reference.md"


@pytest.fixture(scope="module")
def renderer() -> ModuleType:
    """hack/render_reference.py (a script, not a package module), imported from its file."""
    spec = importlib.util.spec_from_file_location("render_reference", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rows(renderer: ModuleType) -> dict[str, list[str]]:
    """The rendered field tables: path → cells (type, default, allowed, immutable, description)."""
    found: dict[str, list[str]] = {}
    for line in renderer.render().split("## Printer columns")[0].splitlines():
        if line.startswith("| `spec.") or line.startswith("| `status."):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            found[cells[0].strip("`")] = cells[1:]
    return found


def schema_paths(schema: dict[str, Any], path: str) -> set[str]:
    """Every property path under `schema` (what the reference must list)."""
    paths = {path}
    for name, child in schema.get("properties", {}).items():
        paths |= schema_paths(child, f"{path}.{name}")
    items = schema.get("items")
    if isinstance(items, dict) and "properties" in items:
        paths |= schema_paths(items, f"{path}[]") - {f"{path}[]"}
    return paths


def openapi() -> dict[str, Any]:
    schema: dict[str, Any] = custom_resource_definition()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def test_committed_reference_matches_a_fresh_render(renderer: ModuleType) -> None:
    assert REFERENCE.read_text(encoding="utf-8") == renderer.render(), \
        "docs/reference.md is stale: run `python hack/render_reference.py`"


def test_check_mode_exits_1_on_drift_and_0_when_current(tmp_path: Path) -> None:
    stale = tmp_path / "reference.md"
    stale.write_text("old\n")
    run = [sys.executable, str(SCRIPT), "--output", str(stale)]
    failed = subprocess.run([*run, "--check"], capture_output=True, text=True, timeout=60, check=False)
    assert failed.returncode == 1 and "differs from its render" in failed.stderr
    assert stale.read_text() == "old\n", "--check writes nothing"
    subprocess.run(run, capture_output=True, text=True, timeout=60, check=True)
    current = subprocess.run([*run, "--check"], capture_output=True, text=True, timeout=60, check=False)
    assert current.returncode == 0, current.stderr


def test_every_schema_field_has_a_row(rows: dict[str, list[str]]) -> None:
    root = openapi()["properties"]
    expected = (schema_paths(root["spec"], "spec") | schema_paths(root["status"], "status")) - {"spec", "status"}
    assert expected - set(rows) == set(), "fields missing from the reference"
    assert set(rows) - expected == set(), "rows for fields the schema does not have"


def test_rows_carry_types_defaults_bounds_and_enums(rows: dict[str, list[str]]) -> None:
    kind, default, allowed, _, description = rows["spec.training.workers"]
    assert kind == "integer" and default == "`2`" and allowed == ">= 1; <= 64" and "gang" in description
    assert rows["spec.source.pulsar.subscriptionType"][2] == "`Shared`, `KeyShared`"
    assert rows["spec.source.pulsar.serviceUrl"][0] == "string, **required**"
    assert rows["spec.model.learningRate"][2] == "> 0; <= 10"
    assert rows["spec.data.features[].shape"][0] == "array of integer"
    assert rows["spec.worker.env"][2] == "unique by `name`"
    assert rows["spec.worker.resources.limits"][0] == "map of integer or string"
    assert "\\|" in rows["spec.source.pulsar.topic"][2], "a | inside a pattern must not split the table cell"


def test_immutability_comes_from_the_transition_rules(rows: dict[str, list[str]]) -> None:
    immutable = {path for path, cells in rows.items() if cells[3]}
    frozen_roots = {"spec.data", "spec.model", "spec.storage", "spec.source.pulsar.topic",
                    "spec.source.pulsar.subscription"}
    assert {path for path in immutable if rows[path][3] == "yes"} == frozen_roots
    assert rows["spec.data.features[].dtype"][3] == "yes (`spec.data`)"
    assert not rows["spec.training.workers"][3] and not rows["spec.source.pulsar.serviceUrl"][3]


def test_printer_columns_and_cross_field_rules_are_listed(renderer: ModuleType) -> None:
    text = renderer.render()
    version = custom_resource_definition()["spec"]["versions"][0]
    for column in version["additionalPrinterColumns"]:
        assert f"| {column['name']} | {column['type']} | `{column['jsonPath']}` |" in text
    assert "| `spec.model` | `self.task != 'classification' \\|\\| has(self.numClasses)` | `spec.model.numClasses` |" \
        in text
    assert "self == oldSelf" not in text.split("## Validation rules", 1)[1].split("|---|", 1)[1]
