"""The DNS names the process kubelet writes into pods' hosts files."""

from __future__ import annotations

from typing import Any

from tests.cluster.kubelet import hosts


def pod(name: str, ip: str | None, ready: bool, ns: str = "ml", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": ns, "labels": {"app": "w"}},
        "spec": spec,
        "status": {"podIP": ip, "phase": "Running",
                   "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def headless(name: str, publish_not_ready: bool, ns: str = "ml") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": "None", "selector": {"app": "w"}, "publishNotReadyAddresses": publish_not_ready}}


def test_pod_records_behind_headless_service_with_short_forms_in_own_namespace() -> None:
    eps = [hosts.endpoint_of(pod("w-0", "10.0.0.2", ready=False, hostname="w-0", subdomain="svc"))]
    records = hosts.cluster_records([e for e in eps if e], [headless("svc", True)], "ml")
    names = {name for ip, name in records if ip == "10.0.0.2"}
    assert "w-0.svc.ml.svc.cluster.local" in names
    assert {"w-0.svc.ml.svc", "w-0.svc.ml", "w-0.svc", "svc", "svc.ml.svc.cluster.local"} <= names
    other_ns = {name for _, name in hosts.cluster_records([e for e in eps if e], [headless("svc", True)], "x")}
    assert "w-0.svc" not in other_ns and "w-0.svc.ml" in other_ns


def test_not_ready_pods_are_hidden_unless_service_publishes_them() -> None:
    eps = [hosts.endpoint_of(pod("w-0", "10.0.0.2", ready=False, hostname="w-0", subdomain="svc"))]
    assert hosts.cluster_records([e for e in eps if e], [headless("svc", False)], "ml") == []


def test_pods_without_ip_or_finished_have_no_endpoint() -> None:
    assert hosts.endpoint_of(pod("a", None, ready=True)) is None
    finished = pod("a", "10.0.0.3", ready=False)
    finished["status"]["phase"] = "Succeeded"
    assert hosts.endpoint_of(finished) is None


def test_clusterip_services_are_not_in_hosts() -> None:
    svc = headless("svc", True)
    svc["spec"]["clusterIP"] = "10.96.0.10"
    eps = [hosts.endpoint_of(pod("w-0", "10.0.0.2", ready=True))]
    assert hosts.cluster_records([e for e in eps if e], [svc], "ml") == []


def test_hosts_file_has_own_fqdn_aliases_and_extras() -> None:
    p = pod("w-1", "10.0.0.4", ready=True, hostname="w-1", subdomain="svc",
            hostAliases=[{"ip": "10.0.0.9", "hostnames": ["db"]}])
    text = hosts.hosts_file(p, "10.0.0.4", [("10.0.0.5", "w-2.svc.ml.svc.cluster.local")], {"pulsar": "10.0.0.1"})
    lines = text.splitlines()
    assert "10.0.0.4\tw-1.svc.ml.svc.cluster.local w-1" in lines
    assert "10.0.0.9\tdb" in lines
    assert "10.0.0.5\tw-2.svc.ml.svc.cluster.local" in lines
    assert "10.0.0.1\tpulsar" in lines
    assert lines[1] == "127.0.0.1\tlocalhost"


def test_resolv_conf_search_path() -> None:
    assert "search ml.svc.cluster.local svc.cluster.local cluster.local" in hosts.resolv_conf("ml")
