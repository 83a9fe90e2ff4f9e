"""``job runs``: every run across groups as one table, with final metrics kept by the runner, overrides,
GPU-hours, ``--where``, ``--sort``, ``-n``, ``--json``, ``--csv`` and ``groups.runs`` (a DataFrame); on
real store files, the command run as a user runs it, and a real group whose jobs use ``tracking``."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import run_cli, wait_group_end
from history_store import DAY, add_group

from metta_exp import groups
from metta_exp.cli.tables import fit_columns, runs_table, split_overrides
from metta_exp.config import Experiment
from metta_exp.history.runs import RunRow, Runs, overrides_of, short_keys
from metta_exp.logs.tail import final_metrics
from metta_exp.metrics.local import last_values
from metta_exp.status import JobStatus
from metta_exp.store import JobStore

NOW = time.time()
LR = "trainer.learning_rate"


@pytest.fixture
def history(state_dir: Path) -> Path:
    """A baseline group from a week ago and a sweep from yesterday (a command-line override of the
    experiment's timesteps, one run failed, one still running), and a GPU group from a month ago."""
    with JobStore.open(state_dir) as store:
        add_group(
            store,
            "baseline",
            ["base"],
            created_at=NOW - 6 * DAY,
            args=[f"{LR}=0.01", "trainer.total_timesteps=1000"],
            metrics={"base": {"overview/reward": 20.0, "overview/sps": 900.0, "_step": 1000}},
        )
        add_group(
            store,
            "lr_sweep",
            ["lr_low", "lr_mid", "lr_high"],
            created_at=NOW - 1 * DAY,
            args=["trainer.total_timesteps=1000", "trainer.total_timesteps=2000"],  # the last one wins
            args_per_run={
                "lr_low": [f"{LR}=1e-2"],
                "lr_mid": [f"{LR}=0.03"],
                "lr_high": [f"{LR}=0.1", "opt=adam"],
            },
            status={"lr_high": JobStatus.FAILED},
            ran={"lr_mid": [(NOW - DAY + 100, None)]},
            metrics={
                "lr_low": {"overview/reward": 35.5, "overview/sps": 1000.0, "_step": 2000},
                "lr_high": {"overview/reward": 8.25, "_step": 700},
            },
            end=False,
        )
        add_group(store, "gpu_old", ["big"], created_at=NOW - 30 * DAY, gpus=8, args=[f"{LR}=0.003"])
    return state_dir


def runs_json(*args: str) -> list[dict]:
    result = run_cli("job", "runs", "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_every_run_newest_group_first_with_its_final_metrics_and_overrides(history: Path) -> None:
    rows = runs_json()
    assert [(r["group"], r["run"], r["status"]) for r in rows] == [
        ("lr_sweep", "lr_low", "succeeded"),
        ("lr_sweep", "lr_mid", "running"),
        ("lr_sweep", "lr_high", "failed"),
        ("baseline", "base", "succeeded"),
        ("gpu_old", "big", "succeeded"),
    ]
    low, mid, high, base, big = rows
    assert low == {
        "group": "lr_sweep",
        "run": "lr_low",
        "status": "succeeded",
        "attempts": 1,
        "started_at": low["started_at"],
        "ended_at": low["ended_at"],
        "duration_s": 60.0,
        "gpus": 0,
        "gpu_hours": 0.0,
        "steps": 2000,
        "metrics": {"overview/reward": 35.5, "overview/sps": 1000.0},
        "overrides": {"trainer.total_timesteps": 2000, LR: 0.01},
        "args": ["trainer.total_timesteps=1000", "trainer.total_timesteps=2000", f"{LR}=1e-2"],
        "params": None,
    }
    assert mid["ended_at"] is None and mid["metrics"] == {} and mid["duration_s"] >= DAY - 100 - 5
    assert high["overrides"] == {"trainer.total_timesteps": 2000, LR: 0.1, "opt": "adam"}
    assert high["metrics"] == {"overview/reward": 8.25} and high["steps"] == 700
    assert (big["gpus"], big["gpu_hours"]) == (8, 8 * 60 / 3600)


def test_filters_where_and_sort(history: Path) -> None:
    def runs(*args: str) -> list[str]:
        return [r["run"] for r in runs_json(*args)]

    assert runs("lr_*") == ["lr_low", "lr_mid", "lr_high"]
    assert runs("--since", "7d") == ["lr_low", "lr_mid", "lr_high", "base"]
    assert runs("--until", "2d", "--status", "succeeded") == ["base", "big"]
    assert runs("--where", f"{LR}=0.01") == ["lr_low", "base"]  # 1e-2 is 0.01
    assert runs("--where", f"{LR}>=0.01", "--where", "run~lr_*") == ["lr_low", "lr_mid", "lr_high"]
    assert runs("--where", "opt=adam") == ["lr_high"]
    assert runs("--where", "reward>10") == ["lr_low", "base"]
    assert runs("--where", "status!=succeeded") == ["lr_mid", "lr_high"]
    assert runs("--where", "gpus>=1") == ["big"]
    assert runs("--sort", "overview/reward") == [
        "lr_low",
        "base",
        "lr_high",
        "lr_mid",
        "big",
    ]  # no value: last
    assert runs("--sort", "reward", "--reverse") == ["lr_high", "base", "lr_low", "lr_mid", "big"]
    assert runs("--sort", LR, "-n", "2") == ["lr_high", "lr_mid"]
    assert runs("--sort", "run") == ["base", "big", "lr_high", "lr_low", "lr_mid"]
    assert runs("--sort", "gpu_hours", "-n", "1") == ["big"]
    assert runs("--where", "run~nothing*") == []
    # an override by the last part(s) of its key, as a terminal's table shows it, when no other key ends so
    assert runs("--where", "learning_rate=0.01") == ["lr_low", "base"]
    assert runs("--sort", "learning_rate", "-n", "2") == ["lr_high", "lr_mid"]
    assert runs("--where", "total_timesteps>1500") == ["lr_low", "lr_mid", "lr_high"]


def test_a_window_says_how_many_more_there_are(history: Path) -> None:
    result = run_cli("job", "runs", "--json", "-n", "2")
    assert [r["run"] for r in json.loads(result.stdout)] == ["lr_low", "lr_mid"]
    assert result.stderr == "3 more runs not shown: --all shows every one, -n N the first N.\n"
    result = run_cli("job", "runs", "--json", "--sort", "reward", "-n", "1")
    assert result.stderr == "4 more runs not shown: --all shows every one, -n N the first N.\n"
    text = run_cli("job", "runs", "-n", "3", "--where").stdout.splitlines()
    assert text[4] == "2 more runs not shown: --all shows every one, -n N the first N."
    assert len(runs_json("--all")) == 5


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--where", "trainer.learnin_rate>=0.01"],
         "--where 'trainer.learnin_rate>=0.01': no selected run has 'trainer.learnin_rate'; closest: "
         "trainer.learning_rate"),
        (["--where", f"{LR}=>0.01"],
         f"--where '{LR}=>0.01': no operator it knows; write KEY=VALUE, KEY!=VALUE, KEY>=N, KEY<=N, KEY>N, "
         "KEY<N or KEY~GLOB"),
        (["--where", "lr_low"],
         "--where 'lr_low': no operator it knows; write KEY=VALUE, KEY!=VALUE, KEY>=N, KEY<=N, KEY>N, KEY<N "
         "or KEY~GLOB"),
        (["--sort", "rewrd"], "--sort rewrd: no selected run has 'rewrd'; closest: reward"),
        (["--sort", "overview/rewrd"], "--sort overview/rewrd: no selected run has 'overview/rewrd'; closest: "
         "overview/reward, overview/sps"),
        (["--status", "runing"], "unknown status 'runing' (did you mean 'running'?); the statuses: pending, "
         "launching, running, succeeded, failed, cancelled, skipped, pruned"),
        (["--since", "last week"], "--since 'last week' is not a time: give an age (30m, 12h, 7d, 2w), a date "
         "(2026-12-01) or a time (2026-12-01T14:30)"),
        (["lr_sweeep"], "no group 'lr_sweeep'; closest: lr_sweep (see 'metta-exp job list')"),
        (["base*", "lr_x*"], "no group matches 'lr_x*'; newest: lr_sweep, baseline, gpu_old (see 'metta-exp job "
         "list')"),
        (["-n", "-1"], "-n must be 1 or more, got -1"),
    ],
)  # fmt: skip
def test_bad_runs_input_is_one_error_line_and_exit_2(history: Path, args: list[str], error: str) -> None:
    for output in ([], ["--json"]):
        result = run_cli("job", "runs", *args, *output)
        assert (result.returncode, result.stdout, result.stderr) == (2, "", f"Error: {error}\n")


def test_csv_has_a_column_per_metric_and_override(history: Path) -> None:
    result = run_cli("job", "runs", "lr_*", "baseline", "--csv")
    assert result.returncode == 0, result.stderr
    table = list(csv.reader(io.StringIO(result.stdout)))
    assert table[0] == [
        "group", "run", "status", "attempts", "started_at", "ended_at", "duration_s", "gpus", "gpu_hours", "steps",
        "overview/reward", "overview/sps", "trainer.total_timesteps", LR, "opt",
    ]  # fmt: skip
    low = dict(zip(table[0], table[1], strict=True))
    assert [low[k] for k in ("run", "steps", "overview/reward", "overview/sps", LR, "opt")] == [
        "lr_low", "2000", "35.5", "1000.0", "1e-2", "",
    ]  # fmt: skip
    assert [row[1] for row in table[1:]] == ["lr_low", "lr_mid", "lr_high", "base"]


def test_the_python_api_returns_a_dataframe_with_the_same_rows(history: Path) -> None:
    frame = groups.runs(where=f"{LR}<=0.05", sort="reward")
    assert list(frame["run"]) == ["lr_low", "base", "lr_mid", "big"]
    assert list(frame.columns[:10]) == [
        "group", "run", "status", "attempts", "started_at", "ended_at", "duration_s", "gpus", "gpu_hours", "steps"
    ]  # fmt: skip
    assert str(frame["started_at"].dtype) == "datetime64[ns, UTC]"
    assert frame[LR].tolist() == [0.01, 0.01, 0.03, 0.003]  # typed
    assert frame["overview/reward"].tolist()[:2] == [35.5, 20.0] and pd.isna(frame["overview/reward"].iloc[2])
    assert frame["steps"].tolist()[:2] == [2000, 1000]
    assert groups.runs("gpu_old")["gpus"].tolist() == [8]


def test_the_table_shows_what_differs_and_what_every_run_shares() -> None:
    now = 1_800_000_000.0
    low = row(
        "lr_sweep",
        "lr_low",
        {"overview/reward": 35.5, "overview/sps": 1234.5},
        {"total": "2000", "lr": "0.01"},
    )
    high = row(
        "lr_sweep",
        "lr_high",
        {"overview/reward": 8.25},
        {"total": "2000", "lr": "0.1", "opt": "adam"},
        "failed",
    )
    runs = Runs([low, high], matched=2, metrics=["overview/reward", "overview/sps"])
    text, notes = runs_table(runs, now)
    start = time.strftime("%H:%M:%S", time.localtime(now - 100))
    assert text.splitlines() == [
        "GROUP     RUN      STATUS     ATTEMPTS  STARTED   TIME  reward    sps  OVERRIDES",
        f"lr_sweep  lr_low   succeeded         1  {start}  1:00   35.50  1,234  lr=0.01",
        f"lr_sweep  lr_high  failed            1  {start}  1:00   8.250      -  lr=0.1 opt=adam",
    ]
    assert notes == ["Every run shown has total=2000."]
    narrow, notes = runs_table(runs, now, width=76)
    assert max(len(line) for line in narrow.splitlines()) == 76
    assert narrow.splitlines()[2].endswith("  8.250  lr=0.1 opt=…") and "sps" not in narrow
    assert notes == [
        "Not shown for want of width: sps (--json or --csv has every column).",
        "Every run shown has total=2000.",
    ]
    narrower, notes = runs_table(runs, now, width=62)
    lines = narrower.splitlines()  # as narrow as it gets: the overrides as wide as their title
    assert lines[0].endswith("TIME  OVERRIDES") and lines[2].endswith("1:00  lr=0.…") and len(lines[0]) == 65
    assert notes[0] == "Not shown for want of width: reward, sps (--json or --csv has every column)."


def test_a_narrow_terminal_shows_the_overrides_that_vary_most_first_by_short_keys() -> None:
    """The demo's case: two groups of three learning rates, each group with its own timesteps. In 80 columns
    the full keys left every row reading ``trainer.total_tim…`` (the learning rate cut off); now the learning
    rate (most values) comes first, each key by the last part no other key ends with."""
    now = 1_800_000_000.0
    runs = Runs(
        [
            row(group, f"lr_{lr}", {"overview/reward": 100.0}, {"trainer.total_timesteps": steps, LR: lr})
            for group, steps in (("demo-b", "80000"), ("demo-a", "150000"))
            for lr in ("0.01", "0.03", "0.1")
        ],
        matched=6,
        metrics=["overview/reward"],
    )
    piped = runs_table(runs, now)[0].splitlines()
    assert piped[1].endswith("  trainer.total_timesteps=80000 trainer.learning_rate=0.01")
    assert runs_table(runs, now, width=200)[0] == "\n".join(piped)  # it fits: as in a pipe
    narrow, notes = runs_table(runs, now, width=90)
    lines = narrow.splitlines()
    assert max(map(len, lines)) == 90 and notes == []
    assert [line.split("  ")[-1] for line in lines[1:3]] == ["learning_rate=0.01 total_ti…",
                                                             "learning_rate=0.03 total_ti…"]  # fmt: skip
    assert short_keys(["trainer.lr", "opt.lr", "trainer.total", "lr.x", "x"]) == {
        "trainer.lr": "trainer.lr", "opt.lr": "opt.lr", "trainer.total": "total", "lr.x": "lr.x", "x": "x"
    }  # fmt: skip


def row(group: str, run: str, metrics: dict, overrides: dict, status: str = "succeeded") -> RunRow:
    t0 = 1_800_000_000.0 - 100
    return RunRow(group, run, status, 1, t0, t0 + 60, 60.0, 0, 0.0, 1000, metrics, overrides, (), None)


def test_fitting_shortens_overrides_then_leaves_out_metrics_then_names() -> None:
    columns = [("GROUP", ["a_very_long_group_name_here"], False), ("RUN", ["r"], False),
               ("m1", ["1.0"], True), ("m2", ["2.0"], True), ("OVERRIDES", ["x=" + "1" * 40], False)]  # fmt: skip
    fitted, left = fit_columns(columns, 86, 2, 2)
    assert left == [] and fitted == columns  # fits: as it is
    fitted, left = fit_columns(columns, 60, 2, 2)  # 44 for the others: 16 left
    assert left == [] and fitted[-1][1] == ["x=" + "1" * 13 + "…"]
    fitted, left = fit_columns(columns, 51, 2, 2)  # overrides at 12 still 56: m2 goes
    assert left == ["m2"] and [c[0] for c in fitted] == ["GROUP", "RUN", "m1", "OVERRIDES"]
    assert fitted[-1][1] == ["x=111111111…"]
    fitted, left = fit_columns(columns, 30, 2, 2)  # then m1, then the group's name
    assert left == ["m1", "m2"] and fitted[0][1] == ["a_very_long…"] and fitted[-1][1] == ["x=11111111…"]


def test_overrides_as_the_trainer_sees_them() -> None:
    assert overrides_of(["a=1", "+b=x", "flag", "--opt=2", "a=3", "c=d=e"]) == {
        "a": "3",
        "b": "x",
        "c": "d=e",
    }
    assert split_overrides([{"a": "1", "b": "2"}, {"a": "1", "b": "3"}, {"a": "1"}]) == (["b"], {"a": "1"})


# --- final metric values: kept by the runner, read from the files when not --------------------------------


def test_last_values_are_the_latest_attempts_last_finite_values(tmp_path: Path) -> None:
    lines = [
        {"_step": 10, "_attempt": 1, "r": 1.0, "s": 5.0},
        {"_step": 5, "_attempt": 2, "r": 2.0, "s": 6.0},
        {"_step": 8, "_attempt": 2, "r": 3.0},
        {"_step": 9, "_attempt": 2, "r": None, "s": "fast"},  # NaN and text are not values
    ]
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"_step": 10, "_att')  # a torn line
    assert last_values(path, ["r", "s", "t"]) == {"_step": 9.0, "r": 3.0, "s": 6.0}
    assert last_values(path, ["r", "s"], attempt=1) == {"_step": 10.0, "r": 1.0, "s": 5.0}
    assert last_values(path, ["r"], attempt=3) == {}
    assert last_values(tmp_path / "missing.jsonl", ["r"]) == {}
    big = "".join(json.dumps({"_step": i, "_attempt": 1, "r": float(i)}) + "\n" for i in range(5000))
    path.write_text(json.dumps({"_step": 0, "_attempt": 1, "rare": 7.5}) + "\n" + big)
    assert last_values(path, ["r", "rare"], tail=4096) == {"_step": 4999.0, "r": 4999.0, "rare": 7.5}


def test_a_remote_runs_values_come_from_its_last_progress_line(tmp_path: Path) -> None:
    log = tmp_path / "attempt-1.log"
    log.write_text(
        "[metta-exp] progress step=100 total=1000 sps=50 overview/reward=1.5\nnoise\n"
        "(task, pid=1) [metta-exp] progress step=900 total=1000 sps=60.5 overview/reward=7.25 other=3\n"
    )
    assert final_metrics(log, str(tmp_path / "nothing"), ["overview/reward", "overview/sps"]) == {
        "_step": 900.0,
        "overview/reward": 7.25,
    }
    assert final_metrics(tmp_path / "missing.log", str(tmp_path), ["x"]) == {}


def test_runs_read_the_files_of_runs_whose_values_were_not_kept(history: Path) -> None:
    """An older store (or a runner that stopped before keeping them): the values come from the run's files."""
    with JobStore.open(history) as store:
        base = store.job("baseline", "base")
        with store.atomic() as db:
            db.execute("UPDATE attempts SET final_metrics = NULL")
    Path(base.run_dir).mkdir(parents=True)
    (Path(base.run_dir) / "metrics.jsonl").write_text(
        json.dumps({"_step": 500, "_attempt": 1, "overview/reward": 12.5, "other": 1}) + "\n"
    )
    rows = {r["run"]: r for r in runs_json("--where", "reward>=0")}
    assert list(rows) == ["base"]
    assert rows["base"]["metrics"] == {"overview/reward": 12.5} and rows["base"]["steps"] == 500


JOB = textwrap.dedent(
    """
    import sys
    from metta_exp import tracking
    lr = float(sys.argv[-1].split("=")[1])
    with tracking.init(total_steps=300) as run:
        for step in range(0, 301, 100):
            run.log({"overview/reward": step * lr, "overview/sps": 1000.0 + step}, step=step)
    """
)


def test_the_runner_keeps_each_runs_final_values_when_it_ends(state_dir: Path) -> None:
    exp = Experiment(
        command=[sys.executable, "-c", JOB],
        runs=["slow", "fast"],
        args_per_run={"slow": [f"{LR}=0.01"], "fast": [f"{LR}=0.1"]},
        gpus=0,
        remote=False,
        wait=False,
        generate_notebook=False,
        group="tracked",
    )
    assert exp.launch() == 0
    wait_group_end(state_dir, "tracked")
    with JobStore.open(state_dir, readonly=True) as store:
        kept = store._db.execute("SELECT final_metrics FROM attempts ORDER BY job_id").fetchall()
    assert [json.loads(k[0]) for k in kept] == [
        {"_step": 300, "overview/sps": 1300.0, "overview/reward": 3.0},
        {"_step": 300, "overview/sps": 1300.0, "overview/reward": 30.0},
    ]
    best = runs_json("tracked", "--sort", "reward", "-n", "1")
    assert [(r["run"], r["metrics"]["overview/reward"], r["overrides"]) for r in best] == [
        ("fast", 30.0, {LR: 0.1})
    ]


def test_runs_on_a_store_from_before_history_reads_without_writing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with JobStore.open(state) as store:
        add_group(
            store,
            "g",
            ["a"],
            created_at=NOW - DAY,
            args=[f"{LR}=0.5"],
            metrics={"a": {"overview/reward": 1.0}},
        )
    db = sqlite3.connect(state / "jobs.sqlite")  # back to 0004: what an older metta-exp wrote
    db.execute("DELETE FROM schema_migrations WHERE name = '0005_history'")
    db.execute("ALTER TABLE attempts DROP COLUMN final_metrics")
    db.commit()
    db.close()
    before = (state / "jobs.sqlite").read_bytes()
    result = run_cli("job", "runs", "--json", "--where", f"{LR}>0.1", env={"METTA_EXP_STATE_DIR": str(state)})
    assert result.returncode == 0, result.stderr
    assert [(r["run"], r["metrics"]) for r in json.loads(result.stdout)] == [("a", {})]  # no file: no values
    assert (state / "jobs.sqlite").read_bytes() == before
