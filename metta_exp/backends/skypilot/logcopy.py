"""Remote logs become whole local files: each managed job's log is copied into its attempt's log file, and
the copy only ever grows (``job logs --follow`` reads it by byte offset).

SkyPilot gives a job's log as tails (``sky.jobs.tail_logs(tail=N, follow=False)``); how they are read:

- **While it runs**, a tail of ``lines`` (500) is aligned with the end of the local copy (the longest run
  of the copy's last lines that starts the tail) and only what follows is appended; a last line without
  its newline is being written, and waits for the next look. A tail that does not
  meet the copy (the job printed more than a tail since the last look) is followed by the whole log,
  which does, and the next tails are longer.
- **After a recovery** (SkyPilot restarted the job on a new machine, ``recovery_count`` grew) the log
  SkyPilot shows is the new machine's, from its first line: the copy gets a ``[metta-exp] recovery N``
  line and goes on from there, so no machine's lines are lost (SkyPilot itself keeps only the last one's).
- **After it ended**, its log is complete only once SkyPilot's controller downloaded it: until then
  (``sky/jobs/controller.py`` sets SUCCEEDED, and CANCELLED, before it downloads the log) a tail answers one
  line, ``Job N is already in terminal state SUCCEEDED...`` (``sky/jobs/utils.py``: ``stream_logs_by_id``),
  and a tail whose request failed on the server answers ``""`` without an error (``sky/jobs/client/sdk.py``
  reads a non-following tail without asking for its result; ``sky/server/stream_utils.py``). Neither is
  written. The downloaded log ends with ``✓ Job finished (status: S).``: that tail, the whole log, completes
  the copy. A job that never ran (no resources, cancelled while pending) has no log: SkyPilot's line is
  its log. One whose log does not come within ``final_wait_s`` gets a line saying so, and is complete.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from metta_exp.backends.base import Launch
from metta_exp.backends.skypilot.api import SkyApi, SkyApiError
from metta_exp.backends.skypilot.calls import concurrently
from metta_exp.backends.skypilot.status import ENDED
from metta_exp.logs.lines import RECOVERY_PREFIX, format_recovery_line, parse_recovery_line
from metta_exp.logs.tail import read_backwards

__all__ = ["LogCopies", "Seen", "answer_kind"]

#: SkyPilot statuses whose log tail answers at once (``sky/jobs/utils.py``: ``stream_logs_by_id`` waits
#: for any other status to become RUNNING, even with ``follow=False``).
_ANSWERS = frozenset({"RUNNING", "CANCELLING"}) | ENDED
#: ``sky/skylet/log_lib.py`` prints it after the log's lines: after a last line without its newline, on it
_FINISHED = re.compile(r"(?:✓ )?Job finished \(status: [A-Z_]+\)\.\s*$")
_NOT_YET = re.compile(r"^Job \d+ is already in terminal state [A-Z_]+\.")
MAX_WINDOW = 32_000


def answer_kind(text: str) -> str:
    """What a tail of an ended job answered: ``final`` (the downloaded log, ``Job finished (status: S).``
    last), ``pending`` (SkyPilot's terminal-state line: not downloaded yet), or ``empty`` (the request
    failed on the server)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return "empty"
    if _FINISHED.search(lines[-1]):
        return "final"
    if _NOT_YET.match(lines[0]):
        return "pending"
    return "other"


@dataclass
class Seen:
    """What the last poll said of one attempt on SkyPilot."""

    job_id: int
    status: str  # SkyPilot's ManagedJobStatus name
    recoveries: int = 0
    ran: bool = False  # it reached RUNNING (``start_at``): it has a log


@dataclass
class _Copy:
    """One attempt's copy: the recovery its last lines come from, and those lines (the last ``window``)."""

    recovery: int = 0
    tail: list[str] = field(default_factory=list)
    window: int = 500
    fetched: float = -math.inf  # monotonic time of the last tail
    ended_at: float | None = None  # monotonic time its end was first seen
    asked_final: bool = False  # its final log was asked for at least once
    complete: bool = False


class LogCopies:
    """Copies the logs of SkyPilot attempts into their ``launch.log_path``, at a bounded rate."""

    def __init__(
        self,
        api: SkyApi,
        interval_s: float,
        per_call: int,
        lines: int = 500,
        final_wait_s: float = 300.0,
        retry_s: float = 2.0,
    ) -> None:
        self.api = api
        self.interval_s = interval_s
        self.per_call = per_call
        self.lines = lines
        self.final_wait_s = final_wait_s
        self.retry_s = retry_s  # how often an ended job's log is asked for until it is downloaded
        self._copies: dict[str, _Copy] = {}
        self._busy: set[str] = set()
        self._lock = threading.Lock()

    def complete(self, launch: Launch) -> bool:
        copy = self._copies.get(launch.name)
        return copy is not None and copy.complete

    def sync(self, launches: Sequence[Launch], seen: Mapping[str, Seen], deadline_s: float) -> None:
        """Copy what is new of the logs of these attempts: those ended first (their final log), then those
        running, longest unread first, at most ``per_call`` of them, each at most every ``interval_s``."""
        now = time.monotonic()
        due: list[tuple[float, Launch, Seen]] = []
        for launch in launches:
            info = seen.get(launch.name)
            if info is None or info.status not in _ANSWERS or launch.name in self._busy:
                continue
            copy = self._copies.setdefault(launch.name, _Copy(window=self.lines))
            if copy.complete:
                continue
            if info.status in ENDED:
                if copy.ended_at is None:
                    copy.ended_at = now
                if not copy.asked_final or now - copy.fetched >= self.retry_s:
                    due.append((-math.inf, launch, info))
            elif now - copy.fetched >= self.interval_s:
                due.append((copy.fetched, launch, info))
        due.sort(key=lambda item: item[0])
        chosen = due[: self.per_call]
        with self._lock:
            self._busy.update(launch.name for _, launch, _ in chosen)
        concurrently(lambda item: self._copy(item[1], item[2], now), chosen, 4, time.monotonic() + deadline_s)

    def _copy(self, launch: Launch, info: Seen, now: float) -> None:
        copy = self._copies[launch.name]
        try:
            copy.fetched = now
            if not copy.tail:
                copy.recovery, copy.tail = _read_copy(launch.log_path, MAX_WINDOW)
            if info.status in ENDED:
                self._final(launch, info, copy)
            else:
                self._running(launch, info, copy)
        except SkyApiError:
            pass  # asked again at the next cycle
        except OSError:
            pass  # a full disk: the copy is tried again (nothing half-written: appends are whole lines)
        finally:
            with self._lock:
                self._busy.discard(launch.name)

    def _running(self, launch: Launch, info: Seen, copy: _Copy) -> None:
        self._start_recovery(launch, info, copy)
        if not copy.tail:  # nothing copied yet (of this machine's log): all of it, which is short
            self._append(launch.log_path, copy, _whole_lines(self.api.tail_logs(info.job_id, None)))
            _write_lines(launch.log_path, [])  # it runs: its log exists, empty as it may still be
            return
        text = self.api.tail_logs(info.job_id, copy.window)
        lines = _whole_lines(text)
        if not lines:
            return
        if len(text.splitlines()) >= copy.window and not _overlap(copy.tail, lines):
            copy.window = min(copy.window * 4, MAX_WINDOW)  # it prints fast: look further back next time
            lines = _whole_lines(self.api.tail_logs(info.job_id, None))
        self._append(launch.log_path, copy, lines)

    def _final(self, launch: Launch, info: Seen, copy: _Copy) -> None:
        self._start_recovery(launch, info, copy)
        copy.asked_final = True
        text = self.api.tail_logs(info.job_id, None)
        kind = answer_kind(text)
        if kind == "final":
            self._append(launch.log_path, copy, _job_lines(text))
            copy.complete = True
        elif not info.ran:  # no machine ever ran it: SkyPilot's answer is all there is to say
            if kind == "pending" and not copy.tail:
                self._append(launch.log_path, copy, _lines(text))
            copy.complete = kind in ("pending", "other")
        elif copy.ended_at is not None and time.monotonic() - copy.ended_at >= self.final_wait_s:
            waited = f"{self.final_wait_s:g} s"
            self._append(
                launch.log_path,
                copy,
                [f"[metta-exp] SkyPilot did not give this job's final log within {waited} of its end; above is "
                 "what was copied while it ran"],
                align=False,
            )  # fmt: skip
            copy.complete = True

    def _start_recovery(self, launch: Launch, info: Seen, copy: _Copy) -> None:
        """A new machine's log follows a recovery line (one per recovery since the copy's last one)."""
        while copy.recovery < info.recoveries:
            number = copy.recovery + 1
            line = format_recovery_line(
                number, "SkyPilot restarted the job on a new machine; its log starts again"
            )
            _write_lines(launch.log_path, [line])
            copy.recovery, copy.tail = number, []

    def _append(self, path: Path, copy: _Copy, lines: list[str], align: bool = True) -> None:
        """Append what of ``lines`` follows the copy's last lines (all of them when they do not meet)."""
        new = lines[_overlap(copy.tail, lines) :] if align else lines
        if not new:
            return
        _write_lines(path, new)
        copy.tail = (copy.tail + new)[-MAX_WINDOW:]


def _overlap(tail: list[str], lines: list[str]) -> int:
    """The length of the longest end of ``tail`` that starts ``lines`` (0: they do not meet)."""
    if not tail or not lines:
        return 0
    first = lines[0]
    longest = min(len(tail), len(lines))
    for k in range(longest, 0, -1):
        if tail[-k] == first and tail[-k:] == lines[:k]:
            return k
    return 0


def _lines(text: str) -> list[str]:
    return text.splitlines()


def _job_lines(text: str) -> list[str]:
    """The job's own lines of a tail: without SkyPilot's terminal-state line (the job ended since the last
    look, and its log is not downloaded yet) and its closing ``Job finished (status: S).``."""
    if answer_kind(text) == "pending":
        return []
    lines = text.splitlines()
    if lines and (found := _FINISHED.search(lines[-1])):
        lines[-1] = lines[-1][: found.start()]
        if not lines[-1]:
            lines.pop()
    return lines


def _whole_lines(text: str) -> list[str]:
    """The job's lines of a running job's tail, without a last one that has no newline yet: the job is
    writing it (an unbuffered ``print`` writes its pieces one by one); it is copied once it is whole."""
    lines = _job_lines(text)
    return lines[:-1] if lines and not text.endswith("\n") else lines


def _write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(f"{line}\n" for line in lines).encode()
    with open(path, "ab") as f:  # one write of whole lines: a reader never sees half a line
        f.write(data)


def _read_copy(path: Path, limit: int, block: int = 1 << 16) -> tuple[int, list[str]]:
    """The recovery the copy's last lines come from, and those lines (at most ``limit``): read backwards by
    blocks up to the last recovery line, never the whole of a large log."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError:
        return 0, []
    marker = b"\n" + RECOVERY_PREFIX.encode()
    with f:
        pos, data = read_backwards(f, lambda d: d.count(b"\n") > limit or marker in d, block)
    text = data.decode("utf-8", "replace")
    lines = text.splitlines()
    if pos > 0 and lines:
        lines = lines[1:]  # a first partial line
    for i in range(len(lines) - 1, -1, -1):
        number = parse_recovery_line(lines[i])
        if number is not None:
            return number, lines[i + 1 :][-limit:]
    if pos > 0:  # more log before: the recovery it belongs to is the last one before it
        return _earlier_recovery(path, pos), lines[-limit:]
    return 0, lines[-limit:]


def _earlier_recovery(path: Path, before: int) -> int:
    """The number of the last recovery line before byte ``before`` (0: none), read forwards."""
    number = 0
    with open(path, "rb") as f:
        read = 0
        for raw in f:
            read += len(raw)
            if read > before:
                break
            if raw.startswith(RECOVERY_PREFIX.encode()):
                found = parse_recovery_line(raw.decode("utf-8", "replace").rstrip("\r\n"))
                number = found if found is not None else number
    return number
