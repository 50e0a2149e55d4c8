"""Prometheus text exposition (format 0.0.4): the one writer both the trainer's and the predictor's
`/metrics` use, and the histogram the predictor keeps.

Why this exists: the text format has rules that are easy to get subtly wrong twice (label and help-text
escaping, `+Inf`/`NaN`, integers without a trailing `.0`, cumulative `_bucket` samples ending at `+Inf`);
one writer, unit-tested, keeps every endpoint scrapeable the same way. No client library: the workers
expose a few dozen samples and need nothing from one but this.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence

Labels = Mapping[str, str]


def escape_label(value: str) -> str:
    """A label value as the text format wants it: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if isinstance(value, int) or (value.is_integer() and abs(value) < 2**53):
        return str(int(value))
    return repr(float(value))


class Histogram:
    """Counts per bucket (`le` upper bounds, then +Inf), sum and count. Not locked: its owner locks."""

    def __init__(self, bounds: Sequence[float]) -> None:
        if list(bounds) != sorted(set(bounds)) or not bounds:
            raise ValueError("bucket bounds must be distinct and ascending")
        self.bounds = tuple(float(b) for b in bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """(`le` label, cumulative count) per bucket, ending with `+Inf`: the text format's `_bucket` samples."""
        out, running = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            out.append((format_value(bound), running))
        return out

    def quantile(self, q: float) -> float | None:
        """Estimated `q` quantile, interpolated inside its bucket as Prometheus' `histogram_quantile` does;
        None without observations; the largest finite bound when it falls in the +Inf bucket."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile {q} is outside 0..1")
        if self.count == 0:
            return None
        rank, running = q * self.count, 0
        for i, count in enumerate(self.counts):
            if count and running + count >= rank:
                if i == len(self.bounds):
                    return self.bounds[-1]
                low = self.bounds[i - 1] if i else 0.0
                return low + (self.bounds[i] - low) * max(rank - running, 0.0) / count
            running += count
        return self.bounds[-1]


class Exposition:
    """Metric families as exposition text; `common` labels go on every sample."""

    def __init__(self, common: Labels) -> None:
        self.common = common
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str, samples: Iterable[tuple[Labels, float | None]]) -> None:
        """`# HELP`, `# TYPE`, then one line per sample; a sample whose value is None is left out."""
        escaped = help_text.replace("\\", "\\\\").replace("\n", "\\n")
        self.lines.append(f"# HELP {name} {escaped}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            if value is not None:
                self._sample(name, labels, value)

    def histogram(self, name: str, help_text: str, histogram: Histogram) -> None:
        self.family(name, "histogram", help_text, [])
        for le, count in histogram.cumulative():
            self._sample(f"{name}_bucket", {"le": le}, count)
        self._sample(f"{name}_sum", {}, histogram.sum)
        self._sample(f"{name}_count", {}, histogram.count)

    def _sample(self, name: str, labels: Labels, value: float) -> None:
        rendered = ",".join(f'{key}="{escape_label(val)}"' for key, val in {**self.common, **labels}.items())
        self.lines.append(f"{name}{{{rendered}}} {format_value(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"
