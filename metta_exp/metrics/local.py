"""Reading one run's local ``metrics.jsonl`` (written by :mod:`metta_exp.tracking`) fast and exactly.

Part of :mod:`metta_exp.metrics`; numpy is imported inside the functions.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Points", "as_float", "last_values", "pick", "read_metrics_file"]

_ATTEMPT = re.compile(rb'"_attempt"\s*:\s*(-?\d+)')


@dataclass
class Points:
    """One metric of one run: steps, values (NaN for a logged NaN) and seconds since the first point."""

    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    times: list[float] = field(default_factory=list)


def read_metrics_file(
    path: str | os.PathLike[str], metrics: Sequence[str], samples: int | None = 1000
) -> dict[str, Points]:
    """The points of each metric in one ``metrics.jsonl``, latest attempt only, exact values.

    With more than ``samples`` lines holding a metric, ``samples`` of them are kept, evenly spaced
    by line, the first and the last included. ``null`` becomes NaN; a torn last line (a run still
    writing) and lines that are not JSON objects are skipped. Attempts are assumed to follow one
    another in the file (each attempt appends after the previous one ended), as tracking writes them.
    Metrics with no point are absent from the result.

    Fast on big files: the file is not split; lines are located by one numpy scan for newlines and
    only the chosen lines are parsed. The chosen lines are first taken among all lines; only if one of
    them lacks the metric (a metric not logged on every line) are the lines holding it searched for.
    """
    lines = _Lines(Path(path).read_bytes())
    end = len(lines)
    while end and lines.record(end - 1) is None:
        end -= 1
    start = _latest_attempt_start(lines, end)
    t0 = next((t for i in range(start, end) if (t := as_float(lines.get(i, "_time"))) is not None), None)
    out: dict[str, Points] = {}
    for key in metrics:
        candidates: Sequence[int] = range(start, end)
        chosen = [candidates[i] for i in pick(len(candidates), samples)]
        if any(not lines.has(i, key) for i in chosen):
            candidates = lines.holding(key, start, end)
            chosen = [candidates[i] for i in pick(len(candidates), samples)]
        series = Points()
        for index in chosen:
            record = lines.record(index)
            if record is None or key not in record or not isinstance(record.get("_step"), int):
                continue
            value = as_float(record[key])
            if value is None:
                continue
            series.steps.append(record["_step"])
            series.values.append(value)
            stamp = as_float(record.get("_time"))
            series.times.append(stamp - t0 if stamp is not None and t0 is not None else float("nan"))
        if series.steps:
            out[key] = series
    return out


def last_values(
    path: str | os.PathLike[str], metrics: Sequence[str], attempt: int | None = None, tail: int = 65536
) -> dict[str, float]:
    """The last value of each metric of ``metrics`` that one ``metrics.jsonl`` holds (NaN, infinities and
    non-numbers skipped: the last finite value), and ``_step``: the last step; from the lines of ``attempt`` (None: the
    file's latest attempt). Metrics with no value are absent; a missing file gives ``{}``.

    Reads the file's last ``tail`` bytes, and all of it only when a metric is missing from them (one
    logged rarely): what a runner reads once per ended attempt, so that ``job runs`` reads no file.
    """
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - tail))
            data = f.read()
            if len(data) < size:
                data = data[data.find(b"\n") + 1 :]  # the first line is cut: start at the next one
            found = _last_values(data, metrics, attempt)
            if size > tail and not all(m in found for m in metrics):
                f.seek(0)
                found = _last_values(f.read(), metrics, attempt)
    except OSError:
        return {}
    return found


def _last_values(data: bytes, metrics: Sequence[str], attempt: int | None) -> dict[str, float]:
    found: dict[str, float] = {}
    for line in reversed(data.splitlines()):
        record = _parse(line)
        if record is None:
            continue
        if attempt is None and isinstance(record.get("_attempt"), int):
            attempt = record["_attempt"]
        if attempt is not None and record.get("_attempt", attempt) != attempt:
            if found:
                break  # an earlier attempt's lines: this attempt's are all read
            continue
        if "_step" not in found and isinstance(record.get("_step"), int):
            found["_step"] = float(record["_step"])
        for key in metrics:
            if key not in found:
                value = as_float(record.get(key, "")) if key in record else None
                if value is not None and math.isfinite(value):
                    found[key] = value
        if len(found) == len(metrics) + 1:
            break
    return found


class _Lines:
    """The lines of a file's bytes by index, without splitting the bytes (one numpy newline scan),
    each parsed at most once."""

    def __init__(self, data: bytes) -> None:
        import numpy as np

        self.data = data
        ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
        if data and not data.endswith(b"\n"):
            ends = np.append(ends, len(data))
        self.ends = ends
        self._records: dict[int, dict[str, Any] | None] = {}

    def __len__(self) -> int:
        return len(self.ends)

    def __getitem__(self, index: int) -> bytes:
        start = int(self.ends[index - 1]) + 1 if index else 0
        return self.data[start : int(self.ends[index])]

    def record(self, index: int) -> dict[str, Any] | None:
        if index not in self._records:
            self._records[index] = _parse(self[index])
        return self._records[index]

    def get(self, index: int, key: str) -> Any:
        record = self.record(index)
        return None if record is None else record.get(key)

    def has(self, index: int, key: str) -> bool:
        """Whether line ``index`` holds ``key`` (an unreadable line counts as holding it: it is skipped)."""
        record = self.record(index)
        return record is None or key in record

    def holding(self, key: str, start: int, end: int) -> Sequence[int]:
        """Indices in [start, end) of the lines where the JSON key ``key`` appears (a byte search)."""
        import numpy as np

        if start >= end:
            return range(0)
        lo = int(self.ends[start - 1]) + 1 if start else 0
        hi = int(self.ends[end - 1])
        needles = dict.fromkeys([json.dumps(key).encode(), json.dumps(key, ensure_ascii=False).encode()])
        positions = [m.start() for n in needles for m in re.compile(re.escape(n)).finditer(self.data, lo, hi)]
        return np.unique(np.searchsorted(self.ends, positions)).tolist()


def pick(n: int, samples: int | None) -> range | list[int]:
    """Indices of ``samples`` of ``n`` items, evenly spaced, the first and the last always kept."""
    if samples is None or n <= samples:
        return range(n)
    if samples <= 1:
        return [n - 1] if samples == 1 else []
    return [i * (n - 1) // (samples - 1) for i in range(samples)]


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _attempt_at(lines: _Lines, index: int, end: int) -> int | None:
    """The ``_attempt`` of the first line at or after ``index`` (before ``end``) that has one."""
    for i in range(index, end):
        match = _ATTEMPT.search(lines[i])
        if match:
            return int(match.group(1))
    return None


def _latest_attempt_start(lines: _Lines, end: int) -> int:
    """Index of the first line of the latest attempt (binary search: attempts only grow)."""
    latest = None
    for i in range(end - 1, -1, -1):
        match = _ATTEMPT.search(lines[i])
        if match:
            latest = int(match.group(1))
            break
    if latest is None:
        return 0
    lo, hi = 0, end
    while lo < hi:
        mid = (lo + hi) // 2
        attempt = _attempt_at(lines, mid, end)
        if attempt is None or attempt >= latest:
            hi = mid
        else:
            lo = mid + 1
    return lo


def as_float(value: Any) -> float | None:
    """A metric value as float: None (JSON null) is NaN; lists, bools, other strings are not values."""
    if value is None:
        return float("nan")
    if isinstance(value, str) and value.lower() in ("nan", "inf", "-inf", "infinity", "-infinity"):
        return float(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
