"""Child names and labels: deterministic, valid DNS labels, and refused with a clear error when they cannot be."""

from __future__ import annotations

import re

import pytest

from pulsetrain_operator.defaults import MAX_WORKERS
from pulsetrain_operator.names import (
    ATTEMPT_LABEL,
    MAX_NAME_LENGTH,
    NAME_PATTERN,
    PIPELINE_LABEL,
    WORKER_INDEX_LABEL,
    PipelineNameError,
    common_labels,
    config_map_name,
    owner_reference,
    pod_name,
    service_name,
    worker_host,
    worker_labels,
)
from tests.unit.operator import samples

DNS_1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def test_child_names() -> None:
    assert service_name("digits") == "digits-workers"
    assert config_map_name("digits") == "digits-worker-config"
    assert pod_name("digits", 0) == "digits-worker-0"
    assert pod_name("digits", 12) == "digits-worker-12"


def test_worker_host_is_pod_under_service_in_namespace() -> None:
    assert worker_host("digits", "ml", 1) == "digits-worker-1.digits-workers.ml.svc"


def test_longest_name_gives_exactly_63_character_pod_names_for_every_index() -> None:
    name = "p" + "x" * (MAX_NAME_LENGTH - 1)
    names = [pod_name(name, i) for i in range(MAX_WORKERS)] + [service_name(name)]
    assert all(DNS_1123_LABEL.fullmatch(n) for n in names)
    assert max(len(n) for n in names) == 63  # the limit is tight, not merely safe
    assert MAX_NAME_LENGTH == 53


def test_name_one_character_too_long_is_refused_with_the_limit() -> None:
    name = "p" * (MAX_NAME_LENGTH + 1)
    for build in (service_name, config_map_name, lambda n: pod_name(n, 0)):
        with pytest.raises(ValueError, match=f"at most {MAX_NAME_LENGTH}"):
            build(name)


@pytest.mark.parametrize("name", ["Digits", "1digits", "digits-", "dig.its", "dig_its", ""])
def test_names_that_are_not_dns_1035_labels_are_refused(name: str) -> None:
    assert not re.match(NAME_PATTERN, name)
    with pytest.raises(PipelineNameError, match="DNS-1035"):
        service_name(name)


@pytest.mark.parametrize("index", [-1, MAX_WORKERS])
def test_worker_index_out_of_range_is_refused(index: int) -> None:
    with pytest.raises(ValueError, match=f"allowed 0..{MAX_WORKERS - 1}"):
        pod_name("digits", index)


def test_common_labels() -> None:
    assert common_labels("digits") == {
        PIPELINE_LABEL: "digits",
        "app.kubernetes.io/name": "pulsetrain-worker",
        "app.kubernetes.io/instance": "digits",
        "app.kubernetes.io/managed-by": "pulsetrain-operator",
        "app.kubernetes.io/component": "worker",
    }


def test_worker_labels_add_index_and_attempt_as_strings() -> None:
    labels = worker_labels("digits", 2, 5)
    assert labels[WORKER_INDEX_LABEL] == "2"
    assert labels[ATTEMPT_LABEL] == "5"
    assert common_labels("digits").items() <= labels.items()


def test_owner_reference_is_the_controller() -> None:
    assert owner_reference(samples.minimal()) == {
        "apiVersion": "pulsetrain.dev/v1alpha1",
        "kind": "TrainingPipeline",
        "name": "digits",
        "uid": samples.UID,
        "controller": True,
        "blockOwnerDeletion": True,
    }
