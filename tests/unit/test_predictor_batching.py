"""The padding of micro-batches to a few warmed-up sizes, and when a batch closes (the batching against the broker:
test_predict_collect)."""

from __future__ import annotations

import numpy as np
import pytest

from pulsetrain.config import ServingConfig
from pulsetrain.predict_io import batch_deadline, batch_shapes, input_prefetch, pad_rows, padded_size


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


@pytest.mark.parametrize(("published_ms", "expected"), [
    (1_000_000, 1_000.020),  # fresh: maxLatencyMs after its publish time
    (999_990, 1_000.010),  # published 10 ms ago: the 10 ms left of its budget
    (990_000, 1_000.0),  # published long ago (a backlog): now, no wait
    (1_005_000, 1_000.020),  # the producer's clock is ahead of ours: never more than maxLatencyMs from now
])
def test_batch_deadline_counts_from_the_publish_time(published_ms: int, expected: float) -> None:
    assert batch_deadline(published_ms, 20, now=1_000.0) == pytest.approx(expected)


@pytest.mark.parametrize(("max_batch", "prefetch"), [(1, 100), (64, 1024), (4096, 10_000)])
def test_the_input_prefetch_is_some_batches_within_bounds(max_batch: int, prefetch: int) -> None:
    serving = ServingConfig(input_topic="in", output_topic="out", subscription="s", max_batch_size=max_batch)
    assert input_prefetch(serving) == prefetch
