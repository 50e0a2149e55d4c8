"""Read a parsed JSON document field by field, collecting every problem with its dotted path.

Why this exists: the worker configuration and `TF_CONFIG` must report all their mistakes in one go,
each naming the field (`data.features[2].dtype`), the bad value and what is allowed, and must refuse
unknown keys so that a typo never passes silently. Writing those checks by hand in every section would
repeat the same logic and let the messages drift apart; `Section` does it once.

A reader never raises on bad input: it records the problem and returns a placeholder (the default, or
an empty value) so that parsing goes on and later problems are found too. `Problems.raise_if_any`
turns the collection into one `ConfigError`.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final

__all__ = ["REQUIRED", "ConfigError", "Problems", "Section", "describe", "pattern_check"]


class ConfigError(ValueError):
    """One or more invalid values in a configuration; `problems` lists each as `path: message`."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            lines = "\n".join(f"  - {p}" for p in self.problems)
            message = f"{len(self.problems)} problems in the configuration:\n{lines}"
        super().__init__(message)


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Final = _Required()
"""Marks a field without a default: leaving it out is a problem."""

_JSON_TYPES: Final = {dict: "object", list: "list", str: "string", bool: "boolean", int: "integer",
                      float: "number", type(None): "null"}


def describe(value: object) -> str:
    """A short, safe rendering of a bad value for an error message: its repr, cut at 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _json_type(value: object) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


class Problems:
    """The problems found so far, in the order found."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self._paths: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(f"{path}: {message}")
        self._paths.append(path)

    def clean(self, *prefixes: str) -> bool:
        """Whether no problem was recorded at or under any of these paths (cross-field checks run only then)."""
        return not any(p == pre or p.startswith((pre + ".", pre + "[")) for p in self._paths for pre in prefixes)

    def raise_if_any(self) -> None:
        if self.items:
            raise ConfigError(self.items)


def _num(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def _bounds(ge: float | None, gt: float | None, le: float | None, lt: float | None) -> str:
    low = f"{_num(ge)} <= " if ge is not None else f"{_num(gt)} < " if gt is not None else ""
    high = f" <= {_num(le)}" if le is not None else f" < {_num(lt)}" if lt is not None else ""
    if low and high:
        return f"{low}x{high}"
    if gt is not None:
        return f"x > {_num(gt)}"
    if ge is not None:
        return f"x >= {_num(ge)}"
    return f"x{high}"


class Section:
    """One JSON object of the document at `path`; every key read is remembered for `done()`."""

    def __init__(self, value: object, path: str, problems: Problems) -> None:
        self.path = path
        self.problems = problems
        self._seen: set[str] = set()
        if isinstance(value, Mapping):
            self._doc: Mapping[str, object] = value
        else:
            problems.add(path, f"expected an object, got {describe(value)} ({_json_type(value)})")
            self._doc = {}

    def sub(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, message: str) -> None:
        self.problems.add(self.sub(key), message)

    def has(self, key: str) -> bool:
        return key in self._doc

    def raw(self, key: str) -> object:
        self._seen.add(key)
        return self._doc.get(key)

    def _take(self, key: str, default: object) -> tuple[bool, object]:
        """(present, value); records a problem when a required field is missing."""
        self._seen.add(key)
        if key in self._doc and self._doc[key] is not None:
            return True, self._doc[key]
        if default is REQUIRED:
            self.error(key, "required field is missing")
        return False, None

    def _bad_type(self, key: str, value: object, expected: str) -> None:
        self.error(key, f"expected {expected}, got {describe(value)} ({_json_type(value)})")

    def text(self, key: str, default: str | _Required = REQUIRED, *, choices: Sequence[str] | None = None,
             check: Callable[[str], str | None] | None = None) -> str:
        """A non-empty string; `choices` limits it to a set, `check` returns a message when it is invalid."""
        present, value = self._take(key, default)
        fallback = default if isinstance(default, str) else (choices[0] if choices else "")
        if not present:
            return fallback
        return self._check_text(key, value, fallback, choices, check) or fallback

    def opt_text(self, key: str, *, choices: Sequence[str] | None = None,
                 check: Callable[[str], str | None] | None = None) -> str | None:
        present, value = self._take(key, None)
        return self._check_text(key, value, None, choices, check) if present else None

    def _check_text(self, key: str, value: object, fallback: str | None, choices: Sequence[str] | None,
                    check: Callable[[str], str | None] | None) -> str | None:
        if not isinstance(value, str) or not value:
            self._bad_type(key, value, "a non-empty string")
            return fallback
        if choices is not None and value not in choices:
            self.error(key, f"{describe(value)} is not one of {', '.join(choices)}")
            return fallback
        message = check(value) if check else None
        if message:
            self.error(key, message)
            return fallback
        return value

    def integer(self, key: str, default: int | _Required = REQUIRED, *, ge: int | None = None,
                le: int | None = None) -> int:
        present, value = self._take(key, default)
        fallback = default if isinstance(default, int) else 0
        if not present:
            return fallback
        result = self._check_int(key, value, ge, le)
        return fallback if result is None else result

    def opt_integer(self, key: str, *, ge: int | None = None, le: int | None = None) -> int | None:
        present, value = self._take(key, None)
        return self._check_int(key, value, ge, le) if present else None

    def _check_int(self, key: str, value: object, ge: int | None, le: int | None) -> int | None:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            self._bad_type(key, value, "an integer")
            return None
        if (ge is not None and value < ge) or (le is not None and value > le):
            self.error(key, f"{value} is out of range; allowed {_bounds(ge, None, le, None)}")
            return None
        return value

    def number(self, key: str, default: float | _Required = REQUIRED, *, ge: float | None = None,
               gt: float | None = None, le: float | None = None, lt: float | None = None) -> float:
        present, value = self._take(key, default)
        fallback = float(default) if isinstance(default, int | float) else 0.0
        if not present:
            return fallback
        result = self._check_number(self.sub(key), value, ge, gt, le, lt)
        return fallback if result is None else result

    def opt_number(self, key: str, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
                   lt: float | None = None) -> float | None:
        present, value = self._take(key, None)
        return self._check_number(self.sub(key), value, ge, gt, le, lt) if present else None

    def _check_number(self, path: str, value: object, ge: float | None, gt: float | None, le: float | None,
                      lt: float | None) -> float | None:
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            self.problems.add(path, f"expected a finite number, got {describe(value)} ({_json_type(value)})")
            return None
        number = float(value)
        if ((ge is not None and number < ge) or (gt is not None and number <= gt)
                or (le is not None and number > le) or (lt is not None and number >= lt)):
            self.problems.add(path, f"{value!r} is out of range; allowed {_bounds(ge, gt, le, lt)}")
            return None
        return number

    def boolean(self, key: str, default: bool) -> bool:
        present, value = self._take(key, default)
        if not present:
            return default
        if not isinstance(value, bool):
            self._bad_type(key, value, "a boolean (true or false)")
            return default
        return value

    def section(self, key: str, *, required: bool = False) -> Section:
        """The object at `key`; an empty section (all defaults) when it is absent."""
        present, value = self._take(key, REQUIRED if required else None)
        return Section(value if present else {}, self.sub(key), self.problems)

    def items(self, key: str, *, required: bool = False, min_len: int = 0) -> list[tuple[str, object]]:
        """The elements of the list at `key`, each with its own path (`key[3]`)."""
        present, value = self._take(key, REQUIRED if required else None)
        if not present:
            return []
        if not isinstance(value, list):
            self._bad_type(key, value, "a list")
            return []
        if len(value) < min_len:
            self.error(key, f"has {len(value)} entries; at least {min_len} required")
        return [(f"{self.sub(key)}[{i}]", item) for i, item in enumerate(value)]

    def numbers(self, key: str, *, gt: float | None = None) -> tuple[float, ...] | None:
        """A list of finite numbers, or None when absent; problems name each bad element."""
        present = self.has(key) and self._doc[key] is not None
        entries = self.items(key)
        if not present:
            return None
        values = [self._check_number(path, item, None, gt, None, None) for path, item in entries]
        return tuple(v if v is not None else 0.0 for v in values)

    def done(self) -> None:
        """Report every key that no reader asked for: unknown fields are errors, never ignored."""
        allowed = sorted(self._seen)
        for key in self._doc:
            if key in self._seen:
                continue
            hint = difflib.get_close_matches(str(key), allowed, n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            self.error(str(key), f"unknown field{suggestion}; allowed fields: {', '.join(allowed) or 'none'}")

    def ignore(self, keys: Iterable[str]) -> None:
        """Accept these keys without reading them (fields owned by someone else, such as TF_CONFIG's rpc_layer)."""
        self._seen.update(keys)


def pattern_check(regex: str, expected: str) -> Callable[[str], str | None]:
    """A `check` for `Section.text` that requires a full match of `regex`."""
    compiled = re.compile(regex)

    def check(value: str) -> str | None:
        return None if compiled.fullmatch(value) else f"{describe(value)} is not {expected}"

    return check
