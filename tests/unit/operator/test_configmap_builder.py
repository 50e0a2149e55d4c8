"""The worker ConfigMap: the rendered configuration under one key, stable bytes, owned by the pipeline."""

from __future__ import annotations

import json

from pulsetrain.config import load_config
from pulsetrain_operator.builders.config import worker_config
from pulsetrain_operator.builders.configmap import worker_config_map
from pulsetrain_operator.defaults import CONFIG_KEY
from pulsetrain_operator.names import common_labels, owner_reference
from tests.unit.operator import samples


def test_metadata() -> None:
    tp = samples.full()
    meta = worker_config_map(tp)["metadata"]
    assert meta["name"] == "digits-worker-config"
    assert meta["namespace"] == "ml"
    assert meta["labels"] == common_labels("digits")
    assert meta["ownerReferences"] == [owner_reference(tp)]


def test_data_is_the_worker_configuration() -> None:
    tp = samples.tls()
    cm = worker_config_map(tp)
    assert list(cm["data"]) == [CONFIG_KEY]
    doc = json.loads(cm["data"][CONFIG_KEY])
    assert doc == worker_config(tp)
    load_config(doc)


def test_same_spec_in_another_key_order_gives_the_same_bytes() -> None:
    tp = samples.full()
    shuffled = samples.resource({key: tp["spec"][key] for key in reversed(list(tp["spec"]))})
    shuffled["spec"]["model"] = dict(reversed(list(tp["spec"]["model"].items())))
    assert list(shuffled["spec"]) != list(tp["spec"])
    assert worker_config_map(shuffled)["data"] == worker_config_map(tp)["data"]
