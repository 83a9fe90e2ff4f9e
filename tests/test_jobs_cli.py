"""``metta-exp job list|show|kill|logs|retry|notebook``, run as a user runs them (``python -m metta_exp``
in a subprocess) against a real store and real job processes; and the pure tables of list and show."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import shlex
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
from conftest import PY, run_cli, wait_for, wait_group_end

from metta_exp.backends.procs import pid_alive as alive  # a live process: not gone, not a zombie
from metta_exp.cli.tables import group_table, jobs_table
from metta_exp.config import Experiment
from metta_exp.records import GroupRecord, GroupSummary, JobRecord, JobSpec
from metta_exp.status import ALL_STATUSES, JobStatus
from metta_exp.store import DB_NAME, JobStore
from metta_exp.submit import launch_experiment

# A job that prints progress and numbered lines, can start a child process, can wait for a 'go' file
# in its run dir, and ends with an exit code: `exit=N`, `fail_first=K` (fail its first K attempts).
JOB = textwrap.dedent(
    """
    import os, pathlib, subprocess, sys, time
    opts = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
    rd = pathlib.Path(os.environ["METTA_EXP_RUN_DIR"])
    attempt = int(os.environ["METTA_EXP_ATTEMPT"])
    with open(rd / "starts.txt", "a") as f:
        f.write(f"{attempt}\\n")
    if opts.get("child"):
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        (rd / f"child-{attempt}.tmp").write_text(str(child.pid))
        (rd / f"child-{attempt}.tmp").replace(rd / f"child-{attempt}.pid")
    lines = int(opts.get("lines", 3))
    for i in range(1, lines + 1):
        print(f"attempt {attempt} line {i}", flush=True)
        print(f"[metta-exp] progress step={i} total={lines} sps=10", flush=True)
        time.sleep(float(opts.get("tick", 0.01)))
    while opts.get("gate") and not (rd / "go").exists():
        time.sleep(0.05)
    if attempt <= int(opts.get("fail_first", 0)):
        raise RuntimeError(f"attempt {attempt} failed on purpose")
    sys.exit(int(opts.get("exit", 0)))
    """
)


def experiment(runs: list[str], **kw: Any) -> Experiment:
    return Experiment(
        command=[PY, "-c", JOB], runs=runs, remote=False, wait=False, gpus=0, generate_notebook=False, **kw
    )


def launch(state_dir: Path, exp: Experiment, group: str) -> JobStore:
    exp.group = group
    assert launch_experiment(exp, name="test", state_dir=state_dir, out=io.StringIO()) == 0
    return JobStore.open(state_dir)


def dump(state_dir: Path) -> list[str]:
    with sqlite3.connect(state_dir / DB_NAME) as db:
        return list(db.iterdump())


# --- list and show ----------------------------------------------------------------------------------------


def test_list_without_a_store_says_so_and_creates_nothing(state_dir: Path) -> None:
    result = run_cli("job", "list")
    assert result.returncode == 0
    assert result.stdout == f"No groups yet in {state_dir}. Launch one: metta-exp +experiment=NAME\n"
    assert run_cli("job", "list", "--json").stdout == "[]\n"
    show = run_cli("job", "show", "nope")
    assert show.returncode == 2
    assert show.stderr.startswith("Error: no group 'nope': no groups yet in ")
    assert not state_dir.exists()


def test_list_and_show_json_follow_the_interface(state_dir: Path) -> None:
    exp = experiment(
        ["first", "second", "broken"], args_per_run={"broken": ["exit=3"]}, depends_on={"second": ["first"]}
    )
    launch(state_dir, exp, "lr_sweep")
    wait_group_end(state_dir, "lr_sweep")

    listed = json.loads(run_cli("job", "list", "--json").stdout)
    assert listed == [
        {
            "group": "lr_sweep",
            "total": 3,
            "pending": 0,
            "launching": 0,
            "running": 0,
            "succeeded": 2,
            "failed": 1,
            "cancelled": 0,
            "skipped": 0,
            "pruned": 0,
            "created_at": listed[0]["created_at"],
            "ended_at": listed[0]["ended_at"],
            "experiment": "test",
            "backend": "local",
            "gpu_hours": 0.0,  # no GPU
        }
    ]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", listed[0]["created_at"])

    shown = json.loads(run_cli("job", "show", "lr_sweep", "--json").stdout)
    fields = [
        "group",
        "run",
        "status",
        "attempts",
        "exit_code",
        "started_at",
        "ended_at",
        "progress",
        "wandb_url",
        "log_path",
        "depends_on",
        "reason",
        "trial",  # None: not a search's trial
        "gpu_hours",
    ]
    assert [list(row) for row in shown] == [fields] * 3
    by_run = {row["run"]: row for row in shown}
    assert by_run["second"]["depends_on"] == ["first"] and by_run["first"]["depends_on"] == []
    assert by_run["broken"] | {"started_at": None, "ended_at": None, "log_path": None} == {
        "group": "lr_sweep",
        "run": "broken",
        "status": "failed",
        "attempts": 1,
        "exit_code": 3,
        "started_at": None,
        "ended_at": None,
        "progress": 1.0,
        "wandb_url": None,
        "log_path": None,
        "depends_on": [],
        "reason": "exit code 3",
        "trial": None,
        "gpu_hours": 0.0,
    }
    for row in shown:
        assert row["started_at"] <= row["ended_at"] and row["ended_at"].endswith("+00:00")
        assert Path(row["log_path"]).read_text().startswith("attempt 1 line 1\n")


def test_show_reads_progress_from_the_demo_trainers_log(state_dir: Path) -> None:
    exp = Experiment(
        module="metta_exp.examples.cartpole",
        runs=["ok", "crash"],
        remote=False,
        wait=False,
        gpus=0,
        generate_notebook=False,
        args=["trainer.total_timesteps=3000", "trainer.batch_steps=500"],
        args_per_run={"crash": ["trainer.fail_at_step=1500"]},
    )
    launch(state_dir, exp, "demo")
    wait_group_end(state_dir, "demo")
    shown = {row["run"]: row for row in json.loads(run_cli("job", "show", "demo", "--json").stdout)}
    assert shown["ok"]["status"] == "succeeded" and shown["ok"]["progress"] == 1.0
    assert shown["crash"]["status"] == "failed" and 0.3 < shown["crash"]["progress"] < 0.7
    text = run_cli("job", "show", "demo").stdout
    assert re.search(r"^crash +failed +1 +1 .* exit code 1$", text, re.M), text
    logs = run_cli("job", "logs", "demo", "crash", "--tail", "1")
    assert logs.stdout == "RuntimeError: trainer.fail_at_step=1500: failing on purpose\n"


EXPECTED_LIST = [
    "GROUP     BACKEND   TOTAL  PENDING  RUNNING  SUCCEEDED  FAILED  CANCELLED  SKIPPED  AGE  STATE",
    "lr_sweep  local        12        4        3          5       0          0        0  2m   running",
    "old       skypilot      3        0        0          2       1          0        0  3d   ended",
]


def test_list_and_show_tables_at_a_fixed_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        t0 = 1_800_000_000.0
        counts = {s.value: 0 for s in ALL_STATUSES} | {
            "running": 2,
            "launching": 1,
            "succeeded": 5,
            "pending": 4,
        }
        old = {s.value: 0 for s in ALL_STATUSES} | {"succeeded": 2, "failed": 1}
        summaries = [
            GroupSummary("lr_sweep", "demo", "local", t0, None, counts),
            GroupSummary("old", "demo", "skypilot", t0 - 3 * 86400, t0 - 86400, old),
        ]
        group = GroupRecord("lr_sweep", "demo", "local", {}, t0, None, False, "h:1:x", t0 + 15, 42)
        listed = group_table(summaries, {"lr_sweep": group}, t0 + 125, alive=lambda g: True)
        assert listed.split("\n") == EXPECTED_LIST
        assert "no runner" in group_table(summaries, {"lr_sweep": group}, t0, alive=lambda g: False)

        def job(run: str, status: JobStatus, **kw: Any) -> JobRecord:
            base: dict[str, Any] = dict(
                group="lr_sweep",
                run=run,
                position=0,
                status=status,
                stored_spec=JobSpec("lr_sweep", run, (), {}, 0, "/r", ""),
                attempts=1,
                exit_code=None,
                reason=None,
                handle=None,
                gpu_ids=(),
                queued_at=t0,
                started_at=t0 + 1,
                ended_at=None,
                log_path=f"/r/{run}.log",
                run_dir="/r",
                wandb_url=None,
            )
            return JobRecord(**(base | kw))

        jobs = [
            job("a", JobStatus.SUCCEEDED, exit_code=0, ended_at=t0 + 61),
            job("b", JobStatus.FAILED, exit_code=1, ended_at=t0 + 3, reason="exit code 1", attempts=2),
            job("c", JobStatus.RUNNING),
            job("d", JobStatus.PENDING, attempts=0, started_at=None, log_path=None, depends_on=("a", "c")),
        ]
        assert jobs_table(group, jobs, {"a": 1.0, "b": 0.25, "c": 0.5}, t0 + 90) == (
            "Group lr_sweep · demo on local · created 08:00:00 · 4 jobs: 1 pending, 1 running, 1 succeeded, "
            "1 failed\n"
            "RUN  STATUS     ATTEMPTS  EXIT  STARTED   TIME  PROGRESS  DEPENDS ON  REASON\n"
            "a    succeeded         1     0  08:00:01  1:00      100%  -           -\n"
            "b    failed            2     1  08:00:01  0:02       25%  -           exit code 1\n"
            "c    running           1     -  08:00:01  1:29       50%  -           -\n"
            "d    pending           0     -  -            -         -  a, c        -"
        )
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_unknown_group_or_run_is_one_line_with_the_closest_names(state_dir: Path) -> None:
    launch(state_dir, experiment(["high_lr", "low_lr"]), "lr_sweep")
    wait_group_end(state_dir, "lr_sweep")
    for args in (
        ["show", "lr_swep"],
        ["monitor", "lr_swep"],
        ["kill", "lr_swep", "--force"],
        ["retry", "lr_swep"],
        ["logs", "lr_swep", "high_lr"],
        ["notebook", "lr_swep"],
    ):
        result = run_cli("job", *args)
        assert result.returncode == 2, args
        assert result.stderr == "Error: no group 'lr_swep'; closest: lr_sweep (see 'metta-exp job list')\n"
    result = run_cli("job", "logs", "lr_sweep", "hihg_lr")
    assert result.returncode == 2
    assert result.stderr == "Error: group 'lr_sweep' has no run 'hihg_lr'; closest: high_lr\n"


def test_every_command_has_an_example_in_its_help() -> None:
    for command in ("list", "show", "monitor", "kill", "logs", "retry", "notebook", "resume"):
        result = run_cli("job", command, "--help")
        assert result.returncode == 0
        assert f"example:\n  metta-exp job {command}" in result.stdout, command


HEAVY = (
    "hydra", "omegaconf", "sky", "wandb", "pandas", "matplotlib", "nbformat", "jinja2", "rich",
    "nbconvert", "nbclient", "ipykernel", "jupyter_client", "zmq",
)  # fmt: skip


@pytest.mark.parametrize(
    "args", [["list"], ["list", "--json"], ["show", "light"], ["show", "light", "--json"]]
)
def test_list_and_show_json_import_nothing_heavy(state_dir: Path, args: list[str]) -> None:
    launch(state_dir, experiment(["a"]), "light")
    wait_group_end(state_dir, "light")
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "metta_exp", "job", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert "metta_exp.cli.jobs" in imported
    heavy = sorted(m for m in imported if m.split(".")[0] in HEAVY)
    assert heavy == []
    # nor what starts or drives runners, nor (an ended group's progress was recorded) the log reader
    assert sorted(imported & DRIVING) == []
    assert "metta_exp.config" not in imported  # no experiment is decoded (it is not a search group)
    assert "difflib" not in imported  # (for a name not found only)


#: metta-exp's own modules that readers never need: starting and driving runners, reading logs
DRIVING = {
    "metta_exp.supervise.drive", "metta_exp.submit", "metta_exp.runner", "metta_exp.backends.local",
    "metta_exp.logs.tail", "metta_exp.monitor", "metta_exp.notebook",
}  # fmt: skip


def test_job_help_loads_only_the_parser() -> None:
    """``job --help`` (and a typo) answer before the API loads: no store, no config schema, no records."""
    for args in (["--help"], ["list", "--help"], ["shwo"]):
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "metta_exp", "job", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == (2 if args == ["shwo"] else 0), result.stderr
        imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if "|" in line}
        ours = {m for m in imported if m.startswith("metta_exp")}
        parser = {"metta_exp.cli", "metta_exp.cli.job_parser", "metta_exp.history"}  # (history: a default)
        assert ours == {"metta_exp", *parser, "metta_exp.errors"}, args


def test_readers_do_not_write(state_dir: Path) -> None:
    launch(state_dir, experiment(["a", "b"], args_per_run={"b": ["exit=2"]}), "read")
    wait_group_end(state_dir, "read")
    before = dump(state_dir)
    codes = {}
    for args in (
        ["list"],
        ["list", "--json"],
        ["show", "read"],
        ["show", "read", "--json"],
        ["logs", "read", "a"],
        ["logs", "read", "b", "--follow"],
        ["monitor", "read"],
    ):
        result = run_cli("job", *args)
        assert "Traceback" not in result.stderr, (args, result.stderr)
        codes[" ".join(args)] = result.returncode
    # each as documented: 1 where the command follows or watches to an end that is a failure (b failed)
    assert codes == {
        "list": 0,
        "list --json": 0,
        "show read": 0,
        "show read --json": 0,
        "logs read a": 0,
        "logs read b --follow": 1,
        "monitor read": 1,
    }
    assert dump(state_dir) == before


# --- kill -------------------------------------------------------------------------------------------------


def test_kill_while_a_runner_and_a_monitor_run(state_dir: Path) -> None:
    runs = ["done", "slow1", "slow2", "later1", "later2"]
    exp = experiment(runs, args=["gate=1", "child=1"], args_per_run={"done": ["lines=1"]}, max_parallel=3)
    store = launch(state_dir, exp, "victim")
    open_gate = state_dir / "runs" / "victim" / "done"
    wait_for(lambda: open_gate.is_dir(), what="done's run dir")
    (open_gate / "go").write_text("")

    def state() -> dict[str, JobStatus]:
        return {j.run: j.status for j in store.jobs("victim")}

    wait_for(
        lambda: (
            state()
            == {
                "done": JobStatus.SUCCEEDED,
                "slow1": JobStatus.RUNNING,
                "slow2": JobStatus.RUNNING,
                "later1": JobStatus.RUNNING,
                "later2": JobStatus.PENDING,
            }
        ),
        what="3 running, 1 pending",
    )
    rd = state_dir / "runs" / "victim"
    wait_for(
        lambda: all((rd / r / "child-1.pid").exists() for r in ("slow1", "slow2", "later1")), what="children"
    )
    pids = [
        int((rd / r / name).read_text().split()[0])
        for r in ("slow1", "slow2", "later1")
        for name in ("attempt-1.pid", "child-1.pid")
    ]
    assert all(alive(pid) for pid in pids)
    assert not alive(int((rd / "done" / "child-1.pid").read_text()))  # ended with 'done', before its record
    done_before = store.job("victim", "done")
    runner = store.group("victim").runner_pid
    assert runner and alive(runner)

    monitor = subprocess.Popen(
        [sys.executable, "-m", "metta_exp", "job", "monitor", "victim", "--refresh", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert monitor.stdout is not None
        watching = monitor.stdout.readline()  # the monitor is watching before the kill
        assert watching.startswith("Watching victim: 5 jobs, 1 pending, 3 running, 1 succeeded")
        result = run_cli("job", "kill", "victim", "--force")
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(  # 'done' left its child running: its runner ended it with it
            "Kill victim: end 3 running jobs (slow1, slow2, later1); "
            "cancel 1 pending job (later2); leave 1 ended job as it is.\n"
        )
        assert not any(alive(pid) for pid in pids), "a job process survived the kill"
        out, _ = monitor.communicate(timeout=60)
    finally:
        if monitor.poll() is None:
            monitor.kill()
            monitor.communicate()
    assert monitor.returncode == 1
    assert "kill requested" in out and "victim: 5 jobs, 1 succeeded, 4 cancelled" in out

    jobs = {j.run: j for j in store.jobs("victim")}
    assert jobs["done"] == done_before  # completed jobs untouched
    for run in ("slow1", "slow2", "later1"):
        assert jobs[run].status == JobStatus.CANCELLED and jobs[run].reason == "killed by user"
    assert jobs["later2"].status == JobStatus.CANCELLED and jobs["later2"].attempts == 0
    killed_at = next(e.id for e in store.events("victim") if e.kind == "killed")
    launched_after = [e for e in store.events("victim", killed_at) if e.new_status == "launching"]
    assert launched_after == []  # nothing launched after the kill
    wait_for(lambda: store.group("victim").ended_at, what="the runner to close the group")
    wait_for(lambda: not alive(runner), what="the runner to exit")  # no pass of it is left to launch
    assert [e for e in store.events("victim", killed_at) if e.new_status == "launching"] == []
    assert not (rd / "later2").exists()

    again = run_cli("job", "kill", "victim", "--force")
    assert again.returncode == 0
    assert again.stdout == "Nothing to kill in victim: no job is running or pending (5 ended).\n"


# Runs `metta-exp job kill GROUP --force` with every SQLite connection traced; prints on stderr how many
# write transactions changed a job (`jobs` or `attempts` rows) as `job transactions: N`.
COUNT_JOB_TRANSACTIONS = textwrap.dedent(
    """
    import sqlite3, sys
    counts = {"open": False, "touched": False, "n": 0}
    def trace(sql):
        s = sql.lstrip().upper()
        if s.startswith("BEGIN"):
            counts["open"], counts["touched"] = True, False
        elif s.startswith(("UPDATE JOBS", "UPDATE ATTEMPTS", "INSERT INTO ATTEMPTS")):
            counts["touched"] = True
        elif s.startswith(("COMMIT", "ROLLBACK")) and counts["open"]:
            counts["n"] += counts["touched"]
            counts["open"] = False
    real = sqlite3.connect
    def connect(*a, **kw):
        db = real(*a, **kw)
        db.set_trace_callback(trace)
        return db
    sqlite3.connect = connect
    from metta_exp.cli import main
    code = main(["job", "kill", sys.argv[1], "--force"])
    print(f"job transactions: {counts['n']}", file=sys.stderr)
    sys.exit(code)
    """
)


def test_kill_changes_the_jobs_in_one_transaction(state_dir: Path) -> None:
    exp = experiment(["a", "b", "c", "d"], args=["gate=1"], max_parallel=3)
    store = launch(state_dir, exp, "one")
    wait_for(
        lambda: [j.status for j in store.jobs("one")] == [JobStatus.RUNNING] * 3 + [JobStatus.PENDING],
        what="3 running, 1 pending",
    )
    result = subprocess.run(
        [PY, "-c", COUNT_JOB_TRANSACTIONS, "one"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "job transactions: 1\n" in result.stderr  # was 4: the pending jobs, then each running job
    assert [j.status for j in store.jobs("one")] == [JobStatus.CANCELLED] * 4
    assert [j.reason for j in store.jobs("one")] == ["killed by user"] * 3 + ["killed by user before launch"]
    kinds = [(e.kind, e.run, e.new_status) for e in store.events("one") if e.kind in ("killed", "status")]
    assert kinds[-5:] == [
        ("status", "d", "cancelled"),
        ("killed", None, None),
        ("status", "a", "cancelled"),
        ("status", "b", "cancelled"),
        ("status", "c", "cancelled"),
    ]


def test_kill_asks_first_and_no_terminal_means_no(state_dir: Path) -> None:
    store = launch(state_dir, experiment(["a", "b"], args=["gate=1"]), "ask")
    wait_for(lambda: all(j.status == JobStatus.RUNNING for j in store.jobs("ask")), what="both running")
    declined = run_cli("job", "kill", "ask")  # stdin is not a terminal
    assert declined.returncode == 1
    assert "Kill them? [y/N] no (stdin is not a terminal: use --force)\nNothing killed.\n" in declined.stdout
    assert [j.status for j in store.jobs("ask")] == [JobStatus.RUNNING] * 2

    for answer, code, status in ((b"n\n", 1, JobStatus.RUNNING), (b"y\n", 0, JobStatus.CANCELLED)):
        master, slave = pty.openpty()
        proc = subprocess.Popen(
            [sys.executable, "-m", "metta_exp", "job", "kill", "ask"],
            stdin=slave,
            stdout=subprocess.PIPE,
            text=True,
        )
        os.close(slave)
        os.write(master, answer)
        out, _ = proc.communicate(timeout=60)
        os.close(master)
        assert proc.returncode == code, out
        assert "end 2 running jobs (a, b)" in out and "Kill them? [y/N]" in out
        assert [j.status for j in store.jobs("ask")] == [status] * 2


# --- retry --------------------------------------------------------------------------------------------------


def test_retry_relaunches_failed_and_skipped_runs_and_keeps_history(state_dir: Path) -> None:
    exp = experiment(
        ["good", "flaky", "after"], args_per_run={"flaky": ["fail_first=1"]}, depends_on={"after": ["flaky"]}
    )
    store = launch(state_dir, exp, "again")
    jobs = {j.run: j for j in wait_group_end(state_dir, "again")}
    assert [jobs[r].status for r in ("good", "flaky", "after")] == [
        JobStatus.SUCCEEDED,
        JobStatus.FAILED,
        JobStatus.SKIPPED,
    ]

    result = run_cli("job", "retry", "again")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(
        "Requeued 2 runs of again: flaky (failed), after (skipped).\n"
        "Earlier attempts stay in the history: metta-exp job show again\n"
    )
    assert "again: 3 jobs, 3 succeeded" in result.stdout
    jobs = {j.run: j for j in store.jobs("again")}
    assert all(j.status == JobStatus.SUCCEEDED for j in jobs.values())
    assert (jobs["good"].attempts, jobs["flaky"].attempts, jobs["after"].attempts) == (1, 2, 1)
    assert (state_dir / "runs" / "again" / "good" / "starts.txt").read_text() == "1\n"  # not rerun
    history = store.attempts("again", "flaky")
    assert [(a.number, a.status) for a in history] == [(1, JobStatus.FAILED), (2, JobStatus.SUCCEEDED)]
    assert history[0].log_path != history[1].log_path and Path(history[0].log_path or "").exists()

    nothing = run_cli("job", "retry", "again")
    assert nothing.returncode == 0
    assert (
        nothing.stdout
        == "Nothing to retry in again: no failed, cancelled or skipped run (every run succeeded).\n"
    )


def test_retry_no_wait_returns_and_a_runner_finishes_the_group(state_dir: Path) -> None:
    store = launch(state_dir, experiment(["flaky"], args=["fail_first=1"]), "bg")
    wait_group_end(state_dir, "bg")
    result = run_cli("job", "retry", "bg", "--no-wait")
    assert result.returncode == 0
    assert result.stdout.endswith("Watch: metta-exp job monitor bg\n")
    wait_for(lambda: store.group("bg").ended_at, what="the retried group to end")
    assert store.job("bg", "flaky").status == JobStatus.SUCCEEDED and store.job("bg", "flaky").attempts == 2


# --- logs ---------------------------------------------------------------------------------------------------


def test_logs_tail_attempt_and_follow_across_a_retry(state_dir: Path, tmp_path: Path) -> None:
    """``--follow`` is attached while attempt 1 runs (its last line printed, it waits at its gate until
    the follower has shown that line) and goes on into attempt 2."""
    exp = experiment(["flaky"], args=["fail_first=1", "lines=4", "gate=1"], max_retries=1)
    store = launch(state_dir, exp, "follow")
    with open(tmp_path / "follow.err", "w+") as err:
        follower = subprocess.Popen(
            [PY, "-m", "metta_exp", "job", "logs", "follow", "flaky", "--follow"],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
        shown = []
        with follower:
            for line in follower.stdout or ():
                shown.append(line)
                if line == "attempt 1 line 4\n":
                    break
            Path(store.job("follow", "flaky").run_dir, "go").write_text("")  # attempt 1 may end now
            shown.append((follower.stdout or io.StringIO()).read())
        err.seek(0)
        follow = subprocess.CompletedProcess(follower.args, follower.returncode, "".join(shown), err.read())
    assert follow.returncode == 0, follow.stderr
    lines = follow.stdout.splitlines()
    first = [line for line in lines if line.startswith("attempt 1 line")]
    second = [line for line in lines if line.startswith("attempt 2 line")]
    assert first == [f"attempt 1 line {i}" for i in range(1, 5)]
    assert second == [f"attempt 2 line {i}" for i in range(1, 5)]
    assert lines.index(first[-1]) < lines.index(second[0])
    assert "RuntimeError: attempt 1 failed on purpose" in follow.stdout
    assert "--- flaky: attempt 2 (" in follow.stderr
    assert store.job("follow", "flaky").attempts == 2

    full = run_cli("job", "logs", "follow", "flaky")
    assert full.stdout == Path(store.job("follow", "flaky").log_path or "").read_text()
    tail = run_cli("job", "logs", "follow", "flaky", "--tail", "2")
    assert tail.stdout == "attempt 2 line 4\n[metta-exp] progress step=4 total=4 sps=10\n"
    old = run_cli("job", "logs", "follow", "flaky", "--attempt", "1", "--tail", "1")
    assert old.stdout == "RuntimeError: attempt 1 failed on purpose\n"
    old_follow = run_cli("job", "logs", "follow", "flaky", "--attempt", "1", "--follow")
    assert old_follow.returncode == 1 and old_follow.stdout.startswith("attempt 1 line 1\n")
    missing = run_cli("job", "logs", "follow", "flaky", "--attempt", "3")
    assert missing.returncode == 2
    assert (
        missing.stderr == "Error: run 'flaky' of group 'follow' has no attempt 3 (it has attempts 1 to 2)\n"
    )


def test_logs_of_a_job_that_has_not_started(state_dir: Path) -> None:
    store = launch(
        state_dir, experiment(["first", "second"], args=["gate=1"], depends_on={"second": ["first"]}), "wait"
    )
    wait_for(lambda: store.job("wait", "first").status == JobStatus.RUNNING, what="first running")
    result = run_cli("job", "logs", "wait", "second")
    assert result.returncode == 0 and result.stdout == ""
    assert result.stderr == "second of wait has not started yet (pending).\n"


# --- notebook -----------------------------------------------------------------------------------------------


def test_notebook_writes_to_the_default_path_or_the_one_given(state_dir: Path) -> None:
    launch(state_dir, experiment(["a", "b"]), "nb")
    wait_group_end(state_dir, "nb")
    result = run_cli("job", "notebook", "nb")
    assert result.returncode == 0, result.stderr
    default = Path("experiments") / "notebooks" / "nb.ipynb"
    assert result.stdout.splitlines()[0].endswith(str(default))
    assert "Open it in Jupyter: uv run --project " in result.stdout  # run outside the project
    assert f" --with jupyter jupyter lab {shlex.quote(str(default.absolute()))}\n" in result.stdout
    # the notebook of the group's records, as the runner writes it at the group's end
    from metta_exp.notebook.cells import render_notebook, run_info

    with JobStore.open(state_dir) as store:
        runs, hours = [run_info(j) for j in store.jobs("nb")], store.gpu_hours("nb")
        expected = render_notebook(store.group("nb"), runs, gpu_hours=hours)
    assert default.read_text() == expected
    nbformat.validate(nbformat.reads(expected, as_version=4))

    custom = state_dir.parent / "out dir" / "mine.ipynb"
    result = run_cli("job", "notebook", "nb", "-o", str(custom))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].endswith(str(custom))
    assert custom.read_text() == expected


# --- resume -------------------------------------------------------------------------------------------------


def test_resume_starts_a_runner_for_an_orphaned_group(state_dir: Path) -> None:
    store = launch(state_dir, experiment(["a"], args=["gate=1"]), "orphan")
    wait_for(lambda: store.job("orphan", "a").status == JobStatus.RUNNING, what="a running")
    old = store.group("orphan").runner_pid
    assert old is not None
    os.kill(old, 9)
    wait_for(lambda: not alive(old), what="the runner to die")
    result = run_cli("job", "resume", "orphan", "--no-wait")
    assert result.returncode == 0 and result.stdout == "Started a runner for orphan.\n"
    assert run_cli("job", "resume", "orphan", "--no-wait").stdout == "A runner already drives orphan.\n"
    (state_dir / "runs" / "orphan" / "a" / "go").write_text("")
    wait_for(lambda: store.group("orphan").ended_at, what="the resumed group to end")
    assert store.job("orphan", "a").status == JobStatus.SUCCEEDED and store.job("orphan", "a").attempts == 1
    ended = run_cli("job", "resume", "orphan")
    assert ended.returncode == 0
    assert ended.stdout.startswith("orphan has ended; nothing to drive.\norphan: 1 job, 1 succeeded")
