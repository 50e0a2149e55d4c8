"""`python -m pulsetrain.curve`: TensorBoard event files in, an SVG of loss and samples/s out.

The event file is written here the way the chief writes it (`tf.summary.write` with the scalars plugin's
metadata, a float32 tensor per value), plus a second, later file in the older `simple_value` form, then
read back and drawn. The SVG is parsed as XML and its polylines are checked against the data.
"""

from __future__ import annotations

import itertools
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pulsetrain import curve

SVG = "{http://www.w3.org/2000/svg}"


def write_like_the_chief(logdir: Path, steps: range) -> None:
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")).SerializeToString()
    writer = tf.summary.create_file_writer(str(logdir))
    with writer.as_default():
        for step in steps:
            values = {"loss": 2.0 / (1 + step / 10), "samples_per_second": 400.0 + step,
                      "metrics/accuracy": min(1.0, step / 100)}
            for tag, value in values.items():
                tf.summary.write(tag, tf.constant(value, tf.float32), step=step, metadata=metadata)
    writer.close()


def write_simple_values(path: Path, tag: str, points: list[tuple[int, float]]) -> None:
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(path)) as writer:
        for step, value in points:
            summary = tf.compat.v1.Summary(value=[tf.compat.v1.Summary.Value(tag=tag, simple_value=value)])
            writer.write(tf.compat.v1.Event(step=step, summary=summary).SerializeToString())


def polyline_y(panel: ET.Element) -> list[float]:
    """The y coordinates of the panel's line, left to right."""
    line = panel.find(f"{SVG}polyline")
    assert line is not None, "the panel draws no line"
    return [float(point.split(",")[1]) for point in line.get("points", "").split()]


@pytest.fixture(scope="module")
def logdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tensorboard")
    write_like_the_chief(directory, range(10, 101, 10))
    # a later file (names sort by creation time) that redoes step 100, as a restarted gang would
    write_simple_values(directory / "events.out.tfevents.9999999999.later", "loss", [(100, 0.125)])
    return directory


def test_reads_every_scalar_by_step_and_the_newest_value_wins(logdir: Path) -> None:
    scalars = curve.read_scalars(logdir)
    assert set(scalars) == {"loss", "samples_per_second", "metrics/accuracy"}
    assert [step for step, _ in scalars["loss"]] == list(range(10, 101, 10))
    assert scalars["loss"][0][1] == pytest.approx(1.0)
    assert scalars["loss"][-1] == (100, 0.125)
    assert scalars["samples_per_second"][4][0] == 50
    assert scalars["samples_per_second"][4][1] == pytest.approx(450.0)


def test_draws_two_panels_whose_lines_follow_the_data(logdir: Path, tmp_path: Path) -> None:
    output = tmp_path / "curve.svg"
    subtitle = curve.draw(logdir, output, run="digits test")
    root = ET.fromstring(output.read_text())
    assert root.tag == f"{SVG}svg"
    assert "digits test" in root.findtext(f"{SVG}title", "")
    assert "100 steps, final loss 0.125, training accuracy 1.000" in subtitle and "samples/s" in subtitle
    panels = {g.get("id"): g for g in root.iter(f"{SVG}g")}
    assert set(panels) == {"loss", "samples_per_second"}
    loss_y, rate_y = (polyline_y(panels[tag]) for tag in ("loss", "samples_per_second"))
    assert len(loss_y) == len(rate_y) == 10
    assert loss_y == sorted(loss_y), "falling loss is drawn going down (SVG y grows downwards)"
    assert rate_y == sorted(rate_y, reverse=True), "rising throughput is drawn going up"
    labels = [t.text for t in root.iter(f"{SVG}text")]
    assert {"loss", "samples / s", "training step"} <= set(labels)
    assert {"20", "100"} <= set(labels), "step ticks are labelled"


def test_command_line_names_what_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert curve.main([str(tmp_path), "-o", str(tmp_path / "x.svg")]) == 2
    assert "no TensorBoard event files" in capsys.readouterr().err
    write_simple_values(tmp_path / "events.out.tfevents.1.host", "loss", [(1, 1.0)])
    assert curve.main([str(tmp_path), "-o", str(tmp_path / "x.svg")]) == 2
    assert "no samples_per_second scalars (found: loss)" in capsys.readouterr().err
    assert not (tmp_path / "x.svg").exists()


@pytest.mark.parametrize(("low", "high", "expected"), [
    (0, 1, [0, 0.2, 0.4, 0.6, 0.8, 1.0]),
    (0, 2.3, [0, 0.5, 1.0, 1.5, 2.0, 2.5]),
    (10, 270, [0, 100, 200, 300]),
    (5, 5, [2, 3, 4, 5, 6, 7, 8]),
])
def test_nice_ticks(low: float, high: float, expected: list[float]) -> None:
    assert curve.nice_ticks(low, high, 5 if low != 10 else 3) == pytest.approx(expected)


@pytest.mark.parametrize(("low", "high"), [(0.013, 0.87), (-3, 17), (1, 123456), (0.5, 0.5000001)])
def test_nice_ticks_cover_the_range_in_equal_round_steps(low: float, high: float) -> None:
    ticks = curve.nice_ticks(low, high)
    assert ticks[0] <= low and ticks[-1] >= high and 2 <= len(ticks) <= 12
    steps = {f"{b - a:.3e}" for a, b in itertools.pairwise(ticks)}
    assert len(steps) == 1, ticks
    assert re.fullmatch(r"[125]\.000e[-+]\d+", steps.pop()), f"{ticks}: the step is not 1, 2 or 5 x 10^n"


def test_tick_labels_are_short() -> None:
    assert [curve.format_tick(v) for v in (0, 0.25, 12.5, 1500, 2_000_000)] == ["0", "0.25", "12.5", "1.5k", "2M"]
