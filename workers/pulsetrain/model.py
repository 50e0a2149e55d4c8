"""The Keras model a pipeline trains, and the pieces of its graph that travel with it.

All features are flattened and concatenated in declared order into one float vector, normalised with
`(x - mean) / std` held in variables (so the statistics are checkpointed and exported inside the
SavedModel), then fed to a built-in `linear` or `mlp` network or to the user's own builder
(`model.custom: "module:function"`, called with the `WorkerConfig`, returning a Keras model that takes
`[batch, data.feature_size]` float32 and returns logits (classification: `numClasses` wide; binary
and regression: 1 wide)).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import numpy.typing as npt
import tensorflow as tf

from pulsetrain.config import WorkerConfig
from pulsetrain.hooks import load_hook


class Normalizer(tf.Module):
    """`(x - mean) / std` with statistics in variables; identity until `set` is called."""

    def __init__(self, size: int) -> None:
        super().__init__(name="normalizer")
        self.mean = tf.Variable(tf.zeros([size]), trainable=False, name="mean")
        self.std = tf.Variable(tf.ones([size]), trainable=False, name="std")
        self.ready = tf.Variable(False, trainable=False, name="ready")

    def set(self, mean: npt.ArrayLike, std: npt.ArrayLike) -> None:
        std_array = np.asarray(std, dtype=np.float32)
        self.mean.assign(np.asarray(mean, dtype=np.float32))
        self.std.assign(np.where(std_array > 1e-6, std_array, 1.0))
        self.ready.assign(True)

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return (x - self.mean) / self.std


def output_width(config: WorkerConfig) -> int:
    return int(config.model.num_classes or 0) if config.model.task == "classification" else 1


def build_network(config: WorkerConfig) -> keras.Model:
    model_cfg, size = config.model, config.data.feature_size
    if model_cfg.custom:
        builder = load_hook(model_cfg.custom, "model.custom")
        network = builder(config)
        if not isinstance(network, keras.Model):
            raise TypeError(f"model.custom {model_cfg.custom!r} returned {type(network).__name__}, not a keras.Model")
        return network
    layers: list[Any] = [keras.Input((size,), name="features")]
    if model_cfg.builtin == "mlp":
        for units in model_cfg.mlp.hidden_units:
            layers.append(keras.layers.Dense(units, activation=model_cfg.mlp.activation))
            if model_cfg.mlp.dropout:
                layers.append(keras.layers.Dropout(model_cfg.mlp.dropout))
    layers.append(keras.layers.Dense(output_width(config), name="logits"))
    return keras.Sequential(layers, name=f"pulsetrain_{model_cfg.builtin}")


def build_optimizer(config: WorkerConfig) -> keras.optimizers.Optimizer:
    classes = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD,
               "rmsprop": keras.optimizers.RMSprop, "adagrad": keras.optimizers.Adagrad}
    return classes[config.model.optimizer](learning_rate=config.model.learning_rate)


def per_example_loss(config: WorkerConfig, labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Unreduced loss, one value per row (padding rows are weighted out by the caller)."""
    task, name = config.model.task, config.model.loss
    if task == "classification":
        return keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    if task == "binary":
        labels = tf.reshape(tf.cast(labels, tf.float32), [-1, 1])
        return keras.losses.binary_crossentropy(labels, logits, from_logits=True)
    error = tf.reshape(logits, [-1]) - tf.reshape(tf.cast(labels, tf.float32), [-1])
    if name == "mae":
        return tf.abs(error)
    if name == "huber":
        return tf.where(tf.abs(error) <= 1.0, 0.5 * tf.square(error), tf.abs(error) - 0.5)
    return tf.square(error)


def predictions(config: WorkerConfig, logits: tf.Tensor) -> dict[str, tf.Tensor]:
    """What the serving signature returns for a batch of logits."""
    if config.model.task == "classification":
        probabilities = tf.nn.softmax(logits)
        return {"probabilities": probabilities, "class": tf.argmax(probabilities, axis=-1)}
    if config.model.task == "binary":
        probability = tf.sigmoid(tf.reshape(logits, [-1]))
        return {"probability": probability, "class": tf.cast(probability > 0.5, tf.int64)}
    return {"prediction": tf.reshape(logits, [-1])}
