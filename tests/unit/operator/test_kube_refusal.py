"""`kube.refusal` and `Refused`: which API errors are reported on the pipeline, in the API server's words."""

from __future__ import annotations

import json

import pytest
from kubernetes.client.exceptions import ApiException

from pulsetrain_operator.kube import Refused, _tolerate, refusal


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
