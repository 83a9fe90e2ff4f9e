"""A trial's objective over training: what the pruner sees while it runs, and the one value it is told.

While a trial runs, its objective comes from the progress lines its job prints (``[metta-exp] progress
step=S total=T ... overview/reward=V``, written by :mod:`metta_exp.tracking` about every 2 s): the one
channel that reaches the runner from local and remote jobs alike (a remote job's log tail is copied
into its local log file). Progress lines come at times, not at steps, so two trials never print the same
step; a pruner compares trials at the same step. So the curve is read at checkpoints: the first value
seen at or past each twentieth of the planned total (``CHECKPOINTS``), reported at that step.

When a trial's job has succeeded, its value is its whole curve reduced as ``search.reduce`` says: from
its local ``metrics.jsonl`` when there is one (exact, every point), else from its W&B run when it logged
online, else from the progress lines. A search whose objective is a Hydra task's return value
(``hydra/sweeper=metta_exp``) reads it from the job's ``[metta-exp] return value=X`` line instead (it
has no curve, so such trials are never pruned).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from metta_exp.logs.lines import PROGRESS_PREFIX, parse_progress_line

if TYPE_CHECKING:
    from metta_exp.records import JobRecord

CHECKPOINTS = 20  # the pruner sees a trial at each twentieth of its planned steps
WARMUP = 0.2  # and judges it from a fifth of its training on: early curves say little


@dataclass
class CurveReader:
    """Reads one attempt's log as it grows (or as its remote tail is replaced) and keeps the objective at
    each checkpoint: ``points`` (step -> value, in step order) and every raw point seen (``raw``)."""

    path: str
    objective: str
    points: dict[int, float] = field(default_factory=dict)
    raw: list[tuple[int, float]] = field(default_factory=list)
    fraction: float = 0.0  # of its planned steps, at its last progress line (0 when unknown)
    _offset: int = 0
    _inode: int | None = None
    _seen_buckets: set[int] = field(default_factory=set)

    def read(self) -> bool:
        """Read what is new; True if a checkpoint was added."""
        try:
            with open(self.path, "rb") as f:
                stat = os.fstat(f.fileno())
                if stat.st_ino != self._inode or stat.st_size < self._offset:  # a new file (a remote tail)
                    self._inode, self._offset = stat.st_ino, 0
                f.seek(self._offset)
                data = f.read()
        except OSError:
            return False
        end = data.rfind(b"\n") + 1  # whole lines only: the job may be writing the last one
        self._offset += end
        before = len(self.points)
        for line in data[:end].decode("utf-8", "replace").splitlines():
            if PROGRESS_PREFIX in line:
                self._observe(line)
        return len(self.points) > before

    def _observe(self, line: str) -> None:
        progress = parse_progress_line(line)
        if progress is None or self.objective not in progress.metrics:
            return
        value = progress.metrics[self.objective]
        if math.isnan(value):
            return
        if not self.raw or progress.step > self.raw[-1][0]:
            self.raw.append((progress.step, value))
        total = progress.total
        if progress.fraction is not None:
            self.fraction = progress.fraction
        if not total or total <= 0:
            if progress.step not in self.points:
                self.points[progress.step] = value  # no plan to align on: the step itself
            return
        bucket = min(CHECKPOINTS, progress.step * CHECKPOINTS // total)
        if bucket < 1 or bucket in self._seen_buckets:
            return
        self._seen_buckets.add(bucket)
        self.points[round(bucket * total / CHECKPOINTS)] = value


def reduce_curve(values: Sequence[float], how: str) -> float | None:
    """A curve as one value: its ``last`` point, its ``max``, or the mean of its last 10% of points
    (``mean_last_10pct``, at least one point). None for an empty curve or a NaN result."""
    clean = [v for v in values if not math.isnan(v)]
    if not clean:
        return None
    if how == "max":
        result = max(clean)
    elif how == "mean_last_10pct":
        tail = clean[-max(1, math.ceil(len(clean) / 10)) :]
        result = sum(tail) / len(tail)
    else:
        result = clean[-1]
    return None if math.isnan(result) else float(result)


def final_curve(job: JobRecord, objective: str, reader: CurveReader | None) -> tuple[list[float], str]:
    """The whole curve of an ended trial's job and where it came from: its local metrics file (exact),
    else its W&B run when it logged online (a remote job's metrics are there), else the progress lines
    of its log (``reader``, read to its end)."""
    from metta_exp.config import RETURN_OBJECTIVE
    from metta_exp.metrics.local import read_metrics_file
    from metta_exp.paths import RunDir

    if objective == RETURN_OBJECTIVE:
        value = _returned(job)
        return ([] if value is None else [value]), "return value"
    local = RunDir.at(job.run_dir).metrics
    if local.is_file():
        try:
            points = read_metrics_file(local, [objective], samples=None).get(objective)
        except (OSError, ValueError):
            points = None
        if points is not None and points.values:
            return list(points.values), "metrics"
    online = _wandb_values(job, objective)
    if online:
        return online, "wandb"
    if reader is not None:
        reader.read()
        return [v for _, v in reader.raw], "progress lines"
    return [], "nothing"


def _returned(job: JobRecord) -> float | None:
    """What the job's Hydra task returned (``[metta-exp] return value=X`` in its log, local or a remote
    tail), or None."""
    from metta_exp.logs.lines import last_return_value

    if not job.log_path:
        return None
    try:
        with open(job.log_path, "rb") as f:
            return last_return_value(f.read().decode("utf-8", "replace"))
    except OSError:
        return None


def _wandb_values(job: JobRecord, objective: str) -> list[float]:
    """The objective's history in the job's W&B run ([] when it has none, or W&B cannot be reached: the
    progress lines then stand in)."""
    from metta_exp.metrics import run_source

    if run_source(job).wandb_path is None:  # none known, or offline or disabled
        return []
    try:
        from metta_exp.metrics import fetch_metrics

        frame = fetch_metrics([job], [objective], samples=None, progress=False)
    except Exception:  # noqa: BLE001 - any W&B trouble: fall back to the progress lines
        return []
    rows = frame[frame["metric"] == objective].sort_values("step")
    return [float(v) for v in rows["value"]]
