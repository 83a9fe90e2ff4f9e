"""The questions a researcher asks across groups, as part of the Python API (:mod:`metta_exp.groups`
re-exports every function here): which groups (``list_groups``, ``listing``), every run as one table
(``runs``, ``run_rows``), several groups side by side (``compare``), and removing ended groups (``rm_plan``,
``rm``). Each opens the store metta-exp finds and closes it before it returns. Light: what does the work
is imported by the function that needs it."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from metta_exp.errors import NotFoundError, UsageError
from metta_exp.records import GroupSummary
from metta_exp.store import JobStore, default_state_dir

if TYPE_CHECKING:
    import pandas as pd

    from metta_exp.history.listing import Listing
    from metta_exp.history.remove import RemovalPlan, Removed
    from metta_exp.history.runs import Runs

open_store = JobStore.found


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
    return listing(
        patterns, status=status, since=since, until=until, limit=limit, gpu_hours=False, unattended=False
    ).groups


def listing(
    patterns: str | Sequence[str] = (),
    *,
    status: str | Sequence[str] = (),
    since: str | float | None = None,
    until: str | float | None = None,
    limit: int | None = None,
    gpu_hours: bool = True,
    unattended: bool = True,
) -> Listing:
    """What ``job list`` shows: the newest ``limit`` groups the filters select (see :func:`list_groups`),
    how many they select in all, each shown group's GPU-hours, and (``unattended``) the groups that have
    not ended and those no runner drives (see :func:`unattended`), all read through one connection."""
    from metta_exp.history.listing import group_query, list_window
    from metta_exp.supervise.lease import held, unattended_groups

    query = group_query(_strs(patterns), _strs(status), since, until)
    with open_store(readonly=True) or contextlib.nullcontext() as store:  # None: no store yet
        shown = list_window(store, query, limit, gpu_hours)
        if store is None or not unattended:
            return shown
        open_groups, orphans = unattended_groups(store)
        held_why = {n: why for n in orphans if (why := held(store, n))}
    return dataclasses.replace(shown, open_groups=open_groups, orphans=orphans, held=held_why)


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
    with open_store(readonly=True) or contextlib.nullcontext() as store:  # None: no store yet
        return find_runs(store, query)


def compare_names(patterns: Sequence[str]) -> list[str]:
    """The groups ``patterns`` (names or globs) name, for :func:`compare`: two or more, else ``UsageError``
    (an unknown name or a glob that matches none: ``NotFoundError`` with the closest names)."""
    from metta_exp.history.listing import expand_patterns

    with open_store(readonly=True) or contextlib.nullcontext() as store:  # None: no store yet
        names = expand_patterns(store, list(patterns))
    if store is None or len(names) < 2:
        raise UsageError(
            f"job compare needs two groups or more, got {', '.join(names) or 'none'}"
            + (f" (for one group: metta-exp job report {names[0]})" if names else "")
        )
    return names


def compare(
    patterns: Sequence[str], output: str | Path | None = None, report: bool = True
) -> tuple[Path, Path | None]:
    """One notebook with the groups ``patterns`` name (see :func:`compare_names`) side by side, and unless
    ``report`` is False its executed HTML report beside it; their paths. ``output``: where (``X.ipynb``,
    ``X.html``, or ``X`` for both); by default ``experiments/notebooks/compare-A-vs-B.ipynb`` here."""
    from metta_exp.history.compare import CompareGroup, compare_paths, write_compare

    names = compare_names(patterns)
    with JobStore.holding(names[0], readonly=True) as store:
        chosen = [CompareGroup(store.group(n), store.jobs(n), store.gpu_hours(n)) for n in names]
    notebook_file, report_file = compare_paths(names, output)
    return write_compare(chosen, notebook_file, report_file if report else None)


def rm_plan(
    patterns: str | Sequence[str] = (),
    *,
    older_than: str | float | None = None,
    status: str | Sequence[str] = (),
    notebooks: bool = False,
    refuse_open: bool = False,
) -> RemovalPlan:
    """What :func:`rm` would remove (nothing is changed): the ended groups named by ``patterns`` (names or
    globs) and/or created before ``older_than`` (``"30d"``, a date, a unix time), with a job in one of
    ``status``; their run directories and logs, with ``notebooks`` their notebooks and reports; the disk
    that frees; and the selected groups that have not ended (``rm`` refuses while there are any; with
    ``refuse_open``, so does this: ``UsageError`` naming them)."""
    from metta_exp.history.remove import plan, refusal

    with open_store() or contextlib.nullcontext() as store:
        if store is None:
            raise NotFoundError(f"no groups to remove: no job store in {default_state_dir()}")
        removal = plan(store, _strs(patterns), older_than, _strs(status), notebooks)
    if refuse_open and removal.active:
        raise refusal(removal.active)
    return removal


def rm(removal: RemovalPlan) -> Removed:
    """Remove what ``removal`` (from :func:`rm_plan`) lists: the groups' rows in one transaction, then
    their files. ``UsageError`` (nothing removed) when it names groups that have not ended."""
    from metta_exp.history.remove import remove

    with JobStore.open(removal.state_dir, create=False) as store:
        return remove(store, removal)


def _strs(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)
