"""The SkyPilot backend: every attempt is one SkyPilot managed job.

- ``check`` asks SkyPilot once which infras are enabled and stops with the fix (``sky check``, or
  ``remote=false``) when none is, or when the configured cloud is not among them.
- ``submit`` sends every launch request at once (``launches``: on a few threads, SkyPilot answering with
  request ids), then collects the job ids. It first looks the names up in the queue, so an attempt that
  already exists (a crash between submit and record) is adopted, never launched twice. An attempt whose id
  is not known within ``launch_wait_s`` gets its job name as handle; a later ``poll`` finds it by that name.
- ``poll`` answers every launch from ONE ``jobs.queue_v2`` call that asks only for the jobs of active
  groups (their job ids; a name prefix for attempts whose id is not known yet), of every user (a store
  shared by two machines), shared through ``SharedQueue`` with the runners of all other groups on the same
  state directory, at most once per ``poll_interval`` (``METTA_EXP_SKY_POLL_S``, default 10 s). A job id
  is adopted only with the attempt's name. A jobs controller that is starting or stopped (it stops itself
  when idle) is a transient state: nothing is marked vanished then, and a stopped controller is started
  again in the background (``refresh=True``) to read the final statuses. A refusal that lasts (an expired
  login: ``SkyRefused``) raises ``BackendRefused``, which stops the runner with the fix.
- ``cancel`` cancels every given attempt in one request and returns when SkyPilot has answered it. An
  attempt SkyPilot cannot show yet is remembered (``Tombstones``) and cancelled when it shows up; the
  runner of its group keeps looking for it a while after the group ended (``METTA_EXP_SKY_REAP_S``).
- ``sync_logs`` copies the logs of running and ended jobs into their local log files, whole
  (``logcopy``), at most once per ``log_interval_s`` per job and ``logs_per_cycle`` jobs per call, so the
  monitor reads local files; ``log_complete`` says when an ended job's log is all there.

How SkyPilot's statuses map to ours: ``status``.

Settings: ``METTA_EXP_SKY_POLL_S`` (poll interval, 10 s), ``METTA_EXP_SKY_LOG_S`` (per-job log interval,
20 s), ``METTA_EXP_SKY_LOG_WAIT_S`` (how long an ended job's log is waited for, 300 s),
``METTA_EXP_SKY_LAUNCH_WAIT_S`` (how long ``submit`` waits for job ids, 5 s: the runner must renew its
lease), ``METTA_EXP_SKY_LAUNCH_RETRY_S`` (how long a launch that does not get through is sent again,
300 s), ``METTA_EXP_SKY_LAUNCH_THREADS`` (16; 1 sends launches one by one),
``METTA_EXP_SKY_UNSEEN_GRACE_S`` (how long an attempt may stay out of the queue before it is failed as
vanished, 900 s: a first launch starts the jobs controller, which takes minutes),
``METTA_EXP_SKY_REFUSED_S`` (how long SkyPilot may refuse every poll before the runner stops, 20 s), and
``METTA_EXP_FAKE_SKY_DIR`` (run everything on the simulator, see ``select.default_sky_api``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from metta_exp.backends.base import Backend, Launch, Observation
from metta_exp.backends.skypilot.api import ControllerNotUp, QueueEntry, SkyApi, SkyApiError, SkyRefused
from metta_exp.backends.skypilot.cache import SharedQueue, Tombstones
from metta_exp.backends.skypilot.calls import env_float, retry
from metta_exp.backends.skypilot.check import check_backend, check_jobs
from metta_exp.backends.skypilot.ignore import keep_out
from metta_exp.backends.skypilot.launches import Flight, Launches, doubles, first_by_name
from metta_exp.backends.skypilot.logcopy import LogCopies, Seen
from metta_exp.backends.skypilot.select import default_sky_api, location_of, sky_api_at
from metta_exp.backends.skypilot.status import ENDED, observe
from metta_exp.backends.skypilot.task import build_task_config, sky_job_name, task_secrets
from metta_exp.backends.skypilot.wheel import ensure_wheel
from metta_exp.config import SkyPilotSettings, WandbSettings
from metta_exp.errors import BackendError, BackendRefused
from metta_exp.paths import default_state_dir
from metta_exp.records import JobSpec
from metta_exp.status import JobStatus

__all__ = ["SkyPilotBackend", "make_skypilot_backend", "observe"]

POLL_ENV = "METTA_EXP_SKY_POLL_S"
LOG_INTERVAL_ENV = "METTA_EXP_SKY_LOG_S"
LOG_WAIT_ENV = "METTA_EXP_SKY_LOG_WAIT_S"
LAUNCH_WAIT_ENV = "METTA_EXP_SKY_LAUNCH_WAIT_S"
LAUNCH_RETRY_ENV = "METTA_EXP_SKY_LAUNCH_RETRY_S"
THREADS_ENV = "METTA_EXP_SKY_LAUNCH_THREADS"
GRACE_ENV = "METTA_EXP_SKY_UNSEEN_GRACE_S"
REAP_ENV = "METTA_EXP_SKY_REAP_S"
REFUSED_ENV = "METTA_EXP_SKY_REFUSED_S"


class SkyPilotBackend(Backend):
    """Runs attempts as SkyPilot managed jobs through a ``SkyApi`` (the SDK, or the simulator)."""

    name = "skypilot"
    queues = True

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
        self.poll_interval = env_float(POLL_ENV, 10.0) if poll_interval is None else poll_interval
        self.launch_wait_s = env_float(LAUNCH_WAIT_ENV, 5.0) if launch_wait_s is None else launch_wait_s
        interval = env_float(LOG_INTERVAL_ENV, 20.0) if log_interval_s is None else log_interval_s
        self.workers = int(env_float(THREADS_ENV, 16)) if workers is None else workers
        self.unseen_grace = env_float(GRACE_ENV, 900.0)
        self.reap_s = env_float(REAP_ENV, 900.0)
        self.refused_stop_s = env_float(REFUSED_ENV, 20.0)
        self.queue = SharedQueue(
            self.state_dir / "skypilot", self.api.identity, self.poll_interval, self._fetch
        )
        self.tombstones = Tombstones(self.state_dir / "skypilot")
        self.launches = Launches(self.api, self._find, self.workers, env_float(LAUNCH_RETRY_ENV, 300.0))
        self.logs = LogCopies(
            self.api, interval, logs_per_cycle, log_lines, env_float(LOG_WAIT_ENV, 300.0), min(interval, 2.0)
        )
        self._groups: set[str] = set()  # groups this backend saw, whose tombstones it reaps on close
        self._refreshing = threading.Lock()  # held while a stopped controller is being started again
        self._seen: dict[str, Seen] = {}  # launch name -> SkyPilot's view of it at the last poll
        self._unseen: set[str] = set()  # launch names the last poll did not find in SkyPilot's queue
        self._ran: set[str] = set()  # launch names seen RUNNING (it has a log)
        self._refused_since: float | None = None  # when SkyPilot began to refuse every poll
        self._kept_out: set[str] = set()  # workdirs whose upload leaves the state directory out

    # --- check ---------------------------------------------------------------------------------------

    def check(self, specs: Sequence[JobSpec]) -> None:
        """Bad settings, code the remote machine lacks, offline W&B, missing SkyPilot set-up, no enabled
        infra: refused before anything is written."""
        for spec in specs:
            build_task_config(spec, 1, self.settings, self.wandb)  # ConfigError before anything is written
        check_jobs(specs, self.settings, self.wandb, code=False)
        check_backend(self.api, self.settings, specs)  # a newcomer hears first that SkyPilot is not set up
        check_jobs(specs, self.settings, self.wandb, code=True)

    # --- submit --------------------------------------------------------------------------------------

    def submit(self, launches: Sequence[Launch]) -> dict[str, str]:
        """Launch every attempt at once; ``{launch.name: job id, or the job name while unknown}``."""
        if not launches:
            return {}
        deadline = time.monotonic() + self.launch_wait_s
        tasks = {launch.name: self._task(launch) for launch in launches}
        try:
            existing = self._by_name([config["name"] for config, _ in tasks.values()], deadline)
        except SkyRefused as exc:
            raise BackendRefused(f"SkyPilot refuses every call ({exc})", exc.fix) from None
        except SkyApiError as exc:
            raise BackendError(f"SkyPilot did not answer before submitting: {exc}") from None
        handles: dict[str, str] = {}
        flights: dict[str, Flight] = {}
        with self.launches.lock:
            for launch in launches:
                config, secrets = tasks[launch.name]
                sky_name = config["name"]
                known = existing.get(sky_name) or self.launches.job_ids.get(sky_name)
                flight = self.launches.flights.get(sky_name)
                if known is not None:
                    handles[launch.name] = str(known)
                elif flight is not None and not flight.refused:
                    handles[launch.name] = str(flight.job_id) if flight.job_id else sky_name
                else:
                    flights[launch.name] = Flight(sky_name, config, secrets)
        self.launches.start(list(flights.values()), deadline)
        if flights:
            self.queue.invalidate()  # the queue changed: whoever polls next sees the new jobs
        refused = []
        for name, flight in flights.items():
            handles[name] = str(flight.job_id) if flight.job_id else flight.sky_name
            if flight.refused:
                refused.append(flight)
        if refused and len(refused) == len(handles):
            refusal = next((f.refusal for f in refused if f.refusal is not None), None)
            if refusal is not None:
                raise BackendRefused(f"SkyPilot refuses every call ({refusal})", refusal.fix)
            raise BackendError(refused[0].error or "SkyPilot refused the launch")
        return handles

    def _task(self, launch: Launch) -> tuple[dict[str, Any], dict[str, str]]:
        settings, wandb = self._settings_of(launch)
        self._groups.add(launch.spec.group)
        if settings.workdir and settings.workdir not in self._kept_out:
            with contextlib.suppress(OSError):  # a read-only workdir: SkyPilot uploads what it uploads
                keep_out(Path(settings.workdir), self.state_dir)
            self._kept_out.add(settings.workdir)
        wheel = str(ensure_wheel(self.state_dir / "skypilot" / "wheels")) if settings.default_setup else None
        config = build_task_config(launch.spec, launch.attempt, settings, wandb, _instance(launch), wheel)
        return config, task_secrets(wandb, job_env=launch.spec.env)

    def _by_name(self, names: Sequence[str], deadline: float) -> dict[str, int]:
        """Job name -> its first job id, for these exact names (one fresh call; no controller: none)."""
        try:
            entries = retry(lambda: self.queue.get(names=[_common_prefix(names)], fresh=True), deadline)
        except ControllerNotUp:
            return {}  # not up: nothing of ours is in progress (an attempt in flight is polled for)
        wanted = set(names)
        return first_by_name(e for e in entries if e.name in wanted)

    def _find(self, name: str) -> int | None:
        """The first job SkyPilot has with exactly this name, or None (a launch whose answer was lost)."""
        return self._by_name([name], time.monotonic() + self.launch_wait_s).get(name)

    # --- poll ----------------------------------------------------------------------------------------

    def poll(self, launches: Sequence[Launch]) -> dict[str, Observation]:
        """One shared ``jobs.queue_v2`` answer, for the jobs of active groups only (see ``SharedQueue``)."""
        if not launches:
            return {}
        names = {launch.name: self._sky_name(launch) for launch in launches}
        ids = {launch.name: self._known_id(launch, names[launch.name]) for launch in launches}
        # by name: attempts whose id is not known yet, and names that may have a second job
        by_name = sorted({n for key, n in names.items() if ids[key] is None or n in self.launches.doubles})
        try:
            entries = self.queue.get([i for i in ids.values() if i is not None], _prefixes(by_name))
        except ControllerNotUp as exc:
            if not exc.absent:
                return self._controller_not_up(launches, exc, ids, by_name)
            entries = []  # no controller at all: nothing is in progress
        except SkyRefused as exc:
            return self._refused(launches, exc)
        except SkyApiError as exc:
            return {
                launch.name: Observation(None, reason=f"SkyPilot: {exc}", transient=True)
                for launch in launches
            }
        self._refused_since = None
        self._reap_seen(entries)
        first = self._cancel_doubles(entries, set(names.values()), set(ids.values()))
        by_id = {e.job_id: e for e in entries}
        out = {}
        for launch in launches:
            sky_name, known_id = names[launch.name], ids[launch.name]
            entry = by_id.get(known_id) if known_id is not None else None
            if entry is None and known_id is None and sky_name in first:
                entry = by_id[first[sky_name]]
            out[launch.name] = self._observation(launch, sky_name, entry, known_id)
        return out

    def _observation(
        self, launch: Launch, sky_name: str, entry: QueueEntry | None, known_id: int | None
    ) -> Observation:
        if entry is not None and entry.name != sky_name:  # an id of another job: not this server's job
            self._forget(launch)
            return Observation(
                None,
                reason=f"SkyPilot's job {entry.job_id} is now another job ('{entry.name}'): this job is not on the "
                "jobs controller of this API server (another API server, or a controller created anew)",
            )  # fmt: skip
        with self.launches.lock:
            flight = self.launches.flights.get(sky_name)
            if entry is not None:
                self.launches.job_ids[sky_name] = entry.job_id
        if entry is not None:
            obs = observe(entry)
            status = entry.status.upper()
            if status == "RUNNING" or entry.start_at is not None:
                self._ran.add(launch.name)
            self._seen[launch.name] = Seen(
                entry.job_id, status, entry.recovery_count, launch.name in self._ran
            )
            self._unseen.discard(launch.name)
        else:
            self._forget(launch)
            if flight is not None and flight.refused:
                obs = Observation(JobStatus.FAILED, reason=flight.error)
            elif flight is not None and flight.job_id is not None:
                obs = Observation(JobStatus.RUNNING, reason="launched; not in SkyPilot's queue yet",
                                  handle=str(flight.job_id))  # fmt: skip
            elif flight is not None and not flight.done:  # this process is still sending it: wait
                obs = Observation(None, reason="launch request in progress", transient=True)
            else:
                reason = (
                    flight.error if flight is not None and flight.error else "not in SkyPilot's queue (yet)"
                )
                obs = Observation(None, reason=reason)
        if obs.handle == launch.handle:
            obs = dataclasses.replace(obs, handle=None)
        return obs

    def _forget(self, launch: Launch) -> None:
        self._seen.pop(launch.name, None)
        self._unseen.add(launch.name)

    def _refused(self, launches: Sequence[Launch], exc: SkyRefused) -> dict[str, Observation]:
        """A refusal that lasts ``refused_stop_s`` (``METTA_EXP_SKY_REFUSED_S``) stops the runner with its fix;
        until then the jobs are in a transient state, the refusal their reason."""
        now = time.monotonic()
        if self._refused_since is None:
            self._refused_since = now
        if now - self._refused_since >= self.refused_stop_s:
            raise BackendRefused(f"SkyPilot refuses every call ({exc})", exc.fix)
        return {
            launch.name: Observation(None, reason=f"SkyPilot refuses: {exc}", transient=True)
            for launch in launches
        }

    def _cancel_doubles(
        self, entries: list[QueueEntry], names: set[str], ids: set[int | None]
    ) -> dict[str, int]:
        """Name -> the job to keep, for these names; a second job with the name is cancelled."""
        first, extra = doubles(entries, names, ids)
        if extra:
            with contextlib.suppress(SkyApiError):
                self.api.cancel(extra)
        return first

    def _controller_not_up(
        self,
        launches: Sequence[Launch],
        exc: ControllerNotUp,
        ids: Mapping[str, int | None],
        by_name: list[str],
    ) -> dict[str, Observation]:
        """A starting or stopped controller is transient; a stopped one is started again, in the background,
        by a refreshing call whose answer (the final statuses) is shared like any other."""
        if exc.status == "STOPPED" and self._refreshing.acquire(blocking=False):
            wanted = [i for i in ids.values() if i is not None]
            prefixes = _prefixes(by_name)

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
        return {launch.name: Observation(None, reason=reason, transient=True) for launch in launches}

    def _fetch(self, ids: Sequence[int], prefixes: Sequence[str], refresh: bool = False) -> list[QueueEntry]:
        """One ``jobs.queue_v2`` call for these job ids, one per name prefix (rare: ids not known yet). Every
        user's jobs: a store shared by two machines (two user hashes) sees the jobs of both."""
        found: dict[int, QueueEntry] = {}
        if ids:
            found.update(
                (e.job_id, e) for e in self.api.queue(job_ids=list(ids), refresh=refresh, all_users=True)
            )
        for prefix in prefixes:
            matched = self.api.queue(name_match=prefix, refresh=refresh, all_users=True)  # a LIKE: filter
            found.update((e.job_id, e) for e in matched if e.name.startswith(prefix))
        return list(found.values())

    def _known_id(self, launch: Launch, sky_name: str) -> int | None:
        return _job_id(launch.handle) or self.launches.job_ids.get(sky_name)

    def _sky_name(self, launch: Launch) -> str:
        return sky_job_name(launch.spec.group, launch.spec.run, launch.attempt, _instance(launch))

    # --- cancel --------------------------------------------------------------------------------------

    def cancel(self, launches: Sequence[Launch]) -> None:
        """Cancel every attempt in ONE request and wait for SkyPilot's answer.

        Only jobs that carry the attempt's name are cancelled (an id SkyPilot gives another job now is left
        alone); an attempt SkyPilot does not show (yet) is remembered and cancelled when it shows up.
        """
        expected: dict[int, str] = {}  # job id -> the name its job must have
        unknown: dict[str, str] = {}  # sky name -> group
        for launch in launches:
            self._groups.add(launch.spec.group)
            sky_name = self._sky_name(launch)
            job_id = self._known_id(launch, sky_name)
            if job_id is None:
                unknown[sky_name] = launch.spec.group
            else:
                expected[job_id] = sky_name
        deadline = time.monotonic() + self.launch_wait_s
        ids: set[int] = set()
        try:
            if expected:
                found = retry(lambda: self._fetch(sorted(expected), []), deadline)
                ids.update(e.job_id for e in found if expected.get(e.job_id) == e.name)
            if unknown:
                by_name = self._by_name(sorted(unknown), deadline)
                ids.update(by_name[n] for n in unknown if n in by_name)
                for group in set(unknown.values()):
                    graves = [n for n, g in unknown.items() if g == group and n not in by_name]
                    self.tombstones.add(group, graves)
            if ids:
                retry(lambda: self.api.cancel(sorted(ids)), deadline)
        except ControllerNotUp as exc:
            if exc.status == "INIT":  # starting: its jobs show up soon, and are cancelled then
                names = {n: launch.spec.group for launch in launches for n in [self._sky_name(launch)]}
                for group in set(names.values()):
                    self.tombstones.add(group, [n for n, g in names.items() if g == group])
            # absent or stopped: none of these jobs is in progress
        except SkyApiError as exc:
            raise BackendError(f"SkyPilot could not cancel managed jobs {sorted(expected)}: {exc}") from None

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
        """Copy what is new of the logs of running and ended attempts into ``launch.log_path`` (see
        ``logcopy``), at a bounded rate."""
        self.logs.sync(launches, self._seen, max(self.poll_interval, 1.0))

    def log_complete(self, launch: Launch) -> bool:
        """True once the log of an attempt that ended is whole in its log file, or when SkyPilot has no
        job for it (it was never launched, or is gone): then there is no log to wait for."""
        if launch.name in self._seen:
            return self.logs.complete(launch)
        return launch.name in self._unseen

    # --- helpers -------------------------------------------------------------------------------------

    def settle(self, stop: Callable[[], bool] = lambda: False) -> None:
        """Cancel this backend's attempts that were cancelled unseen as they show up (``reap_s`` at most)."""
        self.reap(self.reap_s, stop)

    def close(self) -> None:
        self.queue.close()

    def location(self) -> dict[str, str]:
        """The simulator's directory, or the SkyPilot API server (see ``select.location_of``)."""
        return location_of(self.api)

    def _settings_of(self, launch: Launch) -> tuple[SkyPilotSettings, WandbSettings]:
        """The group's settings travel with each launch; the backend's own are the fallback."""
        return launch.settings.skypilot or self.settings, launch.settings.wandb or self.wandb


def make_skypilot_backend(
    state_dir: Path | None = None,
    settings: SkyPilotSettings | None = None,
    wandb: WandbSettings | None = None,
    location: Mapping[str, str] | None = None,
) -> SkyPilotBackend:
    """The SkyPilot backend on the API of ``location`` (a group's, recorded at launch), else of this shell
    (the simulator when ``METTA_EXP_FAKE_SKY_DIR`` is set)."""
    return SkyPilotBackend(sky_api_at(location), state_dir, settings=settings, wandb=wandb)


def _instance(launch: Launch) -> str | None:
    return launch.settings.instance or None


def _common_prefix(names: Sequence[str]) -> str:
    return os.path.commonprefix(list(names)) if names else ""


def _job_id(handle: str | None) -> int | None:
    return int(handle) if handle and handle.isdigit() else None


def _prefixes(names: Sequence[str]) -> list[str]:
    """The name prefix one ``queue_v2`` call asks for, covering ``names`` (none without names)."""
    return [_common_prefix(names)] if names else []
