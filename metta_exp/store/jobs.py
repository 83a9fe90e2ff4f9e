"""Jobs and their attempts: the queries readers use, and each job transition as one transaction."""

from __future__ import annotations

import time
from collections.abc import Sequence

from metta_exp.errors import NotFoundError, closest
from metta_exp.records import AttemptRecord, EventRecord, JobRecord
from metta_exp.status import ACTIVE, TERMINAL, JobStatus, check_move, moved_by, moves_from
from metta_exp.store.db import Database
from metta_exp.store.history import GPUS_HELD
from metta_exp.store.rows import ids, job_record

_TERMINAL_MARKS = ", ".join("?" * len(TERMINAL))  # placeholders for the terminal statuses


def status_in(statuses: tuple[JobStatus, ...]) -> tuple[str, tuple[str, ...]]:
    """``status IN (?, ...)`` and its parameters: the statuses a move starts from (status.TRANSITIONS)."""
    return f"status IN ({', '.join('?' * len(statuses))})", tuple(s.value for s in statuses)


class Jobs(Database):
    """The jobs of a group: queries, and the transitions pending -> launching -> running -> terminal."""

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

    def claim(self, group: str, run: str, owner: str, gpu_ids: Sequence[int], log_path: str) -> int | None:
        """pending -> launching for the lease holder; returns the new attempt number, or None."""
        return self.claim_many(group, owner, [(run, gpu_ids, log_path)]).get(run)

    def claim_many(
        self, group: str, owner: str, wanted: Sequence[tuple[str, Sequence[int], str]]
    ) -> dict[str, int]:
        """pending -> launching for the lease holder, for each ``(run, gpu_ids, log_path)`` in one
        transaction (one commit for a hundred jobs, not a hundred); the new attempt number of each job
        claimed (one no longer pending is left out; none without the lease or once the group is
        cancelled).

        Checking the lease, the group's cancel flag and each job's status in the same transaction as the
        change is what keeps two drivers (or a driver and ``job kill``) from launching a job twice.
        """
        now = time.time()
        claimed: dict[str, int] = {}
        claimable, values = status_in(moves_from("claim_many", JobStatus.LAUNCHING))
        with self.atomic() as db:
            ok = db.execute(
                "SELECT 1 FROM groups WHERE name = ? AND lease_owner = ? AND lease_expires >= ? "
                "AND cancel_requested = 0",
                (group, owner, now),
            ).fetchone()
            if not ok:
                return claimed
            for run, gpu_ids, log_path in wanted:
                row = db.execute(
                    f"SELECT id, attempts, status FROM jobs WHERE group_name = ? AND run = ? AND {claimable}",
                    (group, run, *values),
                ).fetchone()
                if row is None:
                    continue
                number = row["attempts"] + 1
                db.execute(
                    # wandb_url too: each attempt is its own W&B run, recorded once it reports it
                    "UPDATE jobs SET status = ?, attempts = ?, exit_code = NULL, reason = NULL, "
                    "wandb_url = NULL WHERE id = ?",
                    (JobStatus.LAUNCHING.value, number, row["id"]),
                )
                db.execute(  # with the GPUs it holds: GPU-hours then sum the attempts alone
                    "INSERT INTO attempts (job_id, number, status, gpu_ids, claimed_at, log_path, gpus) "
                    f"VALUES (?, ?, ?, ?, ?, ?, (SELECT {GPUS_HELD} FROM jobs j "
                    "JOIN groups g ON g.name = j.group_name WHERE j.id = ?))",
                    (
                        row["id"],
                        number,
                        JobStatus.LAUNCHING.value,
                        ",".join(map(str, gpu_ids)),
                        now,
                        log_path,
                        row["id"],
                    ),
                )
                old = JobStatus(row["status"])
                self._event(db, group, run, "status", old, JobStatus.LAUNCHING, f"attempt {number}")
                claimed[run] = number
        return claimed

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
        return run in self.mark_running_many(group, [(run, attempt, handle)])

    def mark_running_many(self, group: str, started: Sequence[tuple[str, int, str | None]]) -> set[str]:
        """launching -> running for each ``(run, attempt, handle)``, in one transaction; the runs marked.
        A run left out is no longer this attempt or no longer launching (``job kill`` got there first):
        the caller must then cancel what it started."""
        now = time.time()
        marked: set[str] = set()
        runnable = moves_from("mark_running_many", JobStatus.RUNNING)
        with self.atomic() as db:
            for run, attempt, handle in started:
                row = self._current(db, group, run, attempt)
                if row is None or JobStatus(row["status"]) not in runnable:
                    continue
                db.execute("UPDATE jobs SET status = ? WHERE id = ?", (JobStatus.RUNNING.value, row["id"]))
                db.execute(
                    "UPDATE attempts SET status = ?, started_at = ?, handle = coalesce(?, handle) "
                    "WHERE job_id = ? AND number = ?",
                    (JobStatus.RUNNING.value, now, handle, row["id"], attempt),
                )
                self._event(db, group, run, "status", JobStatus.LAUNCHING, JobStatus.RUNNING, handle)
                marked.add(run)
        return marked

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
        """End the current attempt with ``status`` (succeeded, failed or cancelled).

        With ``requeue`` the job goes back to pending for another attempt (a retry, or an attempt that
        never started); the attempt keeps its ending in the history either way. False if the job has
        moved on (another attempt, or already ended); ``ValueError`` for an ending that is not a legal
        move (``status.TRANSITIONS``).
        """
        now = time.time()
        new = JobStatus.PENDING if requeue else status
        with self.atomic() as db:
            row = self._current(db, group, run, attempt)
            if row is None or JobStatus(row["status"]) not in moved_by("finish_attempt"):
                return False
            old = JobStatus(row["status"])
            check_move(old, status, "finish_attempt")  # the attempt's ending, requeued or not
            check_move(old, new, "finish_attempt")
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
            self._event(db, group, run, "status", old, new, detail)
            return True

    def skip(self, group: str, run: str, reason: str) -> bool:
        """pending -> skipped (a dependency did not succeed)."""
        skippable, values = status_in(moves_from("skip", JobStatus.SKIPPED))
        with self.atomic() as db:
            row = db.execute(
                f"SELECT id, status FROM jobs WHERE group_name = ? AND run = ? AND {skippable}",
                (group, run, *values),
            ).fetchone()
            if row is None:
                return False
            db.execute(
                "UPDATE jobs SET status = ?, reason = ? WHERE id = ?",
                (JobStatus.SKIPPED.value, reason, row["id"]),
            )
            self._event(db, group, run, "status", JobStatus(row["status"]), JobStatus.SKIPPED, reason)
            return True

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

    def set_note(self, group: str, run: str, attempt: int, note: str | None) -> None:
        """Say where an active attempt stands on its backend (``SkyPilot RECOVERING``) as the job's reason;
        no status change, no event. Nothing when the attempt is no longer the job's active one."""
        active, values = status_in(tuple(sorted(ACTIVE)))
        with self.atomic() as db:
            db.execute(
                f"UPDATE jobs SET reason = ? WHERE group_name = ? AND run = ? AND attempts = ? AND {active}",
                (note, group, run, attempt, *values),
            )

    def set_wandb_url(self, group: str, run: str, url: str) -> None:
        with self.atomic() as db:
            db.execute("UPDATE jobs SET wandb_url = ? WHERE group_name = ? AND run = ?", (url, group, run))

    def add_event(self, group: str, kind: str, detail: str | None = None, run: str | None = None) -> None:
        with self.atomic() as db:
            self._event(db, group, run, kind, detail=detail)
