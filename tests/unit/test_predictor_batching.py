"""The micro-batching policy and the padding of batches to a few warmed-up sizes."""

from __future__ import annotations

import numpy as np
import pytest

from pulsetrain.predict_io import BatchPolicy, batch_shapes, pad_rows, padded_size

POLICY = BatchPolicy(max_size=4, max_latency=0.020, idle_poll=0.1)


def test_an_empty_batch_waits_the_idle_poll() -> None:
    assert POLICY.wait(0, None, now=5.0) == 0.1


def test_after_the_first_input_it_waits_only_what_is_left_of_max_latency() -> None:
    assert POLICY.wait(1, first_at=10.0, now=10.0) == pytest.approx(0.020)
    assert POLICY.wait(3, first_at=10.0, now=10.015) == pytest.approx(0.005)


def test_the_batch_closes_at_max_latency_or_max_size() -> None:
    assert POLICY.wait(2, first_at=10.0, now=10.020) is None
    assert POLICY.wait(2, first_at=10.0, now=11.0) is None
    assert POLICY.wait(4, first_at=10.0, now=10.0) is None  # full: no waiting even with time left


def test_a_batch_of_one_closes_at_once() -> None:
    assert BatchPolicy(max_size=1, max_latency=1.0).wait(1, first_at=0.0, now=0.0) is None


@pytest.mark.parametrize(("max_size", "shapes"), [
    (1, [1]), (2, [1, 2]), (64, [1, 2, 4, 8, 16, 32, 64]), (100, [1, 2, 4, 8, 16, 32, 64, 100]),
])
def test_batch_shapes(max_size: int, shapes: list[int]) -> None:
    assert batch_shapes(max_size) == shapes


def test_padded_size_is_the_smallest_shape_that_fits() -> None:
    for max_size in (1, 5, 64, 100, 4096):
        shapes = batch_shapes(max_size)
        for rows in range(1, max_size + 1):
            assert padded_size(rows, max_size) == min(s for s in shapes if s >= rows)
    with pytest.raises(ValueError, match=r"rows must be in 1\.\.64"):
        padded_size(65, 64)
    with pytest.raises(ValueError, match="max_size must be >= 1"):
        batch_shapes(0)


def test_pad_rows_keeps_values_dtypes_and_shapes() -> None:
    features = {"img": np.arange(12, dtype=np.float32).reshape(3, 2, 2), "flag": np.array([True, False, True])}
    padded = pad_rows(features, 4)
    assert padded["img"].shape == (4, 2, 2) and padded["img"].dtype == np.float32
    assert np.array_equal(padded["img"][:3], features["img"]) and not padded["img"][3].any()
    assert padded["flag"].tolist() == [True, False, True, False]
    assert pad_rows(features, 3)["img"] is features["img"]  # already the right size: no copy
