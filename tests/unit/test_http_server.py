"""The worker's HTTP endpoint, served for real on 127.0.0.1 and read with urllib."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from pulsetrain.http_server import TelemetryServer, serve
from pulsetrain.progress_doc import ProgressDocument
from pulsetrain.telemetry import Telemetry


@pytest.fixture
def running() -> Iterator[tuple[Telemetry, TelemetryServer]]:
    telemetry = Telemetry(pipeline="digits", namespace="ml", worker=0)
    server = serve(telemetry, "127.0.0.1", 0)
    try:
        yield telemetry, server
    finally:
        server.close()


def get(server: TelemetryServer, path: str, method: str = "GET") -> tuple[int, str, str]:
    """(status, content type, body) for `path`, error statuses included."""
    request = urllib.request.Request(server.url + path, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers["Content-Type"], error.read().decode()


def test_port_zero_binds_a_real_port(running: tuple[Telemetry, TelemetryServer]) -> None:
    _, server = running
    assert server.port > 0
    assert server.url == f"http://127.0.0.1:{server.port}"


def test_metrics(running: tuple[Telemetry, TelemetryServer]) -> None:
    telemetry, server = running
    telemetry.step_done(7, 32, loss=0.5)
    status, kind, body = get(server, "/metrics")
    assert status == 200
    assert kind.startswith("text/plain") and "version=0.0.4" in kind
    assert "# TYPE pulsetrain_samples_total counter" in body
    assert 'pulsetrain_step{pipeline="digits",namespace="ml",worker="0"} 7' in body


def test_progress_document(running: tuple[Telemetry, TelemetryServer]) -> None:
    telemetry, server = running
    telemetry.set_state("training")
    telemetry.step_done(3, 96, loss=0.75, metrics={"accuracy": 0.8})
    status, kind, body = get(server, "/progress?pretty=0")
    assert status == 200 and kind == "application/json"
    doc = ProgressDocument.from_json(body)
    assert (doc.pipeline, doc.state, doc.step, doc.samples, doc.metrics) == \
        ("digits", "training", 3, 96, {"accuracy": 0.8})
    assert json.loads(body)["samplesPerSecond"] >= 0


def test_healthz(running: tuple[Telemetry, TelemetryServer]) -> None:
    telemetry, server = running
    telemetry.set_state("failed", "boom")
    assert get(server, "/healthz") == (200, "text/plain; charset=utf-8", "ok\n")


def test_readiness_follows_the_state(running: tuple[Telemetry, TelemetryServer]) -> None:
    telemetry, server = running
    status, _, body = get(server, "/readyz")
    assert status == 503 and "starting" in body
    telemetry.set_state("waiting-for-peers")
    assert get(server, "/readyz")[0] == 200
    telemetry.set_state("training")
    assert get(server, "/readyz")[0] == 200
    telemetry.set_state("failed", "decoder crashed")
    status, _, body = get(server, "/readyz")
    assert status == 503 and "decoder crashed" in body
    telemetry.set_state("source-unavailable", "pulsar down")
    assert get(server, "/readyz")[0] == 200


def test_unknown_path_lists_the_endpoints(running: tuple[Telemetry, TelemetryServer]) -> None:
    _, server = running
    status, kind, body = get(server, "/nope")
    assert status == 404 and kind.startswith("text/plain")
    for endpoint in ("/metrics", "/progress", "/healthz", "/readyz"):
        assert endpoint in body


def test_head_has_no_body(running: tuple[Telemetry, TelemetryServer]) -> None:
    _, server = running
    status, kind, body = get(server, "/metrics", method="HEAD")
    assert status == 200 and "version=0.0.4" in kind and body == ""


def test_close_releases_the_port() -> None:
    server = serve(Telemetry(), "127.0.0.1", 0)
    port = server.port
    assert get(server, "/healthz")[0] == 200
    server.close()
    server.close()  # twice is harmless
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
    with serve(Telemetry(), "127.0.0.1", port) as again:  # the port is free again
        assert again.port == port
