"""Rows of the store's tables as typed records."""

from __future__ import annotations

import json
import sqlite3

from metta_exp.records import GroupRecord, JobRecord
from metta_exp.status import JobStatus


def ids(text: str | None) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",")) if text else ()


def group_record(row: sqlite3.Row) -> GroupRecord:
    return GroupRecord(
        name=row["name"],
        experiment=row["experiment"],
        backend=row["backend"],
        config=json.loads(row["config"]),
        created_at=row["created_at"],
        ended_at=row["ended_at"],
        cancel_requested=bool(row["cancel_requested"]),
        lease_owner=row["lease_owner"],
        lease_expires=row["lease_expires"],
        runner_pid=row["runner_pid"],
    )


def job_record(row: sqlite3.Row) -> JobRecord:
    return JobRecord(
        group=row["group_name"],
        run=row["run"],
        position=row["position"],
        status=JobStatus(row["status"]),
        spec=json.loads(row["spec"]),
        attempts=row["attempts"],
        exit_code=row["exit_code"],
        reason=row["reason"],
        handle=row["handle"],
        gpu_ids=ids(row["gpu_ids"]),
        queued_at=row["queued_at"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        log_path=row["log_path"],
        run_dir=row["run_dir"],
        wandb_url=row["wandb_url"],
        depends_on=tuple(row["deps"].split("\x1f")) if row["deps"] else (),
    )
