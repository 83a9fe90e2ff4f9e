"""The SkyPilot backend: every attempt is one SkyPilot managed job.

- ``check`` asks SkyPilot once which infras are enabled and stops with the fix (``sky check``, or
  ``remote=false``) when none is, or when the configured cloud is not among them.
- ``submit`` sends every launch request at once (on a few threads; SkyPilot answers with request ids),
  then collects the job ids. It first looks the names up in the queue, so an attempt that already exists
  (a crash between submit and record) is adopted, never launched twice. An attempt whose id is not
  known within ``launch_wait_s`` gets its job name as handle; a later ``poll`` finds it by that name.
- ``poll`` answers every launch from ONE ``jobs.queue_v2`` call, shared through ``SharedQueue`` with the
  runners of all other groups on the same state directory, at most once per ``poll_interval``
  (``METTA_EXP_SKY_POLL_S``, default 10 s).
- ``cancel`` cancels every given attempt in one request and returns when SkyPilot has answered it.
- ``sync_logs`` copies log tails of running jobs into their local log files, at most once per
  ``log_interval_s`` per job and ``logs_per_cycle`` jobs per call, so the monitor reads local files.

How SkyPilot's ``ManagedJobStatus`` maps to ours: PENDING, STARTING, RUNNING, RECOVERING (preempted,
SkyPilot is bringing it back), WINDING_DOWN and CANCELLING (not ended yet) are all ``running``: SkyPilot
has the job. SUCCEEDED, CANCELLED map to themselves; FAILED and every FAILED_* are ``failed``, with a
reason naming SkyPilot's status and its failure reason. An API error, or a launch this process is still
sending, is a transient observation (the runner waits); a job not in the queue is an unseen one (the
runner's grace period applies, then it is failed as vanished).

Settings: ``METTA_EXP_SKY_POLL_S`` (poll interval, 10 s), ``METTA_EXP_SKY_LOG_S`` (per-job log tail
interval, 20 s), ``METTA_EXP_SKY_LAUNCH_WAIT_S`` (how long ``submit`` waits for job ids, 5 s: the runner
must renew its lease), ``METTA_EXP_SKY_LAUNCH_THREADS`` (16; 1 sends launches one by one), and
``METTA_EXP_FAKE_SKY_DIR`` (run everything on ``FakeSkyApi``, see ``skypilot_fake``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metta_exp.backends.base import Backend, Launch, Observation
from metta_exp.backends.skypilot_api import QueueEntry, SkyApi, SkyApiError, SkyRequestError, default_sky_api
from metta_exp.backends.skypilot_cache import SharedQueue
from metta_exp.backends.skypilot_calls import concurrently, retry
from metta_exp.backends.skypilot_task import (
    SKY_JOB_PREFIX,
    build_task_config,
    sky_job_name,
    task_secrets,
)
from metta_exp.config import SkyPilotSettings, WandbSettings
from metta_exp.errors import BackendError, BackendUnavailable, ConfigError
from metta_exp.paths import default_state_dir
from metta_exp.resolve import JobSpec
from metta_exp.status import JobStatus
from metta_exp.tracking_wandb import wandb_mode

__all__ = ["SkyPilotBackend", "make_skypilot_backend", "observe"]

POLL_ENV = "METTA_EXP_SKY_POLL_S"
LOG_INTERVAL_ENV = "METTA_EXP_SKY_LOG_S"
LAUNCH_WAIT_ENV = "METTA_EXP_SKY_LAUNCH_WAIT_S"
THREADS_ENV = "METTA_EXP_SKY_LAUNCH_THREADS"

#: SkyPilot still has the job: it is queued, provisioning, running, recovering or being cancelled.
ACTIVE_STATUSES = frozenset(
    {"PENDING", "SUBMITTED", "STARTING", "RUNNING", "RECOVERING", "WINDING_DOWN", "CANCELLING"}
)
FAILURE_MEANING = {
    "FAILED": "the job's command failed",
    "FAILED_SETUP": "the setup script failed",
    "FAILED_PRECHECKS": "SkyPilot's prechecks failed (no feasible resources, or a bad setting)",
    "FAILED_NO_RESOURCE": "no capacity for the requested resources on any enabled infra",
    "FAILED_CONTROLLER": "SkyPilot's jobs controller failed",
}
_FIX = (
    "Fix: set SkyPilot up (`sky api login` for a remote API server; `sky check` to enable a cloud, "
    "Kubernetes or Slurm), or run on this machine with remote=false"
)


def observe(entry: QueueEntry) -> Observation:
    """Our view of one managed job from its queue entry (every ManagedJobStatus is covered)."""
    status, handle = entry.status.upper(), str(entry.job_id)
    if status == "SUCCEEDED":
        return Observation(JobStatus.SUCCEEDED, exit_code=0, handle=handle)
    if status == "CANCELLED":
        return Observation(JobStatus.CANCELLED, reason="cancelled in SkyPilot", handle=handle)
    if status == "FAILED" or status.startswith("FAILED_"):
        meaning = FAILURE_MEANING.get(status, "SkyPilot reports a failure")
        detail = (entry.failure_reason or "").strip()
        reason = f"SkyPilot {status}: {detail}" if detail else f"SkyPilot {status}: {meaning}"
        return Observation(JobStatus.FAILED, reason=reason, handle=handle)
    note = None
    if status != "RUNNING":
        note = f"SkyPilot {status}" + (
            f" (recovered {entry.recovery_count}x)" if entry.recovery_count else ""
        )
    if status not in ACTIVE_STATUSES:
        note = f"SkyPilot {status} (unknown to metta-exp; treated as still running)"
    return Observation(JobStatus.RUNNING, reason=note, handle=handle)


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
        self.queue = SharedQueue(self.state_dir / "skypilot", self.api.identity, self.poll_interval,
                                 lambda: self.api.queue(SKY_JOB_PREFIX))  # fmt: skip
        self._lock = threading.Lock()
        self._flights: dict[str, _Flight] = {}
        self._job_ids: dict[str, int] = {}  # sky name -> job id, as learned
        self._observed: dict[str, JobStatus | None] = {}  # launch name -> status at the last poll
        self._log_fetched: dict[str, float] = {}  # launch name -> monotonic time of the last tail
        self._log_final: set[str] = set()  # launches whose tail was fetched after they ended
        self._log_busy: set[str] = set()

    # --- check ---------------------------------------------------------------------------------------

    def check(self, specs: Sequence[JobSpec]) -> None:
        """One call: SkyPilot answers and has an infra enabled (the configured cloud, if any)."""
        for spec in specs:
            build_task_config(spec, 1, self.settings, self.wandb)  # ConfigError before anything is written
        self._refuse_offline_wandb(specs)
        try:
            infras = self.api.enabled_infras()
        except SkyApiError as exc:
            raise BackendUnavailable(f"SkyPilot is not usable here ({exc}). {_FIX}") from None
        if not infras:
            raise BackendUnavailable(f"SkyPilot has no infra enabled (no cloud, Kubernetes or Slurm). {_FIX}")
        wanted = _cloud_name(self.settings.cloud)
        if wanted and wanted not in infras:
            raise BackendUnavailable(
                f"skypilot.cloud={self.settings.cloud} is not enabled in SkyPilot (enabled: "
                f"{', '.join(sorted(infras))}). Fix: `sky check {wanted}`, choose an enabled one, or run on "
                "this machine with remote=false"
            )

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
            existing = _latest_by_name(retry(lambda: self.queue.get(fresh=True), deadline))
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
        config = build_task_config(launch.spec, launch.attempt, settings, wandb)
        return config, task_secrets(wandb, job_env=launch.spec.env)

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
        """One shared ``jobs.queue_v2`` answer for every launch (see ``SharedQueue``)."""
        if not launches:
            return {}
        try:
            entries = self.queue.get()
        except SkyApiError as exc:
            return {
                launch.name: Observation(None, reason=f"SkyPilot: {exc}", transient=True)
                for launch in launches
            }
        by_id = {e.job_id: e for e in entries}
        by_name = _latest_by_name(entries)
        out = {}
        for launch in launches:
            sky_name = sky_job_name(launch.spec.group, launch.spec.run, launch.attempt)
            known_id = _job_id(launch.handle)
            entry = by_id.get(known_id) if known_id is not None else None
            if entry is None and sky_name in by_name:
                entry = by_id[by_name[sky_name]]
            with self._lock:
                flight = self._flights.get(sky_name)
                if entry is not None:
                    self._job_ids[sky_name] = entry.job_id
            if entry is not None:
                obs = observe(entry)
            elif flight is not None and flight.refused:
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
            self._observed[launch.name] = obs.status
            out[launch.name] = obs
        return out

    # --- cancel --------------------------------------------------------------------------------------

    def cancel(self, launches: Sequence[Launch]) -> None:
        """Cancel every attempt in ONE request and wait for SkyPilot's answer."""
        ids: set[int] = set()
        unknown: list[str] = []
        for launch in launches:
            sky_name = sky_job_name(launch.spec.group, launch.spec.run, launch.attempt)
            job_id = _job_id(launch.handle) or self._job_ids.get(sky_name)
            if job_id is None:
                unknown.append(sky_name)
            else:
                ids.add(job_id)
        deadline = time.monotonic() + self.launch_wait_s
        if unknown:
            try:
                by_name = _latest_by_name(retry(lambda: self.queue.get(fresh=True), deadline))
            except SkyApiError as exc:
                raise BackendError(f"SkyPilot did not answer, nothing cancelled: {exc}") from None
            ids.update(by_name[n] for n in unknown if n in by_name)
        if not ids:
            return
        try:
            retry(lambda: self.api.cancel(sorted(ids)), deadline)
        except SkyApiError as exc:
            raise BackendError(f"SkyPilot could not cancel managed jobs {sorted(ids)}: {exc}") from None

    # --- logs ----------------------------------------------------------------------------------------

    def sync_logs(self, launches: Sequence[Launch]) -> None:
        """Fetch log tails of running (and just ended) jobs into ``launch.log_path``, at a bounded rate."""
        now = time.monotonic()
        due: list[tuple[float, Launch, int]] = []
        for launch in launches:
            sky_name = sky_job_name(launch.spec.group, launch.spec.run, launch.attempt)
            job_id = _job_id(launch.handle) or self._job_ids.get(sky_name)
            status = self._observed.get(launch.name)
            if job_id is None or status is None or launch.name in self._log_busy:
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
            if (self._observed.get(launch.name) or JobStatus.RUNNING).is_terminal():
                self._log_final.add(launch.name)
            path = Path(launch.log_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{threading.get_ident()}.tmp")
            tmp.write_text(text)
            os.replace(tmp, path)
        except SkyApiError:
            pass  # tried again at the next cycle
        finally:
            self._log_busy.discard(launch.name)

    # --- helpers -------------------------------------------------------------------------------------

    def _settings_of(self, launch: Launch) -> tuple[SkyPilotSettings, WandbSettings]:
        """The group's settings travel with each launch; the backend's own are the fallback."""
        sky = launch.settings.get("skypilot")
        wandb = launch.settings.get("wandb")
        return (
            _dataclass_from(SkyPilotSettings, sky) if isinstance(sky, Mapping) else self.settings,
            _dataclass_from(WandbSettings, wandb) if isinstance(wandb, Mapping) else self.wandb,
        )


def make_skypilot_backend(
    state_dir: Path | None = None,
    settings: SkyPilotSettings | None = None,
    wandb: WandbSettings | None = None,
) -> SkyPilotBackend:
    """The SkyPilot backend on the default API (the fake when ``METTA_EXP_FAKE_SKY_DIR`` is set)."""
    return SkyPilotBackend(default_sky_api(), state_dir, settings=settings, wandb=wandb)


def _cloud_name(cloud: str | None) -> str | None:
    if not cloud:
        return None
    name = cloud.strip().split("/")[0].lower()
    return {"k8s": "kubernetes", "*": None}.get(name, name) if name else None


def _job_id(handle: str | None) -> int | None:
    return int(handle) if handle and handle.isdigit() else None


def _latest_by_name(entries: Iterable[QueueEntry]) -> dict[str, int]:
    """Job name -> the newest job id with that name."""
    out: dict[str, int] = {}
    for entry in entries:
        if entry.job_id > out.get(entry.name, -1):
            out[entry.name] = entry.job_id
    return out


def _dataclass_from(cls: type, data: Mapping[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default
