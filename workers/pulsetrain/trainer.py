"""The synchronous streaming training loop: every worker takes part in every step, in lock-step.

Each iteration every worker (1) tops up its buffer from Pulsar, (2) runs the gang's step
(`gang_step.py`), whose one collective sums a few flags (rows it has, idle, stop requested, checkpoint
due) together with the loss and the gradients of its batch, padded to the batch size with zero-weight
rows; the step trains, with the loss divided by the global number of real rows, when the gang has rows
and no consumer lost its connection; and (3) decides, from the summed flags that every worker sees
identically, whether to checkpoint, export or stop. So uneven streams never deadlock, all workers
stop on the same step, and SIGTERM anywhere means: finish the step, checkpoint, acknowledge, exit.
Messages are acknowledged only after the checkpoint that contains them is committed (see
`checkpoints.py`); two int64 sum variables count the samples and a digest of their payloads, so a
test can prove each message trained exactly once. When any worker's consumer loses the broker, the
broker gives that consumer's unacknowledged messages to the subscription again (possibly to a peer that
cannot know they were trained), so the whole gang rolls back to its last commit (`_rollback`): the
model, the counters and the merged ledger of that commit, and every consumer asks for redelivery.
Before the chief marks a commit, it checks the workers' ledgers for a message trained twice
(`commit_check.py`: a disconnection nobody saw); such a commit is refused and the gang rolls back the
same way, and after MAX_REFUSED_COMMITS refusals in a row the worker fails rather than loop for ever.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from pulsetrain.checkpoints import CheckpointStore
from pulsetrain.commit_check import CommitCheck, refusal_advice
from pulsetrain.config import TFConfig, WorkerConfig
from pulsetrain.cpus import size_tensorflow_pools
from pulsetrain.export import export, latest_export_step
from pulsetrain.gang_flags import Flags, stall_seconds
from pulsetrain.gang_step import Counters, GangStep
from pulsetrain.ledger import Ledger, LedgerError
from pulsetrain.model import Normalizer, build_network, build_optimizer
from pulsetrain.outcome import nothing_trained
from pulsetrain.source import Rows, Source
from pulsetrain.stats import metric_values, statistic_size
from pulsetrain.telemetry import Telemetry

log = logging.getLogger(__name__)
COLLECTIVE_TIMEOUT_S = 600
MAX_REFUSED_COMMITS = 3  # in a row: the same messages keep reaching two workers, which a rollback cannot cure
SUMMARY_EVERY_STEPS = 10
SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")).SerializeToString()
SourceFactory = Callable[[WorkerConfig, Ledger, Callable[[str], None], Callable[[int], None]], Source]


def make_strategy() -> tf.distribute.Strategy:
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.RING,
        timeout_seconds=COLLECTIVE_TIMEOUT_S,
    )
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


class CommitsRefused(RuntimeError):
    """Commits were refused MAX_REFUSED_COMMITS times in a row: messages trained twice, or ledgers unreadable."""


class Trainer:
    def __init__(self, config: WorkerConfig, tf_config: TFConfig | None, telemetry: Telemetry,
                 stop_requested: threading.Event, source_factory: SourceFactory = Source) -> None:
        self.config, self.telemetry, self.stop_requested = config, telemetry, stop_requested
        self.source_factory = source_factory
        self.index = tf_config.task_index if tf_config else 0
        self.num_workers = tf_config.num_workers if tf_config else 1
        self.is_chief = self.index == 0
        self.batch = config.training.batch_size
        size_tensorflow_pools()  # before the strategy starts TensorFlow's runtime
        self.strategy = make_strategy()
        with self.strategy.scope():
            self.network = build_network(config)
            self.optimizer = build_optimizer(config)
            self.normalizer = Normalizer(config.data.feature_size)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False)
            on_read = {"synchronization": tf.VariableSynchronization.ON_READ,
                       "aggregation": tf.VariableAggregation.SUM, "trainable": False}
            self.trained = tf.Variable(0, dtype=tf.int64, name="trained_samples", **on_read)
            self.digest_sum = tf.Variable(0, dtype=tf.int64, name="trained_digest_sum", **on_read)
            # What the checkpoint holds instead of the two sums: restoring a SUM on-read variable divides
            # the saved total by the number of replicas (an odd int64 total loses 1), so the exact totals
            # are copied into plain mirrored variables before each save and handed back to replica 0.
            self.saved_totals = tf.Variable([0, 0], dtype=tf.int64, trainable=False, name="saved_totals")
            self.network.build((None, config.data.feature_size))
            self.optimizer.build(self.network.trainable_variables)
        checkpoint = tf.train.Checkpoint(network=self.network, optimizer=self.optimizer,
                                         normalizer=self.normalizer, step=self.step, totals=self.saved_totals)
        self.checkpoint = checkpoint
        self._initial_state = f"ram://pulsetrain-worker-{self.index}/initial"
        self.store = CheckpointStore(checkpoint, Path(config.storage.checkpoint_dir), self.index, self.is_chief,
                                     config.training.keep_checkpoints)
        self.gang_step = GangStep(config, self.strategy, self.network, self.optimizer, self.normalizer,
                                  Counters(self.step, self.trained, self.digest_sum))
        self._stat_size = statistic_size(config)
        # the last commit's ledger merged over all workers, as a restore or rollback read it; None after a commit
        self._merged: tuple[int | None, Ledger] | None = None
        self._check = CommitCheck((), config.training.keep_checkpoints)  # the chief's; reset at every restore
        self._unreadable_ledgers = False  # why the last commit was refused: unreadable ledgers, not messages twice
        log_dir = config.storage.log_dir
        self.summaries = tf.summary.create_file_writer(log_dir) if log_dir and self.is_chief else None

    # -- collectives ------------------------------------------------------------------------------
    def allreduce(self, values: npt.ArrayLike) -> npt.NDArray[np.float64]:
        return self.gang_step.allreduce(values)

    def _save_totals(self) -> None:
        """Copy the exact cross-worker sums into the checkpointed variable (a collective: all workers)."""
        self.saved_totals.assign(tf.stack([self.trained.read_value(), self.digest_sum.read_value()]))

    def _restore_totals(self) -> None:
        """Give replica 0 the restored totals and every other replica zero, so the sums stay exact."""
        def local() -> None:
            first = tf.equal(tf.distribute.get_replica_context().replica_id_in_sync_group, 0)
            totals = tf.where(first, self.saved_totals, tf.zeros_like(self.saved_totals))
            self.trained.assign(totals[0])
            self.digest_sum.assign(totals[1])

        self.strategy.run(tf.function(local))

    def _summarise(self, step: int, loss: float, metrics: dict[str, float]) -> None:
        """TensorBoard scalars (chief only), written with the core summary op: the `tensorboard` package
        (which `tf.summary.scalar` imports) is not a dependency of tensorflow-cpu."""
        assert self.summaries is not None
        values = {"loss": loss, "samples_per_second": self.telemetry.samples_per_second(),
                  **{f"metrics/{name}": value for name, value in metrics.items()}}
        with self.summaries.as_default(step=step):
            for tag, value in values.items():
                tf.summary.write(tag, tf.constant(value, tf.float32), metadata=SCALAR_METADATA)

    def barrier(self) -> None:
        self.allreduce([1.0])

    # -- steps ------------------------------------------------------------------------------------
    def _padded(self, rows: Rows) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        n, size = len(rows), self.config.data.feature_size
        if n == self.batch:  # a full batch needs no padding (and no copy before tf.constant's)
            return (tf.constant(rows.features), tf.constant(rows.labels), tf.constant(np.ones(n, np.float32)),
                    tf.constant(rows.digests))
        x = np.zeros((self.batch, size), np.float32)
        y = np.zeros((self.batch, *rows.labels.shape[1:]), rows.labels.dtype if n else np.int64)
        w, d = np.zeros(self.batch, np.float32), np.zeros(self.batch, np.int64)
        x[:n], y[:n], w[:n], d[:n] = rows.features, rows.labels, 1.0, rows.digests
        return tf.constant(x), tf.constant(y), tf.constant(w), tf.constant(d)

    def _normalisation(self, source: Source) -> None:
        """Estimate mean/std over the first `estimateRecords` rows of all workers (or set given ones)."""
        norm = self.config.data.normalization
        if bool(self.normalizer.ready.numpy()) or norm.mode == "none":
            return
        if norm.mode == "given":
            self.normalizer.set(norm.mean or (), norm.std or ())
            return
        self.telemetry.set_state("waiting-for-peers", "collecting rows to estimate normalisation")
        while True:
            source.fill(norm.estimate_records)
            idle = source.idle_for() >= self.config.training.idle_timeout_seconds
            rows, idle_count, stop, _, _ = self.allreduce([source.buffered, float(idle),
                                                           float(self.stop_requested.is_set()), 0, 0])
            if rows >= norm.estimate_records or idle_count == self.num_workers or stop:
                break
        sample = source.buffered_features()[: norm.estimate_records]
        size = self.config.data.feature_size
        totals = self.allreduce(np.concatenate([sample.sum(0), np.square(sample).sum(0), [len(sample)]])
                                if len(sample) else np.zeros(2 * size + 1))
        count = max(totals[-1], 1.0)
        mean = totals[:size] / count
        std = np.sqrt(np.maximum(totals[size:2 * size] / count - np.square(mean), 0.0))
        self.normalizer.set(mean, std)
        log.info("normalisation estimated from %d rows", int(totals[-1]))

    def _commit(self, source: Source, step: int) -> str | None:
        """Checkpoint, ledgers, check, marker, acknowledge (every worker, the same iteration). Returns None, or
        why the chief refused the commit (the same text on every worker): then the gang must roll back."""
        self.telemetry.set_state("checkpointing")
        self._save_totals()
        name = self.store.save(step)
        self.barrier()  # the chief's checkpoint is written
        to_ack = source.ledger.commit(self.store.directory, name, self.index, num_workers=self.num_workers,
                                      partitions=source.partitions)
        self.barrier()  # every ledger is written
        refused, twice = 0.0, 0.0
        if self.is_chief:
            try:
                retrained = self._check.check(self.store.directory, name)
            except LedgerError as exc:  # just written and unreadable: not something to commit
                log.error("cannot check the ledgers of %s: %s", name, exc)
                retrained, refused = None, 1.0
            if retrained is not None:
                log.warning("ledgers of %s: %s", name, retrained.describe())
                refused, twice = 1.0, float(retrained.count)
            if not refused:
                self.store.mark_committed(name)
                self._check.passed()
        refused, twice = self.allreduce([refused, twice])  # the commit marker is durable, or the commit refused
        self.store.tidy()
        if refused:
            self.telemetry.set_state("training")
            self._unreadable_ledgers = not twice
            return (f"the commit of {name} was refused: {int(twice)} message(s) in it were trained twice"
                    if twice else f"the commit of {name} was refused: its ledgers could not be read back")
        self._merged = None  # source.ledger holds this worker's windows only now
        self.telemetry.acknowledged(source.acknowledge(to_ack))
        self.telemetry.checkpointed(step, str(self.store.directory / name))
        self.telemetry.set_state("training")
        return None

    def _restore(self, variables: bool) -> tuple[int | None, Ledger]:
        """The newest committed checkpoint (its variables too, if asked) and its ledger merged over all workers,
        remembered with the chief's commit check seeded from it; (None, empty) when nothing is committed."""
        keep = self.config.training.keep_checkpoints
        self._merged = self.store.restore(keep, variables=variables)
        self._check = CommitCheck(self._merged[1].windows, keep)
        return self._merged

    def _rollback(self, source: Source, dirty: bool,
                  cause: str = "a consumer lost its connection to Pulsar") -> tuple[int, int]:
        """Every worker, on the same iteration: back to the newest committed checkpoint (or the initial
        state when there is none) with its ledger merged over all workers, so that a message a peer
        committed but whose acknowledgement the broker lost is skipped here too; then rewind the
        consumer. When nothing was trained since the last commit (`dirty` is the same on every worker),
        the model stays, and so does the merged ledger if nothing was committed since it was read (an outage
        repeats this every iteration). Returns the step and gang-wide sample count gone back to."""
        committed, ledger = self._merged if not dirty and self._merged is not None else self._restore(dirty)
        if dirty and committed is None:
            self.checkpoint.read(self._initial_state).assert_existing_objects_matched()
        self._restore_totals()
        step, samples = int(self.step.numpy()), int(self.saved_totals.numpy()[0])
        dropped = source.rewind(ledger)
        if not dirty and not dropped:  # during an outage this repeats every iteration; nothing to say
            return step, samples
        self.telemetry.rolled_back(step, samples)
        log.warning("%s: the gang went back to step %d (%s); %d message(s) "
                    "this worker had received since then will be redelivered", cause, step,
                    "the last commit" if committed is not None else "its start: nothing was committed yet", dropped)
        return step, samples

    def _export(self, step: int, metrics: dict[str, float]) -> None:
        self.telemetry.set_state("exporting")
        result = export(self.config, self.network, self.normalizer, is_chief=self.is_chief, worker_index=self.index,
                        step=step, samples=int(self.trained.numpy()), metrics=metrics)
        self.barrier()
        if result:
            self.telemetry.exported(result[0], str(result[1]))
            log.info("exported version %d to %s", *result)
        self.telemetry.set_state("training")

    def _limit_reached(self, step: int, samples: int) -> bool:
        """A bounded run's `maxSteps` or `maxMessages` is reached (the idle end is decided in the loop)."""
        training = self.config.training
        return training.mode == "bounded" and (
            (training.max_steps is not None and step >= training.max_steps)
            or (training.max_messages is not None and samples >= training.max_messages))

    def run(self) -> dict[str, Any]:
        """Train until the stream is exhausted (bounded), a limit, or a stop request; returns a summary."""
        training = self.config.training
        restored_step, ledger = self._restore(variables=True)
        self._restore_totals()
        trained = int(self.trained.numpy())
        self.telemetry.restored(int(self.step.numpy()), trained)
        source = self.source_factory(self.config, ledger, self.telemetry.dead_lettered, self.telemetry.received)
        metrics: dict[str, float] = {}
        try:
            self._normalisation(source)
            if restored_step is None:  # what a rollback before the first commit goes back to
                self.checkpoint.write(self._initial_state)
            self.telemetry.set_state("training")
            step, last_checkpoint, last_export = int(self.step.numpy()), time.monotonic(), time.monotonic()
            stats_window, rows_window, global_samples = np.zeros(self._stat_size), 0.0, trained
            dirty, local_rows, committed_local_rows, first_step_at, last_step_at = False, 0, 0, 0.0, 0.0
            refusals, stop, peers_had_rows = 0, 0.0, False
            stall_after = stall_seconds(training.idle_timeout_seconds)
            finished_before = self._limit_reached(step, global_samples)
            if finished_before:
                log.info("the restored checkpoint (step %d, %d samples) already reached the training limit: nothing "
                         "to train", step, global_samples)
            while not finished_before:
                source.fill(self.batch, wait=not peers_had_rows)  # see Source.fill
                if source.unavailable:
                    self.telemetry.set_state("source-unavailable", source.unavailable)
                elif self.telemetry.state == "source-unavailable":
                    self.telemetry.set_state("training")
                rows = source.take(self.batch)
                every_s = training.checkpoint_every_seconds
                export_s = training.export_every_seconds
                flags = Flags(
                    rows=len(rows),
                    idle=float(source.idle_for() >= (training.idle_timeout_seconds or float("inf"))),
                    stop=float(self.stop_requested.is_set()),
                    checkpoint_due=float((bool(every_s) and time.monotonic() - last_checkpoint >= (every_s or 0))
                                         or source.unacknowledged >= source.unacknowledged_limit()),
                    export_due=float(bool(export_s) and time.monotonic() - last_export >= (export_s or 0)),
                    connection_lost=float(source.connection_lost()),  # read after take(): see Source
                    unacknowledged=float(source.unacknowledged),
                    stalled=float(source.idle_for() >= stall_after),
                )
                started = time.monotonic()
                result = self.gang_step(*self._padded(rows), flags.vector())  # trains if result.trained
                gang = result.gang
                total_rows, idle, stop, export_due, lost = (gang.rows, gang.idle, gang.stop, gang.export_due,
                                                            gang.connection_lost)
                checkpoint_due = gang.commit_due(self.num_workers, dirty)
                if gang.stalled_with_uncommitted(self.num_workers, dirty) and not lost and self.is_chief:
                    log.info("no worker has received a message for %.1fs: committing what the gang trained, "
                             "as the broker may hold messages back until those are acknowledged", stall_after)
                peers_had_rows = total_rows > len(rows)
                if lost:  # the step did not train: back to the last commit, what was taken comes again
                    step, global_samples = self._rollback(source, dirty)
                    total_rows, dirty, local_rows = 0, False, committed_local_rows
                elif result.trained:
                    source.ledger.record(rows.ids)
                    step, dirty, local_rows = step + 1, True, local_rows + len(rows)
                    first_step_at, last_step_at = first_step_at or started, time.monotonic()
                    global_samples += int(total_rows)
                    stats_window += result.statistics
                    rows_window += total_rows
                    metrics = metric_values(self.config, stats_window, rows_window) or metrics
                    # gang-wide samples: the chief's document speaks for the pipeline (as restored() does)
                    self.telemetry.step_done(step, int(total_rows), result.loss, metrics, time.monotonic() - started)
                    if self.summaries is not None and step % SUMMARY_EVERY_STEPS == 0:
                        self._summarise(step, result.loss, metrics)
                    if rows_window >= 20 * self.batch * self.num_workers:
                        stats_window, rows_window = np.zeros(self._stat_size), 0.0
                finished = bool(stop) or self._limit_reached(step, global_samples) or (
                    training.mode == "bounded" and idle == self.num_workers and total_rows == 0)
                if dirty and (finished or checkpoint_due or step % training.checkpoint_every_steps == 0):
                    refusal = self._commit(source, step)
                    if refusal is not None:
                        refusals += 1
                        if refusals >= MAX_REFUSED_COMMITS:
                            raise CommitsRefused(f"{refusal}, {refusals} commits in a row: " + refusal_advice(
                                self._unreadable_ledgers, self.config.source.pulsar))
                        step, global_samples = self._rollback(source, True, refusal)
                        dirty, local_rows = False, committed_local_rows
                        if stop:
                            break  # stopping anyway: the last commit stands, the rest is redelivered
                        continue  # not finished: what was rolled back comes again
                    refusals = 0
                    last_checkpoint, dirty, committed_local_rows = time.monotonic(), False, local_rows
                if training.mode == "continuous" and (export_due or (
                        training.export_every_steps and step and step % training.export_every_steps == 0
                        and total_rows > 0)):
                    self._export(step, metrics)
                    last_export = time.monotonic()
                if finished:
                    break
            if finished_before:  # exported then, unless that run ended between its last commit and its export
                missing = self.is_chief and latest_export_step(Path(self.config.storage.export_dir)) != step
                if self.allreduce([float(missing)])[0]:
                    self._export(step, metrics)
            elif training.mode == "bounded" and not step and not stop:
                progress, pulsar_cfg = self.telemetry.snapshot(), self.config.source.pulsar
                raise nothing_trained(pulsar_cfg.topic, pulsar_cfg.subscription, pulsar_cfg.initial_position,
                                      training.idle_timeout_seconds, progress.messages_received,
                                      progress.dead_lettered.total)
            elif step > (restored_step or 0) or (training.mode == "bounded" and step):
                self._export(step, metrics)
            self.telemetry.set_state("finished")
            progress = self.telemetry.snapshot()
            return {"step": step, "trainedSamples": int(self.trained.numpy()),
                    "digestSum": int(self.digest_sum.numpy()), "metrics": metrics, "localRows": local_rows,
                    "received": progress.messages_received, "deadLettered": progress.dead_lettered.total,
                    "restoredStep": restored_step, "trainSeconds": last_step_at - first_step_at,
                    "stopRequested": bool(stop)}  # by any worker of the gang: they all stop on this step
        finally:
            source.close()
            if self.summaries is not None:
                self.summaries.flush()
