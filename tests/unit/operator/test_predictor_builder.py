"""Spec → the predictors' ConfigMap and Deployment: the predictor accepts its configuration, the pods pass
the restricted standard, and serving changes roll the predictors without touching the training gang."""

from __future__ import annotations

import json
from typing import Any

from pulsetrain.config import load_config
from pulsetrain.predictor import DRAIN_SECONDS
from pulsetrain_operator import defaults
from pulsetrain_operator.builders.pod import spec_hash
from pulsetrain_operator.builders.predictor import (
    CONFIG_HASH_ANNOTATION,
    predictor_config,
    predictor_config_map,
    predictor_deployment,
    predictor_refusal,
)
from pulsetrain_operator.names import PIPELINE_LABEL, WORKER_INDEX_LABEL
from pulsetrain_operator.settings import Settings
from tests.unit.operator import samples

SETTINGS = Settings(worker_image="pulsetrain/worker:test")


def test_predictor_accepts_its_configuration_and_operator_only_fields_stay_out() -> None:
    tp = samples.serving()
    document = predictor_config(tp)
    assert "replicas" not in document["serving"] and "resources" not in document["serving"]
    config = load_config(document)
    assert config.serving is not None
    assert (config.serving.input_topic, config.serving.output_topic) == ("digits-in", "digits-out")
    assert config.serving.max_batch_size == 32 and config.serving.max_latency_ms == 10
    assert config.storage.export_dir == document["storage"]["exportDir"]  # the trainers' export directory
    data = predictor_config_map(tp)["data"][defaults.PREDICTOR_CONFIG_KEY]
    assert json.loads(data) == document


def pod_template(deployment: dict[str, Any]) -> dict[str, Any]:
    template: dict[str, Any] = deployment["spec"]["template"]
    return template


def test_deployment_runs_the_predictor_as_a_restricted_pod_without_api_access() -> None:
    deployment = predictor_deployment(samples.serving(), SETTINGS)
    assert deployment["metadata"]["name"] == "digits-predictor"
    assert deployment["spec"]["replicas"] == 2
    selector = deployment["spec"]["selector"]["matchLabels"]
    labels = pod_template(deployment)["metadata"]["labels"]
    assert selector.items() <= labels.items() and labels[PIPELINE_LABEL] == "digits"
    assert WORKER_INDEX_LABEL not in labels  # never mistaken for a worker of the gang
    spec = pod_template(deployment)["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    # SIGKILL must not cut the predictor's drain short: the grace period outlasts its deadline
    assert spec["terminationGracePeriodSeconds"] == defaults.PREDICTOR_TERMINATION_GRACE_PERIOD_SECONDS
    assert spec["terminationGracePeriodSeconds"] >= DRAIN_SECONDS + 30
    (container,) = spec["containers"]
    assert container["command"] == list(defaults.PREDICTOR_COMMAND)
    assert container["args"] == ["--config", f"{defaults.CONFIG_DIR}/{defaults.PREDICTOR_CONFIG_KEY}"]
    assert container["image"] == "pulsetrain/worker:test"
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    assert container["resources"] == {"limits": {"cpu": "1", "memory": "1Gi"}}
    config_volume = next(v for v in spec["volumes"] if v["name"] == "config")
    assert config_volume["configMap"]["name"] == "digits-predictor-config"
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == samples.UID


def test_a_serving_change_rolls_the_predictors_and_leaves_the_gang_alone() -> None:
    before = samples.serving()
    after = samples.edited(before, lambda spec: spec["serving"].update(maxBatchSize=256))
    rolled = [pod_template(predictor_deployment(tp, SETTINGS))["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]
              for tp in (before, after)]
    assert rolled[0] != rolled[1]
    assert spec_hash(before, SETTINGS) == spec_hash(after, SETTINGS)
    assert spec_hash(samples.minimal(), SETTINGS) == spec_hash(before, SETTINGS)  # adding serving: no restart


def test_replicas_alone_do_not_change_the_pod_template() -> None:
    before = samples.serving()
    after = samples.edited(before, lambda spec: spec["serving"].update(replicas=5))
    assert pod_template(predictor_deployment(before, SETTINGS)) == pod_template(predictor_deployment(after, SETTINGS))
    assert predictor_deployment(after, SETTINGS)["spec"]["replicas"] == 5


def test_only_what_the_predictors_run_rolls_them() -> None:
    def rolled(edit: Any) -> bool:
        before = samples.serving()
        after = samples.edited(before, edit)
        return bool(pod_template(predictor_deployment(before, SETTINGS)) != pod_template(
            predictor_deployment(after, SETTINGS)))

    assert not rolled(lambda spec: spec.setdefault("training", {}).update(maxSteps=7))
    assert not rolled(lambda spec: spec.setdefault("worker", {}).update(
        replicas=4, resources={"limits": {"cpu": "3"}}))
    assert rolled(lambda spec: spec.setdefault("worker", {}).update(env=[{"name": "A", "value": "1"}]))
    assert rolled(lambda spec: spec["data"].update(format="json"))
    assert rolled(lambda spec: spec["serving"].update(resources={"limits": {"cpu": "2"}}))
    assert "training" not in predictor_config(samples.serving())


def test_predictor_pods_share_the_workers_pod_settings() -> None:
    """Service account, scheduling and image pull Secrets: the predictors run the workers' image."""
    mirror = Settings(worker_image="mirror.example/worker:9", worker_image_pull_secrets=("mirror-a",))
    spec = pod_template(predictor_deployment(samples.edited(samples.full(), lambda s: s.update(
        serving=samples.serving()["spec"]["serving"])), mirror))["spec"]
    worker = samples.FULL_SPEC["worker"]
    for key in ("serviceAccountName", "nodeSelector", "tolerations", "affinity", "imagePullSecrets"):
        assert spec[key] == worker[key], key
    assert pod_template(predictor_deployment(samples.serving(), mirror))["spec"]["imagePullSecrets"] == [
        {"name": "mirror-a"}]


def test_predictor_refusal_is_what_the_predictors_parser_says() -> None:
    assert predictor_refusal(samples.minimal()) is None  # serves nothing
    assert predictor_refusal(samples.serving()) is None
    topic = samples.serving()["spec"]["source"]["pulsar"]["topic"]
    answering_into_training = samples.edited(samples.serving(), lambda s: s["serving"].update(outputTopic=topic))
    refusal = predictor_refusal(answering_into_training)
    assert refusal is not None and refusal.startswith("spec.serving.outputTopic: "), refusal
