"""Rows of the store's tables as typed records."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import fields
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
        stored_config=row["config"],  # decoded on first use
        created_at=row["created_at"],
        ended_at=row["ended_at"],
        cancel_requested=bool(row["cancel_requested"]),
        lease_owner=row["lease_owner"],
        lease_expires=row["lease_expires"],
        runner_pid=row["runner_pid"],
    )


_STATUS = {s.value: s for s in JobStatus}

#: The columns ``job_record`` reads, in order (``job_select`` selects them so).
_JOB_COLUMNS = """
    SELECT j.group_name, j.run, j.position, j.status, j.spec, j.attempts, j.exit_code, j.reason,
           a.handle, a.gpu_ids, j.queued_at, a.started_at, a.ended_at, a.log_path, j.run_dir, j.wandb_url,
           {deps} AS deps, {final_progress}
    FROM jobs j LEFT JOIN attempts a ON a.job_id = j.id AND a.number = j.attempts
"""


_DEPS = """(SELECT group_concat(d.run, char(31)) FROM deps x JOIN jobs d ON d.id = x.depends_on
             WHERE x.job_id = j.id)"""


def job_select(final_progress: bool = True, deps: bool = True) -> str:
    """The ``SELECT ... FROM`` that ``job_record`` reads; without ``final_progress`` for a store read
    before its ``0003_final_progress`` migration (the column is then NULL: not recorded); without
    ``deps`` for jobs known to have no dependencies (a group without any: most are)."""
    return _JOB_COLUMNS.format(
        final_progress="a.final_progress" if final_progress else "NULL", deps=_DEPS if deps else "NULL"
    )


#: ``JobRecord``'s fields, in the order ``job_record`` fills them (checked against the dataclass)
_FIELDS = ("group", "run", "position", "status", "stored_spec", "run_dir", "attempts", "exit_code", "reason",
           "handle", "gpu_ids", "queued_at", "started_at", "ended_at", "log_path", "wandb_url", "depends_on",
           "final_progress")  # fmt: skip
assert tuple(f.name for f in fields(JobRecord)) == _FIELDS, "job_record must fill JobRecord's fields in order"
_new = object.__new__


def job_record(row: Sequence[Any]) -> JobRecord:
    """A row of ``job_select()`` (by position: ``job show`` of a big group builds thousands, so the record
    is filled in directly rather than through the frozen dataclass's ``__init__``, which sets each of
    its 18 fields through ``object.__setattr__`` and would be half of ``job show``'s time)."""
    (group, run, position, status, spec, attempts, exit_code, reason, handle, gpu_ids, queued_at,
     started_at, ended_at, log_path, run_dir, wandb_url, deps, final_progress) = row  # fmt: skip
    record = _new(JobRecord)
    record.__dict__.update(
        zip(
            _FIELDS,
            (
                group,
                run,
                position,
                _STATUS[status],
                spec,
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
                final_progress,
            ),  # fmt: skip
            strict=True,
        )
    )
    return record
