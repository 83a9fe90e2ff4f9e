"""The store on a real SQLite file: schema and migrations, transitions and their events, leases, and
claims racing from several processes."""

from __future__ import annotations

import multiprocessing
import sqlite3
import time
from pathlib import Path

import pytest

from metta_exp.config import Experiment
from metta_exp.errors import NotFoundError, StoreError
from metta_exp.records import GroupConfig
from metta_exp.resolve import resolve
from metta_exp.status import JobStatus
from metta_exp.store import DB_NAME, MIGRATIONS, GroupExistsError, JobStore


def make_group(store: JobStore, name: str = "g", runs: tuple[str, ...] = ("a", "b"), **kw: object) -> None:
    exp = Experiment(module="pkg.train", runs=list(runs), remote=False, gpus=0, **kw)  # type: ignore[arg-type]
    store.create_group(name, "exp", "local", GroupConfig(exp), resolve(exp, name, store.state_dir))


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    with JobStore.open(tmp_path / "state") as s:
        yield s


def test_schema_is_migrated_once_and_recorded(tmp_path: Path) -> None:
    JobStore.open(tmp_path).close()
    db = sqlite3.connect(tmp_path / DB_NAME)
    assert [r[0] for r in db.execute("SELECT name FROM schema_migrations")] == [m for m, _ in MIGRATIONS]
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    JobStore.open(tmp_path).close()  # idempotent
    assert db.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == len(MIGRATIONS)


def test_a_store_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    JobStore.open(tmp_path).close()
    db = sqlite3.connect(tmp_path / DB_NAME)
    db.execute("INSERT INTO schema_migrations VALUES ('9999_future', 0)")
    db.commit()
    with pytest.raises(StoreError, match="newer metta-exp"):
        JobStore.open(tmp_path)


def test_reader_of_a_missing_store_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no job store"):
        JobStore.open(tmp_path / "none", create=False)
    assert not (tmp_path / "none").exists()


def test_readers_do_not_write(store: JobStore) -> None:
    make_group(store)
    size = store.path.stat().st_size, (store.path.parent / f"{DB_NAME}-wal").stat().st_size
    events = len(store.events("g"))
    with JobStore.open(store.state_dir, create=False) as reader:
        (
            reader.list_groups(),
            reader.jobs("g"),
            reader.job("g", "a"),
            reader.events("g"),
            reader.busy_gpu_ids(),
        )
    assert (store.path.stat().st_size, (store.path.parent / f"{DB_NAME}-wal").stat().st_size) == size
    assert len(store.events("g")) == events


def test_group_with_jobs_and_dependencies(store: JobStore) -> None:
    make_group(store, runs=("a", "b", "c"), depends_on={"c": ["a", "b"]})
    jobs = store.jobs("g")
    assert [j.run for j in jobs] == ["a", "b", "c"]
    assert all(j.status == JobStatus.PENDING and j.attempts == 0 for j in jobs)
    assert jobs[2].depends_on == ("a", "b")
    with pytest.raises(GroupExistsError, match="group 'g' already exists"):
        make_group(store)
    make_group(store, name="g2")  # the same run names in another group
    assert [s.name for s in store.list_groups()] == ["g2", "g"]
    assert store.list_groups()[1].counts["pending"] == 3


def test_unknown_names_suggest_the_closest(store: JobStore) -> None:
    make_group(store, name="lr_sweep", runs=("high_lr", "low_lr"))
    with pytest.raises(NotFoundError, match="no group 'lr_swep'; closest: lr_sweep"):
        store.group("lr_swep")
    with pytest.raises(NotFoundError, match="has no run 'hihg_lr'; closest: high_lr"):
        store.job("lr_sweep", "hihg_lr")


def test_every_transition_is_recorded_as_an_event(store: JobStore) -> None:
    make_group(store, runs=("a", "b"), depends_on={"b": ["a"]})
    assert store.acquire_lease("g", "me", 10, 1)
    assert store.claim("g", "a", "me", (0, 1), "/x/attempt-1.log") == 1
    assert store.busy_gpu_ids() == {0, 1}
    assert store.mark_running("g", "a", 1, "123:9")
    assert store.finish_attempt("g", "a", 1, JobStatus.FAILED, 2, "exit code 2", requeue=True)
    assert store.job("g", "a").status == JobStatus.PENDING and store.busy_gpu_ids() == set()
    assert store.claim("g", "a", "me", (), "/x/attempt-2.log") == 2
    assert store.finish_attempt("g", "a", 2, JobStatus.FAILED, 2, "exit code 2")
    assert not store.finish_attempt("g", "a", 2, JobStatus.SUCCEEDED), "terminal jobs stay as they are"
    assert store.skip("g", "b", "dependency 'a' failed")
    transitions = [(e.run, e.old_status, e.new_status) for e in store.events("g") if e.kind == "status"]
    assert transitions == [
        ("a", "pending", "launching"),
        ("a", "launching", "running"),
        ("a", "running", "pending"),
        ("a", "pending", "launching"),
        ("a", "launching", "failed"),
        ("b", "pending", "skipped"),
    ]
    history = store.attempts("g", "a")
    assert [(h.number, h.status, h.gpu_ids) for h in history] == [
        (1, JobStatus.FAILED, (0, 1)),
        (2, JobStatus.FAILED, ()),
    ]
    assert store.end_group("g", "me") and store.group("g").ended_at is not None


def test_claims_need_the_live_lease_and_no_cancel(store: JobStore) -> None:
    make_group(store)
    assert store.claim("g", "a", "me", (), "/l") is None, "no lease, no claim"
    assert store.acquire_lease("g", "me", 10, 1)
    assert not store.acquire_lease("g", "other", 10, 2), "a live lease is not taken over"
    assert store.acquire_lease("g", "other", 10, 2, steal_from="me"), "unless its holder is known dead"
    assert store.claim("g", "a", "me", (), "/l") is None
    assert store.claim("g", "a", "other", (), "/l") == 1
    active = store.request_cancel("g")
    assert [j.run for j in active] == ["a"]
    assert store.job("g", "b").status == JobStatus.CANCELLED
    assert store.claim("g", "b", "other", (), "/l") is None
    # request_cancel leaves active jobs to the caller: "a" still launches, and the runner ends it next
    assert store.mark_running("g", "a", 1, "h")
    assert store.job("g", "a").status == JobStatus.RUNNING and store.group("g").cancel_requested


def test_kill_between_claim_and_launch_makes_mark_running_fail(store: JobStore) -> None:
    make_group(store, runs=("a",))
    store.acquire_lease("g", "me", 10, 1)
    assert store.claim("g", "a", "me", (), "/l") == 1
    store.request_cancel("g")
    assert store.finish_attempt("g", "a", 1, JobStatus.CANCELLED, reason="killed by user")
    assert not store.mark_running("g", "a", 1, "123:4"), "the runner must cancel what it started"


def test_a_batch_of_claims_and_starts_is_one_transaction_each(store: JobStore) -> None:
    """A launch pass claims its jobs in one transaction and records them running in another (a commit
    waits for the disk): a job no longer pending is left out, a job killed meanwhile is not marked."""
    make_group(store, runs=("a", "b", "c", "d"))
    wanted = [("a", (0,), "/a/attempt-1.log"), ("b", (), "/b/attempt-1.log"), ("c", (), "/c/attempt-1.log")]
    assert store.claim_many("g", "me", wanted) == {}, "no lease, no claim"
    assert store.acquire_lease("g", "me", 10, 1)
    assert store.claim("g", "c", "me", (), "/c/attempt-1.log") == 1
    commits: list[str] = []
    store._db.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    assert store.claim_many("g", "me", wanted) == {"a": 1, "b": 1}, "c was claimed already"
    assert len(commits) == 1
    assert store.job("g", "a").gpu_ids == (0,) and store.job("g", "b").log_path == "/b/attempt-1.log"
    assert store.finish_attempt("g", "b", 1, JobStatus.CANCELLED, reason="killed by user")
    started = [("a", 1, "11:1"), ("b", 1, "12:1"), ("c", 1, "13:1"), ("d", 1, "14:1")]
    assert store.mark_running_many("g", started) == {"a", "c"}, "b was killed, d never claimed"
    assert len(commits) == 3
    store._db.set_trace_callback(None)
    a, c = store.job("g", "a"), store.job("g", "c")
    assert (a.status, a.handle, c.status, c.handle) == (JobStatus.RUNNING, "11:1", JobStatus.RUNNING, "13:1")
    assert a.started_at == c.started_at
    store.request_cancel("g")
    assert store.claim_many("g", "me", [("d", (), "/d/attempt-1.log")]) == {}, "no claim once cancelled"


def test_retry_requeues_failed_cancelled_and_skipped_only(store: JobStore) -> None:
    make_group(store, runs=("ok", "bad", "dep"), depends_on={"dep": ["bad"]})
    store.acquire_lease("g", "me", 10, 1)
    for run in ("ok", "bad"):
        store.claim("g", run, "me", (), "/l")
        store.mark_running("g", run, 1, "h")
    store.finish_attempt("g", "ok", 1, JobStatus.SUCCEEDED, 0)
    store.finish_attempt("g", "bad", 1, JobStatus.FAILED, 1, "exit code 1")
    store.skip("g", "dep", "dependency 'bad' failed")
    store.end_group("g", "me")
    assert store.requeue_for_retry("g") == ["bad", "dep"]
    group = store.group("g")
    assert group.ended_at is None and not group.cancel_requested
    statuses = {j.run: j.status for j in store.jobs("g")}
    assert statuses == {"ok": JobStatus.SUCCEEDED, "bad": JobStatus.PENDING, "dep": JobStatus.PENDING}
    assert store.job("g", "bad").attempts == 1, "earlier attempts stay in the history"


def _claim_all(path: str, owner: str, runs: list[str], out: multiprocessing.Queue) -> None:
    store = JobStore(path)
    won = [run for run in runs if store.claim("g", run, owner, (), "/l") is not None]
    out.put((owner, won))


def test_racing_claims_from_processes_launch_each_job_once(store: JobStore) -> None:
    runs = tuple(f"r{i}" for i in range(40))
    make_group(store, runs=runs)
    store.acquire_lease("g", "shared", 30, 1)
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue = ctx.Queue()
    procs = [
        ctx.Process(target=_claim_all, args=(str(store.path), "shared", list(runs), out)) for _ in range(4)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    won = [run for _, runs_won in results for run in runs_won]
    assert sorted(won) == sorted(runs), "every job claimed exactly once"
    assert all(j.attempts == 1 for j in store.jobs("g"))


def test_expired_lease_can_be_taken_over(store: JobStore) -> None:
    make_group(store)
    assert store.acquire_lease("g", "old", 0.05, 1)
    time.sleep(0.1)
    assert not store.renew_lease("g", "new", 10)
    assert store.acquire_lease("g", "new", 10, 2)
    assert not store.renew_lease("g", "old", 10), "the old driver learns it lost the group"


def test_a_reader_reads_a_store_without_the_index_migration(tmp_path: Path) -> None:
    """Index-only migrations: a reader of a store written before them reads it (the next writer adds
    them); ``job list`` counts come out the same."""
    with JobStore.open(tmp_path) as store:
        make_group(store)
        expected = store.list_groups()
    db = sqlite3.connect(tmp_path / DB_NAME)
    db.executescript(
        "DROP INDEX jobs_group_status; DROP INDEX jobs_group_position;"
        "DELETE FROM schema_migrations WHERE name = '0002_jobs_by_group';"
    )
    db.close()
    with JobStore.open(tmp_path, readonly=True) as reader:
        assert reader.list_groups() == expected
        assert [j.run for j in reader.jobs("g")] == ["a", "b"]
    JobStore.open(tmp_path).close()  # a writer applies it
    db = sqlite3.connect(tmp_path / DB_NAME)
    assert (
        db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'jobs_group_status'").fetchone()[0] == 1
    )


def test_a_reader_reads_a_store_without_the_final_progress_column(tmp_path: Path) -> None:
    """A store written before ``0003_final_progress``: a reader reads its jobs (their progress as not
    recorded: read from the logs); the next writer adds the column and records ends into it."""
    with JobStore.open(tmp_path) as store:
        make_group(store)
        assert store.acquire_lease("g", "me", 60, 1)
        store.claim("g", "a", "me", (), str(tmp_path / "a.log"))
        store.mark_running("g", "a", 1, "h")
        store.set_final_progress("g", "a", 1, 0.5)
        assert store.job("g", "a").final_progress is None, "only an ended attempt's progress is kept"
        store.finish_attempt("g", "a", 1, JobStatus.SUCCEEDED, 0)
        store.set_final_progress("g", "a", 1, 0.5)
        assert store.job("g", "a").final_progress == 0.5
    db = sqlite3.connect(tmp_path / DB_NAME)
    db.executescript(
        "ALTER TABLE attempts DROP COLUMN final_progress;"
        "DELETE FROM schema_migrations WHERE name = '0003_final_progress';"
    )
    db.close()
    with JobStore.open(tmp_path, readonly=True) as reader:
        assert [(j.run, j.status, j.final_progress) for j in reader.jobs("g")] == [
            ("a", JobStatus.SUCCEEDED, None),
            ("b", JobStatus.PENDING, None),
        ]
    with JobStore.open(tmp_path) as writer:
        assert writer.job("g", "a").final_progress is None
        writer.claim("g", "b", "me", (), str(tmp_path / "b.log"))
        writer.mark_running("g", "b", 1, "h")
        writer.finish_attempt("g", "b", 1, JobStatus.FAILED, 1, "x")
        writer.set_final_progress("g", "b", 1, -1.0)
        assert writer.job("g", "b").final_progress == -1.0


def test_a_reader_reads_a_store_written_before_searches(tmp_path: Path) -> None:
    """A store without the ``trials`` table (``0004_trials``): a reader lists, shows and summarises its
    groups (none is a search); the next writer adds the table."""
    with JobStore.open(tmp_path) as store:
        make_group(store)
    db = sqlite3.connect(tmp_path / DB_NAME)
    db.executescript("DROP TABLE trials; DELETE FROM schema_migrations WHERE name = '0004_trials';")
    db.close()
    with JobStore.open(tmp_path, readonly=True) as reader:
        assert [j.run for j in reader.jobs("g")] == ["a", "b"] and reader.trials("g") == []
    with JobStore.open(tmp_path) as writer:
        assert writer.trials("g") == []
        assert writer._db.execute("SELECT count(*) FROM trials").fetchone()[0] == 0


def test_events_of_one_kind(store: JobStore) -> None:
    make_group(store)
    store.add_event("g", "runner_stopped", "signal")
    assert [e.kind for e in store.events("g")] == ["created", "runner_stopped"]
    assert [(e.kind, e.detail) for e in store.events("g", kind="runner_stopped")] == [
        ("runner_stopped", "signal")
    ]


@pytest.mark.parametrize("keep", [0.5, 0.95])
def test_a_big_store_cut_short_is_damaged_without_the_full_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keep: float
) -> None:
    """Beyond ``QUICK_CHECK_MAX`` a reader skips SQLite's full quick check (its cost grows with the store)
    but still finds a file cut short: its schema unreadable, or fewer bytes than its header counts."""
    from metta_exp.store import connect

    with JobStore.open(tmp_path) as store:
        make_group(store, runs=tuple(f"r{i}" for i in range(300)))
    path = tmp_path / DB_NAME
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep) // 4096 * 4096])
    monkeypatch.setattr(connect, "QUICK_CHECK_MAX", 0)
    with pytest.raises(StoreError, match="is damaged"):
        JobStore.open(tmp_path, readonly=True)
    monkeypatch.setattr(connect, "QUICK_CHECK_MAX", 1 << 40)
    with pytest.raises(StoreError, match="is damaged"):
        JobStore.open(tmp_path, readonly=True)


def test_a_big_sound_store_opens_without_the_full_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from metta_exp.store import connect

    with JobStore.open(tmp_path) as store:
        make_group(store)
    monkeypatch.setattr(connect, "QUICK_CHECK_MAX", 0)
    with JobStore.open(tmp_path, readonly=True) as reader:
        assert [j.run for j in reader.jobs("g")] == ["a", "b"]
