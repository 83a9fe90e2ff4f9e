"""A search's trials: asked with their job, told once, pruned with their job in one transaction."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping, Sequence
from typing import Any

from metta_exp.records import JobSpec
from metta_exp.status import JobStatus, moves_from
from metta_exp.store.groups import Groups
from metta_exp.trials import TrialRecord, TrialState


class Trials(Groups):
    """The ``trials`` table of a search group."""

    def add_trial(
        self, group: str, owner: str, number: int, params: Mapping[str, Any], spec: JobSpec
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
                (group, number, job_id, json.dumps(dict(params)), TrialState.RUNNING.value),
            )
            self._event(db, group, spec.run, "trial", None, JobStatus.PENDING, f"trial {number} asked")
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
            if row is None or JobStatus(row["status"]) not in moves_from("prune_trial", JobStatus.PRUNED):
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
