"""The serving stage of `pulsetrain run`: one predictor process beside the local gang.

Why this exists: on a cluster the operator runs the predictors once a first model version exists; on
one machine the runner does the same with the same program (`python -m pulsetrain.predictor`), fed the
worker configuration the local gang reads plus its `serving` section (rendered by the operator's own
builder, so both paths agree). The predictor is started with the gang and waits, not ready, until the
first export lands (at the end of a bounded run, at the first periodic export of a continuous one),
then answers until the runner stops it with SIGTERM (it finishes its batch, flushes, acknowledges).
One replica: `spec.serving.replicas` and `resources` are the operator's business.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from pulsetrain.predict_progress import PredictorProgress
from pulsetrain_operator.builders.predictor import serving_section

LOG_NAME = "predictor.log"
CONFIG_NAME = "predictor.json"


def predictor_config(resource: dict[str, Any], worker_doc: dict[str, Any]) -> dict[str, Any]:
    """The local worker configuration with the pipeline's `serving` section."""
    doc = copy.deepcopy(worker_doc)
    doc["serving"] = serving_section(resource)
    return doc


class LocalPredictor:
    """`python -m pulsetrain.predictor` as a child process, its log (this run's, started afresh) in the state
    directory."""

    def __init__(self, config: dict[str, Any], state_dir: Path, port: int, name: str) -> None:
        self.state_dir, self.port, self.name = state_dir, port, name
        self.config_path = state_dir / CONFIG_NAME
        self.config_path.write_text(json.dumps(config, indent=2) + "\n")
        self.log_path = state_dir / LOG_NAME
        self.process: subprocess.Popen[bytes] | None = None
        self.last: PredictorProgress | None = None

    def start(self) -> None:
        env = {**os.environ, "PULSETRAIN_METRICS_PORT": str(self.port), "HOSTNAME": f"{self.name}-predictor",
               "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
        with self.log_path.open("wb") as log:  # this run's log only: `final_counts` must not find an older run's
            self.process = subprocess.Popen([sys.executable, "-m", "pulsetrain.predictor", "--config",
                                             str(self.config_path)], env=env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def progress(self) -> PredictorProgress | None:
        """Its progress document (the last one seen while it does not answer)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/progress", timeout=1) as response:
                self.last = PredictorProgress.from_json(response.read())
        except (OSError, ValueError):
            pass
        return self.last

    def stop(self, grace: float) -> int | None:
        """SIGTERM, then SIGKILL after `grace` seconds; its exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode


STOPPED_PREFIX = "pulsetrain predictor: stopped "
"""The line a predictor prints when it stopped cleanly, followed by its final counts as JSON."""


def final_counts(log_path: Path) -> dict[str, Any] | None:
    """The counts a cleanly stopped predictor printed last, from its log (None if it did not stop cleanly).

    The log holds one run only (`LocalPredictor.start` truncates it), so a predictor that crashed is never
    reported with the counts of an earlier run that stopped cleanly."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        if line.startswith(STOPPED_PREFIX):
            counts: dict[str, Any] = json.loads(line[len(STOPPED_PREFIX):])
            return counts
    return None


def served_line(counts: dict[str, Any] | None, last: PredictorProgress | None) -> str:
    """The summary's line on serving: the final counts when the predictor stopped cleanly, else what it said last."""
    if counts is None:
        return f"{serving_line(last)} (did not stop cleanly)"
    version = counts.get("modelVersion")
    return (f"{counts.get('predictions', 0):,} answered with model version {version}, "
            f"{counts.get('deadLettered', 0):,} dead-lettered")


def serving_line(progress: PredictorProgress | None) -> str:
    """One line on the predictor: state, model version, answers, answers/s, dead letters."""
    if progress is None:
        return "serving: starting"
    version = f"model version {progress.model_version}" if progress.model_version is not None else "no model yet"
    return (f"serving: {progress.state}, {version}, {progress.predictions:,} answered "
            f"({progress.predictions_per_second:,.1f}/s), {progress.dead_lettered.total:,} dead-lettered")
