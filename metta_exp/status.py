"""The one status enum every backend maps its native states to."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import Enum


class JobStatus(str, Enum):
    """Where a job of a group stands. The last five are terminal."""

    PENDING = "pending"
    """Waiting to be launched: for its dependencies, a free GPU, or the group's ``max_parallel``."""
    LAUNCHING = "launching"
    """Claimed by a runner and being handed to the backend; its backend handle may not be known yet."""
    RUNNING = "running"
    """The backend has it (a live process, or a managed job that is starting, running or recovering)."""
    SUCCEEDED = "succeeded"
    """Ended with exit code 0."""
    FAILED = "failed"
    """Ended with a non-zero exit code, vanished, timed out, or the backend gave up on it."""
    CANCELLED = "cancelled"
    """Ended by ``metta-exp job kill`` before it could finish."""
    SKIPPED = "skipped"
    """Never launched because a run it depends on did not succeed."""
    PRUNED = "pruned"
    """A search's trial ended early by its pruner (behind the other trials): not a failure."""

    def is_terminal(self) -> bool:
        return self in TERMINAL

    def __str__(self) -> str:
        return self.value


TERMINAL = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.SKIPPED, JobStatus.PRUNED}
)
ACTIVE = frozenset({JobStatus.LAUNCHING, JobStatus.RUNNING})
ALL_STATUSES = tuple(JobStatus)


def waits_for(
    depends_on: Sequence[str],
    status: Mapping[str, JobStatus],
    active: int,
    max_parallel: int | None,
    gpus: int,
    free_gpus: int | None,
) -> str | None:
    """Why a pending job may not launch now, the runner's rule and what the monitor shows: ``dependency``
    (a run it depends on has not succeeded), ``max_parallel`` (``active`` jobs fill the group's slots),
    ``gpu`` (it needs more GPUs than are free; ``free_gpus`` None: GPUs are not counted here), or None:
    it may launch."""
    if any(status.get(d) != JobStatus.SUCCEEDED for d in depends_on):
        return "dependency"
    if max_parallel and active >= max_parallel:
        return "max_parallel"
    if free_gpus is not None and gpus > 0 and free_gpus < gpus:
        return "gpu"
    return None
