"""`pulsetrain run` checks a pipeline file as the API server does: same refusals, same words, same defaults.

The cases come from `tests/integration/test_crd_validation.py`, where the real kube-apiserver refuses
them (and stores the sample with its defaults): the local checker must agree with it case by case.
The only difference is deliberate: a missing `serviceUrl` means the embedded broker here.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pulsetrain import pipeline_file, structural
from pulsetrain.config import load_config
from pulsetrain.pipeline_file import PipelineError, check
from pulsetrain_operator import crd
from tests.integration.test_crd_validation import (
    DELETE,
    EVERY_OPTIONAL_FIELD,
    INVALID,
    Invalid,
    _expected_digits_spec,
    digits,
    edited,
)

ROOT = Path(__file__).resolve().parents[2]
EMBEDDED_BY_DESIGN = {"service-url-missing"}  # the API server requires serviceUrl; locally it means "embedded"
CLUSTER_ONLY = {"storage-without-a-claim", "serving-deleted-with-a-finished-pipeline"}  # crd.CLUSTER_ONLY_RULES


def refusal(document: dict[str, Any], **overrides: Any) -> str:
    with pytest.raises(PipelineError) as caught:
        check(document, **overrides)
    return str(caught.value)


def test_digits_sample_gets_the_api_servers_defaults() -> None:
    pipeline = check(digits())
    assert pipeline.spec == _expected_digits_spec()
    assert (pipeline.name, pipeline.namespace, pipeline.workers, pipeline.embedded) == ("digits", "default", 2, False)
    assert pipeline.unchecked_rules == ()


def test_continuous_sample_and_every_optional_field_are_accepted_as_given() -> None:
    check(yaml.safe_load((ROOT / "manifests" / "samples" / "continuous.yaml").read_text()))
    stored = check(edited(digits(), EVERY_OPTIONAL_FIELD)).resource
    for path, given in EVERY_OPTIONAL_FIELD.items():
        value: Any = stored
        for key in path.split("."):
            value = value[key]
        assert value == given, path


@pytest.mark.parametrize("case", [c for c in INVALID if c.id not in EMBEDDED_BY_DESIGN | CLUSTER_ONLY],
                         ids=[c.id for c in INVALID if c.id not in EMBEDDED_BY_DESIGN | CLUSTER_ONLY])
def test_refuses_what_the_api_server_refuses_in_its_words(case: Invalid) -> None:
    message = refusal(edited(digits(), case.edits))
    assert case.field in message and case.word in message, message


@pytest.mark.parametrize("case", [c for c in INVALID if c.id in CLUSTER_ONLY],
                         ids=[c.id for c in INVALID if c.id in CLUSTER_ONLY])
def test_cluster_only_rules_do_not_apply_on_one_machine(case: Invalid) -> None:
    """Storage without a claim, or serving with a TTL, is refused by the API server but runs with `pulsetrain run`:
    one machine shares one state directory and deletes nothing."""
    check(edited(digits(), case.edits))
    assert len(CLUSTER_ONLY) == len(crd.CLUSTER_ONLY_RULES)


def test_missing_or_embedded_service_url_means_the_embedded_broker() -> None:
    for edits in ({"spec.source.pulsar.serviceUrl": DELETE}, {"spec.source.pulsar.serviceUrl": "embedded"}):
        pipeline = check(edited(digits(), edits))
        assert pipeline.embedded
        assert "adminUrl" not in pipeline.spec["source"]["pulsar"]  # the embedded broker has no admin API
    assert check(digits(), service_url="embedded").embedded
    overridden = check(digits(), service_url="pulsar://10.0.0.9:6650")
    assert not overridden.embedded and overridden.spec["source"]["pulsar"]["serviceUrl"] == "pulsar://10.0.0.9:6650"
    assert "should match" in refusal(digits(), service_url="http://pulsar:6650")


def test_every_problem_is_reported_at_once_with_its_path() -> None:
    message = refusal(edited(digits(), {"spec.training.workers": 0, "spec.training.mode": "x",
                                        "spec.source.pulsar.foo": 1, "spec.model.bar": 2,
                                        "spec.data.format": DELETE}))
    for expected in ("spec.training.workers: Invalid value: 0: spec.training.workers in body should be greater "
                     "than or equal to 1",
                     'spec.training.mode: Unsupported value: "x": supported values: "bounded", "continuous"',
                     'unknown field "spec.source.pulsar.foo"', 'unknown field "spec.model.bar"',
                     "spec.data.format: Required value"):
        assert expected in message, message


@pytest.mark.parametrize(("edits", "expected"), [
    ({"spec.training": 5}, 'spec.training: Invalid value: "integer": spec.training in body must be of type object'),
    ({"spec.runPolicy": {"suspend": "yes"}}, "spec.runPolicy.suspend in body must be of type boolean"),
    ({"spec.storage.claimName": "a" * 300}, "spec.storage.claimName: Too long: may not be more than 253 bytes"),
    ({"spec.worker": {"image": ""}}, "spec.worker.image in body should be at least 1 chars long"),
    ({"spec.data.features": []}, "spec.data.features in body should have at least 1 items"),
    ({"spec.data.features": [{"name": f"f{i}", "dtype": "float32"} for i in range(257)]},
     "spec.data.features: Too many: 257: must have at most 256 items"),
    ({"spec.model.mlp": {"dropout": 1}}, "spec.model.mlp.dropout in body should be less than 1"),
    ({"spec.worker": {"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}},
     'spec.worker.env[1]: Duplicate value: {"name":"A"}'),
    ({"spec.worker": {"resources": {"limits": {"cpu": "lots"}}}},
     'spec.worker.resources.limits.cpu: Invalid value: "lots"'),
    ({"spec.worker": {"resources": {"limits": {"cpu": 1.5}}}}, "must be of type integer,string"),
    ({"spec.training.workers": 2.5}, 'spec.training.workers in body must be of type integer: "number"'),
    ({"spec.data.features": [{"name": "pixels", "dtype": "float32", "shape": [0]}]},
     "spec.data.features[0].shape[0] in body should be greater than or equal to 1"),
])
def test_structural_checks_word_their_refusals_like_the_api_server(edits: dict[str, Any], expected: str) -> None:
    assert expected in refusal(edited(digits(), edits))


def test_nulls_are_pruned_and_integral_floats_are_integers() -> None:
    pipeline = check(edited(digits(), {"spec.training.workers": 3.0, "spec.runPolicy": None,
                                       "spec.worker": {"resources": {"limits": {"cpu": 2.0}}}}))
    assert pipeline.workers == 3 and isinstance(pipeline.spec["training"]["workers"], int)
    assert pipeline.spec["runPolicy"]["backoffLimit"] == 3  # null dropped, then defaulted
    assert pipeline.spec["worker"]["resources"]["limits"]["cpu"] == 2
    assert pipeline.spec["worker"]["port"] == 2222  # defaults inside a given object


def test_workers_flag_overrides_the_spec_and_is_checked_like_it() -> None:
    assert check(digits(), workers=5).workers == 5
    assert "spec.training.workers in body should be greater than or equal to 1" in refusal(digits(), workers=0)


def test_identity_and_kind_are_checked() -> None:
    assert "apiVersion: Unsupported value" in refusal(edited(digits(), {"apiVersion": "pulsetrain.dev/v1"}))
    assert "metadata.name: Required value" in refusal(edited(digits(), {"metadata.name": DELETE}))
    assert "metadata.name must be a DNS label" in refusal(edited(digits(), {"metadata.name": "Digits"}))
    assert check(edited(digits(), {"metadata.namespace": "ml"})).namespace == "ml"


def test_file_must_hold_exactly_one_pipeline(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yaml"
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "token"}}
    path.write_text(yaml.safe_dump_all([secret, digits()]))
    assert pipeline_file.load(path).name == "digits"  # other kinds in the file are left alone
    path.write_text(yaml.safe_dump_all([digits(), digits()]))
    with pytest.raises(PipelineError, match="expected exactly one document of kind TrainingPipeline, found 2"):
        pipeline_file.load(path)
    path.write_text("spec: [unclosed")
    with pytest.raises(PipelineError, match="not valid YAML"):
        pipeline_file.load(path)
    with pytest.raises(PipelineError, match="cannot read it"):
        pipeline_file.load(tmp_path / "missing.yaml")


def test_without_a_cel_library_the_rules_are_listed_as_not_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cel", None)  # what an environment without the `local` extra sees
    pipeline = check(edited(digits(), {"spec.data.label.name": "pixels"}))  # a CEL-only refusal passes
    assert any("self.features.all(f, f.name != self.label.name)" in rule for rule in pipeline.unchecked_rules)
    assert not any("oldSelf" in rule for rule in pipeline.unchecked_rules)  # transition rules never apply


def test_cel_rules_are_skipped_where_the_value_is_already_invalid() -> None:
    message = refusal(edited(digits(), {"spec.model.task": 7}))
    assert "spec.model.task: Unsupported value: 7" in message or "must be of type string" in message
    assert "numClasses is only allowed" not in message  # the rule reading task was not evaluated
    assert pipeline_file.NOT_CHECKED in message


def test_every_rule_of_the_crd_is_found_and_transition_rules_are_marked() -> None:
    rules = list(structural.cel_rules(crd.openapi_schema(), check(digits()).resource))
    transition = {r.path for r in rules if r.is_transition}
    assert transition == {"spec.source.pulsar.topic", "spec.source.pulsar.subscription", "spec.data", "spec.model",
                          "spec.storage"}
    custom = next(r for r in rules if "has(self.custom)" in r.rule and r.path == "spec.model")
    assert custom.field_path == "spec.model.custom"


def test_local_worker_config_is_the_operators_with_this_machines_paths(tmp_path: Path) -> None:
    document = edited(digits(), {"spec.source.pulsar.authentication": {"token": {"secretName": "t", "key": "jwt"}},
                                 "spec.worker": {"env": [{"name": "A", "value": "1"},
                                                         {"name": "B", "valueFrom": {"fieldRef": {}}}]}})
    pipeline = check(document)
    doc = pipeline_file.local_worker_config(pipeline, tmp_path / "state", service_url="pulsar://127.0.0.1:1234",
                                            admin_url="http://127.0.0.1:8080", secrets_dir=tmp_path / "secrets")
    state = (tmp_path / "state").resolve()
    assert doc["storage"] == {"checkpointDir": f"{state}/checkpoints", "exportDir": f"{state}/export",
                              "logDir": f"{state}/logs"}
    pulsar = doc["source"]["pulsar"]
    assert pulsar["serviceUrl"] == "pulsar://127.0.0.1:1234" and pulsar["adminUrl"] == "http://127.0.0.1:8080"
    assert pulsar["authentication"] == {"token": {"file": f"{(tmp_path / 'secrets').resolve()}/token/jwt"}}
    assert doc["observability"]["host"] == "127.0.0.1"
    assert doc["model"] == pipeline.spec["model"] and doc["pipeline"] == {"name": "digits", "namespace": "default"}
    config = load_config(doc)  # what the worker reads accepts it
    assert config.training.batch_size == 64 and config.source.pulsar.subscription == "pulsetrain"
    assert pipeline_file.worker_env(pipeline) == ({"A": "1"}, ["B"])


def test_embedded_pipelines_lose_the_clusters_admin_url(tmp_path: Path) -> None:
    pipeline = check(digits(), service_url="embedded")
    doc = pipeline_file.local_worker_config(pipeline, tmp_path, service_url="pulsar://127.0.0.1:1234",
                                            admin_url="http://ignored:8080")
    assert "adminUrl" not in doc["source"]["pulsar"]


def test_example_pipeline_runs_embedded_and_its_worker_configuration_is_valid(tmp_path: Path) -> None:
    pipeline = pipeline_file.load(ROOT / "examples" / "digits.yaml")
    assert pipeline.embedded and pipeline.workers == 2
    config = load_config(pipeline_file.local_worker_config(pipeline, tmp_path, service_url="pulsar://127.0.0.1:1"))
    assert config.data.feature_size == 64 and config.training.idle_timeout_seconds == 10
