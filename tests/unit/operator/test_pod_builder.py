"""Worker pods: identity, restricted security, TF_CONFIG and env order, mounts, and the spec hash."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from pulsetrain.tfconfig import tf_config_from_env
from pulsetrain_operator import defaults
from pulsetrain_operator.builders.config import worker_config
from pulsetrain_operator.builders.configmap import worker_config_map
from pulsetrain_operator.builders.pod import spec_hash, worker_pod
from pulsetrain_operator.builders.service import worker_service
from pulsetrain_operator.builders.tfconfig import tf_config
from pulsetrain_operator.names import (
    ATTEMPT_LABEL,
    MAX_NAME_LENGTH,
    SPEC_HASH_ANNOTATION,
    WORKER_INDEX_LABEL,
    owner_reference,
)
from pulsetrain_operator.settings import Settings, SettingsError
from tests.unit.operator import samples

SETTINGS = Settings()
Edit = Callable[[dict[str, Any]], object]


def container(pod: dict[str, Any]) -> dict[str, Any]:
    [only] = pod["spec"]["containers"]
    assert isinstance(only, dict)
    return only


def mounts(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """volume name → {mountPath, readOnly, and the volume's source}."""
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    return {m["name"]: {**m, **volumes[m["name"]]} for m in container(pod)["volumeMounts"]}


def env_names(pod: dict[str, Any]) -> list[str]:
    return [e["name"] for e in container(pod)["env"]]


def test_identity_and_labels() -> None:
    tp = samples.full()
    pod = worker_pod(tp, 2, 4, SETTINGS)
    meta = pod["metadata"]
    assert (pod["apiVersion"], pod["kind"]) == ("v1", "Pod")
    assert meta["name"] == "digits-worker-2"
    assert meta["namespace"] == "ml"
    assert meta["labels"][WORKER_INDEX_LABEL] == "2"
    assert meta["labels"][ATTEMPT_LABEL] == "4"
    assert meta["annotations"] == {SPEC_HASH_ANNOTATION: spec_hash(tp, SETTINGS)}
    assert meta["ownerReferences"] == [owner_reference(tp)]
    assert pod["spec"]["hostname"] == "digits-worker-2"
    assert pod["spec"]["subdomain"] == worker_service(tp)["metadata"]["name"]


def test_bare_pod_without_api_access() -> None:
    spec = worker_pod(samples.minimal(), 0, 0, SETTINGS)["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["enableServiceLinks"] is False
    assert spec["automountServiceAccountToken"] is False


def test_restricted_pod_security_standard() -> None:
    pod = worker_pod(samples.full(), 0, 0, SETTINGS)
    assert pod["spec"]["securityContext"] == {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000,
                                              "fsGroup": 1000, "fsGroupChangePolicy": "OnRootMismatch",
                                              "seccompProfile": {"type": "RuntimeDefault"}}
    ctx = container(pod)["securityContext"]
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert not {"privileged", "runAsUser", "runAsNonRoot"} & ctx.keys()  # nothing that could loosen the pod's
    assert not {"hostNetwork", "hostPID", "hostIPC"} & pod["spec"].keys()
    forbidden = {"hostPath", "nfs", "iscsi", "rbd", "cephfs", "glusterfs", "flexVolume"}
    assert all(not forbidden & v.keys() for v in pod["spec"]["volumes"])


def test_container_defaults() -> None:
    c = container(worker_pod(samples.minimal(), 0, 0, SETTINGS))
    assert c["name"] == "worker"
    assert c["image"] == SETTINGS.worker_image
    assert c["imagePullPolicy"] == defaults.IMAGE_PULL_POLICY
    assert c["command"] == list(defaults.WORKER_COMMAND)
    assert c["args"] == ["--config", f"{defaults.CONFIG_DIR}/{defaults.CONFIG_KEY}",
                         "--termination-log", defaults.TERMINATION_LOG]
    assert c["terminationMessagePath"] == defaults.TERMINATION_LOG
    assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert "resources" not in c


def test_container_from_spec() -> None:
    c = container(worker_pod(samples.full(), 0, 0, Settings(worker_image="unused/image:0")))
    worker = samples.FULL_SPEC["worker"]
    assert c["image"] == worker["image"]
    assert c["imagePullPolicy"] == "Always"
    assert c["command"] == worker["command"]
    assert c["resources"] == worker["resources"]


def test_operator_image_setting_used_when_spec_has_none() -> None:
    c = container(worker_pod(samples.minimal(), 0, 0, Settings(worker_image="mirror.example/worker:9")))
    assert c["image"] == "mirror.example/worker:9"


def test_scheduling_fields_passed_through_only_when_set() -> None:
    keys = {"serviceAccountName", "nodeSelector", "tolerations", "affinity", "imagePullSecrets"}
    full = worker_pod(samples.full(), 0, 0, SETTINGS)["spec"]
    assert {k: full[k] for k in keys} == {k: samples.FULL_SPEC["worker"][k] for k in keys}
    assert not keys & worker_pod(samples.minimal(), 0, 0, SETTINGS)["spec"].keys()
    empty = samples.edited(samples.minimal(), lambda s: s.update(worker={"nodeSelector": {}, "tolerations": []}))
    assert not keys & worker_pod(empty, 0, 0, SETTINGS)["spec"].keys()


def test_image_pull_secrets_from_the_spec_else_the_operator_setting() -> None:
    mirror = Settings(worker_image="mirror.example/worker:9", worker_image_pull_secrets=("mirror-a", "mirror-b"))
    assert worker_pod(samples.minimal(), 0, 0, mirror)["spec"]["imagePullSecrets"] == [
        {"name": "mirror-a"}, {"name": "mirror-b"}]
    assert worker_pod(samples.full(), 0, 0, mirror)["spec"]["imagePullSecrets"] == [{"name": "registry-example"}]
    # credentials, not what runs: the operator's default changing restarts no running gang
    assert spec_hash(samples.minimal(), mirror) == spec_hash(samples.minimal(), dataclasses.replace(
        mirror, worker_image_pull_secrets=()))
    assert spec_hash(samples.full(), mirror) != spec_hash(samples.edited(samples.full(), lambda s: s["worker"].update(
        imagePullSecrets=[{"name": "other"}])), mirror)  # a pipeline's own Secrets are part of its spec
    from_env = Settings.from_env({"PULSETRAIN_WORKER_IMAGE_PULL_SECRETS": " a, ,b "})
    assert from_env.worker_image_pull_secrets == ("a", "b")
    assert Settings.from_env({}).worker_image_pull_secrets == ()
    with pytest.raises(SettingsError, match="PULSETRAIN_WORKER_IMAGE_PULL_SECRETS: 'Reg_Cred' is not a Secret name"):
        Settings.from_env({"PULSETRAIN_WORKER_IMAGE_PULL_SECRETS": "ok,Reg_Cred"})
    with pytest.raises(SettingsError, match=r"PULSETRAIN_NAMESPACES: 'ml\.team' is not a namespace name"):
        Settings.from_env({"PULSETRAIN_NAMESPACES": "ml.team"})


def test_termination_grace_period() -> None:
    minimal = worker_pod(samples.minimal(), 0, 0, SETTINGS)["spec"]
    assert minimal["terminationGracePeriodSeconds"] == defaults.TERMINATION_GRACE_PERIOD_SECONDS
    assert worker_pod(samples.full(), 0, 0, SETTINGS)["spec"]["terminationGracePeriodSeconds"] == 90


def test_env_operator_variables_first_then_user_env() -> None:
    tp = samples.full()
    pod = worker_pod(tp, 1, 0, SETTINGS)
    assert env_names(pod) == ["TF_CONFIG", "PULSETRAIN_PIPELINE", "PULSETRAIN_NAMESPACE", "PYTHONUNBUFFERED",
                              "FOO", "TF_CPP_MIN_LOG_LEVEL"]
    env = {e["name"]: e["value"] for e in container(pod)["env"]}
    assert env["TF_CONFIG"] == tf_config(tp, 1)
    assert (env["PULSETRAIN_PIPELINE"], env["PULSETRAIN_NAMESPACE"], env["PYTHONUNBUFFERED"]) == ("digits", "ml", "1")
    parsed = tf_config_from_env(env)
    assert parsed is not None and parsed.task_index == 1 and parsed.num_workers == 3


def test_ports_and_readiness_probe() -> None:
    c = container(worker_pod(samples.full(), 0, 0, SETTINGS))
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"collective": 3333, "metrics": 9200}
    probe = c["readinessProbe"]
    assert probe["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert (probe["periodSeconds"], probe["failureThreshold"]) == (5, 3)


def test_config_map_mounted_where_the_args_point() -> None:
    tp = samples.minimal()
    pod = worker_pod(tp, 0, 0, SETTINGS)
    config = mounts(pod)["config"]
    assert config["configMap"]["name"] == worker_config_map(tp)["metadata"]["name"]
    assert config["mountPath"] == defaults.CONFIG_DIR and config["readOnly"] is True
    assert container(pod)["args"][1] == f"{config['mountPath']}/{defaults.CONFIG_KEY}"


def test_no_secrets_mounted_when_none_configured() -> None:
    by_name = mounts(worker_pod(samples.minimal(), 0, 0, SETTINGS))
    assert set(by_name) == {"config", "storage", "tmp"}
    assert not any("secret" in m for m in by_name.values())


def _secret_mounts(tp: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """secretName → (mountPath, readOnly) for every Secret volume."""
    return {m["secret"]["secretName"]: (m["mountPath"], m["readOnly"])
            for m in mounts(worker_pod(tp, 0, 0, SETTINGS)).values() if "secret" in m}


def test_token_secret_mounted_where_the_worker_configuration_reads_it() -> None:
    tp = samples.token()
    assert _secret_mounts(tp) == {"pulsar-token": (f"{defaults.SECRETS_DIR}/token", True)}
    file = worker_config(tp)["source"]["pulsar"]["authentication"]["token"]["file"]
    assert file == f"{defaults.SECRETS_DIR}/token/jwt"


def test_tls_and_ca_secrets_mounted_where_the_worker_configuration_reads_them() -> None:
    tp = samples.tls()
    assert _secret_mounts(tp) == {"pulsar-client-tls": (f"{defaults.SECRETS_DIR}/tls", True),
                                  "pulsar-ca": (f"{defaults.SECRETS_DIR}/ca", True)}
    pulsar = worker_config(tp)["source"]["pulsar"]
    assert pulsar["authentication"]["tls"]["certFile"].startswith(f"{defaults.SECRETS_DIR}/tls/")
    assert pulsar["tlsTrustCertsFile"].startswith(f"{defaults.SECRETS_DIR}/ca/")


def test_claim_mounted_at_storage_path() -> None:
    storage = mounts(worker_pod(samples.full(), 0, 0, SETTINGS))["storage"]
    assert storage["persistentVolumeClaim"] == {"claimName": "pulsetrain-data"}
    assert storage["mountPath"] == "/data/pulsetrain"
    assert "readOnly" not in storage


def test_without_claim_storage_path_is_a_writable_empty_dir() -> None:
    by_name = mounts(worker_pod(samples.minimal(), 0, 0, SETTINGS))
    assert by_name["storage"]["emptyDir"] == {} and by_name["storage"]["mountPath"] == defaults.STORAGE_PATH
    assert by_name["tmp"]["emptyDir"] == {} and by_name["tmp"]["mountPath"] == "/tmp"


def test_storage_uri_is_not_mounted() -> None:
    tp = samples.edited(samples.minimal(), lambda s: s.update(storage={"path": "gs://bucket/pulsetrain"}))
    assert "storage" not in mounts(worker_pod(tp, 0, 0, SETTINGS))


def test_name_too_long_for_worker_pods_is_refused() -> None:
    tp = samples.minimal(name="d" * (MAX_NAME_LENGTH + 1))
    with pytest.raises(ValueError, match=f"at most {MAX_NAME_LENGTH}"):
        worker_pod(tp, 0, 0, SETTINGS)


def test_hash_is_short_hex_and_the_same_for_every_worker_and_attempt() -> None:
    tp = samples.full()
    value = spec_hash(tp, SETTINGS)
    assert len(value) == 16 and int(value, 16) >= 0
    hashes = {worker_pod(tp, i, a, SETTINGS)["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
              for i in range(3) for a in range(2)}
    assert hashes == {value}


RESTARTING_EDITS: dict[str, Edit] = {
    "workers": lambda s: s["training"].update(workers=4),
    "image": lambda s: s["worker"].update(image="registry.example/pulsetrain/worker:1.2.4"),
    "model": lambda s: s["model"].update(learningRate=0.02),
    "batchSize": lambda s: s["training"].update(batchSize=64),
    "env": lambda s: s["worker"]["env"].append({"name": "BAR", "value": "baz"}),
    "resources": lambda s: s["worker"]["resources"]["limits"].update(memory="8Gi"),
    "port": lambda s: s["worker"].update(port=4444),
    "terminationGracePeriodSeconds": lambda s: s["runPolicy"].update(terminationGracePeriodSeconds=30),
    "token secret": lambda s: s["source"]["pulsar"].update(
        authentication={"token": {"secretName": "other-token", "key": "jwt"}}),
}

NON_RESTARTING_EDITS: dict[str, Edit] = {
    "suspend": lambda s: s["runPolicy"].update(suspend=True),
    "backoffLimit": lambda s: s["runPolicy"].update(backoffLimit=9),
    "ttlSecondsAfterFinished": lambda s: s["runPolicy"].update(ttlSecondsAfterFinished=60),
    "activeDeadlineSeconds": lambda s: s["runPolicy"].update(activeDeadlineSeconds=99),
    "cleanPodPolicy": lambda s: s["runPolicy"].update(cleanPodPolicy="None"),
    "pendingTimeoutSeconds": lambda s: s["runPolicy"].update(pendingTimeoutSeconds=60),
    "restartBackoffSeconds": lambda s: s["runPolicy"].update(restartBackoffSeconds=60),
}


@pytest.mark.parametrize("edit", RESTARTING_EDITS.values(), ids=list(RESTARTING_EDITS))
def test_hash_changes_with_what_shapes_the_pods(edit: Edit) -> None:
    tp = samples.full()
    assert spec_hash(samples.edited(tp, edit), SETTINGS) != spec_hash(tp, SETTINGS)


@pytest.mark.parametrize("edit", NON_RESTARTING_EDITS.values(), ids=list(NON_RESTARTING_EDITS))
def test_hash_ignores_run_policy_the_operator_applies_itself(edit: Edit) -> None:
    tp = samples.full()
    assert spec_hash(samples.edited(tp, edit), SETTINGS) == spec_hash(tp, SETTINGS)


def test_hash_follows_the_operator_image_only_when_the_spec_names_none() -> None:
    other = Settings(worker_image="mirror.example/worker:9")
    assert spec_hash(samples.minimal(), other) != spec_hash(samples.minimal(), SETTINGS)
    assert spec_hash(samples.full(), other) == spec_hash(samples.full(), SETTINGS)


def test_hash_unchanged_when_the_api_server_fills_in_defaults() -> None:
    def fill(spec: dict[str, Any]) -> None:
        spec["source"]["pulsar"].update(subscription=defaults.SUBSCRIPTION, subscriptionType=defaults.SUBSCRIPTION_TYPE,
                                        initialPosition=defaults.INITIAL_POSITION)
        spec["training"] = {"workers": defaults.WORKERS, "mode": defaults.MODE}
        spec["storage"] = {"path": defaults.STORAGE_PATH}
        spec["worker"] = {"imagePullPolicy": defaults.IMAGE_PULL_POLICY, "command": list(defaults.WORKER_COMMAND),
                          "port": defaults.COLLECTIVE_PORT, "metricsPort": defaults.METRICS_PORT}
        spec["runPolicy"] = {"backoffLimit": defaults.BACKOFF_LIMIT, "cleanPodPolicy": defaults.CLEAN_POD_POLICY,
                             "suspend": False,
                             "terminationGracePeriodSeconds": defaults.TERMINATION_GRACE_PERIOD_SECONDS}

    tp = samples.minimal()
    assert spec_hash(samples.edited(tp, fill), SETTINGS) == spec_hash(tp, SETTINGS)
