"""Data sets that ship inside packages (scikit-learn's), with the schema pulsetrain declares for them.

The tests, benchmarks and examples need real data without a download at run time; scikit-learn
bundles a few small ones. Each comes with its `DataConfig` so a producer and a pipeline agree on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from pulsetrain.config_model import DataConfig, FieldSpec, Format

# name -> (loader attribute in sklearn.datasets, feature name, feature count, label name, classes)
_BUNDLED: dict[str, tuple[str, str, int, str, int]] = {
    "digits": ("load_digits", "pixels", 64, "digit", 10),
    "iris": ("load_iris", "measurements", 4, "species", 3),
    "wine": ("load_wine", "chemistry", 13, "cultivar", 3),
    "breast_cancer": ("load_breast_cancer", "cells", 30, "malignant", 2),
}
DATASETS = tuple(sorted(_BUNDLED))


@dataclass(frozen=True)
class Dataset:
    name: str
    data: DataConfig
    features: dict[str, npt.NDArray[Any]]
    labels: npt.NDArray[Any]
    num_classes: int

    def __len__(self) -> int:
        return len(self.labels)

    def split(self, test_fraction: float, seed: int = 0) -> tuple[Dataset, Dataset]:
        """A reproducible shuffled (train, test) split."""
        order = np.random.default_rng(seed).permutation(len(self))
        cut = len(self) - round(len(self) * test_fraction)
        return self._take(order[:cut]), self._take(order[cut:])

    def _take(self, index: npt.NDArray[Any]) -> Dataset:
        return Dataset(self.name, self.data, {k: v[index] for k, v in self.features.items()}, self.labels[index],
                       self.num_classes)


def load(name: str, message_format: Format = "raw") -> Dataset:
    """Load a bundled data set; `ValueError` names the allowed ones."""
    if name not in _BUNDLED:
        raise ValueError(f"dataset {name!r} is not one of {', '.join(DATASETS)}")
    try:
        import sklearn.datasets
    except ImportError:  # pragma: no cover - depends on the environment
        raise ValueError("bundled data sets need scikit-learn: pip install 'pulsetrain[datasets]'") from None
    attribute, feature, count, label, classes = _BUNDLED[name]
    loader: Callable[[], Any] = getattr(sklearn.datasets, attribute)
    bunch = loader()
    data = DataConfig(
        format=message_format,
        features=(FieldSpec(name=feature, dtype="float32", shape=(count,)),),
        label=FieldSpec(name=label, dtype="int64"),
    )
    features = {feature: np.asarray(bunch.data, dtype=np.float32)}
    return Dataset(name, data, features, np.asarray(bunch.target, dtype=np.int64), classes)
