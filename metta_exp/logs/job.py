"""A job's log as data, for ``metta-exp job logs`` and :func:`metta_exp.groups.log`: an attempt's log as
it is now (:func:`read_log`), and a log followed as it grows, across a retry's new attempts, until the
attempt ends (:func:`follow`, an iterator of :data:`LogEvent` s). Nothing here writes to a stream or
chooses an exit code: the CLI prints what it gets. The standard library only."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from metta_exp.errors import NotFoundError, UsageError
from metta_exp.logs.tail import tail_offset
from metta_exp.status import JobStatus

if TYPE_CHECKING:
    from metta_exp.records import JobRecord
    from metta_exp.store import JobStore

CHUNK = 1 << 20


@dataclass(frozen=True)
class AttemptLog:
    """The log of one attempt of a job, from byte ``start`` (where its last ``tail`` lines begin; 0: the
    whole log) to its end as it is now. ``attempt`` 0: the job has not been launched yet; ``path`` None
    or missing: it has no log yet (``status`` says where it stands)."""

    group: str
    run: str
    attempt: int
    path: str | None
    status: JobStatus
    start: int = 0

    @property
    def exists(self) -> bool:
        return bool(self.path) and os.path.exists(self.path or "")

    def chunks(self, size: int = CHUNK) -> Iterator[bytes]:
        """The log from ``start`` to its current end, ``size`` bytes at a time (a log of gigabytes is
        never held whole); nothing when it does not exist."""
        return read_from(self.path, self.start, size) if self.path else iter(())

    def read(self) -> bytes:
        return b"".join(self.chunks())


@dataclass(frozen=True)
class LogBytes:
    """More of the log followed."""

    data: bytes
    kind: Literal["bytes"] = "bytes"


@dataclass(frozen=True)
class NewAttempt:
    """The job was retried: following goes on in attempt ``attempt``'s log at ``path``."""

    attempt: int
    path: str
    kind: Literal["attempt"] = "attempt"


@dataclass(frozen=True)
class Waiting:
    """The attempt has no log yet (the job is ``status``); said once."""

    status: JobStatus
    kind: Literal["waiting"] = "waiting"


@dataclass(frozen=True)
class Ended:
    """The attempt followed ended with ``status``; its log is complete (the last event)."""

    status: JobStatus
    kind: Literal["ended"] = "ended"

    @property
    def succeeded(self) -> bool:
        return self.status == JobStatus.SUCCEEDED


LogEvent = LogBytes | NewAttempt | Waiting | Ended
"""What following a log yields; ``kind`` tells them apart (``bytes``, ``attempt``, ``waiting``, ``ended``)."""


def find_attempt(
    store: JobStore, group: str, run: str, attempt: int | None, tail: int | None = None
) -> tuple[JobRecord, int, str | None]:
    """The job, the attempt number (its current one unless ``attempt``) and that attempt's log path;
    ``UsageError`` for a negative ``tail`` (after the group and run were found)."""
    job = store.job(group, run)
    if tail is not None and tail < 0:
        raise UsageError(f"--tail must be 0 or more lines, got {tail}")
    if attempt is None:
        return job, job.attempts, job.log_path
    found = next((a for a in store.attempts(group, run) if a.number == attempt), None)
    if found is None:
        have = (
            f"attempts 1 to {job.attempts}"
            if job.attempts > 1
            else ("attempt 1" if job.attempts else "no attempt yet")
        )
        raise NotFoundError(f"run '{run}' of group '{group}' has no attempt {attempt} (it has {have})")
    return job, attempt, found.log_path


def read_log(store: JobStore, group: str, run: str, attempt: int | None, tail: int | None) -> AttemptLog:
    """Attempt ``attempt`` (the current one unless given) of ``run``'s log: all of it, or its last
    ``tail`` lines."""
    job, number, path = find_attempt(store, group, run, attempt, tail)
    start = tail_offset(path, tail) if tail is not None and path and os.path.exists(path) else 0
    return AttemptLog(group, run, number, path, job.status, start)


def follow(
    store: JobStore,
    group: str,
    run: str,
    attempt: int | None,
    tail: int | None,
    poll: float = 0.25,
    *,
    heal: Callable[[], None],
) -> Iterator[LogEvent]:
    """The log as it grows until the attempt ends (then :class:`Ended`). Without ``attempt`` it follows
    the job's current attempt, moving on to a new attempt's log when the job is retried, and calls
    ``heal`` ("heal this group": start a runner if the group's one died) on every poll."""
    job, number, path = find_attempt(store, group, run, attempt, tail)
    pinned = attempt is not None
    pos: int | None = None
    waiting = False
    while True:
        job = store.job(group, run)  # read before copying: once it ended, its log is complete
        if not pinned and job.attempts != number and job.log_path:
            if path and pos is not None:
                yield from _more(path, pos)
            number, path, pos = job.attempts, job.log_path, 0
            yield NewAttempt(number, path)
        if path and os.path.exists(path):
            if pos is None:
                pos = tail_offset(path, tail) if tail is not None else 0
            for event in _more(path, pos):
                pos += len(event.data)
                yield event
        elif not waiting:
            yield Waiting(job.status)
            waiting = True
        ended = _attempt_status(store, group, run, job, number)
        if ended is not None:
            yield Ended(ended)
            return
        if not pinned:
            heal()
        time.sleep(poll)


def read_from(path: str | os.PathLike[str], offset: int, size: int = CHUNK) -> Iterator[bytes]:
    """A file from byte ``offset`` to its current end, ``size`` bytes at a time; nothing when it does
    not exist."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            while data := f.read(size):
                yield data
    except FileNotFoundError:
        return


def _more(path: str, pos: int) -> Iterator[LogBytes]:
    return (LogBytes(data) for data in read_from(path, pos))


def _attempt_status(store: JobStore, group: str, run: str, job: JobRecord, number: int) -> JobStatus | None:
    """How attempt ``number`` ended (None while it has not, or while the job waits for a retry)."""
    if job.attempts == number:
        return job.status if job.status.is_terminal() else None
    if job.attempts > number:
        found = next((a for a in store.attempts(group, run) if a.number == number), None)
        return found.status if found is not None and found.status.is_terminal() else JobStatus.FAILED
    return None
