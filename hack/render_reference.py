#!/usr/bin/env python3
"""Write docs/reference.md, the `TrainingPipeline` reference, from the CRD built in Python, or check it.

Why this exists: `operator/pulsetrain_operator/crd.py` holds every field's type, default, bounds,
description and CEL rule; a hand-written reference would drift from it on the first change. This renders
one table row per field (its path, type, default, allowed values and bounds, whether a CEL transition
rule makes it immutable, and its description), then the printer columns of `kubectl get tp` and the
cross-field rules with the messages the API server answers with. `--check` (CI, and the unit drift test)
writes nothing and exits 1 when the committed file differs.

Usage: python hack/render_reference.py [--check] [--output FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pulsetrain_operator import crd

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "docs" / "reference.md"
IMMUTABLE_RULE = "self == oldSelf"

Schema = dict[str, Any]


@dataclass(frozen=True)
class Field:
    path: str
    schema: Schema
    required: bool
    immutable_from: str | None  # the path whose transition rule freezes this field, if any


@dataclass(frozen=True)
class Rule:
    path: str
    rule: str
    message: str
    reported_at: str


def _is_scalar(schema: Schema) -> bool:
    return "properties" not in schema and not isinstance(schema.get("items"), dict) \
        and not isinstance(schema.get("additionalProperties"), dict)


def _freezes(schema: Schema) -> bool:
    return any(rule["rule"] == IMMUTABLE_RULE for rule in schema.get("x-kubernetes-validations", []))


def fields(schema: Schema, path: str, required: bool = False, frozen: str | None = None) -> Iterator[Field]:
    """Every field under `schema` (depth first, in the CRD's order); arrays and maps of scalars are one field."""
    frozen = frozen or (path if _freezes(schema) else None)
    yield Field(path, schema, required, frozen)
    needed = set(schema.get("required", []))
    for name, child in schema.get("properties", {}).items():
        yield from fields(child, f"{path}.{name}", name in needed, frozen)
    for key, suffix in (("items", "[]"), ("additionalProperties", ".*")):
        child = schema.get(key)
        if isinstance(child, dict) and not _is_scalar(child):
            yield from (f for f in fields(child, path + suffix, False, frozen) if f.path != path + suffix)


def rules(schema: Schema, path: str) -> Iterator[Rule]:
    """Every CEL rule under `schema` except the immutability rules (shown per field instead)."""
    for rule in schema.get("x-kubernetes-validations", []):
        if rule["rule"] != IMMUTABLE_RULE:
            yield Rule(path.lstrip(".") or "(the object)", rule["rule"], rule["message"],
                       f"{path}{rule.get('fieldPath', '')}".lstrip(".") or "metadata.name")
    for name, child in schema.get("properties", {}).items():
        yield from rules(child, f"{path}.{name}")
    for key, suffix in (("items", "[]"), ("additionalProperties", ".*")):
        if isinstance(schema.get(key), dict):
            yield from rules(schema[key], path + suffix)


def type_name(schema: Schema) -> str:
    if schema.get("x-kubernetes-int-or-string"):
        return "integer or string"
    kind = str(schema.get("type", "any"))
    if kind == "array":
        return f"array of {type_name(schema['items'])}" if _is_scalar(schema["items"]) else "array of objects"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"map of {type_name(schema['additionalProperties'])}"
    if kind == "object" and schema.get("x-kubernetes-preserve-unknown-fields"):
        return "object (free-form)"
    return kind


def _number(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def constraints(schema: Schema) -> list[str]:
    """Enum values, bounds, lengths, patterns and list rules, in words."""
    found: list[str] = []
    if "enum" in schema:
        found.append(", ".join(f"`{value}`" for value in schema["enum"]))
    if "minimum" in schema:
        found.append(f"{'>' if schema.get('exclusiveMinimum') else '>='} {_number(schema['minimum'])}")
    if "maximum" in schema:
        found.append(f"{'<' if schema.get('exclusiveMaximum') else '<='} {_number(schema['maximum'])}")
    for key, words in (("minLength", "length >="), ("maxLength", "length <="), ("minItems", "items >="),
                       ("maxItems", "items <=")):
        if key in schema:
            found.append(f"{words} {schema[key]}")
    if "pattern" in schema:
        found.append(f"pattern `{schema['pattern']}`")
    if "format" in schema:
        found.append(f"format {schema['format']}")
    if schema.get("x-kubernetes-list-type") == "map":
        found.append("unique by " + ", ".join(f"`{key}`" for key in schema["x-kubernetes-list-map-keys"]))
    for key, words in (("items", "each"), ("additionalProperties", "each value")):
        child = schema.get(key)
        if isinstance(child, dict) and _is_scalar(child) and constraints(child):
            found.append(f"{words}: " + "; ".join(constraints(child)))
    return found


def cell(text: str) -> str:
    """`text` made safe for one Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def field_row(field: Field) -> str:
    schema = field.schema
    default = f"`{json.dumps(schema['default'])}`" if "default" in schema else ""
    kind = type_name(schema) + (", **required**" if field.required else "")
    if field.immutable_from is None:
        immutable = ""
    elif field.immutable_from == field.path:
        immutable = "yes"
    else:
        immutable = f"yes (`{field.immutable_from}`)"
    description = schema.get("description", "")
    return (f"| `{field.path}` | {cell(kind)} | {cell(default)} | {cell('; '.join(constraints(schema)))} "
            f"| {immutable} | {cell(description)} |")


FIELD_HEADER = ("| Field | Type | Default | Allowed values and bounds | Immutable | Description |\n"
                "|---|---|---|---|---|---|")


def section(title: str, intro: str, rows: Sequence[Field]) -> list[str]:
    return [f"## {title}", "", intro, "", FIELD_HEADER, *(field_row(f) for f in rows), ""]


def render() -> str:
    definition = crd.custom_resource_definition()
    version = definition["spec"]["versions"][0]
    root = version["schema"]["openAPIV3Schema"]
    spec, status = root["properties"]["spec"], root["properties"]["status"]
    names = definition["spec"]["names"]
    lines = [
        "<!-- generated by hack/render_reference.py from operator/pulsetrain_operator/crd.py; do not edit -->",
        f"# `{names['kind']}` reference ({definition['spec']['group']}/{version['name']})",
        "",
        f"{cell(root['description'])}",
        "",
        f"Plural `{names['plural']}`, short name{'s' if len(names['shortNames']) > 1 else ''} "
        + ", ".join(f"`{n}`" for n in names["shortNames"]) + ", categor"
        + ("ies " if len(names["categories"]) > 1 else "y ") + ", ".join(f"`{c}`" for c in names["categories"])
        + f"; {definition['spec']['scope'].lower()}. The API server checks everything below when an object is "
        "created or changed: types, bounds, patterns and enums from the schema, the rules at the end from CEL "
        "(`x-kubernetes-validations`); every refusal names the field. Defaults are filled in by the API server. "
        "`kubectl explain tp.spec.<field>` prints the same descriptions.",
        "",
    ]
    spec_fields = list(fields(spec, "spec", True))
    sections = [("spec", [f for f in spec_fields if f.path.count(".") <= 1])]
    sections += [(f"spec.{name}", [f for f in spec_fields if f.path == f"spec.{name}"
                                    or f.path.startswith(f"spec.{name}.") or f.path.startswith(f"spec.{name}[")])
                 for name in spec["properties"]]
    for title, rows in sections:
        intro = cell(rows[0].schema.get("description", ""))
        lines += section(f"`{title}`", intro, rows[1:])
    status_fields = [f for f in fields(status, "status") if f.path != "status"]
    lines += section("`status`", cell(status["description"]) + " Written through the status subresource.",
                     status_fields)
    lines += ["## Printer columns", "",
              f"What `kubectl get {names['shortNames'][0]}` shows; `-o wide` adds the columns of priority 1.", "",
              "| Column | Type | JSONPath | Priority | Description |", "|---|---|---|---|---|"]
    lines += [f"| {c['name']} | {c['type']} | `{c['jsonPath']}` | {c.get('priority', 0)} | {cell(c['description'])} |"
              for c in version["additionalPrinterColumns"]]
    lines += ["", "## Validation rules", "",
              "Cross-field rules (CEL), checked on every create and update, with the message the API server "
              "answers with. Immutable fields are marked in the tables above (a transition rule "
              f"`{IMMUTABLE_RULE}`).", "",
              "| On | Rule | Reported at | Message |", "|---|---|---|---|"]
    lines += [f"| `{r.path}` | `{cell(r.rule)}` | `{r.reported_at}` | {cell(r.message)} |" for r in rules(root, "")]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if the file differs")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="default: %(default)s")
    args = parser.parse_args(argv)
    text = render()
    current = args.output.read_text(encoding="utf-8") if args.output.is_file() else None
    if args.check:
        if current != text:
            print(f"{args.output}: differs from its render; run `python hack/render_reference.py`", file=sys.stderr)
            return 1
        return 0
    if current != text:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
