"""Training metrics from sums: computed per replica inside the step, summed across workers, divided on
the host.

Under MultiWorkerMirroredStrategy every statistic has to be reduced across workers; keeping each metric
as a sum (correct predictions, true positives per threshold, absolute errors...) makes the reduction a
plain SUM and the result exact however the rows were split between workers and padding.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import tensorflow as tf

from pulsetrain.config import WorkerConfig

THRESHOLDS = np.linspace(0.0, 1.0, 51, dtype=np.float32)
TOP_K = 5


def statistic_size(config: WorkerConfig) -> int:
    task = config.model.task
    if task == "classification":
        return 2  # correct, top-k correct
    if task == "binary":
        return 1 + 2 * len(THRESHOLDS)  # correct, then TP and FP per threshold (positives = TP at 0)
    return 2  # absolute error, squared error


def batch_statistics(config: WorkerConfig, labels: tf.Tensor, logits: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
    """A float32 vector of weighted sums over one replica's batch."""
    task = config.model.task
    if task == "classification":
        labels = tf.cast(tf.reshape(labels, [-1]), tf.int64)
        correct = tf.cast(tf.equal(tf.argmax(logits, axis=-1), labels), tf.float32)
        k = min(TOP_K, int(logits.shape[-1]))
        top_k = tf.cast(tf.math.in_top_k(tf.cast(labels, tf.int32), logits, k), tf.float32)
        return tf.stack([tf.reduce_sum(correct * weights), tf.reduce_sum(top_k * weights)])
    if task == "binary":
        truth = tf.cast(tf.reshape(labels, [-1]), tf.float32)
        probability = tf.sigmoid(tf.reshape(logits, [-1]))
        correct = tf.cast(tf.equal(tf.cast(probability > 0.5, tf.float32), truth), tf.float32)
        above = tf.cast(probability[:, None] >= tf.constant(THRESHOLDS)[None, :], tf.float32) * weights[:, None]
        tp = tf.reduce_sum(above * truth[:, None], axis=0)
        fp = tf.reduce_sum(above * (1.0 - truth[:, None]), axis=0)
        return tf.concat([[tf.reduce_sum(correct * weights)], tp, fp], axis=0)
    error = tf.reshape(logits, [-1]) - tf.cast(tf.reshape(labels, [-1]), tf.float32)
    return tf.stack([tf.reduce_sum(tf.abs(error) * weights), tf.reduce_sum(tf.square(error) * weights)])


def metric_values(config: WorkerConfig, sums: npt.NDArray[np.float64], count: float) -> dict[str, float]:
    """The configured metrics from summed statistics over `count` real samples."""
    if count <= 0:
        return {}
    values: dict[str, float] = {}
    task = config.model.task
    for name in config.model.metrics:
        if task == "classification":
            values[name] = float(sums[0] / count) if name == "accuracy" else float(sums[1] / count)
        elif task == "binary":
            n = len(THRESHOLDS)
            tp, fp = sums[1:1 + n], sums[1 + n:]
            positives, negatives = tp[0], count - tp[0]
            mid = n // 2  # threshold 0.5
            if name == "accuracy":
                values[name] = float(sums[0] / count)
            elif name == "precision":
                values[name] = float(tp[mid] / (tp[mid] + fp[mid])) if tp[mid] + fp[mid] else 0.0
            elif name == "recall":
                values[name] = float(tp[mid] / positives) if positives else 0.0
            elif name == "auc" and positives and negatives:
                tpr, fpr = tp / positives, (fp / negatives)
                values[name] = float(np.sum((fpr[:-1] - fpr[1:]) * (tpr[:-1] + tpr[1:]) / 2.0))
        else:
            mse = sums[1] / count
            values[name] = float({"mae": sums[0] / count, "mse": mse, "rmse": math.sqrt(mse)}[name])
    return values
