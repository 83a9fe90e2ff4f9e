"""Manage launched groups from Python: what ``metta-exp job ...`` does, returning typed results.

Each function opens the store metta-exp finds (``METTA_EXP_STATE_DIR``, else the nearest ``job_state/``,
as git finds ``.git``) and raises ``NotFoundError`` for a group it does not hold. Readers (``list_groups``,
``show``, ``logs``, ``notebook``) never write to the store. The ``job`` CLI is a thin layer over this
module: it prints what these functions return. Nothing heavy is imported here.

    from metta_exp import groups

    for summary in groups.list_groups():
        print(summary.name, summary.counts)
    launched = groups.launch(Experiment(module="pkg.train", runs=["a", "b"], wait=False))
    jobs = groups.wait(launched.groups[0])
    view = groups.show("lr_sweep")
    plan = groups.kill_plan("lr_sweep")
    groups.kill("lr_sweep")          # ends running jobs, cancels pending ones
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TextIO

from metta_exp.config import Experiment
from metta_exp.errors import NotFoundError, UsageError
from metta_exp.records import GroupRecord, GroupSummary, JobRecord
from metta_exp.status import ACTIVE, JobStatus
from metta_exp.store import DB_NAME, JobStore, default_state_dir
from metta_exp.trials import TrialRecord

if TYPE_CHECKING:
    import pandas as pd

    from metta_exp.history.listing import Listing
    from metta_exp.history.remove import RemovalPlan, Removed
    from metta_exp.history.runs import Runs

RETRY_DRIVE_WAIT_S = 30.0


def open_store(readonly: bool = False) -> JobStore | None:
    """The store metta-exp finds (:func:`default_state_dir`), or None when there is none yet.
    ``readonly``: a reader's connection (works on a store it cannot write, never changes it)."""
    state_dir = default_state_dir()
    if not (state_dir / DB_NAME).exists():
        return None
    return JobStore.open(state_dir, create=False, readonly=readonly)


def store_for(group: str, readonly: bool = False) -> JobStore:
    """The store, which must hold ``group`` (``NotFoundError`` otherwise: exit code 2)."""
    store = open_store(readonly)
    if store is None:
        raise NotFoundError(
            f"no group '{group}': no groups yet in {default_state_dir()} (no job_state/ here or in a "
            "parent directory; METTA_EXP_STATE_DIR names another state directory)"
        )
    store.group(group)
    return store


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
    from metta_exp.config import default_name
    from metta_exp.submit import submit_experiments

    exps = [exp] if isinstance(exp, Experiment) else list(exp)
    names, code = submit_experiments(exps, name or default_name(exps[0]), extra_args)
    return Launched(names, code)


def list_groups(
    patterns: str | Sequence[str] = (),
    *,
    status: str | Sequence[str] = (),
    since: str | float | None = None,
    until: str | float | None = None,
    limit: int | None = None,
) -> list[GroupSummary]:
    """The groups, newest first, with their counts by status; empty when there is no store yet. Filters
    as ``job list``'s: name globs (``"lr_*"``), statuses (a group with a job in one of them), created
    ``since``/``until`` (``"7d"``, ``"2026-12-01"`` or a unix time); ``limit``: the newest N only."""
    return listing(patterns, status=status, since=since, until=until, limit=limit, gpu_hours=False).groups


def listing(
    patterns: str | Sequence[str] = (),
    *,
    status: str | Sequence[str] = (),
    since: str | float | None = None,
    until: str | float | None = None,
    limit: int | None = None,
    gpu_hours: bool = True,
) -> Listing:
    """What ``job list`` shows: the newest ``limit`` groups the filters select (see :func:`list_groups`),
    how many they select in all, and each shown group's GPU-hours."""
    from metta_exp.history.listing import group_query, list_window

    query = group_query(_strs(patterns), _strs(status), since, until)
    return list_window(open_store(readonly=True), query, limit, gpu_hours)


def runs(
    patterns: str | Sequence[str] = (),
    *,
    status: str | Sequence[str] = (),
    since: str | float | None = None,
    until: str | float | None = None,
    where: str | Sequence[str] = (),
    sort: str | None = None,
    reverse: bool = False,
    limit: int | None = None,
) -> pd.DataFrame:
    """Every run across groups as one DataFrame, as ``job runs`` lists them: ``group, run, status,
    attempts, started_at, ended_at, duration_s, gpus, gpu_hours, steps``, a column per tracked metric
    (its final value) and one per override key (typed values). Filters as ``job runs``'s: group names or
    globs, the runs' ``status``, groups created ``since``/``until``, ``where`` conditions
    (``"trainer.learning_rate>=0.01"``, ``"run~high_*"``), ``sort`` by a column, metric or override
    (numbers largest first; ``reverse``), ``limit`` rows (None: all)."""
    from metta_exp.history.runs import runs_frame

    return runs_frame(
        run_rows(
            patterns,
            status=status,
            since=since,
            until=until,
            where=where,
            sort=sort,
            reverse=reverse,
            limit=limit,
        )
    )


def run_rows(
    patterns: str | Sequence[str] = (),
    *,
    status: str | Sequence[str] = (),
    since: str | float | None = None,
    until: str | float | None = None,
    where: str | Sequence[str] = (),
    sort: str | None = None,
    reverse: bool = False,
    limit: int | None = None,
) -> Runs:
    """:func:`runs` as typed rows (no pandas), with how many runs the filters select in all."""
    from metta_exp.history.runs import RunsQuery, find_runs

    query = RunsQuery.parse(_strs(patterns), _strs(status), since, until, _strs(where), sort, reverse, limit)
    return find_runs(open_store(readonly=True), query)


def compare(
    patterns: Sequence[str], output: str | Path | None = None, report: bool = True
) -> tuple[Path, Path | None]:
    """One notebook with the groups ``patterns`` name (names or globs, at least two groups) side by side,
    and unless ``report`` is False its executed HTML report beside it; their paths. ``output``: where
    (``X.ipynb``, ``X.html``, or ``X`` for both); by default ``experiments/notebooks/compare-A-vs-B.ipynb``
    here."""
    from metta_exp.history.compare import CompareGroup, compare_paths, write_compare
    from metta_exp.history.listing import expand_patterns

    store = open_store(readonly=True)
    names = expand_patterns(store, list(patterns))
    if store is None or len(names) < 2:
        raise UsageError(
            f"job compare needs two groups or more, got {', '.join(names) or 'none'}"
            + (f" (for one group: metta-exp job report {names[0]})" if names else "")
        )
    chosen = [CompareGroup(store.group(n), store.jobs(n), store.gpu_hours(n)) for n in names]
    notebook_file, report_file = compare_paths(names, output)
    return write_compare(chosen, notebook_file, report_file if report else None)


def rm_plan(
    patterns: str | Sequence[str] = (),
    *,
    older_than: str | float | None = None,
    status: str | Sequence[str] = (),
    notebooks: bool = False,
) -> RemovalPlan:
    """What :func:`rm` would remove (nothing is changed): the ended groups named by ``patterns`` (names or
    globs) and/or created before ``older_than`` (``"30d"``, a date, a unix time), with a job in one of
    ``status``; their run directories and logs, with ``notebooks`` their notebooks and reports; the disk
    that frees; and the selected groups that have not ended (``rm`` refuses while there are any)."""
    from metta_exp.history.remove import plan

    store = open_store()
    if store is None:
        raise NotFoundError(f"no groups to remove: no job store in {default_state_dir()}")
    return plan(store, _strs(patterns), older_than, _strs(status), notebooks)


def rm(removal: RemovalPlan) -> Removed:
    """Remove what ``removal`` (from :func:`rm_plan`) lists: the groups' rows in one transaction, then
    their files. ``UsageError`` (nothing removed) when it names groups that have not ended."""
    from metta_exp.history.remove import remove

    return remove(JobStore.open(removal.state_dir, create=False), removal)


def _strs(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


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
    from metta_exp.logs.tail import progress_fraction
    from metta_exp.supervise import owner_alive

    store = store_for(group, readonly=True)
    record = store.group(group)
    jobs = store.jobs(group)
    progress = {j.run: progress_fraction(j) for j in jobs}
    driven = bool(record.ended_at) or owner_alive(record)
    stopped = [] if driven else store.events(group, kind="runner_stopped")
    last_stop = stopped[-1].detail.split(";")[0] if stopped and stopped[-1].detail else None
    return GroupView(
        record, jobs, progress, driven, last_stop, trials_of(store, record), store.gpu_hours(group)
    )


def unattended() -> tuple[dict[str, GroupRecord], list[str]]:
    """The groups that have not ended, by name, and the names of those no runner drives (their jobs run
    on unobserved until resumed); a killed group counts as driven."""
    from metta_exp.supervise import owner_alive

    store = open_store(readonly=True)
    open_groups = {g.name: g for g in store.active_groups()} if store is not None else {}
    orphans = [n for n, g in open_groups.items() if not g.cancel_requested and not owner_alive(g)]
    return open_groups, orphans


def logs(
    group: str, run: str, attempt: int | None, tail: int | None, out: BinaryIO, err: TextIO, follow: bool
) -> int:
    """Write the log of ``run`` (its current attempt unless ``attempt``) to ``out``; with ``follow``,
    until the job ends (0 if it succeeded, 1 otherwise)."""
    from metta_exp.logs.tail import follow as follow_log
    from metta_exp.logs.tail import print_log
    from metta_exp.supervise import Healer

    store = store_for(group, readonly=True)
    if follow:  # following heals: it starts a runner if the group's one died (docs/lease.md)
        return follow_log(store, group, run, attempt, tail, out, err, heal=Healer(store, group))
    return print_log(store, group, run, attempt, tail, out, err)


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
    """How the group's jobs stand after a kill."""

    cancelled: int
    succeeded: int
    failed: int


def leftovers(group: GroupRecord, jobs: Sequence[JobRecord]) -> list[JobRecord]:
    """Ended jobs of a local group with processes still alive: helpers that daemonised and outlived
    their job, found by the markers in their environment (Linux)."""
    from metta_exp.backends import procs

    if group.backend != "local" or not procs.HAS_PROCFS:
        return []
    ended = {j.run_dir: j for j in jobs if j.status.is_terminal()}
    found: dict[str, JobRecord] = {}
    for proc in procs.process_table().values():
        markers = None if proc.dead else procs.environ_markers(proc.pid)
        if markers is not None and markers[0] == group.name and markers[1] in ended:
            found[markers[1]] = ended[markers[1]]
    return list(found.values())


def kill_plan(group: str) -> KillPlan:
    """What :func:`kill` would do to ``group`` now (nothing is changed)."""
    store = store_for(group, readonly=True)
    jobs = store.jobs(group)
    active = [j for j in jobs if j.status in ACTIVE]
    pending = [j for j in jobs if j.status == JobStatus.PENDING]
    stray = leftovers(store.group(group), jobs)
    return KillPlan(group, active, pending, stray, len(jobs) - len(active) - len(pending))


def kill(group: str, plan: KillPlan | None = None) -> KillResult:
    """End the running jobs of ``group`` (whole process trees), cancel its pending ones and block
    further launches; the leftover processes of ``plan.stray`` are ended too. The store changes in one
    transaction, before any process is signalled: a runner polling meanwhile sees cancelled jobs, not
    jobs that died of SIGTERM. Then a runner is made sure to close the group."""
    from metta_exp.backends import make_backend
    from metta_exp.supervise import ensure_driver, launch_of

    plan = plan or kill_plan(group)
    store = store_for(group)
    record = store.group(group)
    backend = make_backend(record.backend, store.state_dir)  # unusable: an error before anything changes
    try:
        active = store.kill(group) if plan.active or plan.pending else []
        if active or plan.stray:
            backend.cancel([launch_of(record, j) for j in [*active, *plan.stray]])
    finally:
        backend.close()
    ensure_driver(store, group)  # someone must close the group (and write its notebook)
    after = [j.status for j in store.jobs(group)]
    return KillResult(
        after.count(JobStatus.CANCELLED), after.count(JobStatus.SUCCEEDED), after.count(JobStatus.FAILED)
    )


# --- retry, resume, wait ------------------------------------------------------------------------------------


def retry(group: str) -> list[tuple[str, JobStatus]]:
    """Requeue the failed, cancelled and skipped runs of ``group`` as new attempts and make sure a
    runner drives it. Returns each requeued run with the status it had (empty: nothing to retry)."""
    store = store_for(group)
    if store.group(group).search_space is not None:
        raise UsageError(
            f"'{group}' is a search: each trial's outcome was told to its study once, so its failed trials "
            "are not run again; launch a new search (with search.seed for the same first trials)"
        )
    before = {j.run: j.status for j in store.jobs(group)}
    events = store.events(group)
    mark = events[-1].id if events else 0
    runs = store.requeue_for_retry(group)
    if runs:
        wait_driven(store, group, mark)
    return [(r, before[r]) for r in runs]


def wait_driven(store: JobStore, group: str, after_event: int, timeout: float = RETRY_DRIVE_WAIT_S) -> bool:
    """Make sure a runner drives ``group`` after a retry: start one when none is alive, until a driver
    acted after event ``after_event`` (took the lease, or moved a job). A runner that was just ending
    the group may exit without seeing the requeued runs; the one started here then takes over."""
    from metta_exp.supervise import ensure_driver

    deadline = time.time() + timeout
    while time.time() < deadline:
        ensure_driver(store, group)
        if any(e.kind in ("runner", "status") for e in store.events(group, after_event)):
            return True
        time.sleep(0.1)
    return False


def resume(group: str) -> bool:
    """Start a runner for ``group`` if none is alive (and it has not ended); True if one was started."""
    from metta_exp.supervise import ensure_driver

    return ensure_driver(store_for(group), group)


def wait(group: str, timeout: float | None = None, poll: float = 0.5) -> list[JobRecord]:
    """Block until ``group`` has ended (its runner closed it), starting a runner if its one died; the
    jobs as they ended. ``TimeoutError`` after ``timeout`` seconds."""
    from metta_exp.supervise import ensure_driver

    store = store_for(group)
    deadline = None if timeout is None else time.monotonic() + timeout
    while not store.group(group).ended_at:
        ensure_driver(store, group)
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"group '{group}' did not end within {timeout:g} s")
        time.sleep(poll)
    return store.jobs(group)


# --- notebook, report ---------------------------------------------------------------------------------------


def notebook(group: str, output: str | Path | None = None) -> Path:
    """(Re)write the analysis notebook of ``group`` (by default where its config says); its path."""
    from metta_exp.notebook.cells import write_group_notebook
    from metta_exp.paths import notebook_path

    store = store_for(group, readonly=True)
    record = store.group(group)
    path = Path(output) if output else notebook_path(record)
    return write_group_notebook(
        record, store.jobs(group), path, trials_of(store, record), store.gpu_hours(group)
    )


def report(group: str, output: str | Path | None = None) -> Path:
    """Run the notebook of ``group`` and write it as one self-contained HTML page (by default beside
    the notebook); its path."""
    from metta_exp.notebook.report import write_group_report
    from metta_exp.paths import launch_dir, notebook_path, report_path

    store = store_for(group)
    record = store.group(group)
    path = Path(output).absolute() if output else report_path(notebook_path(record))
    return write_group_report(
        record, store.jobs(group), path, launch_dir(record), trials_of(store, record), store.gpu_hours(group)
    )


def trials_of(store: JobStore, group: GroupRecord) -> list[TrialRecord]:
    """A search group's trials; none for other groups (whose store may predate the trials table)."""
    return store.trials(group.name) if group.search_space is not None else []
