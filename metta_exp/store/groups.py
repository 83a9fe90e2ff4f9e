"""Groups: creating one with its jobs, listing them, the driver's lease, kill, retry and the end."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping, Sequence
from typing import Any

from metta_exp.errors import UsageError
from metta_exp.records import GroupConfig, GroupRecord, GroupSummary, JobRecord, JobSpec
from metta_exp.status import ACTIVE, ALL_STATUSES, TERMINAL, JobStatus, check_move, moves_from
from metta_exp.store.jobs import _TERMINAL_MARKS, Jobs, status_in
from metta_exp.store.rows import group_record, job_record
from metta_exp.trials import TrialState


class GroupExistsError(UsageError):
    pass


class Groups(Jobs):
    """Whole groups: each change to a group (and to all its jobs at once) is one transaction."""

    def create_group(
        self,
        name: str,
        experiment: str,
        backend: str,
        config: GroupConfig,
        specs: Sequence[JobSpec],
        trials: Sequence[tuple[int, Mapping[str, Any]]] = (),
    ) -> None:
        """Insert a group and all its jobs (pending) and dependencies in one transaction.

        ``specs`` are in run order. A search group's first trials (number, values) come with it, one per
        spec, in the same order. Raises ``GroupExistsError`` if the name is taken.
        """
        now = time.time()
        with self.atomic() as db:
            if db.execute("SELECT 1 FROM groups WHERE name = ?", (name,)).fetchone():
                raise GroupExistsError(f"group '{name}' already exists: choose another group=NAME")
            db.execute(
                "INSERT INTO groups (name, experiment, backend, config, created_at) VALUES (?, ?, ?, ?, ?)",
                (name, experiment, backend, json.dumps(config.to_dict(), sort_keys=True), now),
            )
            ids = {spec.run: self._insert_job(db, name, i, spec, now) for i, spec in enumerate(specs)}
            for spec in specs:
                for dep in spec.depends_on:
                    db.execute("INSERT INTO deps VALUES (?, ?)", (ids[spec.run], ids[dep]))
            for (number, params), spec in zip(trials, specs, strict=False):
                db.execute(
                    "INSERT INTO trials (group_name, number, job_id, params, state) VALUES (?, ?, ?, ?, ?)",
                    (name, number, ids[spec.run], json.dumps(dict(params)), TrialState.RUNNING.value),
                )
            self._event(db, name, None, "created", detail=f"{len(specs)} jobs")

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

    def request_cancel(self, group: str, reason: str = "killed by user") -> list[JobRecord]:
        """Stop a group: no more launches, pending jobs cancelled. Returns the active jobs, which the
        caller ends on the backend and then records with ``finish_attempt(..., CANCELLED)``."""
        with self.atomic() as db:
            self._cancel_pending(db, group, reason, "request_cancel")
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
            self._cancel_pending(db, group, reason, "kill")
            for job in active:
                check_move(job.status, JobStatus.CANCELLED, "kill")
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

    def _cancel_pending(self, db: sqlite3.Connection, group: str, reason: str, method: str) -> None:
        """Inside a transaction: block launches, cancel the pending jobs, record the kill."""
        check_move(JobStatus.PENDING, JobStatus.CANCELLED, method)
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
        again, values = status_in(moves_from("requeue_for_retry", JobStatus.PENDING))
        with self.atomic() as db:
            runs = [
                r[0]
                for r in db.execute(
                    f"SELECT run FROM jobs WHERE group_name = ? AND {again} ORDER BY position",
                    (group, *values),
                )
            ]
            if runs:
                db.execute(
                    "UPDATE jobs SET status = ?, reason = NULL, exit_code = NULL, queued_at = ? "
                    f"WHERE group_name = ? AND {again}",
                    (JobStatus.PENDING.value, now, group, *values),
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
