"""`kube.refusal` and `Refused`: which API errors are reported on the pipeline, in the API server's words."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from pulsetrain_operator.kube import Kube, Refused, _tolerate, refusal


def api_error(status: int, reason: str, message: str | None = None) -> ApiException:
    exc = ApiException(status=status, reason=reason)
    exc.body = json.dumps({"kind": "Status", "message": message}) if message else None
    return exc


def test_a_refusal_quotes_the_api_server() -> None:
    quota = api_error(403, "Forbidden", 'pods "p-worker-1" is forbidden: exceeded quota: one-pod')
    assert refusal(quota) == '403 Forbidden: pods "p-worker-1" is forbidden: exceeded quota: one-pod'
    assert refusal(api_error(422, "Unprocessable Entity")) == "422 Unprocessable Entity"


@pytest.mark.parametrize("status", [409, 429, 500, 503])
def test_conflicts_throttling_and_server_errors_are_not_refusals(status: int) -> None:
    assert refusal(api_error(status, "x", "try again")) is None


def test_tolerate_raises_refused_naming_the_write_and_passes_the_rest_through() -> None:
    with pytest.raises(Refused, match=r"^creating pod p-worker-1 was refused: 403 Forbidden: no$") as refused:
        _tolerate(api_error(403, "Forbidden", "no"), 409, doing="creating pod p-worker-1")
    assert refused.value.reason == "FailedCreate"
    with pytest.raises(Refused) as refused:
        _tolerate(api_error(403, "Forbidden", "no"), 404, doing="deleting pod p-worker-1")
    assert refused.value.reason == "FailedDelete"
    _tolerate(api_error(409, "Conflict", "exists"), 409, doing="creating pod p-worker-1")  # already there: fine
    with pytest.raises(ApiException):
        _tolerate(api_error(500, "Internal Server Error"), 409, doing="creating pod p-worker-1")


def owned_by(uid: str) -> Any:
    return SimpleNamespace(metadata=SimpleNamespace(owner_references=[SimpleNamespace(uid=uid, controller=True)]),
                           data={"worker.json": "{}"})


BODY = {"metadata": {"name": "p-workers", "ownerReferences": [{"uid": "new", "controller": True}]}}


def fail(exc: ApiException) -> Any:
    def call() -> Any:
        raise exc
    return call


def test_create_accepts_its_own_object_even_when_a_quota_refused_the_create() -> None:
    kube = Kube.__new__(Kube)  # _create uses only the two calls it is given
    assert kube._create("Service", BODY, lambda: None, fail(api_error(500, "unused"))) is None
    mine = owned_by("new")
    assert kube._create("Service", BODY, fail(api_error(409, "Conflict", "exists")), lambda: mine) is mine
    quota = api_error(403, "Forbidden", "exceeded quota: services")
    assert kube._create("Service", BODY, fail(quota), lambda: mine) is mine  # there already: not a refusal
    with pytest.raises(Refused, match="creating Service p-workers was refused: 403 Forbidden: exceeded quota"):
        kube._create("Service", BODY, fail(quota), fail(api_error(404, "Not Found")))


def test_create_waits_for_a_deleted_predecessors_object_of_the_same_name() -> None:
    kube = Kube.__new__(Kube)
    with pytest.raises(Refused, match="still belongs to a deleted pipeline of the same name") as refused:
        kube._create("ConfigMap", BODY, fail(api_error(409, "Conflict", "exists")), lambda: owned_by("old"))
    assert refused.value.reason == "FailedCreate"
