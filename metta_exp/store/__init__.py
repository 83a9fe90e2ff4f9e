"""The job store: the single source of truth, and the only package that speaks SQL.

One SQLite file (WAL, busy timeout) shared by every process: the runner that drives a group, the
foreground view, ``metta-exp job ...`` in any terminal. Every write is one ``atomic()`` transaction that
also appends an event row; readers never write. Schema changes are named, ordered migrations recorded in
``schema_migrations``.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from metta_exp.errors import NotFoundError, StoreError, UsageError, closest
from metta_exp.paths import DB_NAME, default_state_dir
from metta_exp.records import AttemptRecord, EventRecord, GroupRecord, GroupSummary, JobRecord
from metta_exp.status import ACTIVE, ALL_STATUSES, TERMINAL, JobStatus
from metta_exp.store.connect import (
    check_file,
    cleanup_created,
    connect_readonly,
    connect_writable,
    write_error,
)
from metta_exp.store.rows import group_record, ids, job_record, job_select
from metta_exp.store.schema import MIGRATIONS, READABLE_WITHOUT
from metta_exp.trials import TrialRecord, TrialState

_TERMINAL_MARKS = ", ".join("?" * len(TERMINAL))  # placeholders for the terminal statuses


class GroupExistsError(UsageError):
    pass


def _make_dirs(directory: Path) -> list[Path]:
    """Create ``directory`` and missing parents; return the ones made (outermost first)."""
    missing = [d for d in (directory, *directory.parents) if not d.exists()][::-1]
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"cannot create the state directory {directory}: {exc.strerror or exc}; run from a directory "
            "you can write, or set METTA_EXP_STATE_DIR to one"
        ) from None
    return missing


class JobStore:
    """A connection to the store file. Cheap to open; one per process and thread."""

    def __init__(self, path: Path | str, *, create: bool = True, readonly: bool = False) -> None:
        """Open the store at ``path``. ``create``: make it (and its directory) when missing.
        ``readonly``: a reader's connection, which never writes; a missing or empty file then reads as a
        store with no groups yet."""
        self.path = Path(path)
        size = check_file(self.path)
        if size is None and not create and not readonly:
            raise StoreError(f"no job store at {self.path}")
        if readonly:
            self._db = (
                connect_readonly(self.path) if size else sqlite3.connect(":memory:", isolation_level=None)
            )
        else:
            made = _make_dirs(self.path.parent) if create else []
            try:
                self._db = connect_writable(self.path, create)
                self._setup(migrate=True)
            except BaseException:
                if size is None:  # made here (a full disk): leave no empty store behind
                    with contextlib.suppress(Exception):
                        self._db.close()
                    cleanup_created(self.path, made)
                raise
            return
        self._setup(migrate=not size)

    def _setup(self, migrate: bool) -> None:
        self._db.row_factory = sqlite3.Row
        try:
            self._db.execute("PRAGMA foreign_keys = ON")
            if migrate:
                self._migrate()
            else:
                self._check_schema()
            recorded = "0003_final_progress" in self._applied()
            self._job_select = job_select(final_progress=recorded)
            self._job_select_no_deps = job_select(final_progress=recorded, deps=False)
            self._has_trials = "0004_trials" in self._applied()
        except sqlite3.DatabaseError as exc:
            raise write_error(self.path, exc) from None

    @classmethod
    def open(cls, state_dir: Path | None = None, *, create: bool = True, readonly: bool = False) -> JobStore:
        return cls((state_dir or default_state_dir()) / DB_NAME, create=create, readonly=readonly)

    @property
    def state_dir(self) -> Path:
        return self.path.parent

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> JobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def atomic(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE: the write lock is taken up front, no upgrade deadlock).
        A write SQLite refuses (read-only file, full disk) is a ``StoreError`` naming the file."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise write_error(self.path, exc) from None
        try:
            yield self._db
        except sqlite3.Error as exc:
            self._rollback()
            raise write_error(self.path, exc) from None
        except BaseException:
            self._rollback()
            raise
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise write_error(self.path, exc) from None

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back already (a full disk)
            self._db.execute("ROLLBACK")

    def _check_schema(self) -> None:
        """A reader's check: the store's migrations must be ones this metta-exp knows, all applied."""
        known = {name for name, _ in MIGRATIONS}
        done = self._applied()
        if done == known or (done and done <= known and known - done <= READABLE_WITHOUT):
            return
        if done - known:
            raise StoreError(
                f"the job store {self.path} was written by a newer metta-exp "
                f"(migrations {', '.join(sorted(done - known))}); upgrade metta-exp"
            )
        if not done and not self._db.execute("SELECT 1 FROM sqlite_master").fetchone():
            self._db.close()  # an empty database: no groups yet, as if there were no file
            self._db = sqlite3.connect(":memory:", isolation_level=None)
            self._setup(migrate=True)
            return
        raise StoreError(
            f"the job store {self.path} needs an upgrade this reader cannot write "
            f"(missing {', '.join(sorted(known - done))}); run 'metta-exp job resume GROUP' where it is writable"
        )

    def _migrate(self) -> None:
        """Apply missing migrations. A store that is up to date is only read (readers stay readers)."""
        db = self._db
        known = [name for name, _ in MIGRATIONS]
        if self._applied() == set(known):
            return
        with self.atomic():
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"
            )
            done = self._applied()
            if done - set(known):
                raise StoreError(
                    f"the job store {self.path} was written by a newer metta-exp "
                    f"(migrations {', '.join(sorted(done - set(known)))}); upgrade metta-exp"
                )
            for name, script in MIGRATIONS:
                if name in done:
                    continue
                for statement in script.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute("INSERT INTO schema_migrations VALUES (?, ?)", (name, time.time()))

    def _applied(self) -> set[str]:
        try:
            return {row[0] for row in self._db.execute("SELECT name FROM schema_migrations")}
        except sqlite3.OperationalError:
            return set()

    # --- groups -------------------------------------------------------------------------------

    def create_group(
        self,
        name: str,
        experiment: str,
        backend: str,
        config: dict[str, Any],
        specs: Sequence[dict[str, Any]],
        trials: Sequence[tuple[int, dict[str, Any]]] = (),
    ) -> None:
        """Insert a group and all its jobs (pending) and dependencies in one transaction.

        ``specs`` are ``JobSpec.to_dict()`` in run order. A search group's first trials (number, values)
        come with it, one per spec, in the same order. Raises ``GroupExistsError`` if the name is taken.
        """
        now = time.time()
        with self.atomic() as db:
            if db.execute("SELECT 1 FROM groups WHERE name = ?", (name,)).fetchone():
                raise GroupExistsError(
                    f"group '{name}' already exists: choose another group=NAME, or use "
                    f"'metta-exp job retry {name}' to rerun its failed runs"
                )
            db.execute(
                "INSERT INTO groups (name, experiment, backend, config, created_at) VALUES (?, ?, ?, ?, ?)",
                (name, experiment, backend, json.dumps(config, sort_keys=True), now),
            )
            ids = {spec["run"]: self._insert_job(db, name, i, spec, now) for i, spec in enumerate(specs)}
            for spec in specs:
                for dep in spec.get("depends_on", ()):
                    db.execute("INSERT INTO deps VALUES (?, ?)", (ids[spec["run"]], ids[dep]))
            for (number, params), spec in zip(trials, specs, strict=False):
                db.execute(
                    "INSERT INTO trials (group_name, number, job_id, params, state) VALUES (?, ?, ?, ?, ?)",
                    (name, number, ids[spec["run"]], json.dumps(params), TrialState.RUNNING.value),
                )
            self._event(db, name, None, "created", detail=f"{len(specs)} jobs")

    @staticmethod
    def _insert_job(
        db: sqlite3.Connection, group: str, position: int, spec: dict[str, Any], now: float
    ) -> int:
        """A pending job row for ``spec`` (``JobSpec.to_dict()``); its id."""
        cur = db.execute(
            "INSERT INTO jobs (group_name, run, position, status, spec, queued_at, run_dir) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (group, spec["run"], position, JobStatus.PENDING.value, json.dumps(spec), now, spec["run_dir"]),
        )
        return int(cur.lastrowid or 0)

    def group(self, name: str) -> GroupRecord:
        """The group, or ``NotFoundError`` naming the closest group names."""
        row = self._db.execute("SELECT * FROM groups WHERE name = ?", (name,)).fetchone()
        if row is None:
            names = [r[0] for r in self._db.execute("SELECT name FROM groups ORDER BY created_at DESC")]
            near = closest(name, names)
            if near:
                hint = f"; closest: {', '.join(near)}"
            else:
                hint = f"; newest: {', '.join(names[:5])}" if names else "; no groups yet"
            raise NotFoundError(f"no group '{name}'{hint} (see 'metta-exp job list')")
        return group_record(row)

    def list_groups(self) -> list[GroupSummary]:
        """Every group, newest first, with counts by status (one query)."""
        counts: dict[str, dict[str, int]] = {}
        for row in self._db.execute("SELECT group_name, status, count(*) FROM jobs GROUP BY 1, 2"):
            counts.setdefault(row[0], {})[row[1]] = row[2]
        out = []
        for row in self._db.execute(
            "SELECT name, experiment, backend, created_at, ended_at FROM groups "
            "ORDER BY created_at DESC, name"
        ):
            by_status = {s.value: counts.get(row["name"], {}).get(s.value, 0) for s in ALL_STATUSES}
            out.append(
                GroupSummary(
                    row["name"],
                    row["experiment"],
                    row["backend"],
                    row["created_at"],
                    row["ended_at"],
                    by_status,
                )
            )
        return out

    def active_groups(self) -> list[GroupRecord]:
        """Groups that have not ended."""
        rows = self._db.execute("SELECT * FROM groups WHERE ended_at IS NULL ORDER BY created_at")
        return [group_record(r) for r in rows]

    # --- leases: one driver per group -----------------------------------------------------------

    def acquire_lease(
        self, group: str, owner: str, ttl: float, pid: int, steal_from: str | None = None
    ) -> bool:
        """Become the group's driver if nobody holds a live lease (or ``steal_from`` is the dead holder)."""
        now = time.time()
        with self.atomic() as db:
            cur = db.execute(
                "UPDATE groups SET lease_owner = ?, lease_expires = ?, runner_pid = ? WHERE name = ? "
                "AND ended_at IS NULL AND (lease_owner IS NULL OR lease_owner = ? OR lease_expires < ? "
                "OR lease_owner IS ?)",
                (owner, now + ttl, pid, group, owner, now, steal_from),
            )
            if cur.rowcount:
                self._event(db, group, None, "runner", detail=f"driven by {owner}")
            return cur.rowcount == 1

    def renew_lease(self, group: str, owner: str, ttl: float) -> bool:
        with self.atomic() as db:
            cur = db.execute(
                "UPDATE groups SET lease_expires = ? WHERE name = ? AND lease_owner = ?",
                (time.time() + ttl, group, owner),
            )
            return cur.rowcount == 1

    def release_lease(self, group: str, owner: str) -> None:
        with self.atomic() as db:
            db.execute(
                "UPDATE groups SET lease_owner = NULL, lease_expires = NULL, runner_pid = NULL "
                "WHERE name = ? AND lease_owner = ?",
                (group, owner),
            )

    # --- jobs: queries ----------------------------------------------------------------------------

    def jobs(self, group: str) -> list[JobRecord]:
        cur = self._db.cursor()
        cur.row_factory = None  # plain tuples, read by position
        has_deps = cur.execute(
            "SELECT 1 FROM deps x JOIN jobs j ON j.id = x.job_id WHERE j.group_name = ? LIMIT 1", (group,)
        ).fetchone()
        select = self._job_select if has_deps else self._job_select_no_deps
        rows = cur.execute(select + " WHERE j.group_name = ? ORDER BY j.position", (group,))
        return [job_record(r) for r in rows]

    def job(self, group: str, run: str) -> JobRecord:
        cur = self._db.cursor()
        cur.row_factory = None
        row = cur.execute(self._job_select + " WHERE j.group_name = ? AND j.run = ?", (group, run)).fetchone()
        if row is None:
            self.group(group)
            runs = [r[0] for r in self._db.execute("SELECT run FROM jobs WHERE group_name = ?", (group,))]
            near = closest(run, runs)
            hint = f"; closest: {', '.join(near)}" if near else f"; runs: {', '.join(runs[:10])}"
            raise NotFoundError(f"group '{group}' has no run '{run}'{hint}")
        return job_record(row)

    def attempts(self, group: str, run: str) -> list[AttemptRecord]:
        rows = self._db.execute(
            "SELECT a.*, j.run FROM attempts a JOIN jobs j ON j.id = a.job_id "
            "WHERE j.group_name = ? AND j.run = ? ORDER BY a.number",
            (group, run),
        )
        return [
            AttemptRecord(
                group,
                r["run"],
                r["number"],
                JobStatus(r["status"]),
                r["handle"],
                ids(r["gpu_ids"]),
                r["started_at"],
                r["ended_at"],
                r["exit_code"],
                r["reason"],
                r["log_path"],
            )
            for r in rows
        ]

    def events(self, group: str, after_id: int = 0, kind: str | None = None) -> list[EventRecord]:
        """The group's events after ``after_id`` in order; only those of ``kind`` when given."""
        rows = self._db.execute(
            "SELECT * FROM events WHERE group_name = ? AND id > ? AND (? IS NULL OR kind = ?) ORDER BY id",
            (group, after_id, kind, kind),
        )
        return [
            EventRecord(
                r["id"],
                r["group_name"],
                r["run"],
                r["at"],
                r["kind"],
                r["old_status"],
                r["new_status"],
                r["detail"],
            )
            for r in rows
        ]

    def busy_gpu_ids(self) -> set[int]:
        """GPU ids held by launching or running jobs of any group on this store."""
        rows = self._db.execute(
            "SELECT a.gpu_ids FROM jobs j JOIN attempts a ON a.job_id = j.id AND a.number = j.attempts "
            "WHERE j.status IN (?, ?) AND a.gpu_ids != ''",
            (JobStatus.LAUNCHING.value, JobStatus.RUNNING.value),
        )
        return {i for (text,) in rows for i in ids(text)}

    # --- jobs: transitions (each one transaction with an event) -----------------------------------

    def claim(self, group: str, run: str, owner: str, gpu_ids: Sequence[int], log_path: str) -> int | None:
        """pending -> launching for the lease holder; returns the new attempt number, or None.

        Checking the lease, the group's cancel flag and the job's status in the same transaction as the
        change is what keeps two drivers (or a driver and ``job kill``) from launching a job twice.
        """
        now = time.time()
        with self.atomic() as db:
            ok = db.execute(
                "SELECT 1 FROM groups WHERE name = ? AND lease_owner = ? AND lease_expires >= ? "
                "AND cancel_requested = 0",
                (group, owner, now),
            ).fetchone()
            row = db.execute(
                "SELECT id, attempts FROM jobs WHERE group_name = ? AND run = ? AND status = ?",
                (group, run, JobStatus.PENDING.value),
            ).fetchone()
            if not ok or row is None:
                return None
            number = row["attempts"] + 1
            db.execute(
                # wandb_url too: each attempt is its own W&B run, recorded once it reports it
                "UPDATE jobs SET status = ?, attempts = ?, exit_code = NULL, reason = NULL, wandb_url = NULL "
                "WHERE id = ?",
                (JobStatus.LAUNCHING.value, number, row["id"]),
            )
            db.execute(
                "INSERT INTO attempts (job_id, number, status, gpu_ids, claimed_at, log_path) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (row["id"], number, JobStatus.LAUNCHING.value, ",".join(map(str, gpu_ids)), now, log_path),
            )
            self._event(db, group, run, "status", JobStatus.PENDING, JobStatus.LAUNCHING, f"attempt {number}")
            return number

    def set_handle(self, group: str, run: str, attempt: int, handle: str) -> None:
        """Record a backend handle as soon as it is known (no status change)."""
        with self.atomic() as db:
            db.execute(
                "UPDATE attempts SET handle = ? WHERE number = ? AND job_id = "
                "(SELECT id FROM jobs WHERE group_name = ? AND run = ?)",
                (handle, attempt, group, run),
            )

    def mark_running(self, group: str, run: str, attempt: int, handle: str | None) -> bool:
        """launching -> running. False when the job is no longer this attempt or no longer launching
        (``job kill`` got there first): the caller must then cancel what it started."""
        now = time.time()
        with self.atomic() as db:
            row = self._current(db, group, run, attempt)
            if row is None or row["status"] != JobStatus.LAUNCHING.value:
                return False
            db.execute("UPDATE jobs SET status = ? WHERE id = ?", (JobStatus.RUNNING.value, row["id"]))
            db.execute(
                "UPDATE attempts SET status = ?, started_at = ?, handle = coalesce(?, handle) "
                "WHERE job_id = ? AND number = ?",
                (JobStatus.RUNNING.value, now, handle, row["id"], attempt),
            )
            self._event(db, group, run, "status", JobStatus.LAUNCHING, JobStatus.RUNNING, handle)
            return True

    def finish_attempt(
        self,
        group: str,
        run: str,
        attempt: int,
        status: JobStatus,
        exit_code: int | None = None,
        reason: str | None = None,
        requeue: bool = False,
    ) -> bool:
        """End the current attempt with a terminal ``status``.

        With ``requeue`` the job goes back to pending for another attempt (a retry, or an attempt that
        never started); the attempt keeps its ending in the history either way. False if the job has
        moved on (another attempt, or already terminal).
        """
        assert status.is_terminal()
        now = time.time()
        with self.atomic() as db:
            row = self._current(db, group, run, attempt)
            if (
                row is None
                or JobStatus(row["status"]).is_terminal()
                or row["status"] == JobStatus.PENDING.value
            ):
                return False
            new = JobStatus.PENDING if requeue else status
            db.execute(
                "UPDATE jobs SET status = ?, exit_code = ?, reason = ?, queued_at = "
                "CASE WHEN ? THEN ? ELSE queued_at END WHERE id = ?",
                (new.value, exit_code, reason, requeue, now, row["id"]),
            )
            db.execute(
                "UPDATE attempts SET status = ?, ended_at = ?, exit_code = ?, reason = ? "
                "WHERE job_id = ? AND number = ?",
                (status.value, now, exit_code, reason, row["id"], attempt),
            )
            detail = f"{reason}; requeued" if requeue else reason
            self._event(db, group, run, "status", JobStatus(row["status"]), new, detail)
            return True

    def skip(self, group: str, run: str, reason: str) -> bool:
        """pending -> skipped (a dependency did not succeed)."""
        with self.atomic() as db:
            cur = db.execute(
                "UPDATE jobs SET status = ?, reason = ? WHERE group_name = ? AND run = ? AND status = ?",
                (JobStatus.SKIPPED.value, reason, group, run, JobStatus.PENDING.value),
            )
            if cur.rowcount:
                self._event(db, group, run, "status", JobStatus.PENDING, JobStatus.SKIPPED, reason)
            return cur.rowcount == 1

    def set_final_progress(self, group: str, run: str, attempt: int, fraction: float) -> None:
        """Keep an ended attempt's last progress fraction (negative: it printed none), read from its log
        once the log is complete, so that readers need not read the log again."""
        with self.atomic() as db:
            db.execute(
                "UPDATE attempts SET final_progress = ? WHERE number = ? "
                f"AND status IN ({_TERMINAL_MARKS}) "
                "AND job_id = (SELECT id FROM jobs WHERE group_name = ? AND run = ?)",
                (fraction, attempt, *(s.value for s in TERMINAL), group, run),
            )

    # --- trials of a search ---------------------------------------------------------------------

    def add_trial(
        self, group: str, owner: str, number: int, params: dict[str, Any], spec: dict[str, Any]
    ) -> bool:
        """Record trial ``number`` of a search and its job (pending, after the group's other jobs) in ONE
        transaction, for the lease holder ``owner`` only. False (nothing written) if ``owner`` no longer
        holds the group, the group is being killed, or the trial exists (a trial is never asked twice)."""
        now = time.time()
        with self.atomic() as db:
            row = db.execute(
                "SELECT lease_owner, cancel_requested, ended_at FROM groups WHERE name = ?", (group,)
            ).fetchone()
            if row is None or row["lease_owner"] != owner or row["cancel_requested"] or row["ended_at"]:
                return False
            if db.execute(
                "SELECT 1 FROM trials WHERE group_name = ? AND number = ?", (group, number)
            ).fetchone():
                return False
            position = db.execute(
                "SELECT coalesce(max(position) + 1, 0) FROM jobs WHERE group_name = ?", (group,)
            ).fetchone()[0]
            job_id = self._insert_job(db, group, position, spec, now)
            db.execute(
                "INSERT INTO trials (group_name, number, job_id, params, state) VALUES (?, ?, ?, ?, ?)",
                (group, number, job_id, json.dumps(params), TrialState.RUNNING.value),
            )
            self._event(db, group, spec["run"], "trial", None, JobStatus.PENDING, f"trial {number} asked")
            return True

    def trials(self, group: str) -> list[TrialRecord]:
        """A search group's trials in number order (none for other groups, nor in a store written before
        searches existed)."""
        if not self._has_trials:
            return []
        rows = self._db.execute(
            "SELECT t.number, j.run, t.params, t.state, t.value, t.steps, t.reason FROM trials t "
            "JOIN jobs j ON j.id = t.job_id WHERE t.group_name = ? ORDER BY t.number",
            (group,),
        )
        return [
            TrialRecord(
                group,
                r[0],
                r[1],
                json.loads(r[2]),
                TrialState(r[3]),
                r[4],
                tuple((int(a), float(b)) for a, b in json.loads(r[5] or "[]")),
                r[6],
            )
            for r in rows
        ]

    def set_trial_steps(self, group: str, number: int, steps: Sequence[tuple[int, float]]) -> None:
        """Keep a running trial's intermediate objective values (what the pruner has seen)."""
        with self.atomic() as db:
            db.execute(
                "UPDATE trials SET steps = ? WHERE group_name = ? AND number = ? AND state = ?",
                (json.dumps([list(x) for x in steps]), group, number, TrialState.RUNNING.value),
            )

    def end_trial(
        self,
        group: str,
        number: int,
        state: TrialState,
        value: float | None,
        reason: str | None = None,
        steps: Sequence[tuple[int, float]] | None = None,
    ) -> bool:
        """Tell a running trial's outcome (complete with its value, or failed). False if it was already
        told: a trial is never told twice."""
        assert state != TrialState.RUNNING
        with self.atomic() as db:
            return self._end_trial(db, group, number, state, value, reason, steps)

    def prune_trial(
        self, group: str, number: int, run: str, attempt: int, reason: str, steps: Sequence[tuple[int, float]]
    ) -> bool:
        """End trial ``number`` as pruned and its job's current attempt as PRUNED, in ONE transaction (the
        caller then ends the attempt on the backend). False if either has moved on."""
        now = time.time()
        with self.atomic() as db:
            row = self._current(db, group, run, attempt)
            if row is None or row["status"] not in (JobStatus.RUNNING.value, JobStatus.LAUNCHING.value):
                return False
            if not self._end_trial(db, group, number, TrialState.PRUNED, None, reason, steps):
                return False
            db.execute(
                "UPDATE jobs SET status = ?, exit_code = NULL, reason = ? WHERE id = ?",
                (JobStatus.PRUNED.value, reason, row["id"]),
            )
            db.execute(
                "UPDATE attempts SET status = ?, ended_at = ?, exit_code = NULL, reason = ? "
                "WHERE job_id = ? AND number = ?",
                (JobStatus.PRUNED.value, now, reason, row["id"], attempt),
            )
            self._event(db, group, run, "status", JobStatus(row["status"]), JobStatus.PRUNED, reason)
            return True

    @staticmethod
    def _end_trial(
        db: sqlite3.Connection,
        group: str,
        number: int,
        state: TrialState,
        value: float | None,
        reason: str | None,
        steps: Sequence[tuple[int, float]] | None,
    ) -> bool:
        sets = "state = ?, value = ?, reason = ?" + (", steps = ?" if steps is not None else "")
        args: list[Any] = [state.value, value, reason]
        if steps is not None:
            args.append(json.dumps([list(x) for x in steps]))
        cur = db.execute(
            f"UPDATE trials SET {sets} WHERE group_name = ? AND number = ? AND state = ?",
            (*args, group, number, TrialState.RUNNING.value),
        )
        return cur.rowcount == 1

    def set_wandb_url(self, group: str, run: str, url: str) -> None:
        with self.atomic() as db:
            db.execute("UPDATE jobs SET wandb_url = ? WHERE group_name = ? AND run = ?", (url, group, run))

    def request_cancel(self, group: str, reason: str = "killed by user") -> list[JobRecord]:
        """Stop a group: no more launches, pending jobs cancelled. Returns the active jobs, which the
        caller ends on the backend and then records with ``finish_attempt(..., CANCELLED)``."""
        with self.atomic() as db:
            self._cancel_pending(db, group, reason)
        return [j for j in self.jobs(group) if j.status in ACTIVE]

    def kill(self, group: str, reason: str = "killed by user") -> list[JobRecord]:
        """Stop a group in ONE transaction: no more launches, pending jobs cancelled, and the current
        attempt of every active job recorded as cancelled. Returns the active jobs as they were (the
        caller ends their processes on the backend). A runner polling meanwhile sees terminal jobs, never
        one that died of SIGTERM; one whose job was still launching finds it cancelled."""
        now = time.time()
        with self.atomic() as db:
            cur = db.cursor()
            cur.row_factory = None  # plain tuples, read by position
            rows = cur.execute(
                self._job_select + " WHERE j.group_name = ? AND j.status IN (?, ?) ORDER BY j.position",
                (group, *(s.value for s in ACTIVE)),
            )
            active = [job_record(r) for r in rows]
            self._cancel_pending(db, group, reason)
            for job in active:
                db.execute(
                    "UPDATE jobs SET status = ?, exit_code = NULL, reason = ? WHERE group_name = ? AND run = ?",
                    (JobStatus.CANCELLED.value, reason, group, job.run),
                )
                db.execute(
                    "UPDATE attempts SET status = ?, ended_at = ?, exit_code = NULL, reason = ? WHERE number = ? "
                    "AND job_id = (SELECT id FROM jobs WHERE group_name = ? AND run = ?)",
                    (JobStatus.CANCELLED.value, now, reason, job.attempts, group, job.run),
                )
                self._event(db, group, job.run, "status", job.status, JobStatus.CANCELLED, reason)
        return active

    def _cancel_pending(self, db: sqlite3.Connection, group: str, reason: str) -> None:
        """Inside a transaction: block launches, cancel the pending jobs, record the kill."""
        db.execute("UPDATE groups SET cancel_requested = 1 WHERE name = ?", (group,))
        pending = [
            r[0]
            for r in db.execute(
                "SELECT run FROM jobs WHERE group_name = ? AND status = ?",
                (group, JobStatus.PENDING.value),
            )
        ]
        db.execute(
            "UPDATE jobs SET status = ?, reason = ? WHERE group_name = ? AND status = ?",
            (JobStatus.CANCELLED.value, f"{reason} before launch", group, JobStatus.PENDING.value),
        )
        for run in pending:
            self._event(db, group, run, "status", JobStatus.PENDING, JobStatus.CANCELLED, reason)
        self._event(db, group, None, "killed", detail=reason)

    def requeue_for_retry(self, group: str) -> list[str]:
        """Failed, cancelled and skipped runs go back to pending (their attempt history stays); the
        group is open again. Returns the requeued runs."""
        now = time.time()
        again = (JobStatus.FAILED.value, JobStatus.CANCELLED.value, JobStatus.SKIPPED.value)
        with self.atomic() as db:
            runs = [
                r[0]
                for r in db.execute(
                    "SELECT run FROM jobs WHERE group_name = ? AND status IN (?, ?, ?) ORDER BY position",
                    (group, *again),
                )
            ]
            if runs:
                db.execute(
                    "UPDATE jobs SET status = ?, reason = NULL, exit_code = NULL, queued_at = ? "
                    "WHERE group_name = ? AND status IN (?, ?, ?)",
                    (JobStatus.PENDING.value, now, group, *again),
                )
                db.execute("UPDATE groups SET ended_at = NULL, cancel_requested = 0 WHERE name = ?", (group,))
                self._event(db, group, None, "retry", detail=", ".join(runs))
            return runs

    def end_group(self, group: str, owner: str) -> bool:
        """Close a group whose jobs are all terminal and release the driver's lease."""
        with self.atomic() as db:
            open_jobs = db.execute(
                f"SELECT count(*) FROM jobs WHERE group_name = ? AND status NOT IN ({_TERMINAL_MARKS})",
                (group, *(s.value for s in TERMINAL)),
            ).fetchone()[0]
            if open_jobs:
                return False
            cur = db.execute(
                "UPDATE groups SET ended_at = ?, lease_owner = NULL, lease_expires = NULL, runner_pid = NULL "
                "WHERE name = ? AND lease_owner = ? AND ended_at IS NULL",
                (time.time(), group, owner),
            )
            if cur.rowcount:
                self._event(db, group, None, "ended")
            return cur.rowcount == 1

    def add_event(self, group: str, kind: str, detail: str | None = None, run: str | None = None) -> None:
        with self.atomic() as db:
            self._event(db, group, run, kind, detail=detail)

    # --- helpers ----------------------------------------------------------------------------------

    @staticmethod
    def _current(db: sqlite3.Connection, group: str, run: str, attempt: int) -> sqlite3.Row | None:
        return db.execute(
            "SELECT id, status FROM jobs WHERE group_name = ? AND run = ? AND attempts = ?",
            (group, run, attempt),
        ).fetchone()

    @staticmethod
    def _event(
        db: sqlite3.Connection,
        group: str,
        run: str | None,
        kind: str,
        old: JobStatus | None = None,
        new: JobStatus | None = None,
        detail: str | None = None,
    ) -> None:
        db.execute(
            "INSERT INTO events (group_name, run, at, kind, old_status, new_status, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (group, run, time.time(), kind, old.value if old else None, new.value if new else None, detail),
        )
