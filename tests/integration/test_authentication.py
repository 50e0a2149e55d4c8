"""Token and TLS authentication end to end: a second, authentication-enforcing Pulsar standalone that also
serves TLS; a client without a token is refused; a worker whose configuration names a token file trains on
it, and `pulsetrain produce --config` publishes with it; a worker trains over TLS with a client certificate,
and `tlsValidateHostname` refuses a broker whose certificate does not name the host dialled."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pulsar
import pytest

from pulsetrain.config import load_config_file
from pulsetrain.pulsar_io import backlog, connect
from tests.cluster.pki import CertificateAuthority, CertPair
from tests.cluster.pulsar_server import PulsarServer
from tests.integration.test_trainer import digits_payloads, finish, gang, make_config, publish

pytestmark = pytest.mark.integration


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(subject: str, secret: bytes) -> str:
    """An HS256 JSON Web Token, as `pulsar tokens create --secret-key` makes."""
    header, claims = json.dumps({"alg": "HS256"}).encode(), json.dumps({"sub": subject}).encode()
    signing_input = f"{_b64(header)}.{_b64(claims)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


TLS_PORT = 6653


@dataclasses.dataclass(frozen=True)
class BrokerPki:
    ca: Path  # the CA bundle that signs the broker's certificate
    broker: CertPair  # names 127.0.0.1 only, not localhost
    client: CertPair  # the trainer's client certificate (CN trainer)


@pytest.fixture(scope="module")
def broker_pki(tmp_path_factory: pytest.TempPathFactory) -> BrokerPki:
    ca = CertificateAuthority(tmp_path_factory.mktemp("pulsar-pki"), "pulsetrain-test-pulsar-ca")
    return BrokerPki(ca.pair.cert, ca.issue("broker", "broker", ips=("127.0.0.1",), server=True),
                     ca.issue("trainer", "trainer"))


@pytest.fixture(scope="module")
def secured_broker(tmp_path_factory: pytest.TempPathFactory,
                   broker_pki: BrokerPki) -> Iterator[tuple[PulsarServer, str]]:
    root = tmp_path_factory.mktemp("secured-pulsar")
    secret = uuid.uuid4().bytes * 2
    (root / "secret.key").write_bytes(secret)
    admin = jwt("admin", secret)
    server = PulsarServer(root / "data", "127.0.0.1", broker_port=6652, web_port=8082, bookie_port=3182,
                          admin_token=admin, config={
                              "authenticationEnabled": "true",
                              "authenticationProviders":
                                  "org.apache.pulsar.broker.authentication.AuthenticationProviderToken,"
                                  "org.apache.pulsar.broker.authentication.AuthenticationProviderTls",
                              "brokerServicePortTls": str(TLS_PORT),
                              "tlsCertificateFilePath": str(broker_pki.broker.cert),
                              "tlsKeyFilePath": str(broker_pki.broker.key),
                              "tlsTrustCertsFilePath": str(broker_pki.ca),
                              "tokenSecretKey": f"file://{root / 'secret.key'}",
                              "superUserRoles": "admin",
                              "brokerClientAuthenticationPlugin":
                                  "org.apache.pulsar.client.impl.auth.AuthenticationToken",
                              "brokerClientAuthenticationParameters": f"token:{admin}",
                          })
    server.start()
    try:
        server.wait_ready(timeout=180)
        yield server, jwt("trainer", secret)
    finally:
        server.stop()


def test_client_without_token_is_refused(secured_broker: tuple[PulsarServer, str]) -> None:
    server, _ = secured_broker
    client = pulsar.Client(server.service_url, operation_timeout_seconds=5,
                           logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
    try:
        with pytest.raises(pulsar.PulsarException):
            client.create_producer(f"refused-{uuid.uuid4().hex[:6]}")
    finally:
        client.close()


def test_worker_trains_with_a_token_file(secured_broker: tuple[PulsarServer, str], tmp_path: Path) -> None:
    server, token = secured_broker
    topic = f"persistent://public/default/secured-{uuid.uuid4().hex[:8]}"
    _, payloads = digits_payloads(repeat=1)
    publish(server.service_url, topic, payloads, authentication=pulsar.AuthenticationToken(token))
    (tmp_path / "token").write_text(token + "\n")
    config = make_config(tmp_path, server.service_url, topic)
    doc = json.loads(config.read_text())
    doc["source"]["pulsar"]["authentication"] = {"token": {"file": str(tmp_path / "token")}}
    config.write_text(json.dumps(doc))
    g = gang(tmp_path, config, workers=1)
    g.start(tmp_path)
    (summary,) = finish(g, tmp_path)
    assert summary["trainedSamples"] == len(payloads)
    log = (tmp_path / "worker-0.log").read_text()
    assert token not in log and "authentication: TokenAuth" in log  # used, never logged


def test_a_missing_token_file_stops_the_worker_with_the_field_named(secured_broker: tuple[PulsarServer, str],
                                                                      tmp_path: Path) -> None:
    """Not an outage to wait out: the worker exits 2 (invalid configuration) instead of retrying for ever."""
    server, _ = secured_broker
    config = make_config(tmp_path, server.service_url, f"persistent://public/default/secured-{uuid.uuid4().hex[:8]}")
    doc = json.loads(config.read_text())
    doc["source"]["pulsar"]["authentication"] = {"token": {"file": str(tmp_path / "no-such-token")}}
    config.write_text(json.dumps(doc))
    g = gang(tmp_path, config, workers=1)
    g.start(tmp_path)
    codes = g.wait(180)
    g.stop(grace=5)
    log = (tmp_path / "worker-0.log").read_text()
    assert codes == [2], log[-3000:]
    assert "invalid configuration: source.pulsar.authentication.token.file: cannot read" in log
    assert "unreachable" not in log


def test_produce_publishes_with_the_configurations_token(secured_broker: tuple[PulsarServer, str],
                                                         tmp_path: Path) -> None:
    server, token = secured_broker
    topic = f"persistent://public/default/secured-{uuid.uuid4().hex[:8]}"
    (tmp_path / "token").write_text(token + "\n")
    config = make_config(tmp_path, server.service_url, topic)
    doc = json.loads(config.read_text())
    doc["source"]["pulsar"]["authentication"] = {"token": {"file": str(tmp_path / "token")}}
    config.write_text(json.dumps(doc))
    result = subprocess.run([sys.executable, "-m", "pulsetrain.cli", "produce", "--dataset", "digits", "--config",
                             str(config), "--limit", "25", "--no-progress"],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"published 25 raw messages to {topic}" in result.stdout and token not in result.stdout + result.stderr


def test_backlog_is_read_with_the_token(secured_broker: tuple[PulsarServer, str]) -> None:
    server, token = secured_broker
    topic = f"persistent://public/default/secured-{uuid.uuid4().hex[:8]}"
    client = pulsar.Client(server.service_url, authentication=pulsar.AuthenticationToken(token),
                           logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
    try:
        client.subscribe(topic, "trainer", initial_position=pulsar.InitialPosition.Earliest).close()
        producer = client.create_producer(topic, batching_enabled=False)
        for i in range(4):
            producer.send(b"%d" % i)
    finally:
        client.close()
    assert backlog(server.admin_url, topic, "trainer", token=token) == 4
    assert backlog(server.admin_url, topic, "trainer") is None  # refused without it (401): None, not an error


def tls_config(tmp_path: Path, pki: BrokerPki, host: str, topic: str, validate_hostname: bool) -> Path:
    config = make_config(tmp_path, f"pulsar+ssl://{host}:{TLS_PORT}", topic)
    doc = json.loads(config.read_text())
    doc["source"]["pulsar"].update(
        authentication={"tls": {"certFile": str(pki.client.cert), "keyFile": str(pki.client.key)}},
        tlsTrustCertsFile=str(pki.ca), tlsValidateHostname=validate_hostname)
    config.write_text(json.dumps(doc))
    return config


def test_worker_trains_over_tls_with_a_client_certificate(secured_broker: tuple[PulsarServer, str],
                                                          broker_pki: BrokerPki, tmp_path: Path) -> None:
    server, token = secured_broker
    topic = f"persistent://public/default/tls-{uuid.uuid4().hex[:8]}"
    _, payloads = digits_payloads(repeat=1)
    publish(server.service_url, topic, payloads, authentication=pulsar.AuthenticationToken(token))
    g = gang(tmp_path, tls_config(tmp_path, broker_pki, "127.0.0.1", topic, validate_hostname=True), workers=1)
    g.start(tmp_path)
    (summary,) = finish(g, tmp_path)
    assert summary["trainedSamples"] == len(payloads)
    log = (tmp_path / "worker-0.log").read_text()
    assert f"connecting to pulsar+ssl://127.0.0.1:{TLS_PORT} (authentication: TlsAuth)" in log


def test_hostname_validation_refuses_a_broker_certificate_without_the_host(
        secured_broker: tuple[PulsarServer, str], broker_pki: BrokerPki, tmp_path: Path) -> None:
    """The broker's certificate names 127.0.0.1, not localhost: dialled as localhost, the CA check alone
    (Pulsar's default) accepts it, and tlsValidateHostname refuses it."""
    topic = f"persistent://public/default/tls-{uuid.uuid4().hex[:8]}"
    for validate in (False, True):
        pulsar_cfg = load_config_file(tls_config(tmp_path, broker_pki, "localhost", topic, validate)).source.pulsar
        client = connect(pulsar_cfg, environ={})
        try:
            if validate:
                with pytest.raises(pulsar.PulsarException):
                    client.create_producer(topic)
            else:
                client.create_producer(topic).close()
        finally:
            client.close()
