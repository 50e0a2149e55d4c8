"""Exported SavedModels: numbered versions (the layout TensorFlow Serving reads), written atomically.

The serving signature `serving_default` takes the pipeline's named raw features (their declared
dtypes and shapes, any batch size), flattens them in declared order, normalises inside the graph and
returns the task's predictions, so a client sends exactly what the topic carries. Every worker calls
`export` (MultiWorkerMirroredStrategy needs all of them in the save); the chief's copy is written to a
temporary folder, then renamed to the next version number; the others' copies are discarded.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from pulsetrain.config import WorkerConfig
from pulsetrain.model import Normalizer, predictions


class ServingModule(tf.Module):
    def __init__(self, config: WorkerConfig, network: keras.Model, normalizer: Normalizer) -> None:
        super().__init__(name="pulsetrain_serving")
        self.network, self.normalizer = network, normalizer
        specs = {f.name: tf.TensorSpec([None, *f.shape], f.dtype, name=f.name) for f in config.data.features}
        sizes = [(f.name, f.size) for f in config.data.features]

        @tf.function(input_signature=[specs])
        def serve(inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
            flat = [tf.reshape(tf.cast(inputs[name], tf.float32), [-1, size]) for name, size in sizes]
            logits = self.network(self.normalizer(tf.concat(flat, axis=1)), training=False)
            return predictions(config, logits)

        self.serve = serve


def next_version(export_dir: Path) -> int:
    versions = [int(p.name) for p in export_dir.iterdir() if p.name.isdigit()] if export_dir.exists() else []
    return max(versions, default=0) + 1


def latest_export_step(export_dir: Path) -> int | None:
    """The training step of the newest exported version (from its `pulsetrain.json`); None when there is none."""
    version = next_version(export_dir) - 1
    try:
        return int(json.loads((export_dir / str(version) / "pulsetrain.json").read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def export(config: WorkerConfig, network: keras.Model, normalizer: Normalizer, *, is_chief: bool,
           worker_index: int, step: int, samples: int, metrics: dict[str, Any]) -> tuple[int, Path] | None:
    """Write the next version (chief) or a discarded copy (others); returns (version, path) on the chief."""
    export_dir = Path(config.storage.export_dir)
    export_dir.mkdir(parents=True, exist_ok=True)
    module = ServingModule(config, network, normalizer)
    version = next_version(export_dir)
    scratch = export_dir / (f".tmp-{version}" if is_chief else f".worker-{worker_index}-scratch")
    shutil.rmtree(scratch, ignore_errors=True)
    tf.saved_model.save(module, str(scratch), signatures={"serving_default": module.serve})
    if not is_chief:
        shutil.rmtree(scratch, ignore_errors=True)
        return None
    (scratch / "pulsetrain.json").write_text(json.dumps({
        "pipeline": config.pipeline.name, "namespace": config.pipeline.namespace, "version": version,
        "step": step, "samples": samples, "metrics": metrics, "exportedAt": time.time(),
        "features": [{"name": f.name, "dtype": f.dtype, "shape": list(f.shape)} for f in config.data.features],
        "task": config.model.task,
    }, indent=2))
    final = export_dir / str(version)
    scratch.rename(final)
    return version, final
