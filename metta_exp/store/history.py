"""History across groups: finding groups by name, time and status, every run as one row, GPU-seconds, each
attempt's final metric values, and removing ended groups in one transaction.

A store of a year of experiments holds a million jobs: every query here reads through an index (groups by
creation time, jobs by group) and only the groups it is asked about, never every job. A store read before
its ``0005_history`` migration is read all the same (no final metric values: the caller reads them from the
runs' files).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

from metta_exp.errors import UsageError
from metta_exp.records import GroupRecord, GroupSummary
from metta_exp.status import ALL_STATUSES, TERMINAL, JobStatus
from metta_exp.store.db import Database
from metta_exp.store.rows import group_record

__all__ = ["GroupQuery", "History", "RunRecord"]


class GroupQuery(NamedTuple):
    """Which groups: a name matching one of ``patterns`` (globs as a shell writes them; none: any name),
    created at or after ``since`` and before ``until`` (unix times; None: no bound), holding a job in one
    of ``statuses`` (none: any group). (A tuple: every ``job`` command imports this module, and a
    dataclass costs a millisecond or two to define.)"""

    patterns: tuple[str, ...] = ()
    statuses: tuple[JobStatus, ...] = ()
    since: float | None = None
    until: float | None = None


class RunRecord(NamedTuple):
    """One run (a job and its current attempt) as ``job runs`` lists it. A tuple: a query builds
    thousands. ``gpus`` are the GPUs the job holds (per node times the nodes of a SkyPilot job);
    ``running_s`` the seconds all its attempts ran (queueing excluded; a running attempt up to now) and
    ``gpu_seconds`` those times the GPUs each held;
    ``args`` its override arguments as JSON text, ``params`` a search trial's values as JSON text (None
    for other runs), ``final_metrics`` the JSON object kept when the current attempt ended (None: not
    kept)."""

    group: str
    group_created_at: float
    run: str
    position: int
    status: str
    attempts: int
    started_at: float | None
    ended_at: float | None
    gpus: int
    running_s: float
    gpu_seconds: float
    args: str
    params: str | None
    final_metrics: str | None
    run_dir: str
    log_path: str | None


#: GPUs a job of group ``g`` holds per GPU its spec asks for: the nodes of a SkyPilot job, else 1
_NODES = (
    "(CASE WHEN g.backend = 'skypilot' "
    "THEN max(1, coalesce(json_extract(g.config, '$.skypilot.num_nodes'), 1)) ELSE 1 END)"
)
#: seconds attempt ``a`` ran (a running one: until ``:now``)
_RAN = "(coalesce(a.ended_at, :now) - a.started_at)"
#: the GPUs a job ``j`` of group ``g`` holds: its spec's, on each node
GPUS_HELD = f"(coalesce(json_extract(j.spec, '$.gpus'), 0) * {_NODES})"
#: the statement whose rows are ``RunRecord``s; ``{where}`` filters groups ``g``; ``{gpus}``, ``{final}`` and
#: ``{params}`` read what older stores lack (``{gpus}``: an attempt ``a``'s GPUs). Groups are read through
#: their creation-time index and jobs through their position in the group, so the rows come in the order
#: asked for and a ``LIMIT`` stops the query early: a window of a million jobs reads what it shows.
_RUNS = f"""
    SELECT g.name, g.created_at, j.run, j.position, j.status, j.attempts, a.started_at, a.ended_at, {{gpus}},
           (SELECT total({_RAN}) FROM attempts a WHERE a.job_id = j.id AND a.started_at IS NOT NULL),
           (SELECT total({_RAN} * {{gpus}}) FROM attempts a WHERE a.job_id = j.id AND a.started_at IS NOT NULL),
           coalesce(json_extract(j.spec, '$.args'), '[]'), {{params}}, {{final}}, j.run_dir, a.log_path
    FROM groups g JOIN jobs j ON j.group_name = g.name
    LEFT JOIN attempts a ON a.job_id = j.id AND a.number = j.attempts
    {{where}}
"""
_RUNS_ORDER = " ORDER BY g.created_at DESC, g.name, j.position"
#: Groups named in one ``IN (...)``; a bigger window reads the counts of every group at once.
_IN_LIMIT = 500


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _sqlite_glob(pattern: str) -> str:
    """A shell glob as SQLite's GLOB reads it: ``[!a]`` (the shell's negation) is ``[^a]`` there."""
    return pattern.replace("[!", "[^")


class History(Database):
    """Queries across groups, and removing groups."""

    def _group_filter(self, query: GroupQuery) -> tuple[str, dict[str, Any]]:
        """`` WHERE ...`` over groups ``g`` for ``query`` (empty when it selects every group) and its named
        parameters. Only fixed fragments are joined; every value is a parameter."""
        clauses: list[str] = []
        params: dict[str, Any] = {}
        if query.patterns:
            names = [f"glob{i}" for i in range(len(query.patterns))]
            clauses.append("(" + " OR ".join(f"g.name GLOB :{n}" for n in names) + ")")
            params.update(zip(names, map(_sqlite_glob, query.patterns), strict=True))
        if query.since is not None:
            clauses.append("g.created_at >= :since")
            params["since"] = query.since
        if query.until is not None:
            clauses.append("g.created_at < :until")
            params["until"] = query.until
        if query.statuses:
            marks, values = _named("gstatus", [s.value for s in query.statuses])
            clauses.append(
                f"EXISTS (SELECT 1 FROM jobs j WHERE j.group_name = g.name AND j.status IN ({marks}))"
            )
            params.update(values)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    def find_groups(self, query: GroupQuery, limit: int | None = None) -> tuple[list[GroupSummary], int]:
        """The groups ``query`` selects, newest first, at most ``limit`` (None: all), with their counts
        by status; and how many it selects in all."""
        where, params = self._group_filter(query)
        rows = self._db.execute(
            "SELECT name, experiment, backend, created_at, ended_at FROM groups g"
            + where
            + " ORDER BY created_at DESC, name"
            + (" LIMIT :limit" if limit is not None else ""),
            {**params, "limit": limit},
        ).fetchall()
        if limit is None or len(rows) < limit:
            matched = len(rows)
        else:
            matched = self._db.execute("SELECT count(*) FROM groups g" + where, params).fetchone()[0]
        counts: dict[str, dict[str, int]] = {}
        names = [r["name"] for r in rows]
        if len(names) <= _IN_LIMIT:
            select = (
                f"SELECT group_name, status, count(*) FROM jobs WHERE group_name IN ({_marks(len(names))})"
            )
            counted = self._db.execute(select + " GROUP BY 1, 2", names) if names else []
        else:
            counted = self._db.execute("SELECT group_name, status, count(*) FROM jobs GROUP BY 1, 2")
        for name, status, n in counted:
            counts.setdefault(name, {})[status] = n
        summaries = [
            GroupSummary(
                r["name"],
                r["experiment"],
                r["backend"],
                r["created_at"],
                r["ended_at"],
                {s.value: counts.get(r["name"], {}).get(s.value, 0) for s in ALL_STATUSES},
            )
            for r in rows
        ]
        return summaries, matched

    def lookup_group(self, name: str) -> GroupRecord | None:
        """The group ``name``, or None: a cheap look-up for a caller that expects it may not exist (``group``
        names the closest groups when it does not, which compares the name with every group's)."""
        row = self._db.execute("SELECT * FROM groups WHERE name = ?", (name,)).fetchone()
        return None if row is None else group_record(row)

    def matches_any(self, pattern: str) -> bool:
        """Whether some group's name matches the glob ``pattern``."""
        found = self._db.execute("SELECT 1 FROM groups WHERE name GLOB ? LIMIT 1", (_sqlite_glob(pattern),))
        return found.fetchone() is not None

    def group_names(self) -> list[str]:
        """Every group's name, newest first (for the closest names of a name that matched nothing)."""
        return [r[0] for r in self._db.execute("SELECT name FROM groups ORDER BY created_at DESC")]

    def gpu_seconds_by_group(self, names: Sequence[str], now: float | None = None) -> dict[str, float]:
        """GPU-seconds of each of the groups ``names``: over all their jobs' attempts, the GPUs a job holds
        times the seconds the attempt ran (queueing excluded; a running attempt up to ``now``)."""
        out: dict[str, float] = {}
        total = (
            f"SELECT g.name, (SELECT total({_RAN} * {self._attempt_gpus()}) FROM jobs j "
            "JOIN attempts a ON a.job_id = j.id WHERE j.group_name = g.name AND a.started_at IS NOT NULL) "
            "FROM groups g WHERE g.name = :name"
        )
        stamp = time.time() if now is None else now
        for name in names:
            row = self._db.execute(total, {"name": name, "now": stamp}).fetchone()
            if row is not None:
                out[row[0]] = float(row[1] or 0.0)
        return out

    def gpu_seconds(self, group: str, now: float | None = None) -> dict[str, float]:
        """GPU-seconds of each run of ``group`` (as :meth:`gpu_seconds_by_group` counts them)."""
        rows = self._db.execute(
            f"SELECT j.run, (SELECT total({_RAN} * {self._attempt_gpus()}) FROM attempts a WHERE a.job_id = j.id "
            "AND a.started_at IS NOT NULL) FROM groups g JOIN jobs j ON j.group_name = g.name "
            "WHERE g.name = :group ORDER BY j.position",
            {"group": group, "now": time.time() if now is None else now},
        )
        return {run: float(seconds or 0.0) for run, seconds in rows}

    def _attempt_gpus(self) -> str:
        """The GPUs attempt ``a`` of job ``j`` in group ``g`` held: kept when it was claimed, else (an
        attempt claimed before they were kept, or a store read before ``0006_attempt_gpus``) what its job
        holds (``coalesce`` reads the spec and the group's config only then)."""
        return f"coalesce(a.gpus, {GPUS_HELD})" if "0006_attempt_gpus" in self._applied() else GPUS_HELD

    def gpu_hours(self, group: str) -> dict[str, float]:
        """GPU-hours of each run of ``group``: the GPUs it holds times the time its attempts ran."""
        return {run: seconds / 3600 for run, seconds in self.gpu_seconds(group).items()}

    def run_records(
        self,
        query: GroupQuery,
        statuses: Iterable[JobStatus] = (),
        limit: int | None = None,
        now: float | None = None,
    ) -> tuple[list[RunRecord], int]:
        """Every run of the groups ``query`` selects (its ``statuses`` ignored: ``statuses`` filter the
        runs), newest group first and in run order within a group, at most ``limit`` (None: all); and how
        many runs match in all."""
        where, params = self._group_filter(GroupQuery(query.patterns, (), query.since, query.until))
        marks, wanted = _named("status", [s.value for s in statuses])
        if wanted:
            where += (" AND" if where else " WHERE") + f" j.status IN ({marks})"
        final = "a.final_metrics" if "0005_history" in self._applied() else "NULL"
        trials = "(SELECT t.params FROM trials t WHERE t.job_id = j.id)" if self._has_trials else "NULL"
        sql = _RUNS.format(where=where, final=final, params=trials, gpus=self._attempt_gpus())
        params |= wanted | {"now": time.time() if now is None else now, "limit": limit}
        cur = self._db.cursor()
        cur.row_factory = None
        order = _RUNS_ORDER + (" LIMIT :limit" if limit is not None else "")
        rows = [RunRecord._make(r) for r in cur.execute(sql + order, params)]
        if limit is None or len(rows) < limit:
            return rows, len(rows)
        count = "SELECT count(*) FROM groups g JOIN jobs j ON j.group_name = g.name" + where
        return rows, cur.execute(count, params).fetchone()[0]

    def keep_finals(self, group: str, finals: Sequence[tuple[str, int, float, Mapping[str, float]]]) -> None:
        """Keep what ended attempts leave, read from their files once those are complete, so that readers
        need not read them again: for each ``(run, attempt, progress, metrics)``, its last progress
        fraction (negative: it printed none) and its final value of each tracked metric. One transaction
        (one commit) for every attempt a runner's cycle saw end."""
        with self.atomic() as db:
            for run, attempt, progress, metrics in finals:
                db.execute(
                    "UPDATE attempts SET final_progress = ?, final_metrics = ? WHERE number = ? "
                    f"AND status IN ({_marks(len(TERMINAL))}) "
                    "AND job_id = (SELECT id FROM jobs WHERE group_name = ? AND run = ?)",
                    (progress, json.dumps(dict(metrics)), attempt, *(s.value for s in TERMINAL), group, run),
                )

    @contextmanager
    def _bulk_delete(self) -> Iterator[None]:
        """For a transaction that deletes every row that refers to what it deletes itself: foreign keys
        not checked row by row (a third of the time of deleting 100,000 jobs), and a bigger page cache;
        both as they were afterwards. (``foreign_keys`` cannot change inside a transaction: set here,
        before it begins.)"""
        cache = self._db.execute("PRAGMA cache_size").fetchone()[0]
        self._db.execute("PRAGMA foreign_keys = OFF")
        self._db.execute(f"PRAGMA cache_size = -{BULK_CACHE_KIB}")
        try:
            yield
        finally:
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.execute(f"PRAGMA cache_size = {int(cache)}")

    def remove_groups(self, names: Sequence[str]) -> list[str]:
        """Delete the groups ``names`` (every row of theirs: jobs, attempts, dependencies, trials, events)
        in ONE transaction, or none of them: a group that has not ended (one a ``job retry`` reopened
        since it was planned) is a ``UsageError`` and nothing is deleted. Returns the names deleted (a
        group already gone, removed by someone else meanwhile, is left out)."""
        deleted: list[str] = []
        with self._bulk_delete(), self.atomic() as db:
            for chunk in _chunks(names, _IN_LIMIT):
                marks = _marks(len(chunk))
                deleted += [
                    r[0] for r in db.execute(f"SELECT name FROM groups WHERE name IN ({marks})", chunk)
                ]
                open_groups = [
                    r[0]
                    for r in db.execute(
                        f"SELECT name FROM groups WHERE name IN ({marks}) AND ended_at IS NULL", chunk
                    )
                ]
                if open_groups:
                    raise UsageError(
                        f"{', '.join(open_groups)} {'has' if len(open_groups) == 1 else 'have'} not ended "
                        "(reopened meanwhile?); nothing was removed"
                    )
                jobs = f"SELECT id FROM jobs WHERE group_name IN ({marks})"
                db.execute(
                    f"DELETE FROM deps WHERE job_id IN ({jobs}) OR depends_on IN ({jobs})", chunk + chunk
                )
                db.execute(f"DELETE FROM attempts WHERE job_id IN ({jobs})", chunk)
                if self._has_trials:
                    db.execute(f"DELETE FROM trials WHERE group_name IN ({marks})", chunk)
                db.execute(f"DELETE FROM jobs WHERE group_name IN ({marks})", chunk)
                db.execute(f"DELETE FROM events WHERE group_name IN ({marks})", chunk)
                db.execute(f"DELETE FROM groups WHERE name IN ({marks})", chunk)
        return deleted


#: The page cache a bulk delete may use (KiB): a million-job store's indexes, touched all over.
BULK_CACHE_KIB = 65536


def _chunks(items: Sequence[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _named(prefix: str, values: Sequence[Any]) -> tuple[str, dict[str, Any]]:
    """``:prefix0, :prefix1, ...`` for ``values``, and the parameters that go with them."""
    names = [f"{prefix}{i}" for i in range(len(values))]
    return ", ".join(f":{n}" for n in names), dict(zip(names, values, strict=True))
