"""A run's curves from its log: the progress lines every ``tracking`` job prints, one part per machine.

A remote run's metrics file stays on the machine that wrote it (SkyPilot tears it down), so without W&B
the only record metta-exp has of its training is its log, copied whole into the run directory: the
``[metta-exp] progress step=S ... key=value`` lines, about every ``METTA_EXP_PROGRESS_EVERY`` seconds (2),
are its curve (coarser than the metrics file; no wall time). After a SkyPilot recovery the job starts its
command again on a new machine: the copy says so in a ``[metta-exp] recovery N`` line, and each part of the
log is a curve of its own (``name (recovery N)``), so no machine's steps overwrite another's. The same
goes for W&B: each part's ``[metta-exp] wandb`` line names the W&B run it reported to.

Part of :mod:`metta_exp.metrics`; the standard library only.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path

from metta_exp.metrics.local import Points, pick
from metta_exp.metrics.source import RunSource
from metta_exp.paths import RunDir
from metta_exp.runs.lines import Progress, last_wandb, parse_progress_line, split_recoveries

_RECOVERY_RUN = re.compile(r"-r[0-9a-f]{6}\Z")  # tracking.wandb: a recovery's own W&B run is <id>-r<hex>

__all__ = ["by_machine", "expand_recoveries", "from_log", "log_points"]


def log_points(
    log: Path, keys: Sequence[str], samples: int | None, recovery: int | None = None
) -> dict[str, Points]:
    """Each metric's points in the progress lines of ``log`` (only those of ``recovery``'s part when given),
    ``samples`` of them per metric at most, evenly spaced, the first and the last kept."""
    text = log.read_text(errors="replace")
    parts = split_recoveries(text) if recovery is not None else [(0, text)]
    lines = [
        line for number, part in parts if recovery is None or number == recovery for line in part.splitlines()
    ]
    out: dict[str, Points] = {}
    rows = [p for line in lines if (p := parse_progress_line(line)) is not None]
    for key in keys:
        series = [(p.step, v) for p in rows if (v := _value(p, key)) is not None]
        chosen = [series[i] for i in pick(len(series), samples)]
        if chosen:
            out[key] = Points(
                [s for s, _ in chosen], [float(v) for _, v in chosen], [float("nan")] * len(chosen)
            )
    return out


def _value(progress: Progress, key: str) -> float | None:
    """A metric of a progress line; ``overview/sps`` is its measured speed when it logged none."""
    return progress.metrics.get(key, progress.sps if key == "overview/sps" else None)


def expand_recoveries(source: RunSource, log: Path | None) -> list[RunSource]:
    """``source`` as one source per part of its log when SkyPilot recovered the job: the first keeps its
    name, the others are ``NAME (recovery N)``; each reads its own W&B run when its part reported one (a
    part that went on in the previous part's W&B run adds nothing), else its progress lines. A log without
    recovery lines leaves ``source`` as it is."""
    if log is None or not log.is_file():
        return [source]
    parts = split_recoveries(log.read_text(errors="replace"))
    if len(parts) < 2 and parts[0][0] == 0:
        return [source]
    out: list[RunSource] = []
    seen: set[str] = set()
    for number, text in parts:
        ref = last_wandb(text)
        path = ref.path if ref is not None else None
        if path is None and number == 0 and source.wandb_path:  # its lines not copied before a preemption:
            path = _RECOVERY_RUN.sub("", source.wandb_path)  # the attempt's own W&B run, the recoveries' base
        if path is not None and path in seen:
            continue  # the job went on in the same W&B run: its points are in the part that reported it
        seen.add(path or f"log:{number}")
        label = source.name if number == 0 else f"{source.name} (recovery {number})"
        out.append(dataclasses.replace(source, name=label, wandb_path=path, recovery=number))
    return out


def by_machine(source: RunSource) -> list[RunSource]:
    """``source`` as ``expand_recoveries`` makes it, unless the run has its own metrics file (a local run:
    never recovered); its ``log`` is its latest attempt's log when not given."""
    if source.problem or (source.run_dir is not None and RunDir.at(source.run_dir).metrics.is_file()):
        return [source]
    log = source.log or (RunDir.at(source.run_dir).latest_log() if source.run_dir else None)
    return expand_recoveries(dataclasses.replace(source, log=log), log)


def from_log(
    source: RunSource, keys: Sequence[str], samples: int | None
) -> tuple[str, dict[str, Points]] | None:
    """(``log PATH``, its points) from the progress lines of ``source``'s log (its part ``recovery``), or
    None when it has no log or no point."""
    if source.log is None or not source.log.is_file():
        return None
    found = log_points(source.log, keys, samples, source.recovery)
    return (f"log {source.log}", found) if found else None
