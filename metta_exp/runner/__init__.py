"""The runner: one process drives one group to its end.

It holds the group's lease in the store, launches every job whose dependencies succeeded (all at once,
within ``max_parallel`` and free GPUs), observes active jobs through the backend in one batched call,
applies ``timeout_s`` and ``max_retries``, skips dependents of jobs that did not succeed, records every
transition, and writes the notebook when the group ends. What each attempt reports through its files
(its W&B run, its final progress and metrics) is recorded by :mod:`metta_exp.runner.reports`. It runs
detached from the terminal that launched the group (``python -m metta_exp.runner GROUP``,
:mod:`metta_exp.runner.__main__`); any later command can start a new one when the lease of the old one
expired or its process is gone.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from metta_exp.backends.base import Backend, Launch, Observation
from metta_exp.errors import BackendRefused
from metta_exp.paths import RunDir, launch_dir, notebook_path
from metta_exp.records import GroupRecord, JobRecord
from metta_exp.runner.hiccups import disk_full, log_line
from metta_exp.runner.leftovers import ended, hold_leftovers
from metta_exp.runner.reports import AttemptReports, settling
from metta_exp.status import ACTIVE, JobStatus, waits_for
from metta_exp.store import JobStore
from metta_exp.supervise.drive import LeaseKeeper, exit_code, launch_of, launch_settings
from metta_exp.supervise.lease import LEASE_TTL, REFUSED_EVENT, lease_owner_id, owner_alive

if TYPE_CHECKING:
    from metta_exp.search.driver import SearchDriver

MAX_FAILED_CYCLES = 20  # consecutive failed cycles before the runner gives up (a later command resumes)


class LeaseLost(Exception):
    """Another driver took the group over (this one was presumed dead)."""


@dataclass
class Runner:
    """Drives ``group`` with ``backend``; ``drive()`` returns the interface's exit code."""

    store: JobStore
    group: str
    backend: Backend
    tick: float = 0.5
    lease_ttl: float = LEASE_TTL
    unseen_grace: float | None = None  # default: the backend's
    owner: str = field(default_factory=lambda: lease_owner_id())
    _submitted: set[tuple[str, int]] = field(default_factory=set)
    _unseen_since: dict[tuple[str, int], float] = field(default_factory=dict)
    _last_renew: float = 0.0
    _last_poll: float = 0.0
    _announced: bool = False
    stop_reason: str | None = None
    _search: SearchDriver | None = None
    _timing_out: set[tuple[str, int]] = field(default_factory=set)  # (run, attempt) ended for its timeout
    _keeper: LeaseKeeper | None = None
    _reports: AttemptReports = field(init=False)

    def __post_init__(self) -> None:
        self._reports = AttemptReports(self.store, self.group)

    def drive(self) -> int | None:
        """Drive the group to its end. None if another live driver holds it, or the runner was asked
        to stop (``stop``): then it hands the group on by releasing its lease."""
        if not self.acquire():
            return None
        self._keeper = LeaseKeeper(self.store.path, self.group, self.owner, self.lease_ttl)
        try:
            failures = 0
            while not self.stop_reason:
                try:
                    with self._keeper.busy():  # a backend call may outlast the lease
                        if self.step():
                            break
                    failures = 0
                except LeaseLost:
                    raise
                except BackendRefused as exc:  # nothing will change until the user acts: stop, say why
                    self._refused(exc)
                    break
                except Exception as exc:  # a backend or store hiccup must not orphan the group
                    failures += 1
                    self._report(exc, failures)
                    self._pause(min(5.0 if disk_full(exc) else 30.0, self.tick * 2**failures))
                    continue
                self._pause(self.tick)
        except LeaseLost:
            return None
        finally:
            self._keeper.close()
            if self.stop_reason:
                self._hand_on()
            self.store.release_lease(self.group, self.owner)
            try:
                if not self.stop_reason and self.store.group(self.group).ended_at is not None:
                    # may linger, without the lease, for remote attempts that show up late
                    self.backend.settle(lambda: bool(self.stop_reason))
            finally:
                self.backend.close()
        return (
            None
            if self.stop_reason
            else exit_code(self.store.jobs(self.group), self.store.trials(self.group))
        )

    def _refused(self, exc: BackendRefused) -> None:
        """Record why the backend refuses (``supervise.held``: no runner is started again by itself) and
        stop, leaving the jobs as they are."""
        with contextlib.suppress(Exception):
            self.store.add_event(self.group, REFUSED_EVENT, str(exc))
        self.stop(str(exc))

    def stop(self, reason: str) -> None:
        """Ask the runner to stop after the cycle under way (safe from a signal handler)."""
        self.stop_reason = reason

    def _pause(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stop_reason and time.monotonic() < deadline:
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    def _hand_on(self) -> None:
        """Say why the runner stops and how to resume, in its log and in the group's events."""
        with contextlib.suppress(Exception):
            if self.store.group(self.group).ended_at is not None:
                log_line(f"runner stopped ({self.stop_reason}) after the group ended")
                return
        why = (
            f"runner stopped ({self.stop_reason}); its jobs go on. Resume: metta-exp job resume {self.group}"
        )
        log_line(why)
        with contextlib.suppress(Exception):
            self.store.add_event(self.group, "runner_stopped", why)

    def acquire(self) -> bool:
        group = self.store.group(self.group)
        steal = group.lease_owner if group.lease_owner and not owner_alive(group) else None
        ok = self.store.acquire_lease(self.group, self.owner, self.lease_ttl, os.getpid(), steal_from=steal)
        self._last_renew = time.time()
        return ok

    def step(self) -> bool:
        """One cycle. True once the group has ended. The jobs are read again only after a change."""
        now = time.time()
        if now - self._last_renew > self.lease_ttl / 3:
            self._renew()
        group = self.store.group(self.group)
        jobs = self.store.jobs(self.group)
        ending = settling(jobs)
        busy = any(j.status in ACTIVE for j in jobs) or ending
        if busy and now - self._last_poll >= self.backend.poll_interval:
            self._last_poll = now
            if self._observe(group, jobs, ending):
                jobs = self.store.jobs(self.group)
                ending = settling(jobs)
        if self._enforce_timeouts(group, jobs) or self._skip_blocked(jobs):
            jobs = self.store.jobs(self.group)
        search = self._search_of(group)
        if search is not None and search.step(group, jobs):
            group, jobs = self.store.group(self.group), self.store.jobs(self.group)
        pending = any(j.status == JobStatus.PENDING for j in jobs)
        if pending and not group.cancel_requested and self._launch_ready(group, jobs):
            jobs = self.store.jobs(self.group)
        if not self._announced:
            self.store.add_event(self.group, "submitted")
            self._announced = True
        ended = all(j.status.is_terminal() for j in jobs) and not ending  # every log whole, too
        if ended and (search is None or search.done(group)):
            # ended only when nothing of it is left: an attempt being ended may outlive its record
            return False if self.backend.still_ending() else self._finish(group, jobs)
        return False

    def _search_of(self, group: GroupRecord) -> SearchDriver | None:
        """The driver of a search group's study (None for other groups)."""
        if group.search_space is None:
            return None
        if self._search is None:
            from metta_exp.search.driver import SearchDriver

            kept = lambda j: j.final_progress is not None  # noqa: E731 - its trial's value is told once kept
            self._search = SearchDriver(self.store, self.group, self.owner, self._cancel_pruned, kept)
        return self._search

    def _cancel_pruned(self, job: JobRecord) -> None:
        self.backend.cancel_soon([launch_of(self.store.group(self.group), job)])

    def _report(self, exc: Exception, failures: int) -> None:
        """Log a failed cycle (the runner's log gets the traceback); give up after too many in a row,
        unless the disk is full: then the runner waits for space, as its jobs do."""
        with contextlib.suppress(Exception):  # the log may be on the full disk too
            traceback.print_exc()
            sys.stderr.flush()
        with contextlib.suppress(Exception):
            self.store.add_event(self.group, "runner_error", f"{type(exc).__name__}: {exc}")
        if failures >= MAX_FAILED_CYCLES and not disk_full(exc):
            raise exc

    def _renew(self) -> None:
        if not self.store.renew_lease(self.group, self.owner, self.lease_ttl):
            raise LeaseLost(self.group)
        self._last_renew = time.time()

    # --- observing --------------------------------------------------------------------------------

    def _observe(self, group: GroupRecord, jobs: list[JobRecord], ending: list[JobRecord]) -> bool:
        """Poll every active job in one call and record what changed; True if anything did. Attempts that
        ended but whose log is not whole yet (``ending``: a remote log is copied after the end) are
        polled with them, and their logs copied until they are."""
        active = [j for j in jobs if j.status in ACTIVE]
        launches = [launch_of(group, j) for j in active]
        finals = [launch_of(group, j) for j in ending]
        observed = self.backend.poll(launches + finals)
        observed = hold_leftovers(self.store, self.group, self.backend, active, launches, observed)
        changed = False
        for job, launch in zip(active, launches, strict=True):
            obs = observed.get(launch.name, Observation(None))
            changed |= obs.status != job.status or bool(obs.handle and obs.handle != job.handle)
            self._apply(group, job, launch, obs)
        running = [
            launch for job, launch in zip(active, launches, strict=True) if job.status == JobStatus.RUNNING
        ]
        if running or finals:
            self.backend.sync_logs(running + finals)
        finished = {
            j.run for j, launch in zip(active, launches, strict=True) if ended(observed.get(launch.name))
        }
        copying = list(zip(ending, finals, strict=True))
        settled = self._reports.record(group, active, launches, finished, self.backend.log_complete, copying)
        return settled or changed

    def _apply(self, group: GroupRecord, job: JobRecord, launch: Launch, obs: Observation) -> None:
        key = (job.run, job.attempts)
        if obs.handle and obs.handle != job.handle:
            self.store.set_handle(self.group, job.run, job.attempts, obs.handle)
        if obs.status is None:
            first = self._unseen_since.setdefault(key, time.time())
            grace = self.backend.unseen_grace if self.unseen_grace is None else self.unseen_grace
            if obs.transient or time.time() - first < grace:
                return
            self._unseen_since.pop(key, None)
            if job.status == JobStatus.LAUNCHING and key not in self._submitted:
                # Claimed by a driver that died before submitting: it never started, so launch it again.
                self.store.finish_attempt(
                    self.group, job.run, job.attempts, JobStatus.CANCELLED,
                    reason="never started (its runner stopped before submitting it)", requeue=True,
                )  # fmt: skip
            else:
                # End it in case it shows up later: nothing may run unobserved (and cost money).
                self.backend.cancel_soon([launch])
                why = f": {obs.reason}" if obs.reason else ""
                self._failed(group, job, None, f"vanished from the {self.backend.name} backend{why}")
            return
        self._unseen_since.pop(key, None)
        if obs.status in ACTIVE:
            if job.status == JobStatus.LAUNCHING and not self.store.mark_running(
                self.group, job.run, job.attempts, obs.handle
            ):
                self.backend.cancel_soon([launch])
                return
            self._reports.note(job, obs.reason, obs.started_at, obs.recoveries, self.backend.name)
            return
        if self._timed_out(group, job):  # however it ended once told to stop
            self._failed(group, job, obs.exit_code, f"timed out after {group.exp.timeout_s} s")
        elif obs.status == JobStatus.FAILED:
            self._failed(group, job, obs.exit_code, obs.reason or "failed")
        else:
            self.store.finish_attempt(
                self.group, job.run, job.attempts, obs.status, obs.exit_code, obs.reason
            )

    def _failed(self, group: GroupRecord, job: JobRecord, exit_code: int | None, reason: str) -> None:
        """Record a failure, requeueing the job while it has retries left."""
        retries = 0 if self.store.group(self.group).cancel_requested else int(group.exp.max_retries or 0)
        used = sum(1 for a in self.store.attempts(self.group, job.run) if a.status == JobStatus.FAILED)
        requeue = used < retries
        if requeue:
            reason = f"{reason} (retry {used + 1} of {retries})"
        self.store.finish_attempt(
            self.group, job.run, job.attempts, JobStatus.FAILED, exit_code, reason, requeue=requeue
        )

    def _enforce_timeouts(self, group: GroupRecord, jobs: list[JobRecord]) -> bool:
        """Start ending each job past ``timeout_s`` (once per attempt and runner). The job stays running
        in the store until the backend sees it gone: a job that ignores SIGTERM keeps its GPU, and its
        group stays open, through the grace before SIGKILL. Its end is then recorded as the timeout."""
        limit = group.exp.timeout_s
        if not limit:
            return False
        now = time.time()
        late = []
        for job in jobs:  # counted from when the job began to run: not while it waited in a backend's queue
            since = self._reports.running_since(job) if self.backend.queues else job.started_at
            key = (job.run, job.attempts)
            if (
                job.status == JobStatus.RUNNING
                and since
                and now - since > limit
                and key not in self._timing_out
            ):
                late.append(job)
        if not late:
            return False
        self.backend.cancel_soon([launch_of(group, j) for j in late])
        for job in late:
            self._timing_out.add((job.run, job.attempts))
            self.store.add_event(
                self.group, "timed_out", f"timed out after {limit} s; ending it", run=job.run
            )
        return False

    def _timed_out(self, group: GroupRecord, job: JobRecord) -> bool:
        """Whether this attempt was told to stop for its timeout, by this runner or (its events say) by
        one before it."""
        if (job.run, job.attempts) in self._timing_out:
            return True
        limit = group.exp.timeout_s
        if not limit or job.started_at is None or time.time() - job.started_at <= limit:
            return False
        since = job.started_at
        return any(
            e.kind == "timed_out" and e.run == job.run and e.at >= since
            for e in self.store.events(self.group)
        )

    def _skip_blocked(self, jobs: list[JobRecord]) -> bool:
        status = {j.run: j.status for j in jobs}
        bad = {JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.SKIPPED}
        changed = False
        progress = True
        while progress:
            progress = False
            for job in jobs:
                if status[job.run] != JobStatus.PENDING:
                    continue
                blocker = next((d for d in job.depends_on if status.get(d) in bad), None)
                if blocker is not None:
                    self.store.skip(self.group, job.run, f"dependency '{blocker}' {status[blocker].value}")
                    status[job.run] = JobStatus.SKIPPED
                    changed = progress = True
        return changed

    # --- launching --------------------------------------------------------------------------------

    def _launch_ready(self, group: GroupRecord, jobs: list[JobRecord]) -> bool:
        """Claim and submit every job that may start now; True if any was claimed."""
        status = {j.run: j.status for j in jobs}
        cap = group.exp.max_parallel
        pending = [j for j in jobs if j.status == JobStatus.PENDING]
        ready = [j for j in pending if waits_for(j.depends_on, status, 0, None, 0, None) is None]
        if not ready:
            return False
        active = sum(1 for j in jobs if j.status in ACTIVE)
        devices = self.backend.devices()
        busy = self.store.busy_gpu_ids() if devices is not None else set()
        busy.update(gpu for launch in self.backend.still_ending() for gpu in launch.gpu_ids)
        wanted: list[tuple[JobRecord, tuple[int, ...]]] = []
        for job in ready:
            spec = job.spec
            free = [d for d in devices if d not in busy] if devices is not None else None
            wait = waits_for(
                job.depends_on, status, active, cap, spec.gpus, None if free is None else len(free)
            )
            if wait == "max_parallel":
                break
            if wait == "gpu":
                continue
            gpu_ids: tuple[int, ...] = tuple(free[: spec.gpus]) if free is not None and spec.gpus > 0 else ()
            busy.update(gpu_ids)
            wanted.append((job, gpu_ids))
            active += 1
        if not wanted:
            return False
        # one transaction for the whole pass: a commit waits for the disk, a hundred of them for a while
        attempts = self.store.claim_many(
            self.group,
            self.owner,
            [
                (job.run, gpu_ids, str(RunDir.at(job.run_dir).log(job.attempts + 1)))
                for job, gpu_ids in wanted
            ],
        )
        settings = launch_settings(group)
        claimed = [
            Launch(
                job.spec,
                attempts[job.run],
                RunDir.at(job.run_dir).log(attempts[job.run]),
                gpu_ids=gpu_ids,
                settings=settings,
            )
            for job, gpu_ids in wanted
            if job.run in attempts
        ]
        if claimed:
            self._submit(group, claimed)
        return bool(claimed)

    def _submit(self, group: GroupRecord, launches: list[Launch]) -> None:
        """Submit the claimed launches; record those started running before they begin (``submit_recorded``)."""
        self._renew()  # a remote submit can take a while: hold the lease across it
        marked: set[str] = set()
        unrecorded: list[Exception] = []

        def record(handles: dict[str, str]) -> None:
            started = [(j.spec.run, j.attempt, handles[j.name]) for j in launches if handles.get(j.name)]
            self._submitted.update((run, attempt) for run, attempt, _ in started)
            try:
                if time.time() - self._last_renew > self.lease_ttl / 3:  # a long (remote) submit
                    self._renew()
                marked.update(self.store.mark_running_many(self.group, started))
            except Exception as exc:
                unrecorded.append(exc)
                raise

        try:
            handles = self.backend.submit_recorded(launches, record)
        except BackendRefused:  # nothing was submitted: back to pending, and the runner stops
            for launch in launches:
                self.store.finish_attempt(
                    self.group, launch.spec.run, launch.attempt, JobStatus.CANCELLED,
                    reason="not submitted: the backend refuses every call", requeue=True,
                )  # fmt: skip
            raise
        except Exception as exc:
            if unrecorded:  # they started; the next cycle finds them (as after a crash) and records them
                raise
            handles, error = {}, f"could not be submitted: {exc}"  # the backend could start none of them
        else:
            error = "the backend did not start it"
        self._renew()
        for launch in launches:
            if handles.get(launch.name) is None:
                self._failed(group, self.store.job(self.group, launch.spec.run), None, error)
        killed = [
            replace(j, handle=handles[j.name])
            for j in launches
            if handles.get(j.name) and j.spec.run not in marked
        ]
        if killed:  # killed between claim and submit: end what we just started
            self.backend.cancel_soon(killed)

    # --- the end ----------------------------------------------------------------------------------

    def _finish(self, group: GroupRecord, jobs: list[JobRecord]) -> bool:
        """Write a search's results file and the notebook, and close the group; False if a ``job retry``
        reopened it meanwhile."""
        if group.search_space is not None:  # before the notebook: its reader need not wait for the report
            from metta_exp.search.results import write_results_file

            write_results_file(self.store, group)
        if group.exp.generate_notebook:
            path = notebook_path(group)
            try:
                from metta_exp.notebook.cells import write_group_notebook

                trials, hours = self.store.trials(self.group), self.store.gpu_hours(self.group)
                write_group_notebook(group, jobs, path, trials, hours)
                self.store.add_event(self.group, "notebook", str(path))
            except Exception as exc:  # a notebook problem must not keep the group open
                self.store.add_event(self.group, "notebook_failed", f"{type(exc).__name__}: {exc}")
            else:
                self._write_report(group, jobs, path)
        return self.store.end_group(self.group, self.owner)

    def _write_report(self, group: GroupRecord, jobs: list[JobRecord], notebook: Path) -> None:
        """The executed HTML report beside the notebook (seconds: a kernel runs the notebook; longer when
        it fetches from W&B), with the lease renewed meanwhile so nobody presumes this runner dead."""
        from metta_exp.notebook.report import write_group_report
        from metta_exp.paths import report_path

        self._renew()
        try:
            # the lease is kept meanwhile (the step is ``busy``)
            trials, hours = self.store.trials(self.group), self.store.gpu_hours(self.group)
            path = write_group_report(group, jobs, report_path(notebook), launch_dir(group), trials, hours)
            self.store.add_event(self.group, "report", str(path))
        except Exception as exc:  # nor a report problem
            self.store.add_event(self.group, "report_failed", f"{type(exc).__name__}: {exc}")
