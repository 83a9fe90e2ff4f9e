"""Rows of the store's tables as typed records."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from metta_exp.records import GroupRecord, JobRecord
from metta_exp.status import JobStatus


def ids(text: str | None) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",")) if text else ()


def group_record(row: sqlite3.Row) -> GroupRecord:
    return GroupRecord(
        name=row["name"],
        experiment=row["experiment"],
        backend=row["backend"],
        config=row["config"],  # decoded on first use
        created_at=row["created_at"],
        ended_at=row["ended_at"],
        cancel_requested=bool(row["cancel_requested"]),
        lease_owner=row["lease_owner"],
        lease_expires=row["lease_expires"],
        runner_pid=row["runner_pid"],
    )


_STATUS = {s.value: s for s in JobStatus}

#: The columns ``job_record`` reads, in order (``JOB_SELECT`` selects them so).
JOB_SELECT = """
    SELECT j.group_name, j.run, j.position, j.status, j.spec, j.attempts, j.exit_code, j.reason,
           a.handle, a.gpu_ids, j.queued_at, a.started_at, a.ended_at, a.log_path, j.run_dir, j.wandb_url,
           (SELECT group_concat(d.run, char(31)) FROM deps x JOIN jobs d ON d.id = x.depends_on
             WHERE x.job_id = j.id) AS deps
    FROM jobs j LEFT JOIN attempts a ON a.job_id = j.id AND a.number = j.attempts
"""


def job_record(row: Sequence[Any]) -> JobRecord:
    """A row of ``JOB_SELECT`` (by position: ``job show`` of a big group builds thousands)."""
    (group, run, position, status, spec, attempts, exit_code, reason, handle, gpu_ids, queued_at,
     started_at, ended_at, log_path, run_dir, wandb_url, deps) = row  # fmt: skip
    return JobRecord(
        group,
        run,
        position,
        _STATUS[status],
        spec,  # decoded on first use
        run_dir,
        attempts,
        exit_code,
        reason,
        handle,
        ids(gpu_ids),
        queued_at,
        started_at,
        ended_at,
        log_path,
        wandb_url,
        tuple(deps.split("\x1f")) if deps else (),
    )
