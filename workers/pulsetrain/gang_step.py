"""One iteration of the gang in one collective: the flags, the loss, the statistics and the gradients,
all-reduced together as one vector.

Why: on CPUs, MultiWorkerMirroredStrategy's collectives go over gRPC (RING), and each one costs a round
trip between the workers: about 2 ms between two workers on one idle 2-core machine (measured; a 1-worker
run of the same step takes 2.5 ms in all), and far more when the broker and the receive threads compete
for the cores, since every hop then waits to be scheduled. The loop used to make four per iteration (the
flags, then the gradients, the loss and the statistics inside the step); the iteration now makes one.

How it stays exact: each worker contributes its flags (`gang_flags.Flags`), the *sum* of its rows'
weighted losses, its statistics (`stats.batch_statistics`, sums too) and the gradients of that loss sum.
After the SUM, the gradients are divided by the gang's real row count (the first flag), which is exactly
the gradient of the loss normalised by the global number of real samples, as before. They are applied,
and the step and the exactly-once counters advance, only when `GangFlags.trains` holds for the summed
flags: the gang has rows and no consumer lost its connection (a rollback then discards the iteration).
Every worker reads the same sums, so every worker decides alike. A worker without rows skips its forward
and backward pass and contributes zeros. Gradients of variables a (user) model leaves unconnected are
zeros here, where Keras would skip the variable; with SGD that is the same, with Adam its momentum carries on.

Why an idle gang first sums its flags alone: the one vector is as long as the model, and a gang waiting
for data iterates every `batchReceiveTimeoutMs`; summing a large model's worth of zeros each time would
load the network for nothing. So after an iteration in which the gang had no rows, the next one sums the
flags alone (a few bytes; `allreduce`) and runs the whole step only if they say it trains: two
collectives on the iteration the stream resumes, one on every iteration while it flows. Whether the gang
had rows comes from the sums, so every worker takes the same path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import numpy.typing as npt
import tensorflow as tf

from pulsetrain.config import WorkerConfig
from pulsetrain.gang_flags import CONNECTION_LOST, FLAG_COUNT, ROWS, GangFlags
from pulsetrain.model import Normalizer, per_example_loss
from pulsetrain.stats import batch_statistics, statistic_size

SUM = tf.distribute.ReduceOp.SUM


@dataclass(frozen=True)
class StepResult:
    """What one iteration tells every worker alike."""

    gang: GangFlags
    loss: float  # mean over the gang's real rows (0 when it had none)
    statistics: npt.NDArray[np.float64]  # summed over the gang's real rows

    @property
    def trained(self) -> bool:
        return self.gang.trains


@dataclass(frozen=True)
class Counters:
    """The variables the step advances when it trains: the step, and the exactly-once sums (SUM on read)."""

    step: tf.Variable
    trained: tf.Variable
    digest_sum: tf.Variable


class GangStep:
    """`step(x, y, w, digests, flags)`: one iteration of the gang (see the module docstring). `x`, `y`, `w`,
    `digests` are this worker's batch padded to the batch size (`w` 1 for a real row, 0 for padding)."""

    def __init__(self, config: WorkerConfig, strategy: tf.distribute.Strategy, network: keras.Model,
                 optimizer: keras.optimizers.Optimizer, normalizer: Normalizer, counters: Counters) -> None:
        self.config, self.strategy, self.network, self.optimizer = config, strategy, network, optimizer
        self.normalizer, self.counters = normalizer, counters
        self._stat_size = statistic_size(config)
        self._function = tf.function(self._iteration)
        self._sum = tf.function(self._sum_values)
        self._streaming = False  # the gang had rows at the last iteration (the same on every worker)

    def __call__(self, x: Any, y: Any, w: Any, digests: Any, flags: npt.NDArray[np.float32]) -> StepResult:
        if not self._streaming:  # idle until now: the flags alone first (see the module docstring)
            gang = GangFlags.of(self.allreduce(flags))
            if not gang.trains:
                return StepResult(gang, 0.0, np.zeros(self._stat_size))
        sums = self._function(x, y, w, digests, tf.constant(flags, tf.float32)).numpy().astype(np.float64)
        gang = GangFlags.of(sums[:FLAG_COUNT])
        self._streaming = gang.rows > 0
        loss = float(sums[FLAG_COUNT] / gang.rows) if gang.rows else 0.0
        return StepResult(gang, loss, sums[FLAG_COUNT + 1:])

    def allreduce(self, values: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """`values` summed over the gang (a collective: every worker calls it, with as many values)."""
        return np.asarray(self._sum(tf.constant(np.asarray(values, np.float32))).numpy(), np.float64)

    # -- the graphs -------------------------------------------------------------------------------
    def _sum_values(self, values: tf.Tensor) -> tf.Tensor:
        return self.strategy.reduce(SUM, self.strategy.run(tf.identity, args=(values,)), axis=None)

    def _local(self, x: tf.Tensor, y: tf.Tensor, w: tf.Tensor, flags: tf.Tensor) -> tf.Tensor:
        """Replica context: this worker's flags, loss sum, statistics and flat gradients as one vector."""
        variables = self.network.trainable_variables

        def forward_backward() -> tuple[tf.Tensor, ...]:
            with tf.GradientTape() as tape:
                logits = self.network(self.normalizer(x), training=True)
                loss_sum = tf.reduce_sum(per_example_loss(self.config, y, logits) * w)
            gradients = tape.gradient(loss_sum, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            return (loss_sum, batch_statistics(self.config, y, tf.stop_gradient(logits), w), *gradients)

        def nothing() -> tuple[tf.Tensor, ...]:  # no rows here: no pass through the model for padding alone
            return (tf.zeros([]), tf.zeros([self._stat_size]), *(tf.zeros(v.shape, v.dtype) for v in variables))

        loss_sum, statistics, *gradients = tf.cond(tf.reduce_any(w > 0), forward_backward, nothing)
        flat = [tf.reshape(tf.cast(g, tf.float32), [-1]) for g in gradients]
        return tf.concat([flags, [loss_sum], statistics, *flat], axis=0)

    def _apply(self, flat_gradients: tf.Tensor, rows: tf.Tensor) -> None:
        """Cross-replica context: the summed gradients, normalised by the gang's rows, applied once (the
        optimizer reduces nothing more outside a replica context)."""
        variables = self.network.trainable_variables
        parts = tf.split(flat_gradients / rows, [int(np.prod(v.shape)) for v in variables])
        gradients = [tf.cast(tf.reshape(p, v.shape), v.dtype) for p, v in zip(parts, variables, strict=True)]
        self.optimizer.apply_gradients(zip(gradients, variables, strict=True))
        self.counters.step.assign_add(1)

    def _count(self, w: tf.Tensor, digests: tf.Tensor, trains: tf.Tensor) -> None:
        """Replica context: this worker's real rows and their digests, added when the gang trained."""
        real = tf.cast(w, tf.int64) * tf.cast(trains, tf.int64)
        self.counters.trained.assign_add(tf.reduce_sum(real))
        self.counters.digest_sum.assign_add(tf.reduce_sum(digests * real))

    def _iteration(self, x: tf.Tensor, y: tf.Tensor, w: tf.Tensor, digests: tf.Tensor,
                   flags: tf.Tensor) -> tf.Tensor:
        local = self.strategy.run(self._local, args=(x, y, w, flags))
        sums = self.strategy.reduce(SUM, local, axis=None)  # the iteration's one collective
        head = FLAG_COUNT + 1 + self._stat_size
        rows = sums[ROWS]
        trains = tf.logical_and(rows > 0, tf.equal(sums[CONNECTION_LOST], 0))  # GangFlags.trains, in the graph

        def apply() -> tf.Tensor:
            self._apply(sums[head:], rows)
            return tf.constant(True)

        trained = tf.cond(trains, apply, lambda: tf.constant(False))
        self.strategy.run(self._count, args=(w, digests, trained))
        return sums[:head]
