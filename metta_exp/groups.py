"""Manage launched groups from Python: what ``metta-exp job ...`` does, returning typed results.

Each function opens the store metta-exp finds (``METTA_EXP_STATE_DIR``, else the nearest ``job_state/``,
as git finds ``.git``), closes it before it returns, and raises ``NotFoundError`` for a group it does not
hold. Readers (``list_groups``, ``show``, ``record``, ``log``, ``follow_log``, ``notebook``) never write
to the store. The ``job`` CLI is a thin layer over this module: it prints what these functions return.
Nothing heavy is imported here.

    from metta_exp import groups

    for summary in groups.list_groups():
        print(summary.name, summary.counts)
    launched = groups.launch(Experiment(module="pkg.train", runs=["a", "b"], wait=False))
    jobs = groups.wait(launched.groups[0])
    view = groups.show("lr_sweep")
    print(groups.log("lr_sweep", "a", tail=20).read().decode())
    plan = groups.kill_plan("lr_sweep")
    groups.kill("lr_sweep")          # ends running jobs, cancels pending ones
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from metta_exp.errors import BackendError, UsageError
from metta_exp.history.api import compare, compare_names, list_groups, listing, rm, rm_plan, run_rows, runs
from metta_exp.records import GroupRecord, JobRecord
from metta_exp.status import ACTIVE, JobStatus
from metta_exp.store import DB_NAME, JobStore, default_state_dir

if TYPE_CHECKING:
    from metta_exp.config import Experiment
    from metta_exp.logs.job import AttemptLog, LogEvent
    from metta_exp.trials import TrialRecord

__all__ = [  # the questions across groups (list_groups ... rm) are history/api.py's, part of this API
    "GroupView", "KillPlan", "KillResult", "Launched", "compare", "compare_names", "follow_log", "kill",
    "kill_plan", "launch", "list_groups", "listing", "log", "notebook", "open_store", "record", "report",
    "resume", "retry", "rm", "rm_plan", "run_rows", "runs", "show", "store_for", "store_path", "unattended",
    "wait", "watch",
]  # fmt: skip

RETRY_DRIVE_WAIT_S = 30.0


def store_path() -> Path:
    """The store file metta-exp finds (:func:`default_state_dir`), whether it exists yet or not."""
    return default_state_dir() / DB_NAME


open_store = JobStore.found  # the store metta-exp finds, or None; the caller closes it
store_for = JobStore.holding  # the store, which must hold the group; the caller closes it

# --- readers ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Launched:
    """What ``launch`` did: the groups it submitted (none for a dry run), and its exit code (that of the
    groups it watched: 0 when it did not wait)."""

    groups: list[str]
    exit_code: int


def launch(
    exp: Experiment | Sequence[Experiment], name: str | None = None, extra_args: Sequence[str] = ()
) -> Launched:
    """Submit ``exp`` (or each of several experiments) as a group and start its runner; with
    ``exp.wait``, watch it until it ends. Follow a group without waiting: ``wait(launched.groups[0])``."""
    from metta_exp.config import Experiment, default_name
    from metta_exp.submit import submit_experiments

    exps = [exp] if isinstance(exp, Experiment) else list(exp)
    names, code = submit_experiments(exps, name or default_name(exps[0]), extra_args)
    return Launched(names, code)


@dataclass(frozen=True)
class GroupView:
    """One group as ``job show`` sees it: its record, its jobs, each job's progress (a fraction, None
    when unknown or pending), whether a runner drives it, why its last runner stopped, a search group's
    trials in number order (none for other groups), and each run's GPU-hours (the GPUs it holds times the
    time its attempts ran, queueing excluded)."""

    group: GroupRecord
    jobs: list[JobRecord]
    progress: dict[str, float | None]
    driven: bool
    last_stop: str | None
    trials: list[TrialRecord] = field(default_factory=list)
    gpu_hours: dict[str, float] = field(default_factory=dict)  # each run's, over all its attempts

    def trial_by_run(self) -> dict[str, TrialRecord]:
        """Each trial by the run it launched."""
        return {t.run: t for t in self.trials}


def show(group: str) -> GroupView:
    """The group ``group`` and its jobs, read without writing."""
    from metta_exp.supervise.lease import owner_alive

    with store_for(group, readonly=True) as store:
        record = store.group(group)
        jobs = store.jobs(group)
        stopped = [] if record.ended_at or owner_alive(record) else store.events(group, kind="runner_stopped")
        hours = store.gpu_hours(group)
        trials = trials_of(store, record)
    progress = {j.run: j.progress_at_end for j in jobs}
    if any(j.progress_needs_log for j in jobs):  # a group still running: the log reader loads only then
        from metta_exp.logs.tail import progress_fraction

        progress = {j.run: progress_fraction(j) for j in jobs}
    driven = bool(record.ended_at) or owner_alive(record)
    last_stop = stopped[-1].detail.split(";")[0] if stopped and stopped[-1].detail else None
    return GroupView(record, jobs, progress, driven, last_stop, trials, hours)


def record(group: str) -> GroupRecord:
    """The group's record (its config, whether it ended, who drives it), read without writing."""
    with store_for(group, readonly=True) as store:
        return store.group(group)


def unattended() -> tuple[dict[str, GroupRecord], list[str]]:
    """The groups that have not ended, by name, and the names of those no runner drives (their jobs run
    on unobserved until resumed); a killed group counts as driven."""
    from metta_exp.supervise.lease import unattended_groups

    with open_store(readonly=True) or contextlib.nullcontext() as store:  # None: no store yet
        return unattended_groups(store) if store is not None else ({}, [])


# --- watch, logs ---------------------------------------------------------------------------------------


def watch(
    group: str,
    *,
    refresh: float = 1.0,
    show_logs: bool = True,
    out: TextIO | None = None,
    since_retry: bool = False,
) -> int:
    """Show ``group`` live until it ends (the monitor: a full-screen view on a terminal, one line per
    change otherwise, from its latest retry on with ``since_retry``), starting a runner whenever nobody
    drives it. Returns 0 when every job succeeded, 1 otherwise, 130 on Ctrl+C (the jobs go on)."""
    from metta_exp.monitor.live import watch_and_heal

    if refresh <= 0:
        raise UsageError(f"--refresh must be a positive number of seconds, got {refresh:g}")
    with store_for(group, readonly=True) as store:  # watching reads; its healer opens a writer if needed
        retries = store.events(group, kind="retry") if since_retry else []
        since = retries[-1].id - 1 if retries else 0  # the retry's own line first
        return watch_and_heal(store, group, out, refresh, show_logs, since=since)


def log(group: str, run: str, attempt: int | None = None, tail: int | None = None) -> AttemptLog:
    """The log of ``run`` (its current attempt unless ``attempt``; 1 is the first) as it is now: all of
    it, or its last ``tail`` lines. ``.read()`` gives its bytes, ``.chunks()`` them piece by piece;
    ``.exists`` is False until the job has written one (``.status`` says where it stands)."""
    from metta_exp.logs.job import read_log

    with store_for(group, readonly=True) as store:
        return read_log(store, group, run, attempt, tail)


def follow_log(
    group: str, run: str, attempt: int | None = None, tail: int | None = None, poll: float = 0.25
) -> Iterator[LogEvent]:
    """The log of ``run`` as it grows (its last ``tail`` lines first), until the attempt ends: ``LogBytes``
    as it grows, ``NewAttempt`` when a retry moves on to a new attempt's log (unless ``attempt`` pins
    one), ``Waiting`` while it has none yet, and ``Ended`` (with how it ended) last. Following heals: a
    runner is started if the group's one died (docs/lease.md). The group and run are checked at once."""
    from metta_exp.logs.job import find_attempt, follow
    from metta_exp.supervise.drive import Healer

    store = store_for(group, readonly=True)
    try:
        find_attempt(store, group, run, attempt, tail)
    except BaseException:
        store.close()
        raise

    def events() -> Iterator[LogEvent]:
        with store, Healer(store, group) as heal:
            yield from follow(store, group, run, attempt, tail, poll, heal=heal)

    return events()


# --- kill ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KillPlan:
    """What killing a group will do: end its ``active`` jobs, cancel its ``pending`` ones, end the
    leftover processes of ``stray`` ended jobs, and leave ``ended`` jobs as they are."""

    group: str
    active: list[JobRecord]
    pending: list[JobRecord]
    stray: list[JobRecord]
    ended: int

    @property
    def empty(self) -> bool:
        return not (self.active or self.pending or self.stray)


@dataclass(frozen=True)
class KillResult:
    """How the group's jobs stand after a kill; ``plan`` is what it set out to do, ``killed`` False when
    it did nothing (nothing to kill, or ``confirm`` said no)."""

    cancelled: int
    succeeded: int
    failed: int
    plan: KillPlan | None = None
    killed: bool = True


def kill_plan(group: str) -> KillPlan:
    """What :func:`kill` would do to ``group`` now (nothing is changed)."""
    with store_for(group, readonly=True) as store:
        return _plan(store, group)


def _plan(store: JobStore, group: str) -> KillPlan:
    from metta_exp.supervise.drive import leftovers

    jobs = store.jobs(group)
    active = [j for j in jobs if j.status in ACTIVE]
    pending = [j for j in jobs if j.status == JobStatus.PENDING]
    stray = leftovers(store.group(group), jobs)
    return KillPlan(group, active, pending, stray, len(jobs) - len(active) - len(pending))


def kill(
    group: str, plan: KillPlan | None = None, *, confirm: Callable[[KillPlan], bool] | None = None
) -> KillResult:
    """End the running jobs of ``group`` (whole process trees), cancel its pending ones and block
    further launches; the leftover processes of ``plan.stray`` are ended too (``plan``: by default made
    now). With ``confirm``, the plan is made now and handed to it first: unless it returns True, or when
    there is nothing to kill, nothing changes (``killed`` False). The store changes in one transaction,
    before any process is signalled: a runner polling meanwhile sees cancelled jobs, not jobs that died of
    SIGTERM. Then a runner is made sure to close the group. One store connection does it all."""
    from metta_exp.backends import make_backend
    from metta_exp.supervise.drive import ensure_driver, launch_of

    with store_for(group) as store:  # the writer's: an error now if the store cannot be written
        plan = plan or _plan(store, group)
        if confirm is not None and (plan.empty or not confirm(plan)):
            return _outcome(store, group, plan, killed=False)
        record = store.group(group)
        # the group's own backend, where it runs (unusable: an error before any change)
        backend = make_backend(record.backend, store.state_dir, location=record.location)
        try:
            active = store.kill(group) if plan.active or plan.pending else []
            if active or plan.stray:
                backend.cancel([launch_of(record, j) for j in [*active, *plan.stray]])
        finally:
            backend.close()
        ensure_driver(store, group)  # someone must close the group (and write its notebook)
        return _outcome(store, group, plan, killed=True)


def _outcome(store: JobStore, group: str, plan: KillPlan, killed: bool) -> KillResult:
    after = [j.status for j in store.jobs(group)]
    counts = (
        after.count(JobStatus.CANCELLED),
        after.count(JobStatus.SUCCEEDED),
        after.count(JobStatus.FAILED),
    )
    return KillResult(*counts, plan=plan, killed=killed)


# --- retry, resume, wait ------------------------------------------------------------------------------------


def retry(group: str) -> list[tuple[str, JobStatus]]:
    """Requeue the failed, cancelled and skipped runs of ``group`` as new attempts and make sure a
    runner drives it. Returns each requeued run with the status it had (empty: nothing to retry)."""
    from metta_exp.supervise.drive import wait_driven

    with store_for(group) as store:
        if store.group(group).search_space is not None:
            raise UsageError(
                f"'{group}' is a search: each trial's outcome was told to its study once, so its failed "
                "trials are not run again; launch a new search (with search.seed for the same first trials)"
            )
        before = {j.run: j.status for j in store.jobs(group)}
        events = store.events(group)
        mark = events[-1].id if events else 0
        runs = store.requeue_for_retry(group)
        if runs:
            wait_driven(store, group, mark, RETRY_DRIVE_WAIT_S)
    return [(r, before[r]) for r in runs]


def resume(group: str) -> bool:
    """Start a runner for ``group`` if none is alive (and it has not ended); True if one was started."""
    from metta_exp.supervise.drive import ensure_driver

    with store_for(group) as store:
        return ensure_driver(store, group)


def _stopped_for_good(store: JobStore, group: str) -> str | None:
    """Why no runner will drive ``group`` until someone acts (its backend refuses every call), or None."""
    from metta_exp.supervise.lease import held, owner_alive

    return None if owner_alive(store.group(group)) else held(store, group)


def wait(group: str, timeout: float | None = None, poll: float = 0.5) -> list[JobRecord]:
    """Block until ``group`` has ended (its runner closed it), starting a runner if its one died; the
    jobs as they ended. ``TimeoutError`` after ``timeout`` seconds."""
    from metta_exp.supervise.drive import ensure_driver

    with store_for(group) as store:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not store.group(group).ended_at:
            if not ensure_driver(store, group, heal=True) and (why := _stopped_for_good(store, group)):
                raise BackendError(f"group '{group}' waits for you: {why}")
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"group '{group}' did not end within {timeout:g} s")
            time.sleep(poll)
        return store.jobs(group)


# --- notebook, report ---------------------------------------------------------------------------------------


def notebook(group: str, output: str | Path | None = None) -> Path:
    """(Re)write the analysis notebook of ``group`` (by default where its config says); its path."""
    from metta_exp.notebook.cells import write_group_notebook
    from metta_exp.paths import notebook_path

    with store_for(group, readonly=True) as store:
        record = store.group(group)
        jobs, trials, hours = store.jobs(group), trials_of(store, record), store.gpu_hours(group)
    path = Path(output) if output else notebook_path(record)
    return write_group_notebook(record, jobs, path, trials, hours)


def report(group: str, output: str | Path | None = None) -> Path:
    """Run the notebook of ``group`` and write it as one self-contained HTML page (by default beside
    the notebook); its path."""
    from metta_exp.notebook.report import write_group_report
    from metta_exp.paths import launch_dir, notebook_path, report_path

    with store_for(group) as store:  # the writer's: an error before a long run if it cannot be written
        record = store.group(group)
        jobs, trials, hours = store.jobs(group), trials_of(store, record), store.gpu_hours(group)
    path = Path(output).absolute() if output else report_path(notebook_path(record))
    return write_group_report(record, jobs, path, launch_dir(record), trials, hours)


def trials_of(store: JobStore, group: GroupRecord) -> list[TrialRecord]:
    """A search group's trials; none for other groups (whose store may predate the trials table)."""
    return store.trials(group.name) if group.is_search else []
