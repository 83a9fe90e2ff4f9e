"""Groups with a known history, recorded through the store's own API (create, claim, run, finish, end),
then dated: the history tests need groups created days apart and attempts that ran known seconds, which
a test cannot wait for. Only the clock columns are set by hand."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from metta_exp.config import Experiment, SkyPilotSettings
from metta_exp.records import GroupConfig
from metta_exp.resolve import resolve
from metta_exp.status import JobStatus
from metta_exp.store import JobStore

DAY = 86400.0


def add_group(
    store: JobStore,
    name: str,
    runs: Sequence[str],
    *,
    created_at: float,
    gpus: int = 0,
    backend: str = "local",
    num_nodes: int = 1,
    args: Sequence[str] = (),
    args_per_run: Mapping[str, Sequence[str]] | None = None,
    status: Mapping[str, JobStatus] | None = None,
    ran: Mapping[str, Sequence[tuple[float, float | None]]] | None = None,
    metrics: Mapping[str, Mapping[str, float]] | None = None,
    metrics_to_track: Sequence[str] = ("overview/sps", "overview/reward"),
    end: bool = True,
) -> None:
    """A group of ``runs`` created at ``created_at``: each run's attempts ran the (start, end) seconds of
    ``ran`` (default: one attempt of 60 s, an hour after creation; none: never launched; an end of None:
    still running), the
    last attempt ending with ``status`` (default succeeded; earlier attempts failed and were retried),
    keeping ``metrics`` as its final values; ended (``end``) once every job is terminal."""
    exp = Experiment(
        command=["python", "train.py"],
        runs=list(runs),
        args=list(args),
        args_per_run={k: list(v) for k, v in (args_per_run or {}).items()},
        gpus=gpus,
        remote=backend != "local",
        skypilot=SkyPilotSettings(num_nodes=num_nodes),
        metrics_to_track=list(metrics_to_track),
        generate_notebook=False,
    )
    specs = resolve(exp, name, store.state_dir)
    store.create_group(name, "exp", backend, GroupConfig(exp), specs)
    owner = f"test:{os.getpid()}"
    assert store.acquire_lease(name, owner, 3600, os.getpid())
    for spec in specs:
        attempts = (ran or {}).get(spec.run, [(created_at + 3600, created_at + 3660)])
        final = (status or {}).get(spec.run, JobStatus.SUCCEEDED)
        for number, (start, stop) in enumerate(attempts, 1):
            log = Path(spec.run_dir) / f"attempt-{number}.log"
            assert store.claim(name, spec.run, owner, (), str(log)) == number
            store.mark_running(name, spec.run, number, f"{number}:1")
            if stop is not None:
                last = number == len(attempts)
                outcome = final if last else JobStatus.FAILED
                code = 0 if outcome == JobStatus.SUCCEEDED else 1
                store.finish_attempt(name, spec.run, number, outcome, code, None, requeue=not last)
                if last and metrics and spec.run in metrics:
                    store.keep_finals(name, [(spec.run, number, 1.0, metrics[spec.run])])
            set_times(store, name, spec.run, number, start, stop)
    with store.atomic() as db:
        db.execute("UPDATE groups SET created_at = ? WHERE name = ?", (created_at, name))
    if end:
        assert store.end_group(name, owner)
        with store.atomic() as db:
            db.execute("UPDATE groups SET ended_at = ? WHERE name = ?", (created_at + 7200, name))
    else:
        store.release_lease(name, owner)


def set_times(store: JobStore, group: str, run: str, attempt: int, start: float, stop: float | None) -> None:
    with store.atomic() as db:
        db.execute(
            "UPDATE attempts SET claimed_at = ?, started_at = ?, ended_at = ? WHERE number = ? AND job_id = "
            "(SELECT id FROM jobs WHERE group_name = ? AND run = ?)",
            (start, start, stop, attempt, group, run),
        )


def rows(state_dir: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with JobStore.open(state_dir, create=False) as store:
        return [tuple(r) for r in store._db.execute(sql, params)]
