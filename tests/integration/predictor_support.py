"""Run the predictor as a local process and talk to it over Pulsar: shared by the predictor tests and its benchmark.

`PredictorProcess` is `python -m pulsetrain.predictor` in its own session (so SIGKILL takes nothing else
down) with its own metrics port; `send_inputs` publishes payloads and returns their message IDs in order
(optionally paced); `Answers` reads the output topic in a thread and groups answers by the input message ID
they carry, which is how every test checks "one answer per input".
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulsar

from pulsetrain.predict_io import INPUT_ID_PROPERTY, INPUT_KEY_PROPERTY, MODEL_VERSION_PROPERTY


@dataclass
class PredictorProcess:
    config: Path
    log: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PredictorProcess:
        env = {**os.environ, "PULSETRAIN_METRICS_PORT": str(self.port), "TF_CPP_MIN_LOG_LEVEL": "2"}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "pulsetrain.predictor", "--config", str(self.config)],
                                         env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def get(self, path: str) -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as response:
                return str(response.read().decode())
        except OSError:
            return None

    def progress(self) -> dict[str, Any] | None:
        text = self.get("/progress")
        return None if text is None else dict(json.loads(text))

    def wait_state(self, state: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, f"the predictor exited\n{self.log_tail()}"
            last = self.progress()
            if last and last["state"] == state:
                return last
            time.sleep(0.2)
        raise AssertionError(f"the predictor did not reach state {state!r} in {timeout:.0f}s; last progress "
                             f"{last}\n{self.log_tail()}")

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM and the exit code (SIGKILL, and a failure, when it does not exit in time)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the predictor ignored SIGTERM for {timeout:.0f}s\n{self.log_tail()}") from None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def send_inputs(client: pulsar.Client, topic: str, payloads: Sequence[bytes], keys: Sequence[str] | None = None,
                rate: float | None = None, sent_at: list[float] | None = None, batching: bool = True) -> list[str]:
    """Publish `payloads` in order (at about `rate` per second when given); their message IDs as strings.

    With `sent_at`, the wall time each `send_async` was called is appended there, in order. `batching=False`
    sends one message per broker entry: on a broker without batch-index acknowledgement (Pulsar's default,
    and the test bed's), a batch entry only partly acknowledged when its consumer goes away is redelivered
    whole, acknowledged messages included."""
    producer = client.create_producer(topic, batching_enabled=batching, batching_max_publish_delay_ms=1,
                                      block_if_queue_full=True)
    ids: list[str | None] = [None] * len(payloads)
    failures: list[str] = []

    def callback(index: int) -> Any:
        def sent(result: pulsar.Result, message_id: pulsar.MessageId) -> None:
            if result == pulsar.Result.Ok:
                ids[index] = str(message_id)
            else:
                failures.append(str(result))
        return sent

    started = time.monotonic()
    for index, payload in enumerate(payloads):
        if rate:
            delay = started + index / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        if sent_at is not None:
            sent_at.append(time.time())
        producer.send_async(payload, callback(index), partition_key=keys[index] if keys else None)
    producer.flush()
    producer.close()
    if failures or None in ids:
        raise AssertionError(f"publishing failed: {failures[:3]}")
    return [i for i in ids if i is not None]


@dataclass(frozen=True)
class Answer:
    input_id: str
    version: int
    key: str
    body: dict[str, Any]
    received_at: float
    """Wall time this reader received the answer."""
    topic: str
    """The topic it came from: a partition's own name when the output topic has partitions."""
    input_key: str | None
    """The `pulsetrain.input-key` property (None when the input had no key)."""


@dataclass
class Answers:
    """Every answer on `topic`, read in a background thread from a fresh subscription."""

    client: pulsar.Client
    topic: str
    latest: bool = False
    """Only answers published after this reader subscribed (the default: every answer the topic holds)."""
    answers: list[Answer] = field(default_factory=list)

    def __post_init__(self) -> None:
        position = pulsar.InitialPosition.Latest if self.latest else pulsar.InitialPosition.Earliest
        self._consumer = self.client.subscribe(self.topic, f"check-{uuid.uuid4().hex[:8]}",
                                               initial_position=position, receiver_queue_size=5000)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="answers", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                message = self._consumer.receive(timeout_millis=200)
            except pulsar.Timeout:
                continue
            except Exception:  # the client was closed under us
                return
            properties = message.properties()
            self.answers.append(Answer(properties[INPUT_ID_PROPERTY], int(properties[MODEL_VERSION_PROPERTY]),
                                       message.partition_key(), json.loads(message.data()), time.time(),
                                       message.topic_name(), properties.get(INPUT_KEY_PROPERTY)))
            self._consumer.acknowledge(message)

    def by_id(self) -> dict[str, list[Answer]]:
        grouped: dict[str, list[Answer]] = {}
        for answer in list(self.answers):
            grouped.setdefault(answer.input_id, []).append(answer)
        return grouped

    def wait_for(self, ids: Sequence[str], timeout: float, settle: float = 3.0) -> dict[str, list[Answer]]:
        """Wait until every id has an answer, then `settle` seconds more (for duplicates to show)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            grouped = self.by_id()
            if all(i in grouped for i in ids):
                time.sleep(settle)
                return self.by_id()
            time.sleep(0.2)
        missing = [i for i in ids if i not in self.by_id()]
        raise AssertionError(f"{len(missing)} of {len(ids)} inputs unanswered after {timeout:.0f}s, "
                             f"e.g. {missing[:5]}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._consumer.close()
