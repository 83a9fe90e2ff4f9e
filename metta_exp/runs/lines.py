"""Progress, checkpoint, W&B and recovery lines: what a job's log says so that any monitor can follow it.

``[metta-exp] progress step=S total=T sps=X key=value ...``, ``[metta-exp] checkpoint path=P`` and
``[metta-exp] wandb url=U entity=E project=P id=I``, written by ``metta_exp.tracking`` and read back here
from local logs and remote log tails alike (a job's own output is the one channel that reaches the
runner from every backend). Pure functions, standard library only.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

PROGRESS_PREFIX = "[metta-exp] progress "
CHECKPOINT_PREFIX = "[metta-exp] checkpoint path="
WANDB_PREFIX = "[metta-exp] wandb "
RECOVERY_PREFIX = "[metta-exp] recovery "
RETURN_PREFIX = "[metta-exp] return value="  # a Hydra task's numeric return value (a search's objective)
_WANDB_KEYS = ("url", "entity", "project", "id")


@dataclass(frozen=True)
class WandbRef:
    """The W&B run a job reported: its URL (on whichever W&B host it used), entity, project and id."""

    url: str
    entity: str
    project: str
    run_id: str

    @property
    def path(self) -> str:
        """``entity/project/id``, as ``wandb.Api().run`` takes it."""
        return f"{self.entity}/{self.project}/{self.run_id}"


@dataclass(frozen=True)
class Progress:
    """One progress line: the step reached, the planned total, the speed and the latest metrics."""

    step: int
    total: int | None = None
    sps: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def fraction(self) -> float | None:
        """``step / total`` clipped to [0, 1]; None when the total is unknown (or not positive)."""
        if self.total is None or self.total <= 0:
            return None
        return min(1.0, max(0.0, self.step / self.total))


def format_progress_line(progress: Progress) -> str:
    """``[metta-exp] progress step=S [total=T] [sps=X] key=value ...`` (values as ``:.6g``).

    Metric keys holding whitespace or ``=`` cannot be parsed back and are left out.
    """
    parts = [f"step={progress.step}"]
    if progress.total is not None:
        parts.append(f"total={progress.total}")
    if progress.sps is not None:
        parts.append(f"sps={progress.sps:.6g}")
    parts += [f"{key}={value:.6g}" for key, value in progress.metrics.items() if _printable_key(key)]
    return PROGRESS_PREFIX + " ".join(parts)


def parse_progress_line(line: str) -> Progress | None:
    """The :class:`Progress` of one log line, or None if it is not a well-formed progress line.

    The marker may stand anywhere in the line, so prefixes added by a remote log (``(task, pid=1) ``)
    do not matter. ``step=`` must come first; ``total=`` and ``sps=`` are read when they follow it in
    that order; every other ``key=value`` is a metric (ones whose value is not a number are skipped).
    """
    start = line.find(PROGRESS_PREFIX)
    if start < 0:
        return None
    tokens = line[start + len(PROGRESS_PREFIX) :].split()
    pairs = [token.partition("=") for token in tokens]
    if not pairs or any(not sep or not key for key, sep, _ in pairs):
        return None
    if pairs[0][0] != "step" or (step := _parse_int(pairs[0][2])) is None:
        return None
    rest = pairs[1:]
    total = None
    if rest and rest[0][0] == "total":
        total = _parse_int(rest[0][2])
        if total is None:
            return None
        rest = rest[1:]
    sps = None
    if rest and rest[0][0] == "sps":
        sps = _parse_float(rest[0][2])
        if sps is None:
            return None
        rest = rest[1:]
    metrics = {key: value for key, _, text in rest if (value := _parse_float(text)) is not None}
    return Progress(step=step, total=total, sps=sps, metrics=metrics)


def last_progress(text: str) -> Progress | None:
    """The last well-formed progress line in ``text`` (a whole log or its tail), or None.

    Searches for the marker from the end rather than splitting the whole text into lines: monitors call
    this on every job's log tail, every refresh.
    """
    return _last_marked(text, PROGRESS_PREFIX, parse_progress_line)


def format_return_line(value: float) -> str:
    """``[metta-exp] return value=<float>``: what a Hydra task function returned, exactly (``repr``)."""
    return f"{RETURN_PREFIX}{float(value)!r}"


def last_return_value(text: str) -> float | None:
    """The value of the last ``[metta-exp] return value=...`` line in ``text``, or None."""
    return _last_marked(text, RETURN_PREFIX, _parse_return_line)


def _parse_return_line(line: str) -> float | None:
    start = line.find(RETURN_PREFIX)
    if start < 0:
        return None
    return _parse_float(line[start + len(RETURN_PREFIX) :].strip())


def format_checkpoint_line(path: str | os.PathLike[str]) -> str:
    """``[metta-exp] checkpoint path=<path>``; the path runs to the end of the line."""
    return CHECKPOINT_PREFIX + os.fspath(path)


def parse_checkpoint_line(line: str) -> str | None:
    """The path of one ``[metta-exp] checkpoint path=...`` line, or None."""
    start = line.find(CHECKPOINT_PREFIX)
    if start < 0:
        return None
    path = line[start + len(CHECKPOINT_PREFIX) :].rstrip("\r\n")
    return path or None


def last_checkpoint(text: str) -> str | None:
    """The path of the last checkpoint line in ``text``, or None."""
    for line in reversed(text.splitlines()):
        path = parse_checkpoint_line(line)
        if path is not None:
            return path
    return None


def format_wandb_line(ref: WandbRef) -> str:
    """``[metta-exp] wandb url=U entity=E project=P id=I`` (W&B URLs, names and ids hold no spaces)."""
    return f"{WANDB_PREFIX}url={ref.url} entity={ref.entity} project={ref.project} id={ref.run_id}"


def parse_wandb_line(line: str) -> WandbRef | None:
    """The :class:`WandbRef` of one log line, or None unless it is a whole, well-formed W&B line."""
    start = line.find(WANDB_PREFIX)
    if start < 0:
        return None
    pairs = [token.partition("=") for token in line[start + len(WANDB_PREFIX) :].split()]
    values = {key: value for key, sep, value in pairs if sep}
    if [key for key, _, _ in pairs] != list(_WANDB_KEYS) or not all(values.values()):
        return None
    if "://" not in values["url"]:
        return None
    return WandbRef(
        url=values["url"], entity=values["entity"], project=values["project"], run_id=values["id"]
    )


def last_wandb(text: str) -> WandbRef | None:
    """The last well-formed W&B line in ``text`` (a whole log or its tail), or None."""
    return _last_marked(text, WANDB_PREFIX, parse_wandb_line)


def format_recovery_line(number: int, why: str) -> str:
    """``[metta-exp] recovery N: WHY``: where a remote job's local log copy starts a new machine's log (SkyPilot
    recovered the job after a preemption). Written by the SkyPilot backend, never by a job."""
    return f"{RECOVERY_PREFIX}{number}: {why}"


def parse_recovery_line(line: str) -> int | None:
    """The recovery number of a ``[metta-exp] recovery N: ...`` line (at the start of the line), or None."""
    if not line.startswith(RECOVERY_PREFIX):
        return None
    number, sep, _ = line[len(RECOVERY_PREFIX) :].partition(":")
    return int(number) if sep and number.isdigit() else None


def split_recoveries(text: str) -> list[tuple[int, str]]:
    """A log split where recovery lines start a new machine's log: ``[(recovery number, text)]`` in order,
    the part before the first recovery line numbered 0; parts without text are left out (a log with
    neither text nor recovery lines is one empty part 0)."""
    parts: list[tuple[int, str]] = []
    number, lines = 0, []
    for line in text.splitlines(keepends=True):
        parsed = parse_recovery_line(line.rstrip("\r\n")) if line.startswith(RECOVERY_PREFIX) else None
        if parsed is None:
            lines.append(line)
            continue
        parts.append((number, "".join(lines)))
        number, lines = parsed, []
    parts.append((number, "".join(lines)))
    kept = [part for part in parts if part[1]]
    return kept or [parts[-1]]


T = TypeVar("T")


def _last_marked(text: str, marker: str, parse: Callable[[str], T | None]) -> T | None:
    """The last line of ``text`` holding ``marker`` that ``parse`` accepts, searched from the end."""
    end = len(text)
    while (at := text.rfind(marker, 0, end)) >= 0:
        start = text.rfind("\n", 0, at) + 1
        stop = text.find("\n", at)
        found = parse(text[start : stop if stop >= 0 else len(text)])
        if found is not None:
            return found
        end = start
    return None


def _printable_key(key: str) -> bool:
    return bool(key) and "=" not in key and not any(ch.isspace() for ch in key)


def _parse_int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _parse_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
