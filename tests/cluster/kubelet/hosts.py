"""/etc/hosts for each pod: the names cluster DNS would answer, computed from pods and services.

There is no CoreDNS in the test bed, so the process kubelet writes what DNS would resolve into each
pod's hosts file: the pod's own names, `{hostname}.{subdomain}.{namespace}.svc.cluster.local` for pods
behind a headless service, and the headless service name itself (every matching pod address). As in
CoreDNS, an endpoint is published when the pod is ready or the service has
`publishNotReadyAddresses: true`. Shorter forms are listed where a pod's DNS search path would reach
them. ClusterIP services are not routed (no kube-proxy); use headless services or pod names.
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.cluster.kubelet.api import Obj

CLUSTER_DOMAIN = "cluster.local"


@dataclass(frozen=True)
class Endpoint:
    namespace: str
    ip: str
    hostname: str | None
    subdomain: str | None
    labels: tuple[tuple[str, str], ...]
    ready: bool


def endpoint_of(pod: Obj) -> Endpoint | None:
    status = pod.get("status", {})
    ip = status.get("podIP")
    if not ip or pod["metadata"].get("deletionTimestamp") or status.get("phase") in ("Succeeded", "Failed"):
        return None
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", [])
    )
    spec = pod.get("spec", {})
    return Endpoint(
        namespace=pod["metadata"]["namespace"],
        ip=ip,
        hostname=spec.get("hostname"),
        subdomain=spec.get("subdomain"),
        labels=tuple(sorted((pod["metadata"].get("labels") or {}).items())),
        ready=ready,
    )


def _forms(name: str, namespace: str, own_namespace: str) -> list[str]:
    """`name` is `<x>.<namespace>.svc` relative; list the forms a pod in `own_namespace` can use."""
    fqdn = f"{name}.{namespace}.svc.{CLUSTER_DOMAIN}"
    forms = [fqdn, f"{name}.{namespace}.svc", f"{name}.{namespace}"]
    if namespace == own_namespace:
        forms.append(name)
    return forms


def cluster_records(endpoints: list[Endpoint], services: list[Obj], own_namespace: str) -> list[tuple[str, str]]:
    """(ip, name) pairs for headless services and the pods behind them, as seen from a namespace."""
    records: list[tuple[str, str]] = []
    for svc in services:
        spec = svc.get("spec", {})
        if spec.get("clusterIP") != "None":
            continue
        namespace, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        selector = spec.get("selector") or {}
        publish_not_ready = bool(spec.get("publishNotReadyAddresses"))
        for ep in endpoints:
            if ep.namespace != namespace or not (ep.ready or publish_not_ready):
                continue
            labels = dict(ep.labels)
            if selector and all(labels.get(k) == v for k, v in selector.items()):
                records += [(ep.ip, form) for form in _forms(name, namespace, own_namespace)]
            if ep.hostname and ep.subdomain == name:
                records += [(ep.ip, form) for form in _forms(f"{ep.hostname}.{name}", namespace, own_namespace)]
    return records


def hosts_file(pod: Obj, pod_ip: str, records: list[tuple[str, str]], extra: dict[str, str]) -> str:
    """The whole hosts file for one pod: localhost, its own names, the cluster's names, extras."""
    spec, namespace = pod.get("spec", {}), pod["metadata"]["namespace"]
    hostname = spec.get("hostname") or pod["metadata"]["name"]
    own = [hostname]
    if spec.get("subdomain"):
        own.insert(0, f"{hostname}.{spec['subdomain']}.{namespace}.svc.{CLUSTER_DOMAIN}")
    lines = [
        "# Kubernetes-managed hosts file (pulsetrain process kubelet).",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        f"{pod_ip}\t{' '.join(own)}",
    ]
    for alias in spec.get("hostAliases") or []:
        lines.append(f"{alias['ip']}\t{' '.join(alias.get('hostnames', []))}")
    seen: set[tuple[str, str]] = set()
    for ip, name in records:
        if (ip, name) not in seen and name not in own:
            seen.add((ip, name))
            lines.append(f"{ip}\t{name}")
    lines += [f"{ip}\t{name}" for name, ip in sorted(extra.items())]
    return "\n".join(lines) + "\n"


def resolv_conf(namespace: str) -> str:
    """Search path as on Kubernetes; no nameserver answers, so lookups end at the hosts file."""
    search = f"{namespace}.svc.{CLUSTER_DOMAIN} svc.{CLUSTER_DOMAIN} {CLUSTER_DOMAIN}"
    return f"search {search}\nnameserver 127.0.0.1\noptions ndots:5 timeout:1 attempts:1\n"
