"""TF_CONFIG: what the operator writes, the worker's own parser reads back."""

from __future__ import annotations

import json

import pytest

from pulsetrain.tfconfig import tf_config_from_env
from pulsetrain_operator import defaults
from pulsetrain_operator.builders.tfconfig import tf_config
from tests.unit.operator import samples


def test_round_trip_through_the_worker_parser() -> None:
    tp = samples.full()  # 3 workers, port 3333
    expected = tuple(f"digits-worker-{i}.digits-workers.ml.svc:3333" for i in range(3))
    for index in range(3):
        parsed = tf_config_from_env({"TF_CONFIG": tf_config(tp, index)})
        assert parsed is not None
        assert parsed.workers == expected
        assert parsed.task_type == "worker"
        assert parsed.task_index == index
        assert parsed.is_chief == (index == 0)


def test_defaults_workers_and_port() -> None:
    doc = json.loads(tf_config(samples.minimal(), 0))
    workers = doc["cluster"]["worker"]
    assert len(workers) == defaults.WORKERS
    assert all(w.endswith(f".digits-workers.ml.svc:{defaults.COLLECTIVE_PORT}") for w in workers)
    assert doc["task"] == {"type": "worker", "index": 0}


def test_every_worker_sees_the_same_cluster() -> None:
    tp = samples.full()
    clusters = {json.dumps(json.loads(tf_config(tp, i))["cluster"]) for i in range(3)}
    assert len(clusters) == 1


@pytest.mark.parametrize("index", [-1, 3])
def test_index_outside_the_gang_is_refused(index: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        tf_config(samples.full(), index)
