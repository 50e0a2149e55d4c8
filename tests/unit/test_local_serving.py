"""The runner's serving summary reads the predictor's own final counts from its log."""

from __future__ import annotations

from pathlib import Path

from pulsetrain.local_serving import final_counts, served_line


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
