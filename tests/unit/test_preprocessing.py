"""`model.preprocess` in training: a record the hook fails on is rejected with the reason, the rest go on; a
hook that fails on every record stops the worker naming the field."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from pulsetrain.config import ConfigError, DataConfig, FieldSpec
from pulsetrain.preprocessing import preprocess_batch

DATA = DataConfig(format="raw", features=(FieldSpec(name="x", dtype="float32", shape=(2,)),
                                          FieldSpec(name="n", dtype="int32", shape=())),
                  label=FieldSpec(name="y", dtype="int64", shape=()))


def batch(rows: int) -> dict[str, np.ndarray]:
    return {"x": np.arange(rows * 2, dtype=np.float32).reshape(rows, 2), "n": np.arange(rows, dtype=np.int32)}


def scale(features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"x": features["x"] / 2, "n": features["n"]}


def test_a_working_hook_is_called_once_on_the_whole_batch() -> None:
    calls: list[int] = []

    def hook(features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append(len(features["n"]))
        return scale(features)

    done = preprocess_batch(hook, batch(4), DATA)
    assert calls == [4] and done.kept == [0, 1, 2, 3] and done.rejects == []
    assert np.array_equal(done.features["x"], batch(4)["x"] / 2)


def test_records_the_hook_raises_on_are_rejected_and_the_rest_kept_in_order() -> None:
    def hook(features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if (features["n"] == 2).any():
            raise KeyError("record 2 has no such category")
        return scale(features)

    done = preprocess_batch(hook, batch(5), DATA)
    assert done.kept == [0, 1, 3, 4]
    assert done.rejects == [(2, "preprocess: KeyError: 'record 2 has no such category'")]
    assert np.array_equal(done.features["n"], [0, 1, 3, 4])
    assert np.array_equal(done.features["x"], batch(5)["x"][[0, 1, 3, 4]] / 2)


def test_non_finite_output_is_a_rejected_record() -> None:
    def hook(features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with np.errstate(invalid="ignore"):
            return {"x": np.sqrt(features["x"] - 1), "n": features["n"]}  # record 0's [0, 1] gives a NaN

    done = preprocess_batch(hook, batch(3), DATA)
    assert done.kept == [1, 2] and done.rejects == [(0, "preprocess: ValueError: returned non-finite values in 'x'")]


@pytest.mark.parametrize(("output", "reason"), [
    ([1, 2], "returned list, expected a dict of arrays by feature name"),
    ({"x": np.zeros((1, 2))}, "returned no 'n' (it returned ['x'])"),
    ({"x": np.zeros((1, 3)), "n": np.zeros(1)}, "returned 'x' with shape [1, 3], expected 1 rows of 2 values"),
])
def test_a_wrong_output_is_named(output: Any, reason: str) -> None:
    done = preprocess_batch(lambda features: output, batch(1), DATA)
    assert done.kept == [] and done.rejects == [(0, f"preprocess: ValueError: {reason}")]


def test_a_hook_that_fails_on_every_record_is_a_broken_step() -> None:
    def hook(features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise AttributeError("'dict' object has no attribute 'pixels'")

    with pytest.raises(ConfigError, match=r"model.preprocess: fails on every one of the 3 records of a batch.*"
                                          r"AttributeError: 'dict' object has no attribute 'pixels'"):
        preprocess_batch(hook, batch(3), DATA)
