"""``job list`` for a long history (globs, statuses, times, the newest 50 by default) and GPU-hours in
``job list`` and ``job show``: on real store files, the commands run as a user runs them."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from pathlib import Path

import pytest
from conftest import run_cli
from history_store import DAY, add_group, rows

from metta_exp.errors import NotFoundError
from metta_exp.history.listing import check_patterns, group_query, list_window
from metta_exp.status import JobStatus
from metta_exp.store import MIGRATIONS, GroupQuery, JobStore

NOW = time.time()


@pytest.fixture
def history(state_dir: Path) -> Path:
    """Five groups over three weeks: two lr_ sweeps, a baseline with a failure, a GPU group with a retry
    on two nodes, and a group still running."""
    with JobStore.open(state_dir) as store:
        add_group(store, "lr_old", ["a", "b"], created_at=NOW - 20 * DAY)
        add_group(store, "baseline", ["a", "b"], created_at=NOW - 9 * DAY, status={"b": JobStatus.FAILED})
        add_group(
            store,
            "gpu_big",
            ["x", "y"],
            created_at=NOW - 3 * DAY,
            gpus=4,
            backend="skypilot",
            num_nodes=2,
            # x: a failed attempt of 30 min, then one of 90 min (queueing before each excluded)
            ran={"x": [(NOW - 3 * DAY + 600, NOW - 3 * DAY + 2400), (NOW - 2 * DAY, NOW - 2 * DAY + 5400)]},
            status={"y": JobStatus.FAILED},
        )
        add_group(store, "lr_new", ["a"], created_at=NOW - 1 * DAY, status={"a": JobStatus.CANCELLED})
        add_group(
            store,
            "live",
            ["a", "b"],
            created_at=NOW - 600,
            gpus=1,
            ran={"a": [(NOW - 300, None)], "b": []},
            end=False,
        )
    return state_dir


def cells(line: str) -> list[str]:
    """A table row's cells (columns are two or more spaces apart)."""
    return re.split(r"\s{2,}", line.strip())


def names(state_dir: Path, query: GroupQuery, limit: int | None = None) -> tuple[list[str], int]:
    with JobStore.open(state_dir, readonly=True) as store:
        shown, matched = store.find_groups(query, limit)
    return [g.name for g in shown], matched


def test_groups_by_glob_status_and_time_newest_first(history: Path) -> None:
    assert names(history, GroupQuery()) == (["live", "lr_new", "gpu_big", "baseline", "lr_old"], 5)
    assert names(history, GroupQuery(("lr_*",))) == (["lr_new", "lr_old"], 2)
    assert names(history, GroupQuery(("lr_[!o]*", "base*"))) == (["lr_new", "baseline"], 2)
    assert names(history, GroupQuery(statuses=(JobStatus.FAILED,))) == (["gpu_big", "baseline"], 2)
    assert names(history, GroupQuery(statuses=(JobStatus.CANCELLED, JobStatus.RUNNING))) == (
        ["live", "lr_new"],
        2,
    )
    assert names(history, GroupQuery(since=NOW - 7 * DAY)) == (["live", "lr_new", "gpu_big"], 3)
    assert names(history, GroupQuery(until=NOW - 7 * DAY)) == (["baseline", "lr_old"], 2)
    assert names(history, GroupQuery(("lr_*",), since=NOW - 7 * DAY)) == (["lr_new"], 1)
    assert names(history, GroupQuery(), limit=2) == (["live", "lr_new"], 5)
    assert names(history, GroupQuery(statuses=(JobStatus.SUCCEEDED,)), limit=1) == (["gpu_big"], 3)


def test_group_query_reads_what_a_user_types(history: Path) -> None:
    query = group_query(["lr_*"], ["failed,cancelled"], "7d", "2026-12-01", now=NOW)
    assert query.patterns == ("lr_*",)
    assert query.statuses == (JobStatus.FAILED, JobStatus.CANCELLED)
    assert query.since == NOW - 7 * DAY
    assert query.until is not None and query.until > NOW - 400 * DAY


def test_gpu_hours_are_gpus_times_running_time_over_every_attempt(history: Path) -> None:
    with JobStore.open(history, readonly=True) as store:
        big = store.gpu_seconds("gpu_big")
        live = store.gpu_seconds("live", now=NOW)
        by_group = store.gpu_seconds_by_group(["gpu_big", "baseline", "live"], now=NOW)
    # 4 GPUs on each of 2 nodes; x ran 1800 s + 5400 s, y the default 60 s; queueing not counted
    assert big == {"x": 8 * 7200.0, "y": 8 * 60.0}
    assert live == {"a": 300.0, "b": 0.0}  # running: until now; b never started
    assert by_group == {"gpu_big": 8 * 7260.0, "baseline": 0.0, "live": 300.0}
    listing = list_window(JobStore.open(history, readonly=True), GroupQuery(("gpu_big",)))
    assert listing.gpu_hours == {"gpu_big": 8 * 7260 / 3600}
    assert rows(history, "SELECT DISTINCT gpus FROM attempts a JOIN jobs j ON j.id = a.job_id "
                "WHERE j.group_name = 'gpu_big'") == [(8,)]  # kept when claimed  # fmt: skip
    with JobStore.open(history) as store:  # attempts claimed before they were kept: from the specs
        with store.atomic() as db:
            db.execute("UPDATE attempts SET gpus = NULL")
        assert store.gpu_seconds("gpu_big") == big and store.gpu_seconds_by_group(["gpu_big"]) == {
            "gpu_big": 8 * 7260.0
        }


def test_a_pattern_that_matches_nothing_names_the_closest(history: Path) -> None:
    with JobStore.open(history, readonly=True) as store:
        check_patterns(store, ["lr_*", "baseline"])
        with pytest.raises(NotFoundError) as err:
            check_patterns(store, ["lr_*", "basline*"])
        assert str(err.value) == "no group matches 'basline*'; closest: baseline (see 'metta-exp job list')"
        with pytest.raises(NotFoundError) as err:
            check_patterns(store, ["zzz*"])
        assert str(err.value) == (
            "no group matches 'zzz*'; newest: live, lr_new, gpu_big, baseline, lr_old (see 'metta-exp job list')"
        )
        with pytest.raises(NotFoundError) as err:
            check_patterns(store, ["basline"])  # a name: the store's own message
        assert str(err.value) == "no group 'basline'; closest: baseline (see 'metta-exp job list')"
    with pytest.raises(NotFoundError, match="^no group matches 'x'; no groups yet"):
        check_patterns(None, ["x"])


def test_list_shows_the_newest_50_and_says_how_to_see_the_rest(state_dir: Path) -> None:
    with JobStore.open(state_dir) as store:
        for i in range(53):
            add_group(store, f"g{i:02d}", ["a"], created_at=NOW - (53 - i) * 3600)
    text = run_cli("job", "list")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert [line.split()[0] for line in lines[1:51]] == [f"g{i:02d}" for i in range(52, 2, -1)]
    assert lines[51] == "3 older groups not shown: --all shows every one, -n N the newest N."
    assert lines[52].startswith("store: ")
    assert len(run_cli("job", "list", "--all").stdout.splitlines()) == 1 + 53 + 1
    few = run_cli("job", "list", "-n", "2", "g0*")
    assert [line.split()[0] for line in few.stdout.splitlines()[1:3]] == ["g09", "g08"]
    assert few.stdout.splitlines()[3] == "8 older groups not shown: --all shows every one, -n N the newest N."
    listed = run_cli("job", "list", "--json", "-n", "3")
    assert [g["group"] for g in json.loads(listed.stdout)] == ["g52", "g51", "g50"]
    assert listed.stderr == "50 older groups not shown: --all shows every one, -n N the newest N.\n"
    assert len(json.loads(run_cli("job", "list", "--json", "--all").stdout)) == 53
    assert run_cli("job", "list", "--json", "--since", "2h").stdout.count('"group"') == 1
    bad = run_cli("job", "list", "-n", "0")
    assert (bad.returncode, bad.stderr) == (2, "Error: -n must be 1 or more, got 0\n")


def test_list_filters_and_gpu_hours_from_the_command_line(history: Path) -> None:
    result = run_cli("job", "list", "--status", "failed", "--since", "30d")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "GROUP", "BACKEND", "TOTAL", "PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "SKIPPED",
        "GPU-H", "AGE", "STATE",
    ]  # fmt: skip
    assert [line.split()[:3] for line in lines[1:3]] == [
        ["gpu_big", "skypilot", "2"],
        ["baseline", "local", "2"],
    ]
    assert cells(lines[1])[9:11] == ["16.1", "3d"]  # 8 GPUs x (7200 + 60) s
    assert lines[3] == "GPU-hours: 16.1 in these groups."
    listed = json.loads(run_cli("job", "list", "--json", "gpu_*", "live").stdout)
    assert [(g["group"], g["backend"], g["failed"], round(g["gpu_hours"], 4)) for g in listed] == [
        ("live", "local", 0, pytest.approx(round((time.time() - NOW + 300) / 3600, 4), abs=0.01)),
        ("gpu_big", "skypilot", 1, 16.1333),
    ]
    assert listed[1]["ended_at"] is not None and listed[0]["ended_at"] is None
    none = run_cli("job", "list", "lr_*", "--status", "running")
    assert (none.returncode, none.stdout) == (0, "No groups match.\n")


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--status", "faild"], "unknown status 'faild' (did you mean 'failed'?); the statuses: pending, "
         "launching, running, succeeded, failed, cancelled, skipped, pruned"),
        (["--since", "7x"], "--since '7x' is not a time: give an age (30m, 12h, 7d, 2w), a date (2026-12-01) "
         "or a time (2026-12-01T14:30)"),
        (["--until", "tuesday"], "--until 'tuesday' is not a time: give an age (30m, 12h, 7d, 2w), a date "
         "(2026-12-01) or a time (2026-12-01T14:30)"),
        (["lr_x*"], "no group matches 'lr_x*'; closest: lr_old, lr_new (see 'metta-exp job list')"),
        (["--json", "lr_*", "lr_x*"], "no group matches 'lr_x*'; closest: lr_old, lr_new (see 'metta-exp job list')"),
    ],
)  # fmt: skip
def test_bad_list_input_is_one_error_line_and_exit_2(history: Path, args: list[str], error: str) -> None:
    result = run_cli("job", "list", *args)
    assert (result.returncode, result.stdout, result.stderr) == (2, "", f"Error: {error}\n")


@pytest.mark.parametrize("command", [["list"], ["list", "--json"], ["runs"], ["runs", "--csv"]])
def test_a_name_before_any_group_is_an_error_too(state_dir: Path, command: list[str]) -> None:
    """No store yet: a glob or a name still matches nothing, so it is the same error, not an empty list."""
    assert not (state_dir / "jobs.sqlite").exists()
    result = run_cli("job", *command, "lr_*")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "Error: no group matches 'lr_*'; no groups yet (see 'metta-exp job list')\n"
    assert not (state_dir / "jobs.sqlite").exists(), "a reader creates no store"


def test_show_has_each_runs_gpu_hours_and_the_groups(history: Path) -> None:
    result = run_cli("job", "show", "gpu_big")
    assert result.returncode == 0, result.stderr
    head, columns, x, y = result.stdout.splitlines()[:4]
    assert head.endswith(" · 2 jobs: 1 succeeded, 1 failed · 16.1 GPU-hours")
    assert cells(columns)[:8] == ["RUN", "STATUS", "ATTEMPTS", "EXIT", "STARTED", "TIME", "PROGRESS", "GPU-H"]
    assert cells(x)[:3] == ["x", "succeeded", "2"] and cells(x)[7] == "16.0"
    assert cells(y)[:3] == ["y", "failed", "1"] and cells(y)[7] == "0.13"
    shown = json.loads(run_cli("job", "show", "gpu_big", "--json").stdout)
    assert [(j["run"], j["gpu_hours"]) for j in shown] == [("x", 16.0), ("y", 8 * 60 / 3600)]
    plain = run_cli("job", "show", "baseline").stdout.splitlines()
    assert "GPU" not in plain[0] + plain[1]  # no GPU used: no GPU column


def test_a_reader_lists_a_store_from_before_history_without_writing_it(tmp_path: Path) -> None:
    """A store at migration 0004 (no final_metrics column, no history indexes): readers read it as it is."""
    state = tmp_path / "old"
    state.mkdir()
    db = sqlite3.connect(state / "jobs.sqlite")
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("CREATE TABLE schema_migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    for name, script in MIGRATIONS[:4]:
        db.executescript(script)
        db.execute("INSERT INTO schema_migrations VALUES (?, 0)", (name,))
    db.commit()
    db.close()
    with JobStore(state / "jobs.sqlite", create=False, readonly=True) as store:
        assert "0005_history" not in store._applied()
    # a writer's API fills it (and would migrate it): record the rows with a store opened on a copy
    # instead, then copy the rows back with plain SQL, so the file stays at 0004
    work = tmp_path / "new"
    with JobStore.open(work) as store:
        add_group(store, "old_group", ["a"], created_at=NOW - DAY, gpus=2)
    db = sqlite3.connect(state / "jobs.sqlite")
    db.execute("ATTACH ? AS new", (str(work / "jobs.sqlite"),))
    for table in ("groups", "jobs", "deps", "events"):
        db.execute(f"INSERT INTO {table} SELECT * FROM new.{table}")
    db.execute(
        "INSERT INTO attempts SELECT job_id, number, status, handle, gpu_ids, claimed_at, started_at, ended_at, "
        "exit_code, reason, log_path, final_progress FROM new.attempts"
    )
    db.commit()
    db.close()
    before = (state / "jobs.sqlite").read_bytes()
    env = {"METTA_EXP_STATE_DIR": str(state)}
    listed = run_cli("job", "list", "--json", "old_*", "--since", "2d", env=env)
    assert listed.returncode == 0, listed.stderr
    assert [(g["group"], g["gpu_hours"]) for g in json.loads(listed.stdout)] == [("old_group", 2 * 60 / 3600)]
    assert run_cli("job", "show", "old_group", env=env).returncode == 0
    assert (state / "jobs.sqlite").read_bytes() == before
    assert rows(work, "SELECT count(*) FROM groups") == [(1,)]
