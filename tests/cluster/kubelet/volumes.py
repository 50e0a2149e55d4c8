"""Pod volumes as host directories, and the bind mounts that put them at each container's paths.

Every volume becomes a directory under the pod's sandbox directory (a PersistentVolumeClaim becomes
the host directory of the volume bound to it, shared by every pod that mounts the claim); the shim
then bind-mounts them inside the pod's private mount namespace. A missing ConfigMap, Secret or
unbound claim raises `ConfigError`, and the pod waits as a kubelet's would.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

from tests.cluster.kubelet.api import Kube, NotFound, Obj
from tests.cluster.kubelet.env import ConfigError, field_value


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool


def _write(directory: Path, files: dict[str, bytes], mode: int | None) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for rel, content in files.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(mode if mode is not None else 0o644)


def _select(data: dict[str, bytes], items: list[Obj] | None, what: str, optional: bool) -> dict[str, bytes]:
    if not items:
        return data
    chosen: dict[str, bytes] = {}
    for item in items:
        if item["key"] in data:
            chosen[item["path"]] = data[item["key"]]
        elif not optional:
            raise ConfigError(f"{what}: key {item['key']!r} not found")
    return chosen


class VolumeBuilder:
    def __init__(self, kube: Kube, pod: Obj, pod_dir: Path, host_ip: str) -> None:
        self.kube, self.pod, self.host_ip = kube, pod, host_ip
        self.namespace = pod["metadata"]["namespace"]
        self.root = pod_dir / "volumes"

    def _object(self, kind: str, name: str) -> Obj | None:
        try:
            return self.kube.get(f"/api/v1/namespaces/{self.namespace}/{kind}/{name}")
        except NotFound:
            return None

    def _configmap(self, ref: Obj) -> dict[str, bytes] | None:
        obj = self._object("configmaps", ref["name"])
        if obj is None:
            if ref.get("optional"):
                return {}
            raise ConfigError(f'configmap "{ref["name"]}" not found')
        data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        return _select(data, ref.get("items"), f"configmap {ref['name']}", bool(ref.get("optional")))

    def _secret(self, ref: Obj) -> dict[str, bytes] | None:
        name = ref.get("secretName") or ref["name"]
        obj = self._object("secrets", name)
        if obj is None:
            if ref.get("optional"):
                return {}
            raise ConfigError(f'secret "{name}" not found')
        data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        return _select(data, ref.get("items"), f"secret {name}", bool(ref.get("optional")))

    def _token(self, source: Obj) -> bytes:
        meta, spec = self.pod["metadata"], self.pod.get("spec", {})
        account = spec.get("serviceAccountName") or "default"
        body: Obj = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "expirationSeconds": int(source.get("expirationSeconds", 3607)),
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]},
            },
        }
        if source.get("audience"):
            body["spec"]["audiences"] = [source["audience"]]
        path = f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{account}/token"
        token: str = self.kube.post(path, body)["status"]["token"]
        return token.encode()

    def _downward(self, items: list[Obj]) -> dict[str, bytes]:
        files: dict[str, bytes] = {}
        pod_ip = self.pod.get("status", {}).get("podIP", "")
        for item in items:
            if "fieldRef" in item:
                value = field_value(self.pod, item["fieldRef"]["fieldPath"], pod_ip, self.host_ip)
                files[item["path"]] = value.encode()
        return files

    def _projected(self, volume: Obj) -> dict[str, bytes]:
        files: dict[str, bytes] = {}
        for source in volume.get("sources") or []:
            if "serviceAccountToken" in source:
                files[source["serviceAccountToken"]["path"]] = self._token(source["serviceAccountToken"])
            elif "configMap" in source:
                files.update(self._configmap(source["configMap"]) or {})
            elif "secret" in source:
                files.update(self._secret(source["secret"]) or {})
            elif "downwardAPI" in source:
                files.update(self._downward(source["downwardAPI"].get("items") or []))
        return files

    def _claim_dir(self, claim: str) -> Path:
        pvc = self._object("persistentvolumeclaims", claim)
        if pvc is None:
            raise ConfigError(f'persistentvolumeclaim "{claim}" not found')
        volume_name = (pvc.get("spec") or {}).get("volumeName")
        if not volume_name or pvc.get("status", {}).get("phase") != "Bound":
            raise ConfigError(f'persistentvolumeclaim "{claim}" is not bound')
        pv = self.kube.get(f"/api/v1/persistentvolumes/{volume_name}")
        spec = pv.get("spec", {})
        host = (spec.get("hostPath") or spec.get("local") or {}).get("path")
        if not host:
            raise ConfigError(f"persistentvolume {volume_name} is neither hostPath nor local")
        Path(host).mkdir(parents=True, exist_ok=True)
        return Path(host)

    def build(self, volume: Obj) -> Path:
        """Materialise one volume; returns the host directory that backs it."""
        name: str = volume["name"]
        target = self.root / name
        if "persistentVolumeClaim" in volume:
            return self._claim_dir(volume["persistentVolumeClaim"]["claimName"])
        if "hostPath" in volume:
            path = Path(volume["hostPath"]["path"])
            if volume["hostPath"].get("type", "") in ("", "DirectoryOrCreate"):
                path.mkdir(parents=True, exist_ok=True)
            return path
        mode: int | None = None
        files: dict[str, bytes] = {}
        if "configMap" in volume:
            files, mode = self._configmap(volume["configMap"]) or {}, volume["configMap"].get("defaultMode")
        elif "secret" in volume:
            files, mode = self._secret(volume["secret"]) or {}, volume["secret"].get("defaultMode")
        elif "projected" in volume:
            files, mode = self._projected(volume["projected"]), volume["projected"].get("defaultMode")
        elif "downwardAPI" in volume:
            files = self._downward(volume["downwardAPI"].get("items") or [])
        elif "emptyDir" not in volume:
            kinds = sorted(k for k in volume if k != "name")
            raise ConfigError(f"volume {name}: unsupported volume type {kinds}")
        target.mkdir(parents=True, exist_ok=True)
        _write(target, files, mode)
        return target

    def build_all(self) -> dict[str, Path]:
        volumes: list[Obj] = self.pod.get("spec", {}).get("volumes") or []
        return {v["name"]: self.build(v) for v in volumes}


def container_mounts(container: Obj, volumes: dict[str, Path]) -> list[Mount]:
    mounts: list[Mount] = []
    for vm in container.get("volumeMounts") or []:
        if vm["name"] not in volumes:
            raise ConfigError(f"volumeMount {vm['name']!r} names no volume of the pod")
        source = volumes[vm["name"]]
        if vm.get("subPath"):
            source = source / vm["subPath"]
            if not source.exists():
                source.mkdir(parents=True)
        mounts.append(Mount(str(source), vm["mountPath"], bool(vm.get("readOnly"))))
    return mounts


def mounts_json(mounts: list[Mount]) -> str:
    return json.dumps([m.__dict__ for m in mounts])
