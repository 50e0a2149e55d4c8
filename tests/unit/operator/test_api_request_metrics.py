"""The operator counts its own Kubernetes API requests by HTTP method and exposes them on `/metrics`.

Why: the operator benchmark divides this counter by the number of pipelines to report API requests per
pipeline, so it must see every request a typed API call sends (failed ones too) and nothing else.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client import Configuration, CoreV1Api
from kubernetes.client.exceptions import ApiException

from pulsetrain_operator.kube import CountingApiClient, Kube
from pulsetrain_operator.metrics import OperatorMetrics


class _Response:
    """Just enough of `kubernetes.client.rest.RESTResponse` for the client to read a reply."""

    def __init__(self, status: int, data: bytes) -> None:
        self.status, self.data, self.reason = status, data, "test"
        self.headers = {"content-type": "application/json"}

    def read(self) -> bytes:
        return self.data

    def getheaders(self) -> dict[str, str]:
        return self.headers

    def getheader(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)


def _client(monkeypatch: pytest.MonkeyPatch, metrics: OperatorMetrics, replies: list[_Response]) -> CountingApiClient:
    """A counting client whose HTTP layer answers with `replies`, in order."""
    client = CountingApiClient(Configuration(host="http://127.0.0.1:1"), metrics.api_request)

    def request(method: str, url: str, **_: Any) -> _Response:
        return replies.pop(0)

    monkeypatch.setattr(client.rest_client, "request", request)
    return client


def test_every_request_through_kube_is_counted_by_verb(monkeypatch: pytest.MonkeyPatch) -> None:
    metrics = OperatorMetrics()
    conflict, created = _Response(409, b'{"kind": "Status", "reason": "AlreadyExists"}'), _Response(201, b"{}")
    kube = Kube(_client(monkeypatch, metrics, [created, conflict, _Response(200, b'{"kind": "PodList", "items": []}')]))
    kube.create_pod("ns", {"metadata": {"name": "a"}})
    kube.create_pod("ns", {"metadata": {"name": "a"}})  # 409 is success for Kube, and still a request
    assert kube.worker_pods("ns", "p") == []
    assert dict(metrics.api_requests) == {"POST": 2, "GET": 1}
    rendered = metrics.render()
    assert 'pulsetrain_operator_api_requests_total{verb="GET"} 1\n' in rendered
    assert 'pulsetrain_operator_api_requests_total{verb="POST"} 2\n' in rendered
    assert "# TYPE pulsetrain_operator_api_requests_total counter" in rendered


def test_failed_requests_are_counted_too(monkeypatch: pytest.MonkeyPatch) -> None:
    metrics = OperatorMetrics()
    core = CoreV1Api(_client(monkeypatch, metrics, [_Response(500, b'{"kind": "Status"}')]))
    with pytest.raises(ApiException):
        core.delete_namespaced_pod("a", "ns")
    assert dict(metrics.api_requests) == {"DELETE": 1}


def test_no_requests_render_only_the_header() -> None:
    rendered = OperatorMetrics().render()
    assert "# HELP pulsetrain_operator_api_requests_total" in rendered
    assert "pulsetrain_operator_api_requests_total{" not in rendered
