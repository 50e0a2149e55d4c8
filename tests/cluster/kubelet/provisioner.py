"""A dynamic provisioner for the default StorageClass: each claim gets its own host directory.

The scheduler will not place a pod whose claim is unbound, so claims must really bind. Like kind's
local-path provisioner, this one answers claims of the `standard` class with a hostPath
PersistentVolume pre-bound to the claim (the real PV controller completes the binding), and deletes
the directory and the volume once a claim with reclaim policy Delete is released.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from tests.cluster.kubelet.api import Kube, Obj

log = logging.getLogger(__name__)

PROVISIONER = "pulsetrain.dev/host-dir"
STORAGE_CLASS = "standard"


def volume_for(claim: Obj, directory: Path) -> Obj:
    meta, spec = claim["metadata"], claim.get("spec", {})
    size = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": f"pvc-{meta['uid']}", "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER}},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": spec.get("storageClassName") or STORAGE_CLASS,
            "volumeMode": spec.get("volumeMode", "Filesystem"),
            "hostPath": {"path": str(directory / f"pvc-{meta['uid']}"), "type": "DirectoryOrCreate"},
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": meta["namespace"],
                         "name": meta["name"], "uid": meta["uid"]},
        },
    }


class HostDirProvisioner:
    def __init__(self, kube: Kube, directory: Path) -> None:
        self.kube, self.directory = kube, directory

    def sync(self) -> None:
        volumes = {pv["metadata"]["name"]: pv for pv in self.kube.items("/api/v1/persistentvolumes")}
        for claim in self.kube.items("/api/v1/persistentvolumeclaims"):
            spec = claim.get("spec", {})
            wanted = spec.get("storageClassName") in (STORAGE_CLASS, None)
            name = f"pvc-{claim['metadata']['uid']}"
            if wanted and not spec.get("volumeName") and name not in volumes and not spec.get("selector"):
                pv = volume_for(claim, self.directory)
                Path(pv["spec"]["hostPath"]["path"]).mkdir(parents=True, exist_ok=True)
                self.kube.post("/api/v1/persistentvolumes", pv)
                log.info("provisioned %s for %s/%s", name, claim["metadata"]["namespace"], claim["metadata"]["name"])
        for name, pv in volumes.items():
            ours = (pv["metadata"].get("annotations") or {}).get("pv.kubernetes.io/provisioned-by") == PROVISIONER
            if ours and pv.get("status", {}).get("phase") == "Released":
                shutil.rmtree(pv["spec"]["hostPath"]["path"], ignore_errors=True)
                self.kube.delete(f"/api/v1/persistentvolumes/{name}")
                log.info("deleted released volume %s", name)
