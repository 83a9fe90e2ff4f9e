"""``job rm``: what goes and the disk it frees, asking, refusing groups that have not ended, one store
transaction with the files after it, so that a crash or Ctrl+C leaves each group whole or gone; on real
store files and directories, the command run as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import run_cli
from history_store import DAY, add_group, rows

from metta_exp.errors import UsageError
from metta_exp.history.remove import delete, disk_usage, disk_usage_each, fmt_bytes, plan, remove
from metta_exp.status import JobStatus
from metta_exp.store import JobStore

NOW = time.time()
TABLES = ("groups", "jobs", "attempts", "deps", "trials", "events")


def fill(state_dir: Path, group: str, runs: list[str], size: int = 10_000) -> None:
    """Each run's directory with a log of ``size`` bytes; the runner's log beside them."""
    for run in runs:
        run_dir = state_dir / "runs" / group / run
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "attempt-1.log").write_bytes(b"x" * size)
    (state_dir / "runs" / group / "runner.log").write_text("runner\n")


@pytest.fixture
def history(state_dir: Path) -> Path:
    with JobStore.open(state_dir) as store:
        add_group(store, "old_ok", ["a", "b"], created_at=NOW - 40 * DAY)
        add_group(store, "old_failed", ["a"], created_at=NOW - 35 * DAY, status={"a": JobStatus.FAILED})
        add_group(store, "new_ok", ["a"], created_at=NOW - 2 * DAY)
        add_group(store, "live", ["a"], created_at=NOW - 3600, ran={"a": [(NOW - 60, None)]}, end=False)
        with store.atomic() as db:  # a dependency, so that every table holds rows of the groups
            ids = [
                r[0] for r in db.execute("SELECT id FROM jobs WHERE group_name = 'old_ok' ORDER BY position")
            ]
            db.execute("INSERT INTO deps VALUES (?, ?)", (ids[1], ids[0]))
    fill(state_dir, "old_ok", ["a", "b"])
    fill(state_dir, "old_failed", ["a"], 50_000)
    fill(state_dir, "new_ok", ["a"])
    fill(state_dir, "live", ["a"])
    return state_dir


def counts(state_dir: Path, group: str) -> dict[str, int]:
    out = {}
    for table in TABLES:
        column = "name" if table == "groups" else "group_name"
        if table in ("attempts", "deps"):
            sql = f"SELECT count(*) FROM {table} WHERE job_id IN (SELECT id FROM jobs WHERE group_name = ?)"
        else:
            sql = f"SELECT count(*) FROM {table} WHERE {column} = ?"
        out[table] = rows(state_dir, sql, group)[0][0]
    return out


def du(path: Path) -> int:
    return int(
        subprocess.run(["du", "-s", "-B1", str(path)], capture_output=True, text=True).stdout.split()[0]
    )


def test_rm_removes_the_rows_and_files_of_the_groups_it_lists_and_no_other(history: Path) -> None:
    before = counts(history, "old_ok")
    assert before == {
        "groups": 1,
        "jobs": 2,
        "attempts": 2,
        "deps": 1,
        "trials": 0,
        "events": before["events"],
    }
    assert before["events"] > 0
    size = du(history / "runs" / "old_ok") + du(history / "runs" / "old_failed")
    others = {g: counts(history, g) for g in ("new_ok", "live")}
    result = run_cli("job", "rm", "--older-than", "30d", "--force")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"Remove 2 groups (3 jobs), freeing {fmt_bytes(size)}:"
    assert lines[1].split()[:6] == ["old_failed", "1", "job", "1", "failed", "created"]
    assert lines[2].split()[:6] == ["old_ok", "2", "jobs", "2", "succeeded", "created"]
    assert lines[3] == f"Removed 2 groups; freed {fmt_bytes(size)}."
    for group in ("old_ok", "old_failed"):
        assert counts(history, group) == dict.fromkeys(TABLES, 0)
        assert not (history / "runs" / group).exists()
    assert {g: counts(history, g) for g in ("new_ok", "live")} == others
    assert (history / "runs" / "new_ok" / "a" / "attempt-1.log").is_file()
    assert {p.name for p in history.iterdir()} <= {
        ".gitignore",
        "jobs.sqlite",
        "jobs.sqlite-shm",
        "jobs.sqlite-wal",
        "runs",
    }


def test_dry_run_and_no_answer_remove_nothing(history: Path) -> None:
    before = {g: counts(history, g) for g in ("old_ok", "old_failed")}
    dry = run_cli("job", "rm", "old_*", "--status", "failed", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert (
        dry.stdout.splitlines()[0]
        == f"Remove 1 group (1 job), freeing {fmt_bytes(du(history / 'runs' / 'old_failed'))}:"
    )
    assert dry.stdout.splitlines()[-1] == "Dry run: nothing removed."
    asked = run_cli("job", "rm", "old_ok")
    assert asked.returncode == 1
    assert asked.stdout.splitlines()[-2:] == [
        "Remove them? [y/N] no (stdin is not a terminal: use --force)",
        "Nothing removed.",
    ]
    assert {g: counts(history, g) for g in ("old_ok", "old_failed")} == before
    assert (history / "runs" / "old_ok" / "a").is_dir()
    nothing = run_cli("job", "rm", "new_ok", "--older-than", "30d")
    assert (nothing.returncode, nothing.stdout) == (0, "Nothing to remove: no ended group matches.\n")


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["live"], "live has not ended (jobs may still run): nothing was removed; end it first with "
         "'metta-exp job kill live'"),
        (["--older-than", "2h", "--force"], None),  # selects nothing active: fine
        (["*", "--force"], "live has not ended (jobs may still run): nothing was removed; end it first with "
         "'metta-exp job kill live'"),
        ([], "name the groups to remove (GROUP... or a glob such as 'lr_*'), or give --older-than T"),
        (["--older-than", "a month"], "--older-than 'a month' is not a time: give an age (30m, 12h, 7d, 2w), a "
         "date (2026-12-01) or a time (2026-12-01T14:30)"),
        (["old_*", "--status", "faild"], "unknown status 'faild' (did you mean 'failed'?); the statuses: "
         "pending, launching, running, succeeded, failed, cancelled, skipped, pruned"),
        (["old_okk"], "no group 'old_okk'; closest: old_ok (see 'metta-exp job list')"),
        (["nothing*"], "no group matches 'nothing*'; newest: live, new_ok, old_failed, old_ok (see 'metta-exp "
         "job list')"),
    ],
)  # fmt: skip
def test_active_groups_and_bad_input_remove_nothing_and_exit_2(
    history: Path, args: list[str], error: str | None
) -> None:
    before = {g: counts(history, g) for g in ("old_ok", "live")}
    result = run_cli("job", "rm", *args)
    if error is None:
        assert result.returncode == 0 and "Removed 3 groups" in result.stdout, result.stderr
        return
    assert (result.returncode, result.stdout, result.stderr) == (2, "", f"Error: {error}\n")
    assert {g: counts(history, g) for g in ("old_ok", "live")} == before
    assert (history / "runs" / "live" / "a").is_dir() and (history / "runs" / "old_ok" / "a").is_dir()


def test_a_group_reopened_after_the_plan_is_not_removed(history: Path) -> None:
    with JobStore.open(history) as store:
        planned = plan(store, ["old_*"])
        assert [r.group.name for r in planned.removals] == ["old_failed", "old_ok"]
        assert store.requeue_for_retry("old_failed") == ["a"]  # a job retry meanwhile
        with pytest.raises(
            UsageError, match="^old_failed has not ended .reopened meanwhile..; nothing was removed$"
        ):
            remove(store, planned)
        # as it was afterwards: foreign keys checked again, the page cache as it was
        assert store._db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert store._db.execute("PRAGMA cache_size").fetchone()[0] == -2000
    assert counts(history, "old_ok")["jobs"] == 2 and (history / "runs" / "old_ok").is_dir()


def test_notebooks_go_only_with_the_group_they_belong_to(history: Path) -> None:
    with JobStore.open(history) as store:
        add_group(store, "nb_a", ["a"], created_at=NOW - 50 * DAY)
        add_group(store, "nb_b", ["a"], created_at=NOW - 50 * DAY)
    notebooks = Path("experiments/notebooks").absolute()
    notebooks.mkdir(parents=True)
    for group in ("nb_a", "nb_b"):
        (notebooks / f"{group}.ipynb").write_text(json.dumps({"metadata": {"metta_exp": {"group": group}}}))
        (notebooks / f"{group}.html").write_text(f"<html><head><title>{group}</title></head></html>")
    (notebooks / "nb_b.ipynb").write_text(json.dumps({"metadata": {"metta_exp": {"group": "someone_else"}}}))
    kept = run_cli("job", "rm", "nb_a", "--force")  # without --notebooks: they stay
    assert kept.returncode == 0 and (notebooks / "nb_a.ipynb").is_file()
    assert run_cli("job", "rm", "nb_b", "--notebooks", "--force").returncode == 0
    assert sorted(p.name for p in notebooks.iterdir()) == ["nb_a.html", "nb_a.ipynb", "nb_b.ipynb"]


# Removes the old groups with the store's statements traced: at the statement that deletes the groups'
# rows (inside the transaction, before it commits) it crashes (os._exit) or sends itself Ctrl+C.
INTERRUPTED = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from metta_exp.history.remove import plan, remove
    from metta_exp.store import JobStore

    how = sys.argv[1]
    store = JobStore.open(Path(os.environ["METTA_EXP_STATE_DIR"]))
    removal = plan(store, ["old_*"])

    def trace(statement):
        if statement.startswith("DELETE FROM groups"):
            if how == "crash":
                os._exit(9)
            os.kill(os.getpid(), signal.SIGINT)

    store._db.set_trace_callback(trace)
    try:
        remove(store, removal)
    except KeyboardInterrupt:
        sys.exit(130)
    """
)


def test_a_crash_inside_the_transaction_leaves_every_group_whole(history: Path) -> None:
    before = {g: counts(history, g) for g in ("old_ok", "old_failed")}
    result = subprocess.run([sys.executable, "-c", INTERRUPTED, "crash"], capture_output=True, text=True)
    assert result.returncode == 9, result.stderr
    assert {g: counts(history, g) for g in ("old_ok", "old_failed")} == before
    assert (history / "runs" / "old_ok" / "a" / "attempt-1.log").is_file()
    assert not (history / ".removing").exists()


def test_ctrl_c_during_the_transaction_lets_it_finish_and_the_next_rm_frees_what_is_left(
    history: Path,
) -> None:
    size = du(history / "runs" / "old_ok") + du(history / "runs" / "old_failed")
    result = subprocess.run([sys.executable, "-c", INTERRUPTED, "sigint"], capture_output=True, text=True)
    assert result.returncode == 130, result.stderr
    # the rows are gone and the files moved out of runs/ (held Ctrl+C came after that), not deleted yet
    assert counts(history, "old_ok") == dict.fromkeys(TABLES, 0) == counts(history, "old_failed")
    assert not (history / "runs" / "old_ok").exists() and not (history / "runs" / "old_failed").exists()
    left = list((history / ".removing").iterdir())
    assert len(left) == 1 and sorted(p.name for p in left[0].iterdir()) == ["0-old_failed", "1-old_ok"]
    assert disk_usage(left) == du(left[0]) >= size  # what is left: those directories
    result = run_cli("job", "rm", "new_ok", "--force")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-2].startswith(
        f"Also what an interrupted job rm left in {history / '.removing'}: "
    )
    assert not (history / ".removing").exists()


@pytest.mark.parametrize("gnu_du", [True, False], ids=["du", "walked"])
def test_sizes_count_blocks_once_per_file(
    tmp_path: Path, gnu_du: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_bytes(b"x" * 10_000)
    os.link(tmp_path / "d" / "f", tmp_path / "d" / "g")
    (tmp_path / "d" / "l").symlink_to("/usr")  # not followed
    (tmp_path / "e").mkdir()
    os.link(tmp_path / "d" / "f", tmp_path / "e" / "h")  # counted with d, the first set that has it
    (tmp_path / "e" / "odd\tname\n").write_bytes(b"y" * 5000)
    expected = [du(tmp_path / "d"), int(subprocess.run(
        ["du", "-s", "-B1", str(tmp_path / "d"), str(tmp_path / "e")], capture_output=True, text=True
    ).stdout.split()[2])]  # fmt: skip
    if not gnu_du:  # no du on PATH: the walk in Python counts, by the same rules
        monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    assert disk_usage_each([[tmp_path / "d"], [tmp_path / "e", tmp_path / "missing"]]) == expected
    assert disk_usage([tmp_path / "d"]) == expected[0]
    assert disk_usage([tmp_path / "missing"]) == 0
    assert [fmt_bytes(n) for n in (0, 512, 4096, 1_300_000, 3 * 2**30, 5 * 2**40)] == [
        "0 B", "512 B", "4.0 KiB", "1.2 MiB", "3.0 GiB", "5.0 TiB",
    ]  # fmt: skip


@pytest.mark.parametrize("rm_on_path", [True, False], ids=["rm", "rmtree"])
def test_delete_takes_away_everything_named_and_nothing_else(
    tmp_path: Path, rm_on_path: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    for d in ("a", "b"):
        for k in range(5):
            (tmp_path / d / f"r{k}").mkdir(parents=True)
            (tmp_path / d / f"r{k}" / "attempt-1.log").write_text("x")
    (tmp_path / "b" / "link").symlink_to(tmp_path / "kept")  # deleted, not followed
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "file").write_text("stays")
    (tmp_path / "c.ipynb").write_text("{}")
    if not rm_on_path:
        monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    delete([tmp_path / "a", tmp_path / "b", tmp_path / "c.ipynb", tmp_path / "missing"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]
    assert (tmp_path / "kept" / "file").read_text() == "stays"
