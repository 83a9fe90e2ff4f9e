"""The status machine (``status.TRANSITIONS``) is exactly what the store does: every method of a real
``JobStore`` that writes is driven, with every argument that can matter, from every status a job can be
in, and the moves it makes are collected. Every legal move is made by the methods the table names, and
no method makes any other move (an illegal request is a ``ValueError`` that changes nothing)."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from metta_exp.config import Experiment
from metta_exp.errors import UsageError
from metta_exp.records import GroupConfig
from metta_exp.resolve import resolve
from metta_exp.status import TRANSITIONS, JobStatus, check_move, moved_by, moves_from
from metta_exp.store import JobStore
from metta_exp.trials import TrialState

OWNER = f"host:{os.getpid()}:moves"
Call = Callable[[JobStore, str], object]


def finish(status: JobStatus, requeue: bool) -> Call:
    return lambda s, g: s.finish_attempt(g, "r", s.job(g, "r").attempts, status, 1, "why", requeue=requeue)


def other_spec(store: JobStore, group: str) -> object:
    exp = Experiment(module="m", runs=["t"], remote=False, gpus=0)
    return resolve(exp, group, store.state_dir)[0]


#: every writer of the store, with every argument that could move a status differently
WRITERS: dict[str, list[Call]] = {
    "claim": [lambda s, g: s.claim(g, "r", OWNER, (), "/log")],
    "claim_many": [lambda s, g: s.claim_many(g, OWNER, [("r", (), "/log")])],
    "mark_running": [lambda s, g: s.mark_running(g, "r", s.job(g, "r").attempts, "h")],
    "mark_running_many": [lambda s, g: s.mark_running_many(g, [("r", s.job(g, "r").attempts, "h")])],
    "finish_attempt": [finish(status, requeue) for status in JobStatus for requeue in (False, True)],
    "skip": [lambda s, g: s.skip(g, "r", "why")],
    "kill": [lambda s, g: s.kill(g)],
    "request_cancel": [lambda s, g: s.request_cancel(g)],
    "requeue_for_retry": [lambda s, g: s.requeue_for_retry(g)],
    "prune_trial": [lambda s, g: s.prune_trial(g, 0, "r", s.job(g, "r").attempts, "why", [(1, 0.5)])],
    "end_trial": [
        lambda s, g: s.end_trial(g, 0, TrialState.COMPLETE, 1.0),
        lambda s, g: s.end_trial(g, 0, TrialState.FAILED, None),
    ],
    "set_trial_steps": [lambda s, g: s.set_trial_steps(g, 0, [(1, 0.5)])],
    "add_trial": [lambda s, g: s.add_trial(g, OWNER, 1, {"x": 2}, other_spec(s, g))],  # type: ignore[arg-type]
    "set_handle": [lambda s, g: s.set_handle(g, "r", s.job(g, "r").attempts, "h2")],
    "set_final_progress": [lambda s, g: s.set_final_progress(g, "r", s.job(g, "r").attempts, 0.5)],
    "keep_finals": [lambda s, g: s.keep_finals(g, [("r", s.job(g, "r").attempts, 0.5, {"m": 1.0})])],
    "set_wandb_url": [lambda s, g: s.set_wandb_url(g, "r", "https://wandb.example.com/e/p/runs/x")],
    "set_note": [
        lambda s, g: s.set_note(g, "r", s.job(g, "r").attempts, "SkyPilot RECOVERING"),
        lambda s, g: s.set_note(g, "r", s.job(g, "r").attempts, None),
    ],
    "add_event": [lambda s, g: s.add_event(g, "note", "x", "r")],
    "acquire_lease": [lambda s, g: s.acquire_lease(g, "other:1:x", 60, 1, steal_from=OWNER)],
    "renew_lease": [lambda s, g: s.renew_lease(g, OWNER, 60)],
    "release_lease": [lambda s, g: s.release_lease(g, OWNER)],
    "end_group": [lambda s, g: s.end_group(g, OWNER)],
    "remove_groups": [
        lambda s, g: s.remove_groups([g]),
        lambda s, g: s.end_group(g, OWNER) and s.remove_groups([g]),
    ],
    "create_group": [
        lambda s, g: s.create_group(
            g + "-new", "e", "local", GroupConfig(Experiment(module="m", runs=["r"])), []
        )
    ],
}
#: the methods that only read (or open, close and hold transactions)
READERS = {
    "active_groups", "atomic", "attempts", "busy_gpu_ids", "close", "events", "find_groups", "found", "gpu_hours",
    "gpu_seconds", "gpu_seconds_by_group", "group", "group_names", "holding", "job", "jobs", "list_groups",
    "lookup_group", "matches_any", "open", "run_records", "state_dir", "trials",
}  # fmt: skip


def put_at(store: JobStore, group: str, status: JobStatus) -> None:
    """A group ``group`` with one job ``r`` (trial 0 of a search) brought to ``status`` by the legal
    moves, with this test as its live lease holder."""
    exp = Experiment(module="m", runs=["r"], remote=False, gpus=0)
    store.create_group(
        group, "e", "local", GroupConfig(exp), resolve(exp, group, store.state_dir), [(0, {"x": 1})]
    )
    assert store.acquire_lease(group, OWNER, 3600, os.getpid())
    if status == JobStatus.PENDING:
        return
    if status == JobStatus.SKIPPED:
        assert store.skip(group, "r", "dependency")
        return
    assert store.claim(group, "r", OWNER, (), "/log") == 1
    if status == JobStatus.LAUNCHING:
        return
    assert store.mark_running(group, "r", 1, "h")
    if status == JobStatus.PRUNED:
        assert store.prune_trial(group, 0, "r", 1, "behind", [(1, 0.1)])
    elif status != JobStatus.RUNNING:
        assert store.finish_attempt(group, "r", 1, status, 0 if status == JobStatus.SUCCEEDED else 1, "end")
    assert store.job(group, "r").status == status


def test_every_writer_of_the_store_is_driven_and_every_other_method_only_reads() -> None:
    public = {name for name, _ in inspect.getmembers(JobStore) if not name.startswith("_")}
    assert public == set(WRITERS) | READERS
    assert set(WRITERS) & READERS == set()
    assert {m for methods in TRANSITIONS.values() for m in methods} <= set(WRITERS)


def test_the_store_makes_exactly_the_moves_of_the_table(tmp_path: Path) -> None:
    made: set[tuple[JobStatus, JobStatus, str]] = set()
    refused: set[tuple[JobStatus, str]] = set()
    with JobStore.open(tmp_path) as store:
        store._db.execute("PRAGMA synchronous = OFF")  # thousands of commits; what they write is the point
        for start in JobStatus:
            for method, calls in WRITERS.items():
                for i, call in enumerate(calls):
                    group = f"{start.value}-{method}-{i}"
                    put_at(store, group, start)
                    events = len(store.events(group))
                    try:
                        call(store, group)
                    except ValueError:
                        refused.add((start, method))
                        assert len(store.events(group)) == events  # refused: nothing written
                    except UsageError:  # remove_groups of a group that has not ended: nothing removed
                        assert (method, i) == ("remove_groups", 0)
                        assert len(store.events(group)) == events
                    jobs = {j.run: j.status for j in store.jobs(group)}
                    if jobs.get("r", start) != start:
                        made.add((start, jobs["r"], method))
    assert made == {(old, new, m) for (old, new), methods in TRANSITIONS.items() for m in methods}
    # only finish_attempt is asked for endings it may not make (pending, launching, running, skipped,
    # pruned): from a status it moves, that is a ValueError; from any other, False (the job moved on)
    assert refused == {(JobStatus.LAUNCHING, "finish_attempt"), (JobStatus.RUNNING, "finish_attempt")}


def test_every_status_event_the_store_records_is_a_legal_move(tmp_path: Path) -> None:
    """What the store says happened (its ``status`` events) are moves of the table too."""
    with JobStore.open(tmp_path) as store:
        for start in JobStatus:
            put_at(store, start.value, start)
        store.kill("running")
        store.requeue_for_retry("failed")
        for group in (s.value for s in JobStatus):
            for event in store.events(group, kind="status"):
                old, new = JobStatus(event.old_status or ""), JobStatus(event.new_status or "")
                assert TRANSITIONS.get((old, new)), (group, old, new)


def test_the_table_helpers() -> None:
    assert moves_from("requeue_for_retry", JobStatus.PENDING) == (
        JobStatus.FAILED,
        JobStatus.CANCELLED,
        JobStatus.SKIPPED,
    )
    assert moves_from("kill", JobStatus.CANCELLED) == (
        JobStatus.PENDING,
        JobStatus.LAUNCHING,
        JobStatus.RUNNING,
    )
    assert moves_from("claim", JobStatus.RUNNING) == ()
    assert moved_by("finish_attempt") == {JobStatus.LAUNCHING, JobStatus.RUNNING}
    assert moved_by("end_group") == frozenset()
    check_move(JobStatus.PENDING, JobStatus.LAUNCHING, "claim")
    with pytest.raises(ValueError) as refused:
        check_move(JobStatus.SUCCEEDED, JobStatus.PENDING, "requeue_for_retry")
    assert str(refused.value) == (
        "requeue_for_retry may not move a job from succeeded to pending (see status.TRANSITIONS)"
    )
    terminal = {s for s in JobStatus if s.is_terminal()}
    assert {old for (old, _) in TRANSITIONS} == set(JobStatus) - {JobStatus.SUCCEEDED, JobStatus.PRUNED}
    assert {new for (_, new) in TRANSITIONS} == set(JobStatus)
    assert all(new != old for (old, new) in TRANSITIONS)
    assert terminal == {
        JobStatus.SUCCEEDED,
        JobStatus.FAILED,
        JobStatus.CANCELLED,
        JobStatus.SKIPPED,
        JobStatus.PRUNED,
    }
