"""A container's environment, as the kubelet builds it: `env` (value and valueFrom) and `envFrom`.

Pure given two lookups (ConfigMap data and Secret data by name), so the rules are unit-tested without
a cluster. A missing required reference raises `ConfigError`, which the pod worker reports as the
kubelet does: the container waits with reason CreateContainerConfigError.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable

from tests.cluster.kubelet.api import Obj

Lookup = Callable[[str], dict[str, str] | None]
_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class ConfigError(Exception):
    pass


def field_value(pod: Obj, path: str, pod_ip: str, host_ip: str) -> str:
    """`fieldRef.fieldPath` as the downward API defines it."""
    meta, spec = pod["metadata"], pod.get("spec", {})
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
    }
    if path in simple:
        return str(simple[path])
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    raise ConfigError(f"unsupported fieldRef.fieldPath {path!r}")


def _resource_value(container: Obj, ref: Obj) -> str:
    resource = ref["resource"]
    kind, _, name = resource.partition(".")
    value = str(((container.get("resources") or {}).get(kind) or {}).get(name, "0"))
    return value


def expand(value: str, env: dict[str, str]) -> str:
    """`$(VAR)` expansion of earlier variables; unknown references stay as written."""
    return _VAR.sub(lambda m: env.get(m.group(1), m.group(0)), value)


def _from_ref(ref: Obj, lookup: Lookup, what: str, decode: bool) -> str | None:
    data = lookup(ref["name"])
    optional = bool(ref.get("optional"))
    if data is None:
        if optional:
            return None
        raise ConfigError(f'{what} "{ref["name"]}" not found')
    if ref["key"] not in data:
        if optional:
            return None
        raise ConfigError(f'couldn\'t find key {ref["key"]} in {what} {ref["name"]}')
    raw = data[ref["key"]]
    return base64.b64decode(raw).decode() if decode else raw


def container_env(
    pod: Obj,
    container: Obj,
    *,
    pod_ip: str,
    host_ip: str,
    configmaps: Lookup,
    secrets: Lookup,
) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            ref, lookup, decode, what = source["configMapRef"], configmaps, False, "configmap"
        else:
            ref, lookup, decode, what = source["secretRef"], secrets, True, "secret"
        data = lookup(ref["name"])
        if data is None:
            if ref.get("optional"):
                continue
            raise ConfigError(f'{what} "{ref["name"]}" not found')
        for key, raw in data.items():
            env[prefix + key] = base64.b64decode(raw).decode() if decode else raw
    for var in container.get("env") or []:
        name = var["name"]
        if "valueFrom" not in var:
            env[name] = expand(str(var.get("value", "")), env)
            continue
        source = var["valueFrom"]
        value: str | None
        if "fieldRef" in source:
            value = field_value(pod, source["fieldRef"]["fieldPath"], pod_ip, host_ip)
        elif "resourceFieldRef" in source:
            value = _resource_value(container, source["resourceFieldRef"])
        elif "configMapKeyRef" in source:
            value = _from_ref(source["configMapKeyRef"], configmaps, "configmap", decode=False)
        elif "secretKeyRef" in source:
            value = _from_ref(source["secretKeyRef"], secrets, "secret", decode=True)
        else:
            raise ConfigError(f"env {name}: unsupported valueFrom {sorted(source)}")
        if value is not None:
            env[name] = value
    return env
