"""A small Kubernetes structural-schema validator and defaulter, for checking a resource without a cluster.

Why this exists: `pulsetrain run` accepts the same `TrainingPipeline` file that users `kubectl apply`, and
must refuse exactly what the API server refuses, with the same words, before it starts anything. The
schema is the CRD's own (`pulsetrain_operator.crd` builds it as a dict), so this module interprets the
subset of OpenAPI v3 that structural schemas use, in the API server's order:

1. `normalize`: null values are dropped (the API server prunes nulls of non-nullable fields) and
   integral floats become integers where the schema says `integer` (YAML `2.0` is JSON's `2`);
2. `apply_defaults`: `default`s are filled in top-down, so a defaulted object gets its own defaults;
3. `validate`: `type` (and `x-kubernetes-int-or-string`), `enum`, `minimum`/`maximum` (with the OAS 3.0
   boolean `exclusiveMinimum`/`exclusiveMaximum`), `minLength`/`maxLength`, `pattern`, `minItems`/
   `maxItems`, `required`, `properties` with unknown fields refused (as `kubectl --validate=strict`),
   `additionalProperties` (maps), `items`, `x-kubernetes-list-type: map` key uniqueness and
   `x-kubernetes-preserve-unknown-fields`;
4. `cel_rules` lists the `x-kubernetes-validations` (CEL) rules that apply to the object, with the value
   each one sees as `self`; evaluating them is the caller's business (`pulsetrain.pipeline_file`).

Messages copy the API server's (`spec.training.workers: Invalid value: 0: spec.training.workers in body
should be greater than or equal to 1`). Not interpreted, because the CRD uses none of them in `spec`:
`format`, `nullable`, `oneOf`/`allOf`/`not`, `uniqueItems`, `multipleOf`, `maxProperties`.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

Schema = Mapping[str, Any]


@dataclass(frozen=True)
class FieldError:
    """One refusal: the field's path (`spec.training.workers`, `spec.worker.env[1]`) and the whole message."""

    path: str
    message: str

    def __str__(self) -> str:
        return self.message


def json_type(value: object) -> str:
    """The JSON type name of a decoded value, as the API server names it in its messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object" if isinstance(value, dict) else type(value).__name__


def literal(value: object) -> str:
    """A value as Go's validation errors print it: strings quoted, numbers and booleans bare."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value, separators=(",", ":"))


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _is_object(schema: Schema) -> bool:
    return schema.get("type") == "object" or "properties" in schema or "additionalProperties" in schema


def _child(schema: Schema, key: str) -> Schema | None:
    """The schema of property `key` of an object schema (or of a map's values); None if unknown."""
    properties = schema.get("properties") or {}
    if key in properties:
        child: Schema = properties[key]
        return child
    extra = schema.get("additionalProperties")
    return extra if isinstance(extra, Mapping) else None


# --- normalize and default -------------------------------------------------------------------------------

def normalize(schema: Schema, value: Any) -> Any:
    """A copy of `value` with nulls dropped from objects and integral floats turned into ints where declared."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if item is None:
                continue
            child = _child(schema, key) if not schema.get("x-kubernetes-preserve-unknown-fields") else None
            out[key] = normalize(child, item) if child is not None else copy.deepcopy(item)
        return out
    if isinstance(value, list):
        items = schema.get("items")
        return [normalize(items, item) if isinstance(items, Mapping) else copy.deepcopy(item) for item in value]
    wants_int = schema.get("type") == "integer" or schema.get("x-kubernetes-int-or-string")
    if wants_int and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def apply_defaults(schema: Schema, value: Any) -> Any:
    """Fill in every absent property that has a `default`, top-down and in place; returns `value`."""
    if isinstance(value, dict) and _is_object(schema):
        for key, child in (schema.get("properties") or {}).items():
            if key not in value and "default" in child:
                value[key] = copy.deepcopy(child["default"])
        for key, item in value.items():
            child_schema = _child(schema, key)
            if child_schema is not None:
                apply_defaults(child_schema, item)
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for item in value:
            apply_defaults(schema["items"], item)
    return value


# --- validate --------------------------------------------------------------------------------------------

def validate(schema: Schema, value: Any, path: str = "") -> list[FieldError]:
    """Every structural problem of `value` (normalized and defaulted) against `schema`, in document order."""
    errors: list[FieldError] = []
    _check(schema, value, path, errors)
    return errors


def _invalid(path: str, value: object, detail: str) -> FieldError:
    return FieldError(path, f"{path}: Invalid value: {literal(value)}: {detail}")


def _type_ok(schema: Schema, value: Any, path: str, errors: list[FieldError]) -> bool:
    kind = json_type(value)
    if schema.get("x-kubernetes-int-or-string"):
        if kind in ("integer", "string"):
            return True
        errors.append(_invalid(path, kind, f"{path} in body must be of type integer,string: {literal(kind)}"))
        return False
    wanted = schema.get("type")
    if wanted is None or wanted == kind or (wanted == "number" and kind == "integer"):
        return True
    errors.append(_invalid(path, kind, f"{path} in body must be of type {wanted}: {literal(kind)}"))
    return False


def _check(schema: Schema, value: Any, path: str, errors: list[FieldError]) -> None:
    if not _type_ok(schema, value, path, errors):
        return
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(literal(choice) for choice in schema["enum"])
        errors.append(FieldError(path, f"{path}: Unsupported value: {literal(value)}: supported values: {allowed}"))
        return
    if isinstance(value, str):
        _check_string(schema, value, path, errors)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        _check_number(schema, value, path, errors)
    elif isinstance(value, list):
        _check_array(schema, value, path, errors)
    elif isinstance(value, dict):
        _check_object(schema, value, path, errors)


def _check_string(schema: Schema, value: str, path: str, errors: list[FieldError]) -> None:
    if "maxLength" in schema and len(value.encode()) > schema["maxLength"]:
        errors.append(FieldError(path, f"{path}: Too long: may not be more than {schema['maxLength']} bytes"))
    if "minLength" in schema and len(value) < schema["minLength"]:
        errors.append(_invalid(path, value, f"{path} in body should be at least {schema['minLength']} chars long"))
    if "pattern" in schema and re.search(schema["pattern"], value) is None:
        errors.append(_invalid(path, value, f"{path} in body should match '{schema['pattern']}'"))


def _check_number(schema: Schema, value: float, path: str, errors: list[FieldError]) -> None:
    if "minimum" in schema:
        low, strict = schema["minimum"], bool(schema.get("exclusiveMinimum"))
        if value < low or (strict and value == low):
            words = "greater than" if strict else "greater than or equal to"
            errors.append(_invalid(path, value, f"{path} in body should be {words} {literal(low)}"))
    if "maximum" in schema:
        high, strict = schema["maximum"], bool(schema.get("exclusiveMaximum"))
        if value > high or (strict and value == high):
            words = "less than" if strict else "less than or equal to"
            errors.append(_invalid(path, value, f"{path} in body should be {words} {literal(high)}"))


def _check_array(schema: Schema, value: list[Any], path: str, errors: list[FieldError]) -> None:
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(FieldError(path, f"{path}: Too many: {len(value)}: must have at most {schema['maxItems']} "
                                       "items"))
        return
    if "minItems" in schema and len(value) < schema["minItems"]:
        errors.append(_invalid(path, len(value), f"{path} in body should have at least {schema['minItems']} items"))
    items = schema.get("items")
    if isinstance(items, Mapping):
        for index, item in enumerate(value):
            _check(items, item, f"{path}[{index}]", errors)
    keys = schema.get("x-kubernetes-list-map-keys") if schema.get("x-kubernetes-list-type") == "map" else None
    if keys:
        seen: set[str] = set()
        for index, item in enumerate(value):
            if isinstance(item, dict):
                key = json.dumps({k: item.get(k) for k in keys}, separators=(",", ":"))
                if key in seen:
                    errors.append(FieldError(f"{path}[{index}]", f"{path}[{index}]: Duplicate value: {key}"))
                seen.add(key)


def _check_object(schema: Schema, value: dict[str, Any], path: str, errors: list[FieldError]) -> None:
    for key in schema.get("required") or ():
        if key not in value:
            errors.append(FieldError(_join(path, key), f"{_join(path, key)}: Required value"))
    properties: Mapping[str, Schema] = schema.get("properties") or {}
    extra = schema.get("additionalProperties")
    free = schema.get("x-kubernetes-preserve-unknown-fields") or (not properties and extra is None)
    for key, item in value.items():
        child = _child(schema, key)
        if child is not None:
            _check(child, item, _join(path, key), errors)
        elif not free:
            errors.append(FieldError(_join(path, key), f'unknown field "{_join(path, key)}"'))


# --- CEL rules -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    """An `x-kubernetes-validations` rule that applies to a value in the object."""

    path: str
    """Where the rule sits (`spec.model`); `""` for the whole object."""
    rule: str
    message: str
    field_path: str
    """Where the API server reports a refusal: `path` plus the rule's `fieldPath` (`spec.model.custom`)."""
    value: Any
    """What the rule sees as `self`."""

    @property
    def is_transition(self) -> bool:
        """Rules about changes (`oldSelf`) need the stored object: they never apply to a new one."""
        return re.search(r"\boldSelf\b", self.rule) is not None


def cel_rules(schema: Schema, value: Any, path: str = "") -> Iterator[Rule]:
    """Every CEL rule of `schema` that applies to `value`, outermost first."""
    for rule in schema.get("x-kubernetes-validations") or ():
        where = (path + str(rule.get("fieldPath", ""))).lstrip(".")
        yield Rule(path, str(rule["rule"]), str(rule.get("message") or f"failed rule: {rule['rule']}"), where, value)
    if isinstance(value, dict):
        for key, item in value.items():
            child = _child(schema, key)
            if child is not None:
                yield from cel_rules(child, item, _join(path, key))
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for index, item in enumerate(value):
            yield from cel_rules(schema["items"], item, f"{path}[{index}]")


def rule_error(rule: Rule) -> FieldError:
    """The refusal of a failed rule, worded as the API server words it."""
    if not rule.field_path:
        return FieldError("", f"Invalid value: {rule.message}")
    return FieldError(rule.field_path, f"{rule.field_path}: Invalid value: {rule.message}")


def within(path: str, errors: list[FieldError]) -> bool:
    """Whether any error is at `path` or below it (rules over an invalid value are not evaluated)."""
    return any(e.path == path or not path or e.path.startswith((f"{path}.", f"{path}[")) for e in errors)
