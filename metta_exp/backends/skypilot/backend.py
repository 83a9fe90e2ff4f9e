"""The SkyPilot backend: every attempt is one SkyPilot managed job.

- ``check`` asks SkyPilot once which infras are enabled and stops with the fix (``sky check``, or
  ``remote=false``) when none is, or when the configured cloud is not among them.
- ``submit`` sends every launch request at once (on a few threads; SkyPilot answers with request ids),
  then collects the job ids. It first looks the names up in the queue, so an attempt that already exists
  (a crash between submit and record) is adopted, never launched twice. An attempt whose id is not
  known within ``launch_wait_s`` gets its job name as handle; a later ``poll`` finds it by that name.
- ``poll`` answers every launch from ONE ``jobs.queue_v2`` call that asks only for the jobs of active
  groups (their job ids; a name prefix for attempts whose id is not known yet), shared through
  ``SharedQueue`` with the runners of all other groups on the same state directory, at most once per
  ``poll_interval`` (``METTA_EXP_SKY_POLL_S``, default 10 s). A jobs controller that is starting or
  stopped (it stops itself when idle) is a transient state: nothing is marked vanished then, and a
  stopped controller is started again in the background (``refresh=True``) to read the final statuses.
- ``cancel`` cancels every given attempt in one request and returns when SkyPilot has answered it. An
  attempt SkyPilot cannot show yet is remembered (``Tombstones``) and cancelled when it shows up; the
  runner of its group keeps looking for it a while after the group ended (``METTA_EXP_SKY_REAP_S``).
- ``sync_logs`` copies log tails of jobs that are RUNNING or ended into their local log files (a tail of
  a job that has not started would wait until it does), at most once per ``log_interval_s`` per job
  and ``logs_per_cycle`` jobs per call, so the monitor reads local files.

How SkyPilot's statuses map to ours: ``skypilot_status``.

Settings: ``METTA_EXP_SKY_POLL_S`` (poll interval, 10 s), ``METTA_EXP_SKY_LOG_S`` (per-job log tail
interval, 20 s), ``METTA_EXP_SKY_LAUNCH_WAIT_S`` (how long ``submit`` waits for job ids, 5 s: the runner
must renew its lease), ``METTA_EXP_SKY_LAUNCH_THREADS`` (16; 1 sends launches one by one),
``METTA_EXP_SKY_UNSEEN_GRACE_S`` (how long an attempt may stay out of the queue before it is failed as
vanished, 900 s: a first launch starts the jobs controller, which takes minutes), and
``METTA_EXP_FAKE_SKY_DIR`` (run everything on the simulator, see ``skypilot_select.default_sky_api``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metta_exp.atomic import write_atomic
from metta_exp.backends.base import Backend, Launch, Observation
from metta_exp.backends.skypilot.api import (
    ControllerNotUp,
    QueueEntry,
    SkyApi,
    SkyApiError,
    SkyRequestError,
)
from metta_exp.backends.skypilot.cache import SharedQueue, Tombstones
from metta_exp.backends.skypilot.calls import concurrently, retry
from metta_exp.backends.skypilot.check import check_backend
from metta_exp.backends.skypilot.select import default_sky_api
from metta_exp.backends.skypilot.status import ENDED, TAILABLE, observe
from metta_exp.backends.skypilot.task import build_task_config, sky_job_name, task_secrets
from metta_exp.config import SkyPilotSettings, WandbSettings
from metta_exp.errors import BackendError, ConfigError
from metta_exp.paths import default_state_dir
from metta_exp.records import JobSpec
from metta_exp.status import JobStatus
from metta_exp.tracking.wandb import wandb_mode

__all__ = ["SkyPilotBackend", "make_skypilot_backend", "observe"]

POLL_ENV = "METTA_EXP_SKY_POLL_S"
LOG_INTERVAL_ENV = "METTA_EXP_SKY_LOG_S"
LAUNCH_WAIT_ENV = "METTA_EXP_SKY_LAUNCH_WAIT_S"
THREADS_ENV = "METTA_EXP_SKY_LAUNCH_THREADS"
GRACE_ENV = "METTA_EXP_SKY_UNSEEN_GRACE_S"
REAP_ENV = "METTA_EXP_SKY_REAP_S"


@dataclass
class _Flight:
    """One launch request this process sent: what became of it."""

    sky_name: str
    request_id: str | None = None
    job_id: int | None = None
    error: str | None = None  # the launch was refused (SkyRequestError) or never reached SkyPilot
    refused: bool = False
    done: bool = False  # False while its threads are still sending it or waiting for its answer
    sent: threading.Event = dataclasses.field(default_factory=threading.Event)  # the request went out


class SkyPilotBackend(Backend):
    """Runs attempts as SkyPilot managed jobs through a ``SkyApi`` (the SDK, or the fake in tests)."""

    name = "skypilot"

    def __init__(
        self,
        api: SkyApi | None = None,
        state_dir: Path | None = None,
        *,
        settings: SkyPilotSettings | None = None,
        wandb: WandbSettings | None = None,
        poll_interval: float | None = None,
        launch_wait_s: float | None = None,
        log_interval_s: float | None = None,
        logs_per_cycle: int = 10,
        log_lines: int = 500,
        workers: int | None = None,
    ) -> None:
        self.api = api or default_sky_api()
        self.state_dir = Path(state_dir).absolute() if state_dir else default_state_dir()
        self.settings = settings or SkyPilotSettings()
        self.wandb = wandb or WandbSettings()
        self.poll_interval = _env_float(POLL_ENV, 10.0) if poll_interval is None else poll_interval
        self.launch_wait_s = _env_float(LAUNCH_WAIT_ENV, 5.0) if launch_wait_s is None else launch_wait_s
        self.log_interval_s = _env_float(LOG_INTERVAL_ENV, 20.0) if log_interval_s is None else log_interval_s
        self.logs_per_cycle = logs_per_cycle
        self.log_lines = log_lines
        self.workers = int(_env_float(THREADS_ENV, 16)) if workers is None else workers
        self.unseen_grace = _env_float(GRACE_ENV, 900.0)
        self.reap_s = _env_float(REAP_ENV, 900.0)
        self.queue = SharedQueue(
            self.state_dir / "skypilot", self.api.identity, self.poll_interval, self._fetch
        )
        self.tombstones = Tombstones(self.state_dir / "skypilot")
        self._groups: set[str] = set()  # groups this backend saw, whose tombstones it reaps on close
        self._refreshing = threading.Lock()  # held while a stopped controller is being started again
        self._sky_status: dict[str, str] = {}  # launch name -> SkyPilot's status at the last poll
        self._lock = threading.Lock()
        self._flights: dict[str, _Flight] = {}
        self._job_ids: dict[str, int] = {}  # sky name -> job id, as learned
        self._observed: dict[str, JobStatus | None] = {}  # launch name -> status at the last poll
        self._log_fetched: dict[str, float] = {}  # launch name -> monotonic time of the last tail
        self._log_final: set[str] = set()  # launches whose tail was fetched after they ended
        self._log_busy: set[str] = set()

    # --- check ---------------------------------------------------------------------------------------

    def check(self, specs: Sequence[JobSpec]) -> None:
        """Bad settings, missing SkyPilot set-up, no enabled infra: refused before anything is written."""
        for spec in specs:
            build_task_config(spec, 1, self.settings, self.wandb)  # ConfigError before anything is written
        self._refuse_offline_wandb(specs)
        check_backend(self.api, self.settings, specs)

    def _refuse_offline_wandb(self, specs: Sequence[JobSpec]) -> None:
        """Offline W&B data would stay on the remote machine, which SkyPilot tears down with the job."""
        for spec in specs:
            if wandb_mode(spec.env) != "offline":
                continue
            if self.wandb.mode in ("offline", "dryrun"):
                source = f"wandb.mode={self.wandb.mode}"
            else:
                source = f"WANDB_MODE={spec.env.get('WANDB_MODE', '')} (from your shell)"
            raise ConfigError(
                f"{source} on a remote group: the offline W&B runs would stay on the remote machines, which "
                "SkyPilot tears down when each job ends. Fix: wandb.mode=online (with WANDB_API_KEY or `wandb "
                "login`), wandb.mode=disabled, or remote=false to keep offline runs on this machine"
            )

    # --- submit --------------------------------------------------------------------------------------

    def submit(self, launches: Sequence[Launch]) -> dict[str, str]:
        """Launch every attempt at once; ``{launch.name: job id, or the job name while unknown}``."""
        if not launches:
            return {}
        deadline = time.monotonic() + self.launch_wait_s
        tasks = {launch.name: self._task(launch) for launch in launches}
        try:
            existing = self._by_name([config["name"] for config, _ in tasks.values()], deadline)
        except SkyApiError as exc:
            raise BackendError(f"SkyPilot did not answer before submitting: {exc}") from None
        handles: dict[str, str] = {}
        flights: dict[str, _Flight] = {}
        with self._lock:
            for launch in launches:
                config, _secrets = tasks[launch.name]
                sky_name = config["name"]
                known = existing.get(sky_name) or self._job_ids.get(sky_name)
                flight = self._flights.get(sky_name)
                if known is not None:
                    handles[launch.name] = str(known)
                elif flight is not None and not flight.refused:
                    handles[launch.name] = str(flight.job_id) if flight.job_id else sky_name
                else:
                    flights[launch.name] = self._flights[sky_name] = _Flight(sky_name)
        sent = [n for n in flights]
        concurrently(lambda n: self._send(flights[n], *tasks[n], deadline), sent, self.workers, deadline)
        if any(flights[n].request_id for n in sent):
            self.queue.invalidate()  # the queue changed: whoever polls next sees the new jobs
        # Answers are collected only now, so no launch waited for another's; a launch still being sent
        # at the deadline is collected in the background once it is out.
        concurrently(lambda n: self._collect(flights[n], deadline), sent, self.workers, deadline)
        refused = []
        for name in sent:
            flight = flights[name]
            handles[name] = str(flight.job_id) if flight.job_id else flight.sky_name
            if flight.refused:
                refused.append(flight)
        if refused and len(refused) == len(handles):
            raise BackendError(refused[0].error or "SkyPilot refused the launch")
        return handles

    def _task(self, launch: Launch) -> tuple[dict[str, Any], dict[str, str]]:
        settings, wandb = self._settings_of(launch)
        self._groups.add(launch.spec.group)
        config = build_task_config(launch.spec, launch.attempt, settings, wandb, instance=_instance(launch))
        return config, task_secrets(wandb, job_env=launch.spec.env)

    def _by_name(self, names: Sequence[str], deadline: float) -> dict[str, int]:
        """Job name -> newest job id, for these exact names (one fresh call; no controller: none)."""
        try:
            entries = retry(lambda: self.queue.get(names=[_common_prefix(names)], fresh=True), deadline)
        except ControllerNotUp:
            return {}  # not up: nothing of ours is in progress (an attempt in flight is polled for)
        wanted = set(names)
        return _latest_by_name(e for e in entries if e.name in wanted)

    def _send(
        self, flight: _Flight, config: dict[str, Any], secrets: dict[str, str], deadline: float
    ) -> None:
        try:
            flight.request_id = retry(lambda: self.api.launch(config, secrets), deadline)
        except SkyRequestError as exc:
            flight.error, flight.refused, flight.done = f"SkyPilot refused the launch: {exc}", True, True
        except SkyApiError as exc:
            flight.error, flight.done = f"launch request failed: {exc}", True
        except Exception as exc:  # anything else from the SDK: the task cannot be launched as it is
            flight.error, flight.refused, flight.done = f"SkyPilot refused the launch: {exc!r}", True, True
        finally:
            flight.sent.set()

    def _collect(self, flight: _Flight, deadline: float) -> None:
        flight.sent.wait()
        if flight.request_id is None:
            return  # never sent: _send recorded why
        request_id = flight.request_id
        try:
            job_id = retry(lambda: self.api.launch_result(request_id), deadline + 3600.0)
        except SkyRequestError as exc:
            flight.error, flight.refused = f"SkyPilot refused the launch: {exc}", True
        except SkyApiError as exc:
            flight.error = f"launch request failed: {exc}"
        except Exception as exc:
            flight.error, flight.refused = f"SkyPilot refused the launch: {exc!r}", True
        else:
            with self._lock:
                flight.job_id = self._job_ids[flight.sky_name] = job_id
        flight.done = True

    # --- poll ----------------------------------------------------------------------------------------

    def poll(self, launches: Sequence[Launch]) -> dict[str, Observation]:
        """One shared ``jobs.queue_v2`` answer, for the jobs of active groups only (see ``SharedQueue``)."""
        if not launches:
            return {}
        names = {launch.name: self._sky_name(launch) for launch in launches}
        ids = {launch.name: self._known_id(launch, names[launch.name]) for launch in launches}
        unknown = [names[n] for n, job_id in ids.items() if job_id is None]
        try:
            entries = self.queue.get(
                [i for i in ids.values() if i is not None], [_common_prefix(unknown)] if unknown else []
            )
        except ControllerNotUp as exc:
            if not exc.absent:
                return self._controller_not_up(launches, exc, ids, unknown)
            entries = []  # no controller at all: nothing is in progress
        except SkyApiError as exc:
            return {
                launch.name: Observation(None, reason=f"SkyPilot: {exc}", transient=True)
                for launch in launches
            }
        self._reap_seen(entries)
        by_id = {e.job_id: e for e in entries}
        by_name = _latest_by_name(entries)
        out = {}
        for launch in launches:
            sky_name, known_id = names[launch.name], ids[launch.name]
            entry = by_id.get(known_id) if known_id is not None else None
            if entry is None and known_id is None and sky_name in by_name:
                entry = by_id[by_name[sky_name]]
            out[launch.name] = self._observation(launch, sky_name, entry)
        return out

    def _observation(self, launch: Launch, sky_name: str, entry: QueueEntry | None) -> Observation:
        with self._lock:
            flight = self._flights.get(sky_name)
            if entry is not None:
                self._job_ids[sky_name] = entry.job_id
        if entry is not None:
            obs = observe(entry)
            self._sky_status[launch.name] = entry.status.upper()
        elif flight is not None and flight.refused:
            obs = Observation(JobStatus.FAILED, reason=flight.error)
        elif flight is not None and flight.job_id is not None:
            obs = Observation(JobStatus.RUNNING, reason="launched; not in SkyPilot's queue yet",
                              handle=str(flight.job_id))  # fmt: skip
        elif flight is not None and not flight.done:  # this process is still sending it: wait
            obs = Observation(None, reason="launch request in progress", transient=True)
        else:
            reason = flight.error if flight is not None and flight.error else "not in SkyPilot's queue (yet)"
            obs = Observation(None, reason=reason)
        if entry is None:
            self._sky_status.pop(launch.name, None)
        if obs.handle == launch.handle:
            obs = dataclasses.replace(obs, handle=None)
        self._observed[launch.name] = obs.status
        return obs

    def _controller_not_up(
        self,
        launches: Sequence[Launch],
        exc: ControllerNotUp,
        ids: Mapping[str, int | None],
        unknown: list[str],
    ) -> dict[str, Observation]:
        """A starting or stopped controller is transient; a stopped one is started again, in the background,
        by a refreshing call whose answer (the final statuses) is shared like any other."""
        if exc.status == "STOPPED" and self._refreshing.acquire(blocking=False):
            wanted = [i for i in ids.values() if i is not None]
            prefixes = [_common_prefix(unknown)] if unknown else []

            def refresh() -> None:
                try:
                    entries = self._fetch(wanted, prefixes, refresh=True)
                    self.queue.put(entries, sorted(wanted), sorted(prefixes))
                except SkyApiError:
                    pass  # asked again at a later cycle
                finally:
                    self._refreshing.release()

            threading.Thread(target=refresh, daemon=True, name="metta-exp-sky-refresh").start()
        state = {"STOPPED": "stopped (idle); starting it to read the jobs", "INIT": "starting"}
        reason = f"SkyPilot's jobs controller is {state.get(str(exc.status), str(exc.status))}"
        for launch in launches:
            self._sky_status.pop(launch.name, None)
        return {launch.name: Observation(None, reason=reason, transient=True) for launch in launches}

    def _fetch(self, ids: Sequence[int], prefixes: Sequence[str], refresh: bool = False) -> list[QueueEntry]:
        """One ``jobs.queue_v2`` call for these job ids, one per name prefix (rare: ids not known yet)."""
        found: dict[int, QueueEntry] = {}
        if ids:
            found.update((e.job_id, e) for e in self.api.queue(job_ids=list(ids), refresh=refresh))
        for prefix in prefixes:
            matched = self.api.queue(name_match=prefix, refresh=refresh)  # a LIKE: filter exactly
            found.update((e.job_id, e) for e in matched if e.name.startswith(prefix))
        return list(found.values())

    def _known_id(self, launch: Launch, sky_name: str) -> int | None:
        return _job_id(launch.handle) or self._job_ids.get(sky_name)

    def _sky_name(self, launch: Launch) -> str:
        return sky_job_name(launch.spec.group, launch.spec.run, launch.attempt, _instance(launch))

    # --- cancel --------------------------------------------------------------------------------------

    def cancel(self, launches: Sequence[Launch]) -> None:
        """Cancel every attempt in ONE request and wait for SkyPilot's answer.

        An attempt SkyPilot does not show (yet) is remembered and cancelled when it shows up.
        """
        ids: set[int] = set()
        unknown: dict[str, str] = {}  # sky name -> group
        for launch in launches:
            self._groups.add(launch.spec.group)
            sky_name = self._sky_name(launch)
            job_id = self._known_id(launch, sky_name)
            if job_id is None:
                unknown[sky_name] = launch.spec.group
            else:
                ids.add(job_id)
        deadline = time.monotonic() + self.launch_wait_s
        if unknown:
            try:
                by_name = self._by_name(sorted(unknown), deadline)
            except SkyApiError as exc:
                raise BackendError(f"SkyPilot did not answer, nothing cancelled: {exc}") from None
            ids.update(by_name[n] for n in unknown if n in by_name)
            for group in set(unknown.values()):
                self.tombstones.add(group, [n for n, g in unknown.items() if g == group and n not in by_name])
        if not ids:
            return
        try:
            retry(lambda: self.api.cancel(sorted(ids)), deadline)
        except ControllerNotUp as exc:
            if exc.status == "INIT":  # starting: its jobs show up soon, and are cancelled then
                names = {n: launch.spec.group for launch in launches for n in [self._sky_name(launch)]}
                for group in set(names.values()):
                    self.tombstones.add(group, [n for n, g in names.items() if g == group])
            # absent or stopped: none of these jobs is in progress
        except SkyApiError as exc:
            raise BackendError(f"SkyPilot could not cancel managed jobs {sorted(ids)}: {exc}") from None

    def _reap_seen(self, entries: Iterable[QueueEntry]) -> None:
        """Cancel attempts that were cancelled before SkyPilot showed them, now that it does."""
        graves = self.tombstones.all()
        if not graves:
            return
        seen = [e for e in entries if e.name in graves]
        live = sorted({e.job_id for e in seen if e.status.upper() not in ENDED})
        if live:
            try:
                self.api.cancel(live)
            except SkyApiError:
                return  # tried again at the next cycle
        self.tombstones.remove(e.name for e in seen)

    def reap(self, timeout: float, stop: Callable[[], bool] = lambda: False) -> None:
        """Wait up to ``timeout`` s for attempts of this backend's groups that were cancelled before SkyPilot
        showed them, cancelling each as it shows up (a group that ended leaves nothing running)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not stop():
            graves = {n: g for group in self._groups for n, g in self.tombstones.all(group).items()}
            if not graves:
                return
            with contextlib.suppress(SkyApiError):
                self._reap_seen(self._fetch([], [_common_prefix(sorted(graves))]))
            time.sleep(max(self.poll_interval, 0.2))

    # --- logs ----------------------------------------------------------------------------------------

    def sync_logs(self, launches: Sequence[Launch]) -> None:
        """Fetch log tails of running (and just ended) jobs into ``launch.log_path``, at a bounded rate."""
        now = time.monotonic()
        due: list[tuple[float, Launch, int]] = []
        for launch in launches:
            job_id = self._known_id(launch, self._sky_name(launch))
            status = self._observed.get(launch.name)
            sky_status = self._sky_status.get(launch.name, "")
            tailable = sky_status in TAILABLE or sky_status.startswith("FAILED")
            if job_id is None or status is None or not tailable or launch.name in self._log_busy:
                continue
            last = self._log_fetched.get(launch.name, -math.inf)
            if status.is_terminal():
                if launch.name in self._log_final:
                    continue
                due.append((-math.inf, launch, job_id))  # the last tail of a job that ended: first
            elif now - last >= self.log_interval_s:
                due.append((last, launch, job_id))
        due.sort(key=lambda item: item[0])
        chosen = due[: self.logs_per_cycle]
        for _, launch, _ in chosen:
            self._log_busy.add(launch.name)
        deadline = time.monotonic() + max(self.poll_interval, 1.0)
        concurrently(lambda item: self._fetch_log(item[1], item[2], now), chosen, 4, deadline)

    def _fetch_log(self, launch: Launch, job_id: int, now: float) -> None:
        try:
            text = self.api.tail_logs(job_id, self.log_lines)
            self._log_fetched[launch.name] = now
            final = (self._observed.get(launch.name) or JobStatus.RUNNING).is_terminal()
            write_atomic(launch.log_path, text, parents=True)
            if final:  # after the write: ``log_complete`` means the file holds it
                self._log_final.add(launch.name)
        except SkyApiError:
            pass  # tried again at the next cycle
        finally:
            self._log_busy.discard(launch.name)

    def log_complete(self, launch: Launch) -> bool:
        """True once the tail fetched after the attempt ended is in its log file."""
        return launch.name in self._log_final

    # --- helpers -------------------------------------------------------------------------------------

    def settle(self, stop: Callable[[], bool] = lambda: False) -> None:
        """Cancel this backend's attempts that were cancelled unseen as they show up (``reap_s`` at most)."""
        self.reap(self.reap_s, stop)

    def close(self) -> None:
        self.queue.close()

    def _settings_of(self, launch: Launch) -> tuple[SkyPilotSettings, WandbSettings]:
        """The group's settings travel with each launch; the backend's own are the fallback."""
        return launch.settings.skypilot or self.settings, launch.settings.wandb or self.wandb


def make_skypilot_backend(
    state_dir: Path | None = None,
    settings: SkyPilotSettings | None = None,
    wandb: WandbSettings | None = None,
) -> SkyPilotBackend:
    """The SkyPilot backend on the default API (the fake when ``METTA_EXP_FAKE_SKY_DIR`` is set)."""
    return SkyPilotBackend(default_sky_api(), state_dir, settings=settings, wandb=wandb)


def _instance(launch: Launch) -> str | None:
    return launch.settings.instance or None


def _common_prefix(names: Sequence[str]) -> str:
    return os.path.commonprefix(list(names)) if names else ""


def _job_id(handle: str | None) -> int | None:
    return int(handle) if handle and handle.isdigit() else None


def _latest_by_name(entries: Iterable[QueueEntry]) -> dict[str, int]:
    """Job name -> the newest job id with that name."""
    out: dict[str, int] = {}
    for entry in entries:
        if entry.job_id > out.get(entry.name, -1):
            out[entry.name] = entry.job_id
    return out


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default
