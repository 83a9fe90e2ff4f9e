"""The one status enum every backend maps its native states to, and the status machine: which moves
between them are legal, and which store method makes each (:data:`TRANSITIONS`)."""

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

_P, _L, _R = JobStatus.PENDING, JobStatus.LAUNCHING, JobStatus.RUNNING
_S, _F, _C = JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED

#: The status machine: every legal move of a job's status, and the ``JobStore`` methods that make it.
#: Nothing else moves a status: the store's transitions take their sources from this table (and check
#: every move against it), and ``tests/test_status_moves.py`` drives every store method from every status
#: on a real store file to find exactly these moves. A job is born pending (``create_group``,
#: ``add_trial``); ``succeeded`` and ``pruned`` are final; ``job retry`` reopens the other ends.
TRANSITIONS: Mapping[tuple[JobStatus, JobStatus], frozenset[str]] = {
    (_P, _L): frozenset({"claim", "claim_many"}),  # the lease holder takes it to launch: an attempt begins
    (_P, JobStatus.SKIPPED): frozenset({"skip"}),  # a run it depends on did not succeed
    (_P, _C): frozenset({"kill", "request_cancel"}),  # killed before it launched
    (_L, _R): frozenset({"mark_running", "mark_running_many"}),  # the backend has it
    (_L, _P): frozenset({"finish_attempt"}),  # requeued: it never started, or failed with retries left
    (_R, _P): frozenset({"finish_attempt"}),  # requeued: failed with retries left
    (_L, _S): frozenset({"finish_attempt"}),  # ended before its driver saw it run
    (_R, _S): frozenset({"finish_attempt"}),
    (_L, _F): frozenset({"finish_attempt"}),
    (_R, _F): frozenset({"finish_attempt"}),
    (_L, _C): frozenset({"finish_attempt", "kill"}),
    (_R, _C): frozenset({"finish_attempt", "kill"}),
    (_L, JobStatus.PRUNED): frozenset({"prune_trial"}),  # a search's pruner stopped it
    (_R, JobStatus.PRUNED): frozenset({"prune_trial"}),
    (_F, _P): frozenset({"requeue_for_retry"}),  # job retry
    (_C, _P): frozenset({"requeue_for_retry"}),
    (JobStatus.SKIPPED, _P): frozenset({"requeue_for_retry"}),
}


def moves_from(method: str, new: JobStatus) -> tuple[JobStatus, ...]:
    """The statuses ``method`` (a ``JobStore`` method) moves a job to ``new`` from, in enum order."""
    return tuple(old for old in JobStatus if method in TRANSITIONS.get((old, new), ()))


def moved_by(method: str) -> frozenset[JobStatus]:
    """Every status ``method`` moves a job from (to anywhere)."""
    return frozenset(old for (old, _), methods in TRANSITIONS.items() if method in methods)


def check_move(old: JobStatus, new: JobStatus, method: str) -> None:
    """``ValueError`` unless :data:`TRANSITIONS` lets ``method`` move a job from ``old`` to ``new``."""
    if method not in TRANSITIONS.get((old, new), ()):
        raise ValueError(
            f"{method} may not move a job from {old.value} to {new.value} (see status.TRANSITIONS)"
        )


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
