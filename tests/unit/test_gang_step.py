"""The gang's step with one worker: it trains exactly on the real rows (padding weighs nothing, the loss is
their mean), advances the step and the exactly-once counters by them, and leaves everything alone when the
summed flags say the gang has no rows or a consumer lost its connection."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import tensorflow as tf

from pulsetrain.config import load_config
from pulsetrain.gang_flags import Flags
from pulsetrain.gang_step import Counters, GangStep
from pulsetrain.model import Normalizer, build_network, build_optimizer

BATCH, FEATURES, REAL = 8, 3, 5
LEARNING_RATE = 0.1


def regression_config() -> Any:
    return load_config({
        "source": {"pulsar": {"serviceUrl": "pulsar://unused:6650", "topic": "t", "subscription": "s"}},
        "data": {"format": "raw", "features": [{"name": "x", "dtype": "float32", "shape": [FEATURES]}],
                 "label": {"name": "y", "dtype": "float32", "shape": []}},
        "model": {"builtin": "linear", "task": "regression", "optimizer": "sgd", "learningRate": LEARNING_RATE,
                  "metrics": ["mae"]},
        "storage": {"checkpointDir": "/tmp/unused/checkpoints", "exportDir": "/tmp/unused/models"},
    })


@pytest.fixture(scope="module")
def gang_step() -> tuple[GangStep, Counters]:
    config = regression_config()
    strategy = tf.distribute.MultiWorkerMirroredStrategy()  # no TF_CONFIG: a gang of one
    with strategy.scope():
        network, optimizer = build_network(config), build_optimizer(config)
        counters = Counters(tf.Variable(0, dtype=tf.int64), *(
            tf.Variable(0, dtype=tf.int64, synchronization=tf.VariableSynchronization.ON_READ,
                        aggregation=tf.VariableAggregation.SUM, trainable=False) for _ in range(2)))
        network.build((None, FEATURES))
        optimizer.build(network.trainable_variables)
    return GangStep(config, strategy, network, optimizer, Normalizer(FEATURES), counters), counters


def batch(seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    x, y = np.zeros((BATCH, FEATURES), np.float32), np.zeros(BATCH, np.float32)
    x[:REAL], y[:REAL] = rng.normal(size=(REAL, FEATURES)), rng.normal(size=REAL)
    x[REAL:], y[REAL:] = 1e3, -1e3  # padding that would wreck the model if it counted
    w = (np.arange(BATCH) < REAL).astype(np.float32)
    digests = np.arange(1, BATCH + 1, dtype=np.int64) * 1000
    return x, y, w, digests


def flags(rows: int, connection_lost: float = 0.0) -> np.ndarray:
    return Flags(rows=rows, idle=0, stop=0, checkpoint_due=0, export_due=0, connection_lost=connection_lost,
                 unacknowledged=rows, stalled=0).vector()


def state(step: GangStep, counters: Counters) -> tuple[list[np.ndarray], int, int, int]:
    return ([v.numpy().copy() for v in step.network.trainable_variables], int(counters.step.numpy()),
            int(counters.trained.numpy()), int(counters.digest_sum.numpy()))


def test_a_step_trains_on_the_real_rows_only_with_their_mean_loss(gang_step: tuple[GangStep, Counters]) -> None:
    step, counters = gang_step
    (kernel, bias), steps, trained, digest_sum = state(step, counters)
    x, y, w, digests = batch(0)
    result = step(x, y, w, digests, flags(REAL))
    error = x[:REAL] @ kernel[:, 0] + bias[0] - y[:REAL]
    assert result.trained and result.gang.rows == REAL and result.gang.unacknowledged == REAL
    assert result.loss == pytest.approx(float(np.mean(np.square(error))), rel=1e-5)
    assert result.statistics[0] == pytest.approx(float(np.sum(np.abs(error))), rel=1e-5)  # absolute error sum
    (new_kernel, new_bias), new_steps, new_trained, new_digest_sum = state(step, counters)
    np.testing.assert_allclose(new_kernel[:, 0], kernel[:, 0] - LEARNING_RATE * 2 * x[:REAL].T @ error / REAL,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new_bias, bias - LEARNING_RATE * 2 * np.mean(error), rtol=1e-5, atol=1e-6)
    assert (new_steps, new_trained, new_digest_sum) == (steps + 1, trained + REAL,
                                                       digest_sum + int(digests[:REAL].sum()))


@pytest.mark.parametrize(("rows", "connection_lost"), [(REAL, 1.0), (0, 0.0)], ids=["connection-lost", "no-rows"])
def test_a_step_that_must_not_train_changes_nothing(gang_step: tuple[GangStep, Counters], rows: int,
                                                    connection_lost: float) -> None:
    step, counters = gang_step
    before = state(step, counters)
    x, y, w, digests = batch(1)
    if not rows:
        w[:] = 0.0
    result = step(x, y, w, digests, flags(rows, connection_lost))
    assert not result.trained and result.gang.connection_lost == connection_lost
    after = state(step, counters)
    for old, new in zip(before[0], after[0], strict=True):
        np.testing.assert_array_equal(old, new)
    assert before[1:] == after[1:]


def test_an_idle_gang_sums_its_flags_alone_until_the_stream_resumes(gang_step: tuple[GangStep, Counters],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    step, counters = gang_step
    probes: list[np.ndarray] = []
    sum_flags = step.allreduce

    def counted(values: np.ndarray) -> np.ndarray:
        probes.append(np.asarray(values))
        return sum_flags(values)

    monkeypatch.setattr(step, "allreduce", counted)
    x, y, w, digests = batch(2)
    idle_w = np.zeros_like(w)
    assert not step(x, y, idle_w, digests, flags(0)).trained and len(probes) == 1  # idle: the flags alone
    assert not step(x, y, idle_w, digests, flags(0)).trained and len(probes) == 2
    before = int(counters.step.numpy())
    assert step(x, y, w, digests, flags(REAL)).trained and len(probes) == 3  # the probe, then the whole step
    assert step(x, y, w, digests, flags(REAL)).trained and len(probes) == 3  # streaming: one collective
    assert int(counters.step.numpy()) == before + 2
    assert len(probes[0]) == len(flags(0))
