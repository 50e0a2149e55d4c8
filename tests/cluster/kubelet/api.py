"""A small JSON client for the Kubernetes REST API, working on plain dicts.

The process kubelet reads and patches a handful of resources; plain dicts keep the pure builders
(status, env, hosts) free of client model classes and make them easy to unit-test.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml

Obj = dict[str, Any]


class NotFound(Exception):
    pass


@dataclass
class Kube:
    server: str
    session: requests.Session

    @classmethod
    def from_kubeconfig(cls, path: Path) -> Kube:
        doc = yaml.safe_load(path.read_text())
        context = next(c for c in doc["contexts"] if c["name"] == doc["current-context"])["context"]
        cluster = next(c for c in doc["clusters"] if c["name"] == context["cluster"])["cluster"]
        user = next(u for u in doc["users"] if u["name"] == context["user"])["user"]
        session = requests.Session()
        session.trust_env = False  # REQUESTS_CA_BUNDLE would override the cluster CA, proxies would misroute
        session.verify = cluster["certificate-authority"]
        session.cert = (user["client-certificate"], user["client-key"])
        return cls(cluster["server"], session)

    def _check(self, response: requests.Response) -> Obj:
        if response.status_code == 404:
            raise NotFound(response.url)
        if response.status_code >= 400:
            raise RuntimeError(f"{response.request.method} {response.url}: {response.status_code} {response.text}")
        result: Obj = response.json()
        return result

    def get(self, path: str, **params: Any) -> Obj:
        return self._check(self.session.get(self.server + path, params=params, timeout=30))

    def post(self, path: str, body: Obj) -> Obj:
        return self._check(self.session.post(self.server + path, json=body, timeout=30))

    def put(self, path: str, body: Obj) -> Obj:
        return self._check(self.session.put(self.server + path, json=body, timeout=30))

    def patch(self, path: str, body: Obj, kind: str = "merge") -> Obj:
        headers = {"Content-Type": f"application/{kind}-patch+json"}
        return self._check(
            self.session.patch(self.server + path, data=json.dumps(body), headers=headers, timeout=30)
        )

    def delete(self, path: str, body: Obj | None = None) -> Obj | None:
        response = self.session.delete(self.server + path, json=body, timeout=30)
        if response.status_code == 404:
            return None
        return self._check(response)

    def items(self, path: str, **params: Any) -> list[Obj]:
        result: list[Obj] = self.get(path, **params).get("items", [])
        return result

    def watch(self, path: str, timeout: int = 60, **params: Any) -> Iterator[Obj]:
        """Yield watch events until the server ends the stream (after `timeout` seconds)."""
        query = {"watch": "1", "timeoutSeconds": str(timeout), **params}
        with self.session.get(self.server + path, params=query, stream=True, timeout=timeout + 10) as r:
            if r.status_code >= 400:
                raise RuntimeError(f"watch {path}: {r.status_code} {r.text}")
            for line in r.iter_lines():
                if line:
                    yield json.loads(line)


def meta(obj: Obj) -> Obj:
    result: Obj = obj.setdefault("metadata", {})
    return result


def pod_path(namespace: str, name: str, sub: str = "") -> str:
    return f"/api/v1/namespaces/{namespace}/pods/{name}" + (f"/{sub}" if sub else "")
