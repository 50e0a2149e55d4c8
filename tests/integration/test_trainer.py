"""Acceptance of the streaming trainer on the real Pulsar standalone, with workers as local processes.

Every run checks the exactly-once counters from the final checkpoint's variables: the number of
trained samples and the sum of a 40-bit digest of every trained payload. A lost or doubly trained
message changes the digest sum; it cannot come out right by accident.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pulsar
import pytest

from pulsetrain import datasets, produce
from pulsetrain.digest import digest
from pulsetrain.encode import encode_batch
from pulsetrain.local import LocalGang
from pulsetrain.progress_doc import ProgressDocument
from pulsetrain.pulsar_io import backlog
from tests.conftest import PulsarURLs
from tests.support import wait_until

pytestmark = pytest.mark.integration


def make_config(tmp_path: Path, service_url: str, topic: str, *, data_format: str = "raw",
                subscription_type: str = "Shared", batch_receive_timeout_ms: int = 100, **training: Any) -> Path:
    doc = {
        "pipeline": {"name": "digits", "namespace": "default"},
        "source": {"pulsar": {"serviceUrl": service_url, "topic": topic, "subscription": "trainer",
                              "subscriptionType": subscription_type, "receiverQueueSize": 200,
                              "batchReceiveTimeoutMs": batch_receive_timeout_ms}},
        "data": {"format": data_format, "features": [{"name": "pixels", "dtype": "float32", "shape": [64]}],
                 "label": {"name": "digit", "dtype": "int64", "shape": []},
                 "normalization": {"mode": "given", "mean": [8.0] * 64, "std": [6.0] * 64}},
        "model": {"builtin": "mlp", "task": "classification", "numClasses": 10, "mlp": {"hiddenUnits": [64]},
                  "optimizer": "adam", "learningRate": 0.01, "metrics": ["accuracy"]},
        "training": {"mode": "bounded", "batchSize": 32, "idleTimeoutSeconds": 4, "checkpointEverySteps": 10,
                     **training},
        "storage": {"checkpointDir": str(tmp_path / "checkpoints"), "exportDir": str(tmp_path / "models"),
                    "logDir": str(tmp_path / "tensorboard")},
    }
    path = tmp_path / "worker.json"
    path.write_text(json.dumps(doc))
    return path


def publish(service_url: str, topic: str, payloads: list[bytes], keys: list[str] | None = None,
            authentication: pulsar.Authentication | None = None) -> None:
    """Publish with the project's own producer loop (it raises if the broker rejects a message)."""
    client = pulsar.Client(service_url, authentication=authentication,
                           logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    producer = client.create_producer(topic, batching_enabled=False, block_if_queue_full=True)
    try:
        produce.publish(producer, payloads, progress=False, keys=keys)
    finally:
        client.close()


def chief_progress(g: LocalGang) -> dict[str, Any] | None:
    """The chief's JSON progress document, or None while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{g.metrics_base_port}/progress", timeout=2) as response:
            document: dict[str, Any] = json.load(response)
    except OSError:
        return None
    return document


def digits_payloads(repeat: int, data_format: str = "raw") -> tuple[datasets.Dataset, list[bytes]]:
    """The training split `repeat` times, every payload unique: the first pixel (0 in every digit) holds
    the record's serial number / total. Copies of one payload would let a message lost and another trained
    twice leave both the count and the digest sum right; unique payloads cannot."""
    train, test = datasets.load("digits", data_format).split(0.2, seed=0)  # type: ignore[arg-type]
    rows = len(train.labels)
    pixels = np.tile(train.features["pixels"], (repeat, 1))
    pixels[:, 0] = np.arange(rows * repeat) / (rows * repeat)
    payloads = encode_batch(train.data, {"pixels": pixels}, np.tile(train.labels, repeat))
    assert len(set(payloads)) == len(payloads)
    return test, payloads


def gang(tmp_path: Path, config: Path, workers: int = 2) -> LocalGang:
    base = 24000 + (uuid.uuid4().int % 400) * 10
    return LocalGang(config, workers, base_port=base, metrics_base_port=base + 5, log_dir=tmp_path)


def finish(g: LocalGang, tmp_path: Path, timeout: float = 240) -> list[dict[str, Any]]:
    codes = g.wait(timeout)
    g.stop(grace=5)
    logs = "\n".join((tmp_path / f"worker-{i}.log").read_text()[-3000:] for i in range(g.workers))
    assert codes == [0] * g.workers, f"exit codes {codes}\n{logs}"
    return [json.loads((tmp_path / f"summary-{i}.json").read_text()) for i in range(g.workers)]


def committed(tmp_path: Path) -> int:
    directory = tmp_path / "checkpoints"
    return len(list(directory.glob("*.committed"))) if directory.exists() else 0


def committed_totals(root: Path) -> tuple[int, int]:
    """(samples trained, digest sum) as stored in the newest committed checkpoint under `root`/checkpoints."""
    import tensorflow as tf

    steps = [int(path.stem.removeprefix("ckpt-")) for path in (root / "checkpoints").glob("ckpt-*.committed")]
    reader = tf.train.load_checkpoint(str(root / "checkpoints" / f"ckpt-{max(steps)}"))
    trained, digest_sum = reader.get_tensor("totals/.ATTRIBUTES/VARIABLE_VALUE").tolist()
    return int(trained), int(digest_sum)


def assert_exactly_once(summaries: list[dict[str, Any]], payloads: list[bytes], logs: Path | None = None) -> None:
    """Every produced message counted once by every worker, and in the final committed checkpoint when `logs`
    (the gang's directory) holds the checkpoints; on failure, the workers' logs say why."""
    expected = (len(payloads), sum(digest(p) for p in payloads))
    found = [(f"worker {i}'s summary", (s["trainedSamples"], s["digestSum"])) for i, s in enumerate(summaries)]
    if logs is not None and (logs / "checkpoints").exists():
        found.append(("the final committed checkpoint", committed_totals(logs)))
    for where, (trained, digest_sum) in found:
        if (trained, digest_sum) != expected:
            tails = "\n".join(f"--- worker-{i}.log\n" + path.read_text()[-4000:]
                              for i, path in enumerate(sorted(logs.glob("worker-*.log")))) if logs else ""
            raise AssertionError(f"{where}: trained {trained} of {len(payloads)} messages (digest sum {digest_sum}, "
                                 f"expected {expected[1]})\n{tails}")


def test_two_workers_learn_digits(pulsar_broker: PulsarURLs, tmp_path: Path) -> None:
    import tensorflow as tf

    topic = f"persistent://public/default/digits-{uuid.uuid4().hex[:8]}"
    test, payloads = digits_payloads(repeat=3)
    publish(pulsar_broker.service_url, topic, payloads)
    g = gang(tmp_path, make_config(tmp_path, pulsar_broker.service_url, topic))
    g.start(tmp_path)

    document = wait_until(lambda: (d := chief_progress(g)) and d["step"] > 0 and d, 120,
                          "a progress document with step > 0", interval=0.2)
    assert document["isChief"] is True and document["state"] in ("training", "checkpointing", "exporting")
    summaries = finish(g, tmp_path)
    assert_exactly_once(summaries, payloads, logs=tmp_path)
    assert summaries[0]["step"] == summaries[1]["step"]
    assert all(s["localRows"] > 0 for s in summaries)  # both workers took part
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    serve = tf.saved_model.load(str(tmp_path / "models" / "1")).signatures["serving_default"]
    predicted = serve(pixels=tf.constant(test.features["pixels"]))["class"].numpy()
    accuracy = float(np.mean(predicted == test.labels))
    assert accuracy >= 0.95, accuracy
    metadata = json.loads((tmp_path / "models" / "1" / "pulsetrain.json").read_text())
    assert metadata["samples"] == len(payloads) and metadata["features"][0]["name"] == "pixels"


def test_uneven_supply_finishes_without_deadlock(pulsar_broker: PulsarURLs, tmp_path: Path) -> None:
    topic = f"persistent://public/default/uneven-{uuid.uuid4().hex[:8]}"
    _, payloads = digits_payloads(repeat=1)
    keys = ["hot" if i % 20 else f"cold-{i}" for i in range(len(payloads))]  # 95% of messages share one key
    publish(pulsar_broker.service_url, topic, payloads, keys)
    timeout_s = 1.0  # how long a worker short of rows may wait for more, unless its peer has rows
    config = make_config(tmp_path, pulsar_broker.service_url, topic, subscription_type="KeyShared",
                         batch_receive_timeout_ms=int(timeout_s * 1000))
    g = gang(tmp_path, config)
    g.start(tmp_path)
    summaries = finish(g, tmp_path)
    assert_exactly_once(summaries, payloads, logs=tmp_path)
    rows = sorted(s["localRows"] for s in summaries)
    assert rows[1] >= 4 * max(rows[0], 1), rows  # one worker got far fewer messages
    assert summaries[0]["step"] == summaries[1]["step"]
    # the starved worker did not wait out the timeout at each step its peer trained (it did: 44 steps, 1 s each)
    assert summaries[0]["trainSeconds"] < summaries[0]["step"] * timeout_s / 2, summaries[0]


def test_a_gang_that_seldom_checkpoints_commits_before_the_broker_stops_dispatching(pulsar_broker: PulsarURLs,
                                                                                   tmp_path: Path) -> None:
    # Pulsar stops dispatching to a consumer holding 50,000 unacknowledged messages. With checkpoints by
    # step count only and far apart, a worker would wait for data that never comes (in bounded mode it
    # ended idle with ~2% of the stream untrained; a continuous run would hang); a commit comes first.
    topic = f"persistent://public/default/unacked-{uuid.uuid4().hex[:8]}"
    _, payloads = digits_payloads(repeat=38)  # 54,644 messages, all for one worker
    publish(pulsar_broker.service_url, topic, payloads)
    config = make_config(tmp_path, pulsar_broker.service_url, topic, batchSize=256, checkpointEverySteps=10**6)
    g = gang(tmp_path, config, workers=1)
    g.start(tmp_path)
    summaries = finish(g, tmp_path, timeout=300)
    assert_exactly_once(summaries, payloads, logs=tmp_path)
    assert committed(tmp_path) >= 2  # one on the way (the limit), one at the end


def test_a_gang_the_broker_holds_messages_back_from_commits_and_trains_them_all(pulsar_broker: PulsarURLs,
                                                                                tmp_path: Path) -> None:
    # The broker may hold messages back until others are acknowledged, below any limit the workers know of:
    # Key_Shared does for a key that moved to a joining consumer (CI once ended a bounded run idle with 167
    # of 1,438 messages trained), and so does a topic's maxUnackedMessagesOnConsumer, set here to 100 so
    # that every worker stalls again and again. The gang commits when it stalls holding uncommitted messages.
    topic = f"persistent://public/default/held-{uuid.uuid4().hex[:8]}"
    _, payloads = digits_payloads(repeat=1)
    publish(pulsar_broker.service_url, topic, payloads)
    policy = f"{pulsar_broker.admin_url}/admin/v2/persistent/{topic.removeprefix('persistent://')}" \
             "/maxUnackedMessagesOnConsumer"
    urllib.request.urlopen(urllib.request.Request(policy, data=b"100", method="POST",
                                                  headers={"Content-Type": "application/json"}), timeout=10)
    wait_until(lambda: urllib.request.urlopen(policy, timeout=5).read() == b"100", 30, "the topic's policy")
    config = make_config(tmp_path, pulsar_broker.service_url, topic, checkpointEverySteps=10**6)
    g = gang(tmp_path, config)
    g.start(tmp_path)
    summaries = finish(g, tmp_path)
    assert_exactly_once(summaries, payloads, logs=tmp_path)
    chief_log = (tmp_path / "worker-0.log").read_text()
    assert chief_log.count("no worker has received a message for 2.0s: committing") >= 5, chief_log[-3000:]


def test_a_batch_entry_committed_in_part_is_not_trained_again_by_the_next_run(pulsar_broker: PulsarURLs,
                                                                             tmp_path: Path) -> None:
    # Entries of 400 messages from a batching producer; the broker (acknowledgmentAtBatchIndexLevelEnabled
    # off, Pulsar's default) redelivers a partly acknowledged entry whole. The first run stops at 1,024
    # messages, 224 into the third entry, committing every step (32 messages): the third entry's committed
    # part spans 7 windows, more than the 3 a ledger keeps by count (CI once retrained such a part).
    topic = f"persistent://public/default/entries-{uuid.uuid4().hex[:8]}"
    _, payloads = digits_payloads(repeat=1)
    client = pulsar.Client(pulsar_broker.service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    try:
        producer = client.create_producer(topic, batching_enabled=True, batching_max_messages=400,
                                          batching_max_allowed_size_in_bytes=1 << 20,
                                          batching_max_publish_delay_ms=1000, block_if_queue_full=True)
        produce.publish(producer, payloads, progress=False, chunk=400)
    finally:
        client.close()
    first = gang(tmp_path, make_config(tmp_path, pulsar_broker.service_url, topic, checkpointEverySteps=1,
                                       maxMessages=1000), workers=1)
    first.start(tmp_path)
    (stopped,) = finish(first, tmp_path)
    assert stopped["trainedSamples"] == 1024 and stopped["step"] == 32, stopped
    second = gang(tmp_path, make_config(tmp_path, pulsar_broker.service_url, topic), workers=1)
    second.start(tmp_path)
    (resumed,) = finish(second, tmp_path)
    assert resumed["restoredStep"] == 32 and resumed["received"] > 1438 - 1024  # the third entry came back whole
    assert_exactly_once([resumed], payloads, logs=tmp_path)


def test_kill_9_and_restart_trains_every_message_exactly_once(pulsar_broker: PulsarURLs, tmp_path: Path) -> None:
    topic = f"persistent://public/default/crash-{uuid.uuid4().hex[:8]}"
    _, payloads = digits_payloads(repeat=4)
    publish(pulsar_broker.service_url, topic, payloads)
    config = make_config(tmp_path, pulsar_broker.service_url, topic)
    first = gang(tmp_path, config)
    first.start(tmp_path)
    wait_until(lambda: committed(tmp_path) >= 2, 120, "two committed checkpoints")
    os.kill(first.processes[1].pid, signal.SIGKILL)  # a crash mid-run ...
    first.stop(grace=3)  # ... and the gang restart: the survivor is stuck in a collective and gets SIGKILL
    assert first.processes[1].returncode == -signal.SIGKILL
    assert not (tmp_path / "summary-0.json").exists()  # it really was mid-run
    second = gang(tmp_path, config)
    second.start(tmp_path)
    summaries = finish(second, tmp_path)
    assert all(s["restoredStep"] for s in summaries)  # resumed from a committed checkpoint
    assert_exactly_once(summaries, payloads, logs=tmp_path)


def test_sigterm_stops_all_workers_on_one_step_and_restart_continues(pulsar_broker: PulsarURLs,
                                                                     tmp_path: Path) -> None:
    topic = f"persistent://public/default/term-{uuid.uuid4().hex[:8]}"
    _, payloads = digits_payloads(repeat=12)
    publish(pulsar_broker.service_url, topic, payloads)
    config = make_config(tmp_path, pulsar_broker.service_url, topic, batchSize=16)
    first = gang(tmp_path, config)
    first.start(tmp_path, termination_logs=tmp_path)
    wait_until(lambda: committed(tmp_path) >= 1, 120, "a committed checkpoint", interval=0.05)
    first.processes[1].send_signal(signal.SIGTERM)
    stopped = finish(first, tmp_path, timeout=60)
    assert stopped[0]["step"] == stopped[1]["step"]
    outcomes = [ProgressDocument.from_json((tmp_path / f"termination-{i}.json").read_text()) for i in range(2)]
    assert [(o.state, o.step) for o in outcomes] == [("stopped", stopped[0]["step"])] * 2  # worker 0 too
    assert outcomes[1].message == "stopped on SIGTERM"
    assert 0 < stopped[0]["trainedSamples"] < len(payloads)
    last = max(int(p.name.split("-")[1].split(".")[0]) for p in (tmp_path / "checkpoints").glob("*.committed"))
    assert last == stopped[0]["step"]  # the stop was checkpointed
    for name in ("summary-0.json", "summary-1.json"):
        (tmp_path / name).unlink()
    second = gang(tmp_path, config)
    second.start(tmp_path, termination_logs=tmp_path)
    summaries = finish(second, tmp_path)
    assert summaries[0]["restoredStep"] == stopped[0]["step"]
    assert ProgressDocument.from_json((tmp_path / "termination-0.json").read_text()).state == "finished"
    assert_exactly_once(summaries, payloads, logs=tmp_path)


MALFORMED = {
    "invalid-json": b'{"pixels": [1, 2',
    "not-an-object": b"[1, 2, 3]",
    "empty": b"",
    "missing-label": b'{"pixels": ' + json.dumps([1.0] * 64).encode() + b"}",
    "missing-feature": b'{"digit": 3}',
    "short-shape": b'{"pixels": [1.0, 2.0], "digit": 3}',
    "string-value": b'{"pixels": ' + json.dumps(["x"] * 64).encode() + b', "digit": 3}',
    "nan": b'{"pixels": [NaN' + b", 1.0" * 63 + b'], "digit": 3}',
    "infinity": b'{"pixels": [Infinity' + b", 1.0" * 63 + b'], "digit": 3}',
    "label-out-of-range": b'{"pixels": ' + json.dumps([1.0] * 64).encode() + b', "digit": 12}',
    "label-not-integral": b'{"pixels": ' + json.dumps([1.0] * 64).encode() + b', "digit": 3.5}',
    "binary-garbage": bytes(range(256)),
}


def test_malformed_messages_are_dead_lettered_and_good_ones_all_train(pulsar_broker: PulsarURLs,
                                                                       tmp_path: Path) -> None:
    topic = f"persistent://public/default/corpus-{uuid.uuid4().hex[:8]}"
    _, good = digits_payloads(repeat=1, data_format="json")
    good = good[:600]
    mixed = list(good)
    for offset, bad in enumerate(MALFORMED.values()):
        mixed.insert(40 * offset + 7, bad)
    client = pulsar.Client(pulsar_broker.service_url)
    dlq = client.subscribe(f"{topic}-trainer-DLQ", "check", initial_position=pulsar.InitialPosition.Earliest)
    try:
        publish(pulsar_broker.service_url, topic, mixed)
        g = gang(tmp_path, make_config(tmp_path, pulsar_broker.service_url, topic, data_format="json"))
        g.start(tmp_path)
        summaries = finish(g, tmp_path)
        assert_exactly_once(summaries, good, logs=tmp_path)
        assert sum(s["deadLettered"] for s in summaries) == len(MALFORMED)
        letters: dict[bytes, str] = {}
        deadline = time.monotonic() + 30
        while len(letters) < len(MALFORMED) and time.monotonic() < deadline:
            try:
                message = dlq.receive(timeout_millis=2000)
            except pulsar.Timeout:
                continue
            letters[message.data()] = message.properties()["pulsetrain.reason"]
        assert set(letters) == set(MALFORMED.values())
        kinds = {letters[payload].split(":")[0] for payload in MALFORMED.values()}
        assert len(kinds) >= 6, letters  # the reasons name the kind of problem
        # every original is acknowledged: the good ones after their commit, the bad ones once their dead-letter
        # copy was persisted (sent asynchronously, acknowledged by the training thread afterwards)
        wait_until(lambda: backlog(pulsar_broker.admin_url, topic, "trainer") == 0, 30, "an empty backlog")
    finally:
        client.close()


def test_continuous_mode_exports_versions_until_sigterm(pulsar_broker: PulsarURLs, tmp_path: Path) -> None:
    topic = f"persistent://public/default/continuous-{uuid.uuid4().hex[:8]}"
    _, payloads = digits_payloads(repeat=6)
    publish(pulsar_broker.service_url, topic, payloads)
    config = make_config(tmp_path, pulsar_broker.service_url, topic, mode="continuous", batchSize=16,
                         exportEverySteps=50)
    doc = json.loads(config.read_text())
    del doc["training"]["idleTimeoutSeconds"]  # continuous mode never stops by itself
    config.write_text(json.dumps(doc))
    g = gang(tmp_path, config)
    g.start(tmp_path)
    models = tmp_path / "models"
    wait_until(lambda: models.exists() and len([p for p in models.iterdir() if p.name.isdigit()]) >= 2, 180,
               "two exported versions")
    g.processes[0].send_signal(signal.SIGTERM)
    summaries = finish(g, tmp_path, timeout=60)
    assert summaries[0]["step"] == summaries[1]["step"]
    versions = sorted(int(p.name) for p in models.iterdir() if p.name.isdigit())
    assert versions == list(range(1, len(versions) + 1)) and len(versions) >= 3  # + the export at stop
    assert not [p for p in models.iterdir() if p.name.startswith(".")]  # no half-written version left
    last = json.loads((models / str(versions[-1]) / "pulsetrain.json").read_text())
    assert last["step"] == summaries[0]["step"] and last["samples"] == summaries[0]["trainedSamples"]


def test_user_model_and_preprocess_hooks_and_max_steps(pulsar_broker: PulsarURLs, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    topic = f"persistent://public/default/hooks-{uuid.uuid4().hex[:8]}"
    dataset, payloads = digits_payloads(repeat=1)
    refused = dataset.features["pixels"][:3].copy()
    refused[:, 0] = -1.0  # `halve` raises on these: dead letters, while the records beside them train
    refused_payloads = encode_batch(dataset.data, {"pixels": refused}, dataset.labels[:3])
    client = pulsar.Client(pulsar_broker.service_url)
    dlq = client.subscribe(f"{topic}-trainer-DLQ", "check", initial_position=pulsar.InitialPosition.Earliest)
    publish(pulsar_broker.service_url, topic, payloads[:5] + refused_payloads + payloads[5:])
    config = make_config(tmp_path, pulsar_broker.service_url, topic, maxSteps=15)
    doc = json.loads(config.read_text())
    doc["model"] = {"custom": "tests.integration.user_hooks:tiny_model", "task": "classification",
                    "numClasses": 10, "preprocess": "tests.integration.user_hooks:halve"}
    config.write_text(json.dumps(doc))
    hook_log = tmp_path / "hooks.log"
    monkeypatch.setenv("PULSETRAIN_TEST_HOOK_LOG", str(hook_log))
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[2]))
    g = gang(tmp_path, config, workers=1)
    g.start(tmp_path)
    (summary,) = finish(g, tmp_path)
    assert summary["step"] == 15 and summary["trainedSamples"] == 15 * 32
    calls = hook_log.read_text().splitlines()
    assert calls.count("model") == 1
    assert any(line.startswith("preprocess ") for line in calls)
    assert summary["deadLettered"] == 3
    try:
        letters = [dlq.receive(timeout_millis=10_000) for _ in refused_payloads]
    finally:
        client.close()
    assert sorted(m.data() for m in letters) == sorted(refused_payloads)
    assert {m.properties()["pulsetrain.reason"] for m in letters} == {"preprocess: ValueError: a negative pixel"}
    # started again on the same directories: the limit is reached already, so nothing trains or is exported
    again = gang(tmp_path, config, workers=1)
    again.start(tmp_path)
    (restarted,) = finish(again, tmp_path)
    assert restarted["restoredStep"] == 15 and restarted["step"] == 15 and restarted["localRows"] == 0
    assert restarted["trainedSamples"] == 15 * 32
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["1"]


def own_broker(pulsar_broker: PulsarURLs) -> Any:
    """The test bed's own broker, which a test may stop and `restart` (not an external one)."""
    from tests.cluster.pulsar_server import PulsarServer
    from tests.cluster.testbed import TestBedInfo

    info = TestBedInfo.load()
    assert info is not None and info.pulsar_service_url == pulsar_broker.service_url, "needs the own test bed"
    broker = PulsarServer.running_in(Path(info.state) / "pulsar")
    assert broker is not None
    return broker


def restart(broker: Any) -> None:
    """Start the stopped standalone broker again. Its embedded bookie has once died right after a restart
    ("Bookie is not running any more", in CI) and taken the broker with it; this test is about the workers
    riding out an outage, not about that, so the broker gets a second start."""
    for attempt in (1, 2):
        broker.start()
        try:
            broker.wait_ready(timeout=180)
            return
        except RuntimeError:
            if attempt == 2:
                raise
            broker.stop()


@pytest.mark.parametrize("outage", ["before-the-first-commit", "after-a-commit"])
def test_broker_outage_is_reported_and_waited_out(pulsar_broker: PulsarURLs, tmp_path: Path, outage: str) -> None:
    broker = own_broker(pulsar_broker)
    topic = f"persistent://public/default/outage-{uuid.uuid4().hex[:8]}"
    _, payloads = digits_payloads(repeat=10)
    publish(pulsar_broker.service_url, topic, payloads)
    # Before the first commit the gang goes back to its initial state (kept in memory), not a checkpoint.
    every = 10 if outage == "after-a-commit" else 10**6
    g = gang(tmp_path, make_config(tmp_path, pulsar_broker.service_url, topic, batchSize=16, idleTimeoutSeconds=8,
                                   checkpointEverySteps=every))
    g.start(tmp_path)

    try:
        if outage == "after-a-commit":
            wait_until(lambda: committed(tmp_path) >= 1, 120, "a committed checkpoint", interval=0.05)
        else:
            wait_until(lambda: (d := chief_progress(g)) and d["step"] >= 20, 120, "20 steps", interval=0.05)
            assert committed(tmp_path) == 0
        broker.stop()
        document = wait_until(lambda: (d := chief_progress(g)) and d["state"] == "source-unavailable" and d, 60,
                              "the progress document to report the outage")
        assert "Pulsar" in document["message"]
        time.sleep(10)  # longer than the idle timeout: an outage must not end a bounded run
        assert all(p.poll() is None for p in g.processes)
    finally:
        restart(broker)
    summaries = finish(g, tmp_path, timeout=300)
    # After the restart the broker redelivers what the workers had trained but not committed, possibly
    # to the other worker: the gang went back to its last commit, so every message counts once.
    assert_exactly_once(summaries, payloads, logs=tmp_path)
    for index in range(g.workers):
        assert "the gang went back to step" in (tmp_path / f"worker-{index}.log").read_text()


WORKER_1_MISCONFIGURED = {
    # another subscription: worker 1 receives every message worker 0 does, a duplicate the rollbacks cannot see
    "another-subscription": (("source", "pulsar", "subscription"), "another", "were already trained by another worker",
                             ("subscription 'trainer'", "subscription 'another'")),
    # another checkpoint directory (on a cluster: no shared claim, an emptyDir per pod): the chief cannot read
    # worker 1's ledger files, so it cannot tell what that worker trained
    "unshared-checkpoints": (("storage", "checkpointDir"), "elsewhere", "missing ['ckpt-10.ledger-1']",
                             ("one shared checkpoint directory",) * 2),
}


@pytest.mark.parametrize("case", sorted(WORKER_1_MISCONFIGURED))
def test_a_gang_that_cannot_commit_safely_never_commits(pulsar_broker: PulsarURLs, tmp_path: Path, case: str) -> None:
    """Worker 1 is configured unlike worker 0 (see `WORKER_1_MISCONFIGURED`). Each commit is refused by the
    chief's check of the ledgers and the gang rolls back; after three refusals in a row both workers fail with
    `CommitsRefused`, and the message says what to fix."""
    path, value, chief_says, outcomes_say = WORKER_1_MISCONFIGURED[case]
    topic = f"persistent://public/default/twice-{uuid.uuid4().hex[:8]}"
    _, payloads = digits_payloads(repeat=1)
    publish(pulsar_broker.service_url, topic, payloads)
    config = make_config(tmp_path, pulsar_broker.service_url, topic)
    doc = json.loads(config.read_text())
    *parents, key = path
    section = doc
    for name in parents:
        section = section[name]
    section[key] = str(tmp_path / value) if key == "checkpointDir" else value
    other = tmp_path / "worker-1.json"
    other.write_text(json.dumps(doc))
    g = gang(tmp_path, config)
    g.processes = [g.start_worker(0, termination_log=tmp_path / "termination-0.json")]
    g.config_path = other
    g.processes.append(g.start_worker(1, termination_log=tmp_path / "termination-1.json"))

    codes = g.wait(240)
    g.stop(grace=5)

    logs = [(tmp_path / f"worker-{i}.log").read_text() for i in range(2)]
    assert codes == [1, 1], f"exit codes {codes}\n" + "\n".join(log[-3000:] for log in logs)
    assert committed(tmp_path) == 0
    assert "ledgers of ckpt-10: " in logs[0] and chief_says in logs[0], logs[0][-3000:]
    for index, log in enumerate(logs):
        assert log.count("the commit of ckpt-10 was refused: ") == 3, log[-3000:]
        assert log.count("the gang went back to step 0") == 2
        outcome = json.loads((tmp_path / f"termination-{index}.json").read_text())
        assert outcome["state"] == "failed"
        assert "CommitsRefused" in outcome["message"] and outcomes_say[index] in outcome["message"], outcome
