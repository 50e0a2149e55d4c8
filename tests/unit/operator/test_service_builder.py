"""The headless worker Service: DNS for every pod of the pipeline, ready or not."""

from __future__ import annotations

from pulsetrain_operator import defaults
from pulsetrain_operator.builders.pod import worker_pod
from pulsetrain_operator.builders.predictor import predictor_deployment
from pulsetrain_operator.builders.service import worker_service
from pulsetrain_operator.names import COMPONENT_LABEL, PIPELINE_LABEL, common_labels, owner_reference
from pulsetrain_operator.settings import Settings
from tests.unit.operator import samples


def test_headless_and_publishes_not_ready_addresses() -> None:
    spec = worker_service(samples.minimal())["spec"]
    assert spec["clusterIP"] == "None"
    assert spec["publishNotReadyAddresses"] is True


def test_metadata() -> None:
    tp = samples.minimal()
    svc = worker_service(tp)
    assert (svc["apiVersion"], svc["kind"]) == ("v1", "Service")
    assert svc["metadata"]["name"] == "digits-workers"
    assert svc["metadata"]["namespace"] == "ml"
    assert svc["metadata"]["labels"] == common_labels("digits")
    assert svc["metadata"]["ownerReferences"] == [owner_reference(tp)]


def test_selector_selects_every_attempts_workers_and_no_predictor() -> None:
    tp = samples.serving()
    selector = worker_service(tp)["spec"]["selector"]
    assert selector == {PIPELINE_LABEL: "digits", COMPONENT_LABEL: "worker"}
    for attempt in (0, 7):
        labels = worker_pod(tp, 1, attempt, Settings())["metadata"]["labels"]
        assert selector.items() <= labels.items()
    predictor = predictor_deployment(tp, Settings())["spec"]["template"]["metadata"]["labels"]
    assert not selector.items() <= predictor.items()


def test_ports_default_and_given() -> None:
    ports = {p["name"]: p["port"] for p in worker_service(samples.minimal())["spec"]["ports"]}
    assert ports == {"collective": defaults.COLLECTIVE_PORT, "metrics": defaults.METRICS_PORT}
    ports = {p["name"]: p["port"] for p in worker_service(samples.full())["spec"]["ports"]}
    assert ports == {"collective": 3333, "metrics": 9200}
