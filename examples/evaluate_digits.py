"""Evaluate an exported digits model on the held-out digits: the last step of `make demo`.

`pulsetrain produce --dataset digits --split train` publishes a seeded 80 % of scikit-learn's digits;
this script loads the newest SavedModel version under the export directory, predicts the other 20 %
(the same seed, so no image was trained on) through its `serving_default` signature, exactly as a
serving client would send them, and prints the accuracy and where the model is. It exits 1 when the
accuracy is below `--min-accuracy`.

Usage: python examples/evaluate_digits.py [EXPORT_DIR] [--min-accuracy 0.95]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def newest_version(export_dir: Path) -> Path:
    versions = sorted((p for p in export_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)) \
        if export_dir.is_dir() else []
    if not versions:
        raise SystemExit(f"no exported model version under {export_dir}: did `pulsetrain run` finish?")
    return versions[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("export_dir", type=Path, nargs="?", default=Path(".pulsetrain/digits/export"))
    parser.add_argument("--min-accuracy", type=float, default=0.95)
    parser.add_argument("--test-fraction", type=float, default=0.2, help="as given to pulsetrain produce")
    parser.add_argument("--seed", type=int, default=0, help="as given to pulsetrain produce")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    from pulsetrain import datasets

    model_dir = newest_version(args.export_dir)
    _, held_out = datasets.load("digits").split(args.test_fraction, args.seed)
    serve = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    predicted = serve(pixels=tf.constant(held_out.features["pixels"]))["class"].numpy()
    accuracy = float(np.mean(predicted == held_out.labels))
    verdict = "ok" if accuracy >= args.min_accuracy else f"BELOW {args.min_accuracy:.2f}"
    print(f"held-out accuracy {accuracy:.4f} on {len(held_out)} digits never trained on ({verdict})")
    print(f"model: {model_dir.resolve()} (SavedModel, signature serving_default: pixels float32[N, 64] -> class)")
    return 0 if accuracy >= args.min_accuracy else 1


if __name__ == "__main__":
    sys.exit(main())
