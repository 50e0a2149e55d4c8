"""The vocabulary the CRD is written in: JSON-schema building blocks, patterns, and field docs read from
the worker configuration's dataclasses.

Why this exists apart from `crd.py`: three modules build parts of the one schema (`crd.py` the spec,
`crd_serving.py` `spec.serving`, `crd_status.py` the status) and must build them the same way: the same
bounds, the same `kubectl explain` wording, the same CEL rule shape. The docs helpers (`_doc`, `_literals`)
read the worker configuration's field docstrings and `Literal` enums, so a field renamed or an allowed
value added on the worker's side changes the CRD with it (or fails loudly when it is built).
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

Schema = dict[str, Any]

SERVICE_URL_PATTERN: Final = r"^pulsar(\+ssl)?://"
ADMIN_URL_PATTERN: Final = r"^https?://"
HOOK_PATTERN: Final = r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$"
TOPIC_PATTERN: Final = (r"^(persistent://[^\s/]+/[^\s/]+/[^\s/]+"
                        r"|[^\s/:]+(/[^\s/:]+/[^\s/:]+)?)$")
"""Persistent topics only: a non-persistent topic keeps no message for a redelivery, so neither the trainer's
effectively-once nor the predictor's at-least-once could hold (the worker's parser uses this pattern too)."""
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



# --- shared by the spec and spec.serving -------------------------------------------------------------

def _resources(who: str = "worker") -> Schema:
    quantity = {"anyOf": [{"type": "integer"}, {"type": "string"}], "pattern": QUANTITY_PATTERN,
                "x-kubernetes-int-or-string": True, "description": "A quantity, such as `2`, `500m` or `4Gi`."}
    return _object(f"Compute resources of each {who} container, as in a Pod (`nvidia.com/gpu` for GPUs).", {
        "limits": _map(f"Most of each resource a {who} may use.", quantity),
        "requests": _map(f"Resources reserved for each {who}; default: the limits.", quantity),
    })
