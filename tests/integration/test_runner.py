"""`pulsetrain run` end to end, as a user runs it: the command line, a pipeline file, a broker, a model.

Each test publishes the digits train split with `pulsetrain produce --pipeline`, trains with
`pulsetrain run`, and checks the exit code, the summary, the exported SavedModel's accuracy on the
held-out split, and the exactly-once counters the workers leave in their summaries (samples trained and
the sum of every trained payload's digest: a lost or doubly trained message changes it). Once on the
embedded pulsar-lite broker (one worker: its limit), once on the test bed's Pulsar standalone with a
gang of two, and once stopped with Ctrl-C and resumed.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import IO, Any

import numpy as np
import pytest
import yaml

from pulsetrain import datasets
from pulsetrain.digest import digest
from pulsetrain.encode import encode_batch
from pulsetrain.progress_doc import ProgressDocument
from tests.conftest import PulsarURLs
from tests.support import wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "digits.yaml"
CLI = [sys.executable, "-m", "pulsetrain.cli"]


def pulsetrain(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return result


def start_run(path: Path, state: Path) -> subprocess.Popen[str]:
    """`pulsetrain run PATH` in the background, its output (stdout and stderr) on a pipe, for Ctrl-C tests."""
    return subprocess.Popen([*CLI, "run", str(path), "--state-dir", str(state)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def pipeline_file(tmp_path: Path, **pulsar: Any) -> Path:
    """The example pipeline with a unique topic and the given `source.pulsar` fields."""
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["spec"]["source"]["pulsar"].update(topic=f"digits-{uuid.uuid4().hex[:8]}", **pulsar)
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def publish(path: Path, state: Path, repeat: int, *extra: str) -> None:
    result = pulsetrain("produce", "--pipeline", str(path), "--state-dir", str(state), "--dataset", "digits",
                        "--split", "train", "--repeat", str(repeat), "--no-progress", *extra)
    assert result.returncode == 0, result.stderr
    assert f"published {1438 * repeat} raw messages" in result.stdout


def train_payloads(repeat: int) -> list[bytes]:
    train, _ = datasets.load("digits").split(0.2, seed=0)
    return encode_batch(train.data, train.features, train.labels) * repeat


def held_out_accuracy(model_dir: Path) -> float:
    import tensorflow as tf

    _, test = datasets.load("digits").split(0.2, seed=0)
    serve = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    predicted = serve(pixels=tf.constant(test.features["pixels"]))["class"].numpy()
    return float(np.mean(predicted == test.labels))


def worker_summaries(state: Path, workers: int) -> list[dict[str, Any]]:
    return [json.loads((state / f"summary-{i}.json").read_text()) for i in range(workers)]


def assert_trained_exactly_once(summaries: list[dict[str, Any]], payloads: list[bytes]) -> None:
    for summary in summaries:
        assert summary["trainedSamples"] == len(payloads)
        assert summary["digestSum"] == sum(digest(p) for p in payloads)


class Lines:
    """A child's output read by a thread into a queue, so that waiting for a line has a deadline (a bare
    `for line in stdout` blocks forever when the child stalls)."""

    def __init__(self, stream: IO[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()  # None: end of output
        self._ended = False
        self._thread = threading.Thread(target=self._read, args=(stream,), name="runner-output", daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        try:
            for line in stream:
                self._queue.put(line)
        finally:
            self._queue.put(None)

    def _next(self, timeout: float) -> str | None:
        """The next line; None at the end of the output; queue.Empty when none came within `timeout`."""
        line = self._queue.get(timeout=max(timeout, 0.0))
        if line is None:
            self._ended = True
        else:
            self.seen.append(line)
        return line

    def wait_for(self, prefix: str, timeout: float) -> None:
        """Read until a line starts with `prefix`; AssertionError with the output so far when the output ends
        or `timeout` seconds pass first."""
        deadline = time.monotonic() + timeout
        while not self._ended:
            try:
                line = self._next(deadline - time.monotonic())
            except queue.Empty:
                raise AssertionError(f"no line starting with {prefix!r} within {timeout:.0f}s; the output so "
                                     f"far:\n{self.text()}") from None
            if line is not None and line.startswith(prefix):
                return
        raise AssertionError(f"the output ended before a line starting with {prefix!r}:\n{self.text()}")

    def rest(self, timeout: float) -> str:
        """Everything, once the output has ended (the child exited) or `timeout` seconds passed."""
        deadline = time.monotonic() + timeout
        while not self._ended:
            try:
                self._next(deadline - time.monotonic())
            except queue.Empty:
                break
        return self.text()

    def text(self) -> str:
        return "".join(self.seen)


def test_embedded_broker_trains_digits(tmp_path: Path) -> None:
    state = tmp_path / "state"
    path = pipeline_file(tmp_path)
    publish(path, state, repeat=4)
    result = pulsetrain("run", str(path), "--state-dir", str(state))
    output = result.stdout
    assert result.returncode == 0, output + result.stderr
    assert "embedded broker pulsar://127.0.0.1:" in output
    assert "digits finished after" in output and "(1 worker, step " in output
    assert "  trained      5,752 messages, 0 dead-lettered" in output
    assert f"  model        version 1 at {state.resolve()}/export/1" in output
    assert "ran 1 worker instead of 2" in output  # said, not done silently
    assert_trained_exactly_once(worker_summaries(state, 1), train_payloads(4))
    assert (state / "export" / "1" / "saved_model.pb").exists()
    assert (state / "broker" / "broker.log").exists()
    assert held_out_accuracy(state / "export" / "1") >= 0.95


def test_real_pulsar_trains_digits_with_a_gang_of_two(pulsar_broker: PulsarURLs, tmp_path: Path) -> None:
    state = tmp_path / "state"
    path = pipeline_file(tmp_path, serviceUrl=pulsar_broker.service_url, adminUrl=pulsar_broker.admin_url)
    publish(path, state, repeat=4)
    assert not (state / "broker").exists()  # no embedded broker was started
    result = pulsetrain("run", str(path), "--state-dir", str(state), "--quiet")
    output = result.stdout
    assert result.returncode == 0, output + result.stderr
    assert output.startswith("pulsetrain run: digits finished after") and "(2 workers, step " in output
    assert "step 0 |" not in output  # --quiet: only the summary
    assert "  trained      5,752 messages, 0 dead-lettered" in output
    summaries = worker_summaries(state, 2)
    assert_trained_exactly_once(summaries, train_payloads(4))
    assert summaries[0]["step"] == summaries[1]["step"] and all(s["localRows"] > 0 for s in summaries)
    config = json.loads((state / "worker.json").read_text())
    assert config["source"]["pulsar"]["adminUrl"] == pulsar_broker.admin_url
    assert held_out_accuracy(state / "export" / "1") >= 0.95


def test_ctrl_c_stops_gracefully_and_the_next_run_resumes(pulsar_broker: PulsarURLs, tmp_path: Path) -> None:
    # On the real broker: pulsar-lite 0.2.0 does not always keep acknowledgements across its own restart
    # (between the two runs here it is stopped and started again), and then redelivers messages that were
    # trained and acknowledged before (seen once in CI: 488 of 17,256 trained twice). The README says so.
    # That figure, nearly one batch entry of ~496, also fits a defect since fixed (a partly committed entry
    # redelivered whole beyond the ledger's windows), which later failed this test on the real broker too.
    state = tmp_path / "state"
    doc = yaml.safe_load(pipeline_file(tmp_path, serviceUrl=pulsar_broker.service_url).read_text())
    doc["spec"]["training"].update(batchSize=8, checkpointEverySteps=20)
    path = tmp_path / "slow.yaml"
    path.write_text(yaml.safe_dump(doc))
    publish(path, state, repeat=12)
    runner = start_run(path, state)
    try:
        wait_until(lambda: list((state / "checkpoints").glob("*.committed")) if (state / "checkpoints").exists()
                   else None, 180, "a committed checkpoint", interval=0.1)
        runner.send_signal(signal.SIGINT)
        output, _ = runner.communicate(timeout=120)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert runner.returncode == 130, output
    assert "digits stopped after" in output and ": stopped on SIGINT" in output, output
    assert "Run the same command again to continue from the last checkpoint." in output
    final = ProgressDocument.from_json((state / "termination-0.json").read_text())
    assert final.state == "stopped" and final.message == "stopped on SIGTERM"  # the runner forwarded SIGTERM
    assert final.last_checkpoint is not None and final.last_checkpoint.step == final.step  # checkpointed at the stop
    stopped_samples = worker_summaries(state, 1)[0]["trainedSamples"]
    payloads = train_payloads(12)
    assert 0 < stopped_samples < len(payloads)

    resumed = pulsetrain("run", str(path), "--state-dir", str(state), "--quiet")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    (summary,) = worker_summaries(state, 1)
    assert summary["restoredStep"] == final.step
    assert_trained_exactly_once([summary], payloads)


def test_check_only_checks_and_names_what_a_cluster_would_refuse(tmp_path: Path) -> None:
    result = pulsetrain("run", str(EXAMPLE), "--check", "--state-dir", str(tmp_path / "state"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"{EXAMPLE}: valid; `pulsetrain run` would train digits with 1 worker(s) on the "
                                    "embedded broker"), result.stdout
    assert "a cluster's API server would refuse it: spec.storage.claimName: Invalid value" in result.stdout
    assert "a cluster's API server would refuse it: spec.source.pulsar.serviceUrl: Required value" in result.stdout
    assert not (tmp_path / "state").exists()  # nothing started, nothing written
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["spec"]["model"]["metrics"] = ["auc"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    refused = pulsetrain("run", str(bad), "--check")
    assert refused.returncode == 2 and refused.stdout == "", refused.stdout
    assert f"the worker would refuse {bad}: spec.model.metrics[0]: 'auc' is not one of" in refused.stderr


def test_a_failing_worker_fails_the_run_with_its_log(tmp_path: Path) -> None:
    path = pipeline_file(tmp_path, serviceUrl="pulsar://127.0.0.1:1")  # nobody listens there: fine until it trains
    doc = yaml.safe_load(path.read_text())
    doc["spec"]["model"]["custom"] = "no_such_module:build"  # the worker refuses it: exit code 2
    del doc["spec"]["model"]["builtin"], doc["spec"]["model"]["mlp"]
    path.write_text(yaml.safe_dump(doc))
    result = pulsetrain("run", str(path), "--state-dir", str(tmp_path / "state"), "--workers", "1", "--quiet")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "digits FAILED after" in result.stdout
    assert "worker 0 exited with code 2: invalid configuration: model.custom: cannot import module" in result.stdout
    assert "--- end of " in result.stdout and "no_such_module" in result.stdout  # the end of its log


def test_a_bounded_run_that_gets_no_message_fails_without_exporting(pulsar_broker: PulsarURLs, tmp_path: Path) -> None:
    """A topic nobody publishes to (a typo, a producer not started): the run fails with exit code 4 and says
    where it read; no untrained model is exported (a predictor would serve it)."""
    state = tmp_path / "state"
    doc = yaml.safe_load(pipeline_file(tmp_path, serviceUrl=pulsar_broker.service_url).read_text())
    doc["spec"]["training"]["idleTimeoutSeconds"] = 1
    path = tmp_path / "empty.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = pulsetrain("run", str(path), "--state-dir", str(state), "--workers", "1", "--quiet")
    assert result.returncode == 4, result.stdout + result.stderr
    topic = doc["spec"]["source"]["pulsar"]["topic"]
    assert "digits FAILED after" in result.stdout, result.stdout
    assert "nothing trained, so nothing exported" in result.stdout and topic in result.stdout, result.stdout
    assert "this worker received no message" in result.stdout
    assert not (state / "export").exists() or not any((state / "export").iterdir())
    final = ProgressDocument.from_json((state / "termination-0.json").read_text())
    assert final.state == "failed" and final.step == 0 and final.last_export is None


def test_serving_stage_answers_held_out_digits_after_training_until_ctrl_c(tmp_path: Path) -> None:
    """`spec.serving` on one machine: the predictor waits for the model, then answers until Ctrl-C (embedded
    broker: the predictor's subscription is on its own topic, so pulsar-lite serves it beside the worker)."""
    import pulsar

    state = tmp_path / "state"
    doc = yaml.safe_load(pipeline_file(tmp_path).read_text())
    suffix = uuid.uuid4().hex[:8]
    doc["spec"]["serving"] = {"inputTopic": f"requests-{suffix}", "outputTopic": f"answers-{suffix}",
                              "modelPollSeconds": 0.5}
    path = tmp_path / "serving.yaml"
    path.write_text(yaml.safe_dump(doc))
    publish(path, state, repeat=4)
    runner = start_run(path, state)
    assert runner.stdout is not None
    output = Lines(runner.stdout)
    try:
        output.wait_for("serving: serving, model version 1", timeout=300)  # training, export, model loaded
        service_url = next(line.split("embedded broker ")[1].split(",")[0] for line in output.seen
                           if "embedded broker " in line)
        _, test = datasets.load("digits").split(0.2, seed=0)
        inputs = encode_batch(test.data, test.features, test.labels)
        client = pulsar.Client(service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
        try:
            answers = client.subscribe(doc["spec"]["serving"]["outputTopic"], "test",
                                       initial_position=pulsar.InitialPosition.Earliest)
            producer = client.create_producer(doc["spec"]["serving"]["inputTopic"], batching_enabled=False)
            for index, payload in enumerate(inputs):
                producer.send(payload, partition_key=str(index))
            predicted: dict[int, int] = {}
            while len(predicted) < len(inputs):
                message = answers.receive(timeout_millis=60_000)
                predicted[int(message.partition_key())] = json.loads(message.data())["prediction"]["class"]
                answers.acknowledge(message)
        finally:
            client.close()
        accuracy = np.mean([predicted[i] == int(label) for i, label in enumerate(test.labels)])
        assert accuracy >= 0.95, accuracy
        runner.send_signal(signal.SIGINT)
        try:
            runner.wait(timeout=120)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the runner did not end within 120s of Ctrl-C:\n{output.rest(0)}") from None
    finally:
        if runner.poll() is None:
            runner.kill()
    text = output.rest(timeout=30)
    assert runner.returncode == 0, text  # training finished; serving was stopped on request
    assert "digits finished after" in text
    assert f"  served       {len(inputs):,} answered with model version 1, 0 dead-lettered" in text, text
