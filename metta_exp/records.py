"""Typed rows the store hands out. Plain data: readers (CLI, monitor, notebook) use these only."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from metta_exp.status import JobStatus


def iso(ts: float | None) -> str | None:
    """A unix time as ISO 8601 with a UTC offset, or None."""
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class GroupRecord:
    """A job group: one launch of one experiment."""

    name: str
    experiment: str
    backend: str  # "local" or "skypilot"
    config: dict[str, Any]  # Experiment.to_dict() plus "extra_args", and "sweep" for sweep groups
    created_at: float
    ended_at: float | None
    cancel_requested: bool
    lease_owner: str | None
    lease_expires: float | None
    runner_pid: int | None


@dataclass(frozen=True)
class JobRecord:
    """A job of a group: one run, with its current (latest) attempt."""

    group: str
    run: str
    position: int  # order of the run in the experiment
    status: JobStatus
    spec: dict[str, Any]  # JobSpec.to_dict()
    run_dir: str
    attempts: int = 0  # attempts started so far (0 before the first launch)
    exit_code: int | None = None
    reason: str | None = None
    handle: str | None = None  # backend handle of the current attempt
    gpu_ids: tuple[int, ...] = ()
    queued_at: float | None = None  # when it (last) became pending
    started_at: float | None = None  # current attempt
    ended_at: float | None = None
    log_path: str | None = None  # current attempt's log file
    wandb_url: str | None = None
    depends_on: tuple[str, ...] = field(default_factory=tuple)

    @property
    def args(self) -> list[str]:
        return list(self.spec.get("args", []))


@dataclass(frozen=True)
class AttemptRecord:
    group: str
    run: str
    number: int
    status: JobStatus
    handle: str | None
    gpu_ids: tuple[int, ...]
    started_at: float | None
    ended_at: float | None
    exit_code: int | None
    reason: str | None
    log_path: str | None


@dataclass(frozen=True)
class EventRecord:
    id: int
    group: str
    run: str | None
    at: float
    kind: str  # "status" for job transitions, otherwise a group event ("created", "runner", "killed", ...)
    old_status: str | None
    new_status: str | None
    detail: str | None


@dataclass(frozen=True)
class GroupSummary:
    """One row of ``metta-exp job list``."""

    name: str
    experiment: str
    backend: str
    created_at: float
    ended_at: float | None
    counts: dict[str, int]  # status value -> count, every status present

    @property
    def total(self) -> int:
        return sum(self.counts.values())
