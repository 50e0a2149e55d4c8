"""A user model builder and preprocessing step, loaded by workers as `module:function` in the hook test.

Each records that it ran in the file named by `PULSETRAIN_TEST_HOOK_LOG`, so the test can see the
worker processes really called them.
"""

from __future__ import annotations

import os
from typing import Any


def _note(text: str) -> None:
    with open(os.environ["PULSETRAIN_TEST_HOOK_LOG"], "a") as handle:
        handle.write(text + "\n")


def tiny_model(config: Any) -> Any:
    import keras

    _note("model")
    return keras.Sequential([keras.Input((config.data.feature_size,)), keras.layers.Dense(10, name="user_logits")])


def halve(features: dict[str, Any]) -> dict[str, Any]:
    """Halves every value; raises on a record whose first pixel is negative (decodable, but not for this step)."""
    _note(f"preprocess {len(features['pixels'])}")
    if (features["pixels"][:, 0] < 0).any():
        raise ValueError("a negative pixel")
    return {name: values / 2 for name, values in features.items()}
