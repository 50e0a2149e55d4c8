"""The few Kubernetes API calls the operator makes, each idempotent.

Why this exists: reconciling may run any number of times, concurrently with an earlier run's leftovers
and after an operator restart, so every write here tolerates "already there" and "already gone"
(creating an existing object or deleting a missing one is success). Nothing here decides anything;
it only talks to the API server, with one shared, pooled client. That client reports every request it
sends (`CountingApiClient`), so the operator's API load per pipeline can be measured (`/metrics`,
`bench/operator_bench.py`) rather than guessed.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, cast

import kubernetes
from kubernetes.client import ApiClient, AppsV1Api, Configuration, CoreV1Api, CustomObjectsApi
from kubernetes.client.exceptions import ApiException
from kubernetes.client.rest import RESTResponse

from pulsetrain_operator.names import PIPELINE_LABEL, controller_uid

log = logging.getLogger(__name__)
GROUP, VERSION, PLURAL = "pulsetrain.dev", "v1alpha1", "trainingpipelines"
CONNECTION_POOL_SIZE = 32


class CountingApiClient(ApiClient):
    """An `ApiClient` that calls `on_request(method)` before each HTTP request it sends.

    Every typed API method (`CoreV1Api`, `CustomObjectsApi`, ...) ends in `call_api`, so this sees each
    request `Kube` makes, failed ones included. Requests other clients make (Kopf's own watches and
    lists) do not pass through here.
    """

    def __init__(self, configuration: Configuration, on_request: Callable[[str], None]) -> None:
        super().__init__(configuration)
        self.on_request = on_request

    def call_api(self, method: str, url: str, header_params: Any = None, body: Any = None,
                 post_params: Any = None, _request_timeout: Any = None) -> RESTResponse:
        self.on_request(method.upper())
        return super().call_api(method, url, header_params=header_params, body=body, post_params=post_params,
                                _request_timeout=_request_timeout)


def api_client(on_request: Callable[[str], None] | None = None) -> ApiClient:
    """A client from the in-cluster service account, or else from KUBECONFIG / ~/.kube/config;
    with `on_request`, one that reports the HTTP method of every request it sends."""
    configuration = kubernetes.client.Configuration()
    loader = cast(Any, kubernetes.config)  # the loaders carry no type hints
    try:
        loader.load_incluster_config(client_configuration=configuration)
    except loader.ConfigException:
        loader.load_kube_config(client_configuration=configuration)
    configuration.connection_pool_maxsize = CONNECTION_POOL_SIZE
    return ApiClient(configuration) if on_request is None else CountingApiClient(configuration, on_request)


def refusal(exc: ApiException) -> str | None:
    """The API server's own words when it refused a write for a reason that trying again at once will not
    change (a ResourceQuota used up, Pod Security or a webhook denying it, RBAC, an invalid object); None for a
    conflict, throttling or a server-side failure, which the next try may not meet."""
    status = int(exc.status or 0)
    if not 400 <= status < 500 or status in (408, 409, 429):
        return None
    try:
        said = json.loads(exc.body or "{}").get("message")
    except (ValueError, AttributeError):
        said = None
    return f"{status} {exc.reason}: {said}" if said else f"{status} {exc.reason}"


class Refused(Exception):
    """A child write the API server refused for a reason that trying again at once will not change (see
    `refusal`); the message names the write and quotes the API server, `reason` is the Kubernetes-style
    event reason (`FailedCreate`, `FailedDelete`, `FailedUpdate`)."""

    def __init__(self, doing: str, said: str) -> None:
        super().__init__(f"{doing} was refused: {said}")
        verb = doing.split(" ", 1)[0]
        self.reason = {"creating": "FailedCreate", "deleting": "FailedDelete"}.get(verb, "FailedUpdate")


def _tolerate(exc: ApiException, *statuses: int, doing: str = "") -> None:
    """Swallow the statuses that mean "already done", and creations refused by a namespace being deleted
    (its pipeline goes with it, so there is nothing left to create). A write (`doing` says which) refused for
    good is raised as `Refused`; anything else as it came."""
    if exc.status in statuses or (exc.status == 403 and "NamespaceTerminating" in str(exc.body or "")):
        return
    said = refusal(exc) if doing else None
    if said is not None:
        raise Refused(doing, said) from exc
    raise exc


class Kube:
    """Typed, idempotent wrappers over the calls the reconciler needs."""

    def __init__(self, client: ApiClient) -> None:
        # Plain dicts go in and come out (the builders make dicts), so the typed models are bypassed.
        self.core: Any = CoreV1Api(client)
        self.apps: Any = AppsV1Api(client)
        self.custom: Any = CustomObjectsApi(client)
        self.client: Any = client

    # -- the pipeline --------------------------------------------------------------------------
    def get_pipeline(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            obj = self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as exc:
            _tolerate(exc, 404)
            return None
        return dict(obj)

    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> dict[str, Any] | None:
        """Merge-patch `status` (keys set to None are removed); returns the pipeline as patched, None when
        it is gone."""
        try:
            obj = self.custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, name,
                                                                    {"status": dict(status)})
        except ApiException as exc:
            _tolerate(exc, 404)
            return None
        return dict(obj)

    def delete_pipeline(self, namespace: str, name: str) -> None:
        try:
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name,
                                                        propagation_policy="Background")
        except ApiException as exc:
            _tolerate(exc, 404)

    # -- children ------------------------------------------------------------------------------
    def worker_pods(self, namespace: str, pipeline: str) -> list[dict[str, Any]]:
        pods = self.core.list_namespaced_pod(namespace, label_selector=f"{PIPELINE_LABEL}={pipeline}")
        return [self.client.sanitize_for_serialization(p) for p in pods.items]

    def create_pod(self, namespace: str, body: Mapping[str, Any]) -> None:
        try:
            self.core.create_namespaced_pod(namespace, dict(body))
        except ApiException as exc:
            _tolerate(exc, 409, doing=f"creating pod {body['metadata']['name']}")

    def delete_pod(self, namespace: str, name: str, grace_seconds: int | None) -> None:
        try:
            self.core.delete_namespaced_pod(name, namespace, grace_period_seconds=grace_seconds)
        except ApiException as exc:
            _tolerate(exc, 404, doing=f"deleting pod {name}")

    def _create(self, kind: str, body: Mapping[str, Any], create: Callable[[], Any], read: Callable[[], Any]) -> Any:
        """Create `body`. None when created (or when its namespace is being deleted: nothing left to create); else
        the object of that name that exists already, when this pipeline controls it. One another UID controls (a
        deleted pipeline of the same name that the garbage collector has not removed yet) raises `Refused`, so the
        write is tried again once it is gone. A refused create is a refusal only when nothing of that name exists:
        a ResourceQuota counts objects before the API server looks for the name."""
        doing = f"creating {kind} {body['metadata']['name']}"
        refused: Refused | None = None
        try:
            create()
            return None
        except ApiException as exc:
            if exc.status == 403 and "NamespaceTerminating" in str(exc.body or ""):
                return None
            if exc.status != 409:
                said = refusal(exc)
                if said is None:
                    raise
                refused = Refused(doing, said)
        try:
            current = read()
        except ApiException as exc:
            if exc.status == 404 and refused is not None:
                raise refused from exc
            raise
        owner = next((ref.uid for ref in current.metadata.owner_references or [] if ref.controller), None)
        ours = controller_uid(body["metadata"])
        if owner and ours and owner != ours:
            raise Refused(doing, f"a {kind} of that name still belongs to a deleted pipeline of the same name "
                          "(the garbage collector removes it soon)")
        return current

    def ensure_service(self, namespace: str, body: Mapping[str, Any]) -> None:
        name = body["metadata"]["name"]
        self._create("Service", body, lambda: self.core.create_namespaced_service(namespace, dict(body)),
                     lambda: self.core.read_namespaced_service(name, namespace))

    def ensure_config_map(self, namespace: str, body: Mapping[str, Any]) -> None:
        """Create the ConfigMap, or replace its data when it differs (a new attempt after a spec change)."""
        name = body["metadata"]["name"]
        current = self._create("ConfigMap", body, lambda: self.core.create_namespaced_config_map(namespace, dict(body)),
                               lambda: self.core.read_namespaced_config_map(name, namespace))
        if current is not None and dict(current.data or {}) != dict(body.get("data") or {}):
            try:
                self.core.patch_namespaced_config_map(name, namespace, {"data": body["data"]})
            except ApiException as exc:
                _tolerate(exc, doing=f"updating ConfigMap {name}")

    # -- predictors (spec.serving) --------------------------------------------------------------
    def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            obj = self.apps.read_namespaced_deployment(name, namespace)
        except ApiException as exc:
            _tolerate(exc, 404)
            return None
        return dict(self.client.sanitize_for_serialization(obj))

    def apply_deployment(self, namespace: str, body: Mapping[str, Any]) -> None:
        """Create the Deployment, or replace it with the desired one (a PUT of the whole object at the
        resourceVersion just read: anything the desired object no longer has is gone, unlike a strategic
        merge patch, which keeps list entries and keys it is not told about; a conflict fails this
        reconcile, and the next one reads again)."""
        name = body["metadata"]["name"]
        current = self._create("Deployment", body,
                               lambda: self.apps.create_namespaced_deployment(namespace, dict(body)),
                               lambda: self.apps.read_namespaced_deployment(name, namespace))
        if current is None:
            return
        desired = {**body, "metadata": {**body["metadata"], "resourceVersion": current.metadata.resource_version}}
        try:
            self.apps.replace_namespaced_deployment(name, namespace, desired)
        except ApiException as exc:
            _tolerate(exc, doing=f"updating Deployment {name}")

    def delete_deployment(self, namespace: str, name: str) -> None:
        try:
            self.apps.delete_namespaced_deployment(name, namespace, propagation_policy="Background")
        except ApiException as exc:
            _tolerate(exc, 404, doing=f"deleting Deployment {name}")

    def delete_config_map(self, namespace: str, name: str) -> None:
        try:
            self.core.delete_namespaced_config_map(name, namespace)
        except ApiException as exc:
            _tolerate(exc, 404, doing=f"deleting ConfigMap {name}")

    # -- events ----------------------------------------------------------------------------------
    def post_event(self, pipeline: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """A core/v1 Event on the pipeline (what `kubectl describe tp` and `kubectl events` show)."""
        meta = pipeline["metadata"]
        now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{secrets.token_hex(8)}", "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingPipeline",
                               "name": meta["name"], "namespace": meta["namespace"], "uid": meta.get("uid"),
                               "resourceVersion": meta.get("resourceVersion")},
            "type": type_, "reason": reason, "message": message[:1024],
            "source": {"component": "pulsetrain-operator"}, "reportingComponent": "pulsetrain.dev/operator",
            "reportingInstance": "pulsetrain-operator",
            "firstTimestamp": now, "lastTimestamp": now, "eventTime": None, "count": 1,
        }
        try:
            self.core.create_namespaced_event(meta["namespace"], event)
        except ApiException as exc:  # an event is worth a log line, never a failed reconcile
            log.warning("could not post event %s on %s/%s: %s", reason, meta["namespace"], meta["name"],
                        exc.reason)
