"""Draw a training run's loss and throughput over steps as a self-contained SVG, from the chief's
TensorBoard event files: `python -m pulsetrain.curve LOGDIR -o docs/training-curve.svg`.

Why this exists: the README shows the training curve of a real run, and a picture that a command makes
from a run's own files can be made again after every change. The chief writes the scalars `loss`,
`samples_per_second` and `metrics/<name>` with `tf.summary.write` (`trainer.py`); they are read back
with TensorFlow's own event-file reader (`tf.data.TFRecordDataset` + `tf.compat.v1.Event`) and drawn
without a plotting library (none is a dependency): two panels sharing the step axis, with ticks,
labels and a title naming the run. Reading needs TensorFlow; drawing (`render_svg`) needs nothing.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

LOSS, RATE = "loss", "samples_per_second"
WIDTH, PANEL_HEIGHT, LEFT, RIGHT, HEADER, LINE, GAP, BOTTOM = 760, 210, 78, 24, 40, 18, 56, 46
COLOURS = {LOSS: "#d1495b", RATE: "#00798c"}

Points = list[tuple[int, float]]


@dataclass(frozen=True)
class Panel:
    tag: str
    label: str
    points: Points


def read_scalars(logdir: Path) -> dict[str, Points]:
    """Every scalar in the event files under `logdir`, by tag, as (step, value) sorted by step.

    A step written twice (a gang restarted from an older checkpoint redoes steps) keeps its newest value:
    files are read in the order their names sort (they start with the creation time), events in file order.
    """
    files = sorted(logdir.rglob("events.out.tfevents.*"), key=lambda p: p.name)
    if not files:
        raise FileNotFoundError(f"{logdir}: no TensorBoard event files (events.out.tfevents.*) in it")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    scalars: dict[str, dict[int, float]] = {}
    for path in files:
        for record in tf.data.TFRecordDataset(str(path)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                if value.HasField("tensor"):
                    number = float(tf.make_ndarray(value.tensor).reshape(-1)[0])
                elif value.HasField("simple_value"):
                    number = float(value.simple_value)
                else:
                    continue
                scalars.setdefault(value.tag, {})[int(event.step)] = number
    return {tag: sorted(by_step.items()) for tag, by_step in scalars.items()}


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round tick values (steps of 1, 2 or 5 times a power of ten) covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"tick range [{low}, {high}] is not finite")
    if high < low:
        low, high = high, low
    if high == low:
        low, high = (low - 1, high + 1) if low == 0 else (low - abs(low) / 2, high + abs(high) / 2)
    raw = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    normalized = raw / magnitude
    step = magnitude * (1 if normalized < 1.5 else 2 if normalized < 3 else 5 if normalized < 7 else 10)
    first = math.floor(low / step + 1e-9) * step
    ticks = [first]
    while ticks[-1] < high - step * 1e-9:
        ticks.append(first + len(ticks) * step)
    return [round(tick, 12) for tick in ticks]


def format_tick(value: float) -> str:
    """A tick label: at most three significant digits, `k`/`M` for thousands and millions."""
    for threshold, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= threshold:
            return f"{value / threshold:.3g}{suffix}"
    return f"{value:.3g}"


def _panel_svg(panel: Panel, top: float, x_ticks: list[float]) -> list[str]:
    plot_w, plot_h = WIDTH - LEFT - RIGHT, PANEL_HEIGHT
    values = [v for _, v in panel.points]
    y_ticks = nice_ticks(min(0.0, min(values)), max(values))
    y_low, y_high = y_ticks[0], y_ticks[-1]
    x_low, x_high = x_ticks[0], x_ticks[-1]

    def x(step: float) -> float:
        return LEFT + (step - x_low) / (x_high - x_low) * plot_w

    def y(value: float) -> float:
        return top + plot_h - (value - y_low) / (y_high - y_low) * plot_h

    out = [f'<g class="panel" id="{escape(panel.tag)}">',
           f'<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fff" stroke="#888"/>']
    for tick in y_ticks:
        out.append(f'<line x1="{LEFT}" y1="{y(tick):.1f}" x2="{LEFT + plot_w}" y2="{y(tick):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{LEFT - 8}" y="{y(tick) + 4:.1f}" text-anchor="end">{format_tick(tick)}</text>')
    for tick in x_ticks:
        out.append(f'<line x1="{x(tick):.1f}" y1="{top + plot_h}" x2="{x(tick):.1f}" y2="{top + plot_h + 5}" '
                   'stroke="#888"/>')
        out.append(f'<text x="{x(tick):.1f}" y="{top + plot_h + 18}" text-anchor="middle">{format_tick(tick)}</text>')
    middle = top + plot_h / 2
    out.append(f'<text x="18" y="{middle:.1f}" text-anchor="middle" transform="rotate(-90 18 {middle:.1f})" '
               f'class="axis">{escape(panel.label)}</text>')
    path = " ".join(f"{x(step):.1f},{y(value):.1f}" for step, value in panel.points)
    out.append(f'<polyline points="{path}" fill="none" stroke="{COLOURS.get(panel.tag, "#333")}" '
               'stroke-width="2" stroke-linejoin="round"/>')
    last_step, last_value = panel.points[-1]
    out.append(f'<text x="{LEFT + plot_w - 6}" y="{top + 16}" text-anchor="end" class="note">last ({last_step}): '
               f'{format_tick(last_value)}</text>')
    out.append("</g>")
    return out


def render_svg(panels: Sequence[Panel], title: str, notes: Sequence[str] = ()) -> str:
    """The panels stacked over one shared step axis under a title and a line per note, as a standalone SVG."""
    panels = [p for p in panels if p.points]
    if not panels:
        raise ValueError("nothing to draw: every series is empty")
    steps = (min(s for p in panels for s, _ in p.points), max(s for p in panels for s, _ in p.points))
    x_ticks = nice_ticks(steps[0], steps[1], 8)
    top = HEADER + LINE * len(notes) + 10
    height = top + len(panels) * (PANEL_HEIGHT + GAP) - GAP + BOTTOM
    lines = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="Helvetica, Arial, sans-serif" font-size="12">',
        f"<title>{escape(': '.join([title, *notes[:1]]))}</title>",
        "<style>.axis{font-size:13px;fill:#333}.note{fill:#555}.title{font-size:16px;font-weight:bold}</style>",
        f'<rect width="{WIDTH}" height="{height}" fill="#fafafa"/>',
        f'<text x="{LEFT}" y="26" class="title">{escape(title)}</text>',
    ]
    lines += [f'<text x="{LEFT}" y="{HEADER + LINE * i + 6}" class="note">{escape(note)}</text>'
              for i, note in enumerate(notes)]
    for index, panel in enumerate(panels):
        lines += _panel_svg(panel, top + index * (PANEL_HEIGHT + GAP), x_ticks)
    lines.append(f'<text x="{LEFT + (WIDTH - LEFT - RIGHT) / 2:.0f}" y="{height - 8}" text-anchor="middle" '
                 'class="axis">training step</text>')
    lines.append("</svg>")
    return "\n".join(lines) + "\n"


def summary_line(scalars: dict[str, Points]) -> str:
    """What the run reached, for the subtitle: steps, final loss and (training) metrics, median throughput."""
    loss, rate = scalars.get(LOSS, []), [v for _, v in scalars.get(RATE, []) if v > 0]
    parts = [f"{loss[-1][0]} steps, final loss {loss[-1][1]:.3f}"] if loss else []
    parts += [f"training {tag.removeprefix('metrics/')} {points[-1][1]:.3f}" for tag, points in sorted(scalars.items())
              if tag.startswith("metrics/") and points]
    if rate:
        parts.append(f"median {sorted(rate)[len(rate) // 2]:,.0f} samples/s")
    return ", ".join(parts)


def draw(logdir: Path, output: Path, run: str | None = None) -> str:
    """Read `logdir`, write the SVG to `output`, return the subtitle (what the picture says)."""
    scalars = read_scalars(logdir)
    missing = [tag for tag in (LOSS, RATE) if tag not in scalars]
    if missing:
        raise ValueError(f"{logdir}: no {', '.join(missing)} scalars (found: {', '.join(sorted(scalars)) or 'none'})")
    subtitle = summary_line(scalars)
    svg = render_svg([Panel(LOSS, "loss", scalars[LOSS]), Panel(RATE, "samples / s", scalars[RATE])],
                     "pulsetrain training curve", [run or logdir.resolve().name, subtitle])
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(svg, encoding="utf-8")
    return subtitle


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pulsetrain.curve",
                                     description="Draw loss and samples/s over steps from a run's TensorBoard logs.")
    parser.add_argument("logdir", type=Path, help="the chief's TensorBoard directory (the pipeline's logDir)")
    parser.add_argument("-o", "--output", type=Path, default=Path("training-curve.svg"),
                        help="the SVG to write (default %(default)s)")
    parser.add_argument("--run", help="the run's name in the title (default: the log directory's name)")
    args = parser.parse_args(argv)
    try:
        subtitle = draw(args.logdir, args.output, args.run)
    except (FileNotFoundError, ValueError) as exc:
        print(f"pulsetrain.curve: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.output} ({subtitle})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
