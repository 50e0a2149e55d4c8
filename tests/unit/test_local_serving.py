"""The runner's serving summary reads the predictor's own final counts from its log, this run's only."""

from __future__ import annotations

from pathlib import Path

from pulsetrain.embedded_broker import free_port
from pulsetrain.local_serving import LOG_NAME, STOPPED_PREFIX, LocalPredictor, final_counts, served_line


def test_final_counts_come_from_the_last_stopped_line(tmp_path: Path) -> None:
    log = tmp_path / "predictor.log"
    log.write_text('pulsetrain predictor: stopped {"predictions": 1, "modelVersion": 1, "deadLettered": 0}\n'
                   "INFO restarted\n"
                   'pulsetrain predictor: stopped {"predictions": 359, "modelVersion": 2, "deadLettered": 3}\n')
    counts = final_counts(log)
    assert counts == {"predictions": 359, "modelVersion": 2, "deadLettered": 3}
    assert served_line(counts, None) == "359 answered with model version 2, 3 dead-lettered"


def test_a_predictor_that_did_not_stop_cleanly_says_so(tmp_path: Path) -> None:
    log = tmp_path / "predictor.log"
    log.write_text("Traceback (most recent call last):\n")
    assert final_counts(log) is None
    assert final_counts(tmp_path / "missing.log") is None
    assert served_line(None, None) == "serving: starting (did not stop cleanly)"


def test_a_previous_runs_counts_are_not_taken_for_this_runs(tmp_path: Path) -> None:
    """A real predictor that fails at once (a configuration it refuses, exit 2) after a run that stopped cleanly
    in the same state directory: its summary must say it did not stop cleanly, not repeat the old counts."""
    (tmp_path / LOG_NAME).write_text(STOPPED_PREFIX + '{"predictions": 359, "modelVersion": 1, "deadLettered": 0}\n')
    predictor = LocalPredictor({"serving": {"inputTopic": "in"}}, tmp_path, free_port(), "digits")
    predictor.start()
    assert predictor.process is not None
    assert predictor.process.wait(120) == 2
    log = predictor.log_path.read_text()
    assert "pulsetrain predictor: invalid configuration" in log and STOPPED_PREFIX not in log, log
    assert final_counts(predictor.log_path) is None
    assert predictor.stop(grace=1) == 2  # already exited: stop only reports its code
