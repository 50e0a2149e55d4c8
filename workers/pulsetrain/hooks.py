"""User hooks given as `module:function`: a model builder and a preprocessing step.

Loaded once at start-up with an error that names the configuration field, so a typo in a pipeline
fails the worker immediately and clearly instead of after minutes of waiting for peers.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from pulsetrain.config import ConfigError


def load_hook(spec: str, field: str) -> Callable[..., Any]:
    module_name, _, function_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError([f"{field}: cannot import module {module_name!r} ({exc})"]) from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ConfigError([f"{field}: module {module_name!r} has no function {function_name!r}"])
    return function  # type: ignore[no-any-return]
