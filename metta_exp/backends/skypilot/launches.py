"""Launch requests this process sends to SkyPilot, and what became of each (``Flight``).

A launch is a POST that answers with a request id, then a ``sky.get`` that waits for the job id. Both
can go wrong in ways that leave the outcome open, and none of them may leave a job running twice or a
job that runs reported as lost:

- **The POST does not get through** (the API server restarts for a moment): sent again, with a growing
  pause, for up to ``send_for_s`` (``METTA_EXP_SKY_LAUNCH_RETRY_S``, 300 s) in the background; the job is
  "launch request in progress" meanwhile, never an attempt that vanished.
- **The POST's answer is lost** (a connection reset, or a read timeout, after the server took it: the job
  may exist, ``sky/jobs/client/sdk.py`` sends the POST once, without retries): its name is looked for in the
  queue (every user's jobs) for up to ``lost_wait_s`` (120 s: the server may still be making the job), and
  a job found is adopted; only then is it sent again.
- **The request's answer is gone** (``RequestLost``: a server restart interrupted the request, which then
  answers ``RequestInterruptedError`` for ever and asks the client to re-submit, ``sky/server/uvicorn.py``;
  or a local server's request table was wiped and ``sky.get`` answers 404): looked up by name, then sent
  again.

A job may still be created twice (a lost POST whose job shows up in the queue only after the look-up):
each name sent more than once is remembered in ``doubles`` and the backend cancels any second job with
that name as soon as the queue shows it.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from metta_exp.backends.skypilot.api import (
    QueueEntry,
    RequestLost,
    SkyApi,
    SkyApiError,
    SkyRefused,
    SkyRequestError,
)
from metta_exp.backends.skypilot.calls import concurrently, retry
from metta_exp.backends.skypilot.status import ENDED

__all__ = ["Flight", "Launches", "doubles", "first_by_name"]


@dataclass
class Flight:
    """One launch request this process sent: what became of it."""

    sky_name: str
    config: Mapping[str, Any] = dataclasses.field(default_factory=dict, repr=False)
    secrets: Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False)
    request_id: str | None = None
    job_id: int | None = None
    error: str | None = None  # the launch was refused, or could not reach SkyPilot
    refused: bool = False
    refusal: SkyRefused | None = None  # SkyPilot refuses every call (an expired login...)
    done: bool = False  # False while its threads are still sending it or waiting for its answer
    sends: int = 0
    sent: threading.Event = dataclasses.field(default_factory=threading.Event, repr=False)


class Launches:
    """Sends launches and collects their job ids, on daemon threads (``concurrently``).

    ``find(name)`` looks a job name up in the queue (a fresh answer, every user's jobs): the newest job id
    with exactly that name, or None.
    """

    def __init__(
        self,
        api: SkyApi,
        find: Callable[[str], int | None],
        workers: int,
        send_for_s: float = 300.0,
        max_sends: int = 3,
        lost_wait_s: float = 120.0,
    ) -> None:
        self.api = api
        self.find = find
        self.workers = workers
        self.send_for_s = send_for_s
        self.lost_wait_s = lost_wait_s
        self.max_sends = max_sends
        self.flights: dict[str, Flight] = {}  # sky name -> its latest flight
        self.job_ids: dict[str, int] = {}  # sky name -> job id, as learned
        self.doubles: set[str] = set()  # names sent more than once: a second job may exist
        self.lock = threading.Lock()

    def start(self, flights: list[Flight], deadline: float) -> None:
        """Send every flight at once, then collect the answers, until ``deadline``; a flight still under way
        then goes on in the background (its observations say so)."""
        with self.lock:
            self.flights.update((f.sky_name, f) for f in flights)
        concurrently(lambda f: self._send(f, deadline), flights, self.workers, deadline)
        # Answers are collected only now, so no launch waited for another's.
        concurrently(self._collect, flights, self.workers, deadline)

    def _send(self, flight: Flight, deadline: float) -> None:
        """POST the launch; after a failure, look the name up before sending it again."""
        give_up = max(deadline, time.monotonic() + self.send_for_s)
        pause = 0.5
        try:
            while True:
                try:
                    flight.sends += 1
                    if flight.sends > 1:
                        self.doubles.add(flight.sky_name)
                    flight.request_id = self.api.launch(flight.config, flight.secrets)
                    return
                except (SkyRefused, SkyRequestError) as exc:
                    self._refuse(flight, exc)
                    return
                except SkyApiError as exc:
                    if self._found(flight, self.lost_wait_s if exc.reached else 0.0):
                        return
                    if time.monotonic() + pause > give_up:
                        flight.error = f"could not reach SkyPilot to launch it: {exc}"
                        flight.refused, flight.done = True, True
                        return
                    time.sleep(pause)
                    pause = min(pause * 2, 30.0)
                except Exception as exc:  # anything else from the SDK: the task cannot be launched as it is
                    self._refuse(flight, exc)
                    return
        finally:
            flight.sent.set()

    def _collect(self, flight: Flight) -> None:
        """Wait for the job id; a lost answer is looked up by name, then the launch is sent again."""
        while True:
            flight.sent.wait()
            if flight.request_id is None:
                return  # never sent, or found by name: _send recorded it
            try:
                job_id = self._answer(flight.request_id)
            except RequestLost as exc:
                if self._found(flight):
                    return
                if flight.sends >= self.max_sends:
                    flight.error, flight.done = f"the launch request's answer was lost: {exc}", True
                    return
                flight.request_id = None
                flight.sent.clear()
                self._send(flight, time.monotonic())
                continue
            except (SkyRefused, SkyRequestError) as exc:
                self._refuse(flight, exc)
                return
            except SkyApiError as exc:
                flight.error, flight.done = f"launch request failed: {exc}", True
                return
            except Exception as exc:
                self._refuse(flight, exc)
                return
            self._adopt(flight, job_id)
            return

    def _answer(self, request_id: str) -> int:
        return int(retry(lambda: self.api.launch_result(request_id), time.monotonic() + 3600.0))

    def _found(self, flight: Flight, wait_s: float = 0.0) -> bool:
        """Adopt a job SkyPilot has under the flight's name (a lost answer's job), looking for it every few
        seconds for ``wait_s`` (0: once)."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                job_id = self.find(flight.sky_name)
            except SkyApiError:
                job_id = None
            if job_id is not None:
                self._adopt(flight, job_id)
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))

    def _adopt(self, flight: Flight, job_id: int) -> None:
        with self.lock:
            flight.job_id = self.job_ids[flight.sky_name] = job_id
        flight.done = True

    @staticmethod
    def _refuse(flight: Flight, exc: BaseException) -> None:
        """The launch is refused for good; a refusal of every call (``SkyRefused``) is kept as such."""
        detail = str(exc) if isinstance(exc, SkyApiError) else repr(exc)
        flight.error = f"SkyPilot refused the launch: {detail}"
        flight.refusal = exc if isinstance(exc, SkyRefused) else None
        flight.refused, flight.done = True, True


def first_by_name(entries: Iterable[QueueEntry]) -> dict[str, int]:
    """Job name -> the first job id with that name (a second one is a duplicate: see ``doubles``)."""
    out: dict[str, int] = {}
    for entry in entries:
        if entry.name not in out or entry.job_id < out[entry.name]:
            out[entry.name] = entry.job_id
    return out


def doubles(
    entries: Iterable[QueueEntry], names: Collection[str], ids: Collection[int | None]
) -> tuple[dict[str, int], list[int]]:
    """For the jobs of these names: the one to keep of each name (the one whose id is known, else the first)
    and the others still in progress, to cancel (a launch sent twice after its answer was lost)."""
    found: dict[str, list[QueueEntry]] = {}
    for entry in entries:
        if entry.name in names:
            found.setdefault(entry.name, []).append(entry)
    keep: dict[str, int] = {}
    extra: list[int] = []
    for name, same in found.items():
        same.sort(key=lambda e: e.job_id)
        kept = next((e for e in same if e.job_id in ids), same[0])
        keep[name] = kept.job_id
        extra += [e.job_id for e in same if e is not kept and e.status.upper() not in ENDED]
    return keep, sorted(extra)
