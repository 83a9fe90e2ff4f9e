"""The backend interface: the few things the runner asks of wherever jobs run.

A backend is stateless toward the store: it never reads or writes it. It starts attempts, observes
many at once, cancels many at once, and (for remote backends) copies log tails into local files.
Each backend maps its native states to ``JobStatus`` inside its own module.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from metta_exp.records import JobSpec
from metta_exp.status import JobStatus

if TYPE_CHECKING:
    from metta_exp.config import SkyPilotSettings, WandbSettings


@dataclass(frozen=True)
class LaunchSettings:
    """What a launch carries of its group: its SkyPilot and W&B settings (None: the backend's own) and
    the group instance's id (None for groups recorded before instances existed)."""

    skypilot: SkyPilotSettings | None = None
    wandb: WandbSettings | None = None
    instance: str | None = None


@dataclass(frozen=True)
class Launch:
    """One attempt of one job, as a backend sees it.

    ``name`` is deterministic (group, run, attempt), so a backend can find an attempt it started even
    when the runner crashed before recording its handle. ``handle`` is what ``submit`` returned for it
    (None until known). ``gpu_ids`` are the local devices assigned to it (local backend only).
    """

    spec: JobSpec
    attempt: int
    log_path: Path
    handle: str | None = None
    gpu_ids: tuple[int, ...] = ()
    settings: LaunchSettings = field(default_factory=LaunchSettings)

    @property
    def name(self) -> str:
        return launch_name(self.spec.group, self.spec.run, self.attempt)


def launch_name(group: str, run: str, attempt: int) -> str:
    return f"metta-exp-{group}-{run}-a{attempt}"


@dataclass(frozen=True)
class Observation:
    """What a backend knows of one attempt right now.

    ``status`` is None when the backend cannot see the attempt (not submitted, not visible yet, or
    gone): the runner decides, with a grace period, what that means. ``handle`` is set when the
    backend learned the attempt's handle (after a crash, by name). ``reason`` explains a failure, or
    says where an active attempt stands on the backend (``SkyPilot PENDING``, ``SkyPilot RECOVERING``).
    ``started_at`` is when the attempt began to run its command (epoch seconds), for a backend that
    ``queues`` attempts; None while it waits in the backend's queue or is being provisioned.
    ``recoveries`` counts the times the backend started the attempt again on new machines (a SkyPilot
    spot recovery): each starts the job's command anew.
    """

    status: JobStatus | None
    exit_code: int | None = None
    reason: str | None = None
    handle: str | None = None
    transient: bool = False
    started_at: float | None = None
    recoveries: int = 0


class Backend(ABC):
    """Where jobs run. Injected into the runner; one instance per runner process."""

    name: str = "base"
    #: seconds between two ``poll`` calls the runner should respect
    poll_interval: float = 0.5
    #: seconds an attempt may stay invisible to ``poll`` before the runner gives up on it
    unseen_grace: float = 30.0
    #: attempts may wait in the backend's own queue (and be provisioned) before they run: ``timeout_s``
    #: then counts from ``Observation.started_at``, not from the submit
    queues: bool = False

    def check(self, specs: Sequence[JobSpec]) -> None:  # noqa: B027 - optional hook
        """Raise ``BackendUnavailable`` if these jobs cannot run here (before anything is written)."""

    def location(self) -> dict[str, str] | None:
        """Where this backend runs jobs, recorded with each group it launches so that every later command
        drives the group there (the SkyPilot simulator's directory, the SkyPilot API server). None: here."""
        return None

    def devices(self) -> list[int] | None:
        """Local GPU ids to pack jobs onto, or None when the backend allocates its own resources."""
        return None

    @abstractmethod
    def submit(self, launches: Sequence[Launch]) -> dict[str, str]:
        """Start every launch at once; return ``{launch.name: handle}`` for those started.

        A launch missing from the answer was not started (the runner will try again); raise only when
        nothing could be submitted at all.
        """

    def submit_recorded(
        self, launches: Sequence[Launch], record: Callable[[dict[str, str]], None]
    ) -> dict[str, str]:
        """``submit``, calling ``record`` with the handles of the launches started (when any started)
        before they begin their work, where the backend can hold them (the local backend's start gate);
        elsewhere, as soon as they are submitted. An exception from ``record`` propagates; what was
        started goes on (its runner finds it again, as after a crash). Default: submit, then record."""
        handles = self.submit(launches)
        if handles:
            record(dict(handles))
        return handles

    @abstractmethod
    def poll(self, launches: Sequence[Launch]) -> dict[str, Observation]:
        """Observe many attempts in one go: ``{launch.name: Observation}`` for every launch given."""

    @abstractmethod
    def cancel(self, launches: Sequence[Launch]) -> None:
        """End these attempts (whole process tree, or managed job) and return once they are ended."""

    def cancel_soon(self, launches: Sequence[Launch]) -> None:
        """Start ending these attempts and return at once (a driver must not wait out a grace period
        while other jobs end); ``close`` waits for what is still being ended. Default: ``cancel``."""
        self.cancel(launches)

    def still_ending(self) -> list[Launch]:
        """The attempts ``cancel_soon`` began ending that are not gone yet (their GPUs are still held, and
        their group is not over). Default: none (a backend whose cancel returns once they are gone)."""
        return []

    def end_leftovers(self, launches: Sequence[Launch]) -> dict[str, int]:
        """Start ending what these attempts, seen ended, left running (processes their job started that
        outlived it) and return at once: ``{launch.name: how many processes}`` for each that left any,
        listed in ``still_ending`` until they are gone. Default: none (a backend whose job ends with
        everything it started, as a managed job with its cluster)."""
        return {}

    def sync_logs(self, launches: Sequence[Launch]) -> None:  # noqa: B027 - optional hook
        """Copy the log tails of remote attempts into ``launch.log_path``; local backends do nothing."""

    def log_complete(self, launch: Launch) -> bool:
        """Whether ``launch.log_path`` holds the whole (tail of the) log of an attempt that has ended.
        Local attempts write their own log, complete when they are reaped."""
        return True

    def settle(self, stop: Callable[[], bool] = lambda: False) -> None:  # noqa: B027 - optional hook
        """After the runner's group ended: make sure nothing of it runs on (a remote attempt that was
        cancelled before the backend could see it is cancelled when it shows up). Returns early once
        ``stop()`` is true (the runner was asked to stop)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the backend holds (threads, clients)."""
