"""`pulsetrain run PIPELINE.yaml`: one `TrainingPipeline` trained on this machine, without Kubernetes.

Why this exists: the first thing a newcomer does is try the pipeline file on a laptop, and a data
scientist iterating on a model should not need a cluster. So the runner does on one machine what the
operator and the kubelet do on a cluster, with the same pieces: the file is checked against the CRD's
schema (`pulsetrain.pipeline_file`), the worker configuration is rendered by the operator's builder,
the workers are the same `python -m pulsetrain.worker` processes with `TF_CONFIG` (on free loopback
ports, `pulsetrain.local.LocalGang`), and the chief's `/progress` document drives the progress line as
it drives the resource's status. Without a `serviceUrl` (or with `embedded`) the broker is the embedded
`pulsar-lite` (`pulsetrain.embedded_broker`), whose storage lives in the state directory.

Stopping mirrors a pod deletion: Ctrl-C (or SIGTERM) sends SIGTERM to every worker (they finish the
step, checkpoint, acknowledge and exit), waits `runPolicy.terminationGracePeriodSeconds`, then SIGKILLs;
a second Ctrl-C kills at once. A worker that fails stops the gang (MultiWorkerMirroredStrategy cannot go
on without it); the run ends with that worker's exit code and the end of its log. There are no
automatic gang restarts here: running the same command again resumes from the last checkpoint.
Not applied on one machine: `spec.worker` (image, resources, scheduling, command: the workers run with
this Python), `storage.claimName`, and `runPolicy` other than `suspend` and the grace period.

With `spec.serving`, one predictor (`pulsetrain.local_serving`) starts with the gang, waits for the
first exported model, and answers from the input topic onto the output topic; after a bounded run has
finished it keeps serving until Ctrl-C. That Ctrl-C ends the run with exit code 0: training finished and
serving stopped on request, which is how serving ends. The predictor is stopped (SIGTERM, then SIGKILL
after the grace period) however the run ends, an exception in the runner included: it runs in a session
of its own, so nothing else would stop it. A predictor that exits on its own with an error, during
training or while serving, is a failure of the run: the end of `predictor.log` is printed and the run ends
with the predictor's exit code, unless training had already ended the run with a non-zero code.

Exit codes: 0 finished, 2 invalid pipeline, 128+N stopped by signal N (130 for Ctrl-C), otherwise the
failing worker's exit code, or the failing predictor's (1 when it was killed by a signal).
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from pulsetrain.config import ConfigError, load_config
from pulsetrain.embedded_broker import MAX_WORKERS as EMBEDDED_MAX_WORKERS
from pulsetrain.embedded_broker import EmbeddedBroker, free_port, tail
from pulsetrain.local import LocalGang
from pulsetrain.local_serving import LocalPredictor, final_counts, predictor_config, served_line, serving_line
from pulsetrain.pipeline_file import Pipeline, local_worker_config, worker_env
from pulsetrain.progress_doc import ProgressDocument
from pulsetrain.run_report import Outcome, RunResult, WorkerEnd, progress_line, summary

EXIT_INVALID = 2
FAILURE_GRACE_S = 10.0
"""After a worker failed, how long the others get to exit before SIGKILL (they are usually stuck in a collective)."""
POLL_S = 0.25
PLAIN_EVERY_S = 10.0
"""Without a terminal, a progress line at every change of state, and at most this often while steps advance..."""
QUIET_EVERY_S = 60.0
"""... or this often while nothing changes."""


@dataclass(frozen=True)
class RunOptions:
    state_dir: Path | None = None
    service_url: str | None = None
    admin_url: str | None = None
    secrets_dir: Path | None = None
    quiet: bool = False
    grace_seconds: float | None = None


def state_dir_for(pipeline: Pipeline, given: Path | None) -> Path:
    """Where a pipeline's files go on this machine: the given directory, else `./.pulsetrain/<name>`."""
    return given if given is not None else Path(".pulsetrain") / pipeline.name


@contextlib.contextmanager
def broker_for(pipeline: Pipeline, state_dir: Path) -> Iterator[str]:
    """The pipeline's broker URL while the block runs: the embedded broker (started, then stopped) or its own."""
    if not pipeline.embedded:
        yield str(pipeline.spec["source"]["pulsar"]["serviceUrl"])
        return
    with EmbeddedBroker(state_dir / "broker") as broker:
        yield broker.url


class StopSignals:
    """Ctrl-C/SIGTERM in the runner: the first asks for a graceful stop, the second for an immediate one."""

    def __init__(self) -> None:
        self.received: list[int] = []

    def handle(self, signum: int, frame: object) -> None:
        self.received.append(signum)

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopSignals]:
        previous = {sig: signal.signal(sig, self.handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def fetch_progress(port: int) -> ProgressDocument | None:
    """The chief's progress document, or None while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/progress", timeout=1) as response:
            return ProgressDocument.from_json(response.read())
    except (OSError, ValueError):
        return None


class Display:
    """The progress line: rewritten in place on a terminal, plain lines now and then otherwise."""

    def __init__(self, out: TextIO, quiet: bool, max_steps: int | None, max_messages: int | None) -> None:
        self.out, self.quiet = out, quiet
        self.tty = out.isatty()
        self.limits = (max_steps, max_messages)
        self.last_plain, self.last_state, self.last_step = 0.0, "", -1
        self.doc: ProgressDocument | None = None
        self.drawn = False

    def show(self, doc: ProgressDocument | None, elapsed: float) -> None:
        """Show the chief's latest document (the last one seen while it does not answer, as when it exits)."""
        self.doc = doc or self.doc
        if self.quiet:
            return
        line = progress_line(self.doc, elapsed, max_steps=self.limits[0], max_messages=self.limits[1])
        if self.tty:
            self.out.write("\r\x1b[2K" + line)
            self.out.flush()
            self.drawn = True
            return
        state, step = (self.doc.state, self.doc.step) if self.doc else ("", -1)
        now = time.monotonic()
        since = now - self.last_plain
        if state != self.last_state or (step != self.last_step and since >= PLAIN_EVERY_S) or since >= QUIET_EVERY_S:
            print(line, file=self.out, flush=True)
            self.last_plain, self.last_state, self.last_step = now, state, step

    def close(self) -> None:
        if self.drawn:
            self.out.write("\n")
            self.out.flush()
            self.drawn = False


def prepare(pipeline: Pipeline, state_dir: Path, service_url: str, options: RunOptions) -> Path:
    """Write the worker configuration (checked by the worker's own parser first); returns its path."""
    doc = local_worker_config(pipeline, state_dir, service_url=service_url, admin_url=options.admin_url,
                              secrets_dir=options.secrets_dir)
    load_config(doc)  # ConfigError: what the worker would refuse with exit code 2, said before starting it
    state_dir.mkdir(parents=True, exist_ok=True)
    for stale in (*state_dir.glob("summary-*.json"), *state_dir.glob("termination-*.json"),
                  *state_dir.glob("worker-*.log")):
        stale.unlink()  # each run's own (checkpoints, models and the broker's data are kept)
    path = state_dir / "worker.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def run(pipeline: Pipeline, options: RunOptions, out: TextIO = sys.stdout) -> int:
    """Run the pipeline to its end (or until stopped), print the summary, return the exit code."""
    state_dir = state_dir_for(pipeline, options.state_dir)
    if pipeline.spec.get("runPolicy", {}).get("suspend"):
        print(f"pulsetrain run: {pipeline.name} is suspended (spec.runPolicy.suspend: true); nothing to do",
              file=out)
        return 0
    started = time.monotonic()
    with broker_for(pipeline, state_dir) as service_url:
        try:
            config_path = prepare(pipeline, state_dir, service_url, options)
        except ConfigError as exc:
            print(f"pulsetrain run: the worker would refuse this pipeline:\n{exc}", file=sys.stderr)
            return EXIT_INVALID
        env, skipped = worker_env(pipeline)
        notes = [f"spec.worker.env {name}: valueFrom is not resolved on one machine" for name in skipped]
        workers = pipeline.workers
        if pipeline.embedded and workers > EMBEDDED_MAX_WORKERS:
            notes.append(f"ran {EMBEDDED_MAX_WORKERS} worker instead of {workers}: the embedded broker serves one "
                         "worker process per subscription; give --service-url pulsar://... for a gang")
            workers = EMBEDDED_MAX_WORKERS
        predictor = None
        if pipeline.spec.get("serving"):
            worker_doc = json.loads(config_path.read_text())
            predictor = LocalPredictor(predictor_config(pipeline.resource, worker_doc), state_dir, free_port(),
                                       pipeline.name)
            if int(pipeline.spec["serving"].get("replicas", 1)) > 1:
                notes.append("ran 1 predictor: spec.serving.replicas applies on a cluster")
        gang = LocalGang(config_path, workers, log_dir=state_dir, extra_env=env,
                         ports=[free_port() for _ in range(workers)],
                         metrics_ports=[free_port() for _ in range(workers)])
        where = "embedded broker" if pipeline.embedded else "broker"
        if not options.quiet:
            print(f"pulsetrain run: {pipeline.name}, {workers} worker{'s' if workers > 1 else ''}, {where} "
                  f"{service_url}, state in {state_dir}", file=out, flush=True)
            for note in notes:
                print(f"  note: {note}", file=out, flush=True)
        grace = options.grace_seconds
        if grace is None:
            grace = float(pipeline.spec.get("runPolicy", {}).get("terminationGracePeriodSeconds", 60))
        training = pipeline.spec.get("training", {})
        display = Display(out, options.quiet, training.get("maxSteps"), training.get("maxMessages"))
        predictor_exit: int | None = None  # the predictor's exit code when it exited before it was stopped
        with StopSignals().installed() as signals:
            gang.start(summaries=state_dir, termination_logs=state_dir)
            try:
                try:
                    if predictor is not None:
                        predictor.start()
                    outcome, reason, code, failed = supervise(gang, signals, display, grace, started)
                finally:
                    display.close()
                    gang.stop(grace=0)  # anything still running now is killed
                report(pipeline, gang, state_dir, outcome, reason, code, failed, started, notes, out)
                if predictor is not None and outcome == "finished" and predictor.exit_code() is None:
                    serve(pipeline, predictor, signals, out, options.quiet)
            finally:
                if predictor is not None:
                    predictor_exit = predictor.exit_code()
                    predictor.stop(grace)
        if predictor is not None:
            counts = final_counts(predictor.log_path)
            print(f"  {'served':<13}{served_line(counts, predictor.last)} (log: {predictor.log_path})",
                  file=out, flush=True)
            if predictor_exit not in (None, 0):
                how = f"was killed by {_signal_name(-predictor_exit)}" if predictor_exit < 0 else \
                    f"exited with code {predictor_exit}"
                print(f"pulsetrain run: the predictor {how}\n--- end of {predictor.log_path} ---\n"
                      f"{tail(predictor.log_path, 30)}", file=out, flush=True)
                code = code or failure_code(predictor_exit)
    return code


def failure_code(returncode: int | None) -> int:
    """The run's exit code for a child that failed with `returncode` (negative: killed by that signal): the code
    itself, or 1 for a signal and for codes a shell reserves (126 and up, which 128+N would be mistaken for)."""
    return returncode if returncode is not None and 0 < returncode < 126 else 1


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def serve(pipeline: Pipeline, predictor: LocalPredictor, signals: StopSignals, out: TextIO, quiet: bool) -> None:
    """Keep the predictor answering until Ctrl-C (or until it exits), with a line now and then."""
    serving = pipeline.spec["serving"]
    print(f"pulsetrain run: serving {serving['inputTopic']} -> {serving['outputTopic']} until Ctrl-C "
          f"(metrics http://127.0.0.1:{predictor.port}/metrics)", file=out, flush=True)
    handled = len(signals.received)
    last_state, last_print = "", 0.0
    while len(signals.received) == handled and predictor.exit_code() is None:
        progress = predictor.progress()
        now = time.monotonic()
        state = f"{progress.state}/{progress.model_version}" if progress else ""
        if not quiet and (state != last_state or now - last_print >= PLAIN_EVERY_S):
            print(serving_line(progress), file=out, flush=True)
            last_state, last_print = state, now
        time.sleep(POLL_S)


def report(pipeline: Pipeline, gang: LocalGang, state_dir: Path, outcome: Outcome, reason: str, code: int,
           failed: int | None, started: float, notes: list[str], out: TextIO) -> None:
    """Print the training summary."""
    ends = [WorkerEnd(i, p.returncode, _final(state_dir / f"termination-{i}.json"), state_dir / f"worker-{i}.log")
            for i, p in enumerate(gang.processes)]
    log_tail = ""
    if failed is not None:
        failed_log = state_dir / f"worker-{failed}.log"
        log_tail = f"--- end of {failed_log} ---\n{tail(failed_log, 30)}"
        final = ends[failed].final
        if final is not None and final.message:
            reason = f"{reason}: {final.message}"
    result = RunResult(pipeline.name, outcome, code, time.monotonic() - started, ends, state_dir, reason, log_tail,
                       notes)
    print(summary(result), file=out, flush=True)


def _final(path: Path) -> ProgressDocument | None:
    try:
        return ProgressDocument.from_json(path.read_text())
    except (OSError, ValueError):
        return None


def supervise(gang: LocalGang, signals: StopSignals, display: Display, grace: float,
              started: float) -> tuple[Outcome, str, int, int | None]:
    """Watch the gang until every worker has exited: (outcome, reason, exit code, index of the failed worker)."""
    stop_at: float | None = None  # when the remaining workers get SIGKILL
    outcome: Outcome = "finished"
    reason, code, failed = "", 0, None
    handled_signals = 0
    chief_port = gang.metrics_port(0)
    next_poll = 0.0
    while True:
        codes = [p.poll() for p in gang.processes]
        now = time.monotonic()
        if failed is None and outcome != "stopped":
            bad = next((i for i, c in enumerate(codes) if c not in (None, 0)), None)
            if bad is not None:
                failed, outcome = bad, "failed"
                reason = f"worker {bad} exited with code {codes[bad]}"
                code = failure_code(codes[bad])
                _terminate(gang)
                stop_at = now + FAILURE_GRACE_S
            elif any(c == 0 for c in codes) and stop_at is None:
                stop_at = now + grace  # one finished: the others stop on the same step, or are stopped
        if all(c is not None for c in codes):
            break
        if len(signals.received) > handled_signals:
            handled_signals = len(signals.received)
            signum = signals.received[-1]
            if outcome == "finished":
                outcome, code = "stopped", 128 + signum
                reason = f"stopped on {signal.Signals(signum).name}"
            if handled_signals == 1:
                _terminate(gang)
                stop_at = now + grace
            else:
                stop_at = now  # a second Ctrl-C: no more waiting
        if stop_at is not None and now >= stop_at:
            gang.stop(grace=0)
            continue
        if now >= next_poll:
            display.show(fetch_progress(chief_port), now - started)
            next_poll = now + 0.5
        time.sleep(POLL_S)
    return outcome, reason, code, failed


def _terminate(gang: LocalGang) -> None:
    for process in gang.processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
