"""``metta_exp.groups``, the Python API under ``metta-exp job``: typed results from a real store, with real
job processes and real runners."""

from __future__ import annotations

import io
import os
import subprocess
import textwrap
from pathlib import Path

import pytest
from conftest import PY, wait_for, wait_group_end

import metta_exp
from metta_exp import NotFoundError, groups
from metta_exp.cli.tables import log_missing_line
from metta_exp.config import Experiment
from metta_exp.errors import UsageError
from metta_exp.logs.job import Ended, LogBytes, NewAttempt, Waiting
from metta_exp.paths import RunDir
from metta_exp.status import JobStatus
from metta_exp.store import JobStore
from metta_exp.submit import launch_experiment

# runs until a 'go' file appears in its run dir, then exits with the code after `exit=`
GATED = textwrap.dedent(
    """
    import os, pathlib, sys, time
    rd = pathlib.Path(os.environ["METTA_EXP_RUN_DIR"])
    print("started", flush=True)
    while not (rd / "go").exists():
        time.sleep(0.05)
    sys.exit(int(sys.argv[-1].split("=")[1]) if sys.argv[-1].startswith("exit=") else 0)
    """
)


def launch(group: str, runs: list[str], **kw: object) -> JobStore:
    exp = Experiment(
        command=[PY, "-c", GATED], runs=runs, remote=False, wait=False, gpus=0, generate_notebook=False, **kw
    )
    exp.group = group
    assert groups.launch(exp, name="test") == groups.Launched([group], 0)
    return JobStore.open(groups.open_store().state_dir)  # type: ignore[union-attr]


def test_unknown_groups_raise_not_found_and_no_store_is_created(state_dir: Path) -> None:
    assert groups.list_groups() == []
    with pytest.raises(NotFoundError, match="no group 'nope'"):
        groups.show("nope")
    with pytest.raises(NotFoundError):
        groups.kill("nope")
    assert not state_dir.exists()


def test_show_kill_plan_and_kill_return_typed_results(state_dir: Path) -> None:
    store = launch("g", ["a", "b", "c"], max_parallel=2)
    wait_for(
        lambda: [j.status for j in store.jobs("g")] == [JobStatus.RUNNING] * 2 + [JobStatus.PENDING],
        what="2 running, 1 pending",
    )
    (summary,) = groups.list_groups()
    assert (summary.name, summary.total, summary.counts["running"], summary.counts["pending"]) == (
        "g",
        3,
        2,
        1,
    )
    view = groups.show("g")
    assert (view.group.name, [j.run for j in view.jobs], view.driven) == ("g", ["a", "b", "c"], True)
    assert view.progress == {"a": None, "b": None, "c": None}  # no progress lines

    with pytest.raises(TimeoutError, match="^group 'g' did not end within 0.2 s$"):
        groups.wait("g", timeout=0.2)
    plan = groups.kill_plan("g")
    assert ([j.run for j in plan.active], [j.run for j in plan.pending], plan.stray, plan.ended) == (
        ["a", "b"],
        ["c"],
        [],
        0,
    )
    assert [j.status for j in store.jobs("g")] == [JobStatus.RUNNING] * 2 + [JobStatus.PENDING]  # only a plan
    result = groups.kill("g", plan)
    assert (result.cancelled, result.succeeded, result.failed) == (3, 0, 0)
    assert groups.kill_plan("g").empty
    ended = groups.wait("g", timeout=60)
    assert [(j.run, j.status, j.reason) for j in ended] == [
        ("a", JobStatus.CANCELLED, "killed by user"),
        ("b", JobStatus.CANCELLED, "killed by user"),
        ("c", JobStatus.CANCELLED, "killed by user before launch"),
    ]


def test_retry_requeues_and_wait_returns_the_ended_jobs(state_dir: Path) -> None:
    store = launch("r", ["ok", "bad"], args_per_run={"bad": ["exit=3"]})
    wait_for(lambda: all(j.status == JobStatus.RUNNING for j in store.jobs("r")), what="both running")
    for run in ("ok", "bad"):
        (state_dir / "runs" / "r" / run / "go").write_text("")
    wait_group_end(state_dir, "r")
    assert groups.retry("r") == [("bad", JobStatus.FAILED)]
    (state_dir / "runs" / "r" / "bad" / "go").write_text("")  # the retry fails again: the gate is open
    jobs = groups.wait("r", timeout=120)
    assert [(j.run, j.status, j.attempts) for j in jobs] == [
        ("ok", JobStatus.SUCCEEDED, 1),
        ("bad", JobStatus.FAILED, 2),
    ]
    assert groups.resume("r") is False  # the group has ended: nothing to drive


def test_logs_are_data_the_current_attempts(state_dir: Path) -> None:
    store = launch("l", ["a"])
    wait_for(lambda: store.job("l", "a").status == JobStatus.RUNNING, what="a running")
    (state_dir / "runs" / "l" / "a" / "go").write_text("")
    wait_group_end(state_dir, "l")
    found = groups.log("l", "a")
    assert (found.attempt, found.status, found.exists, found.read()) == (
        1,
        JobStatus.SUCCEEDED,
        True,
        b"started\n",
    )
    assert [e.kind for e in groups.follow_log("l", "a")] == ["bytes", "ended"]


PROGRESSING = textwrap.dedent(
    """
    import sys
    if "quiet" not in sys.argv:
        print("[metta-exp] progress step=300 total=1000 sps=10.0", flush=True)
        print("[metta-exp] progress step=700 total=1000 sps=10.0", flush=True)
    sys.exit(int(sys.argv[-1].split("=")[1]) if sys.argv[-1].startswith("exit=") else 0)
    """
)


def test_the_runner_records_an_ended_jobs_progress_and_show_reads_no_ended_log(state_dir: Path) -> None:
    """``job show`` of a big group reads thousands of logs unless each ended job's last progress is
    kept in the store when the runner records its end: it is, for succeeded and failed jobs alike."""
    exp = Experiment(command=[PY, "-c", PROGRESSING], runs=["ok", "bad", "quiet"], remote=False, wait=False,
                     gpus=0, generate_notebook=False, args_per_run={"bad": ["exit=3"], "quiet": ["quiet"]})  # fmt: skip
    exp.group = "p"
    assert launch_experiment(exp, name="test", out=io.StringIO()) == 0
    jobs = wait_group_end(state_dir, "p")
    assert {j.run: j.final_progress for j in jobs} == {"ok": 0.7, "bad": 0.7, "quiet": -1.0}
    for j in jobs:  # show reads the store, not the logs
        Path(j.log_path or "").unlink()
    assert groups.show("p").progress == {"ok": 0.7, "bad": 0.7, "quiet": None}


def test_launch_returns_the_groups_it_submitted_and_none_for_a_dry_run(state_dir: Path) -> None:
    exp = Experiment(
        command=[PY, "-c", "pass"], runs=["a"], remote=False, wait=True, gpus=0, generate_notebook=False
    )
    done = groups.launch(exp, name="named")
    assert done.exit_code == 0 and len(done.groups) == 1 and done.groups[0].startswith("named-")
    assert [j.status for j in groups.wait(done.groups[0], timeout=5)] == [JobStatus.SUCCEEDED]
    exp.dry_run = True
    assert groups.launch(exp) == groups.Launched([], 0)


# --- the API's own pieces, on a store built by hand (no runner: this process holds the lease) ------------


def hand_group(state_dir: Path, runs: tuple[str, ...] = ("a",)) -> tuple[JobStore, str]:
    """A group ``h`` whose lease this (live) process holds, so nothing starts a runner for it; the owner."""
    from metta_exp.records import GroupConfig
    from metta_exp.resolve import resolve
    from metta_exp.supervise.lease import this_host

    exp = Experiment(
        command=[PY, "-c", "pass"], runs=list(runs), remote=False, gpus=0, generate_notebook=False
    )
    store = JobStore.open(state_dir)
    store.create_group("h", "hand", "local", GroupConfig(exp), resolve(exp, "h", state_dir))
    owner = f"{this_host()}:{os.getpid()}:test"
    assert store.acquire_lease("h", owner, 3600, os.getpid())
    return store, owner


def start_attempt(store: JobStore, owner: str, run: str, text: str) -> tuple[int, Path]:
    job = store.job("h", run)
    log = RunDir.at(job.run_dir).log(job.attempts + 1)
    attempt = store.claim("h", run, owner, (), str(log))
    assert attempt == job.attempts + 1
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(text)
    assert store.mark_running("h", run, attempt, None)
    return attempt, log


def test_a_log_is_data_whole_or_its_tail_and_says_when_there_is_none(state_dir: Path) -> None:
    store, owner = hand_group(state_dir)
    with store:
        none_yet = groups.log("h", "a")
        assert (none_yet.attempt, none_yet.path, none_yet.status, none_yet.exists) == (
            0,
            None,
            JobStatus.PENDING,
            False,
        )
        assert none_yet.read() == b""
        assert log_missing_line(none_yet) == "a of h has not started yet (pending)."
        _, path = start_attempt(store, owner, "a", "l1\nl2\nl3\n")
        whole = groups.log("h", "a")
        assert (whole.attempt, whole.path, whole.exists, whole.read()) == (
            1,
            str(path),
            True,
            b"l1\nl2\nl3\n",
        )
        assert groups.log("h", "a", tail=2).read() == b"l2\nl3\n"
        assert groups.log("h", "a", tail=0).read() == b""
        assert list(groups.log("h", "a").chunks(size=4)) == [b"l1\nl", b"2\nl3", b"\n"]
        with pytest.raises(
            NotFoundError, match=r"^run 'a' of group 'h' has no attempt 2 \(it has attempt 1\)$"
        ):
            groups.log("h", "a", attempt=2)
        with pytest.raises(UsageError, match=r"^--tail must be 0 or more lines, got -1$"):
            groups.log("h", "a", tail=-1)


def test_following_a_log_yields_it_across_attempts_then_how_it_ended(state_dir: Path) -> None:
    store, owner = hand_group(state_dir)
    with store:
        events = groups.follow_log("h", "a", poll=0.01)
        assert next(events) == Waiting(JobStatus.PENDING)
        _, first = start_attempt(store, owner, "a", "one\n")
        assert [next(events), next(events)] == [NewAttempt(1, str(first)), LogBytes(b"one\n")]
        assert store.finish_attempt("h", "a", 1, JobStatus.FAILED, 1, "failed", requeue=True)
        with first.open("a") as f:
            f.write("late\n")  # the end of attempt 1's log, copied after its end was seen
        _, second = start_attempt(store, owner, "a", "two\n")
        assert [next(events), next(events), next(events)] == [
            LogBytes(b"late\n"),
            NewAttempt(2, str(second)),
            LogBytes(b"two\n"),
        ]
        assert store.finish_attempt("h", "a", 2, JobStatus.SUCCEEDED, 0)
        assert list(events) == [Ended(JobStatus.SUCCEEDED)]
        assert Ended(JobStatus.SUCCEEDED).succeeded and not Ended(JobStatus.FAILED).succeeded
        pinned = groups.follow_log("h", "a", attempt=1, tail=1)
        assert list(pinned) == [LogBytes(b"late\n"), Ended(JobStatus.FAILED)]


SPY = """
import sys
connections = []
def spy(event, args):
    if event == "sqlite3.connect/handle":
        connections.append(args[0])  # kept alive: a connection left open stays open, to be seen
sys.addaudithook(spy)
from metta_exp.cli import main
code = main(sys.argv[1:])
import sqlite3
open_ = 0
for conn in connections:
    try:
        conn.total_changes
        open_ += 1
    except sqlite3.ProgrammingError:
        pass
print(f"exit {code}; {len(connections)} connections opened, {open_} left open", file=sys.stderr)
"""


def spied(*args: str) -> str:
    """Run ``metta-exp ARGS`` in a process that counts the SQLite connections it opens (and which are
    still open when the command returns); the last line it says on stderr."""
    done = subprocess.run([PY, "-c", SPY, *args], capture_output=True, text=True, timeout=120)
    return done.stderr.strip().splitlines()[-1]


def test_job_kill_opens_one_store_and_every_command_closes_what_it_opens(state_dir: Path) -> None:
    store, owner = hand_group(state_dir, ("a", "b"))
    with store:
        start_attempt(store, owner, "a", "x\n")  # no process behind it: a kill signals nothing
    assert spied("job", "kill", "h", "--force") == "exit 0; 1 connections opened, 0 left open"
    assert spied("job", "logs", "h", "a") == "exit 0; 1 connections opened, 0 left open"
    assert spied("job", "logs", "h", "a", "--follow") == "exit 1; 1 connections opened, 0 left open"
    assert spied("job", "show", "h") == "exit 0; 1 connections opened, 0 left open"
    assert spied("job", "list") == "exit 0; 1 connections opened, 0 left open"


def test_the_job_cli_imports_only_the_api_the_text_views_and_errors() -> None:
    """``cli/jobs.py`` is a thin layer: every import of it, lazy and type-time ones included, is of
    ``groups``, ``cli.tables``, ``text`` or ``errors``, or its own parser (``cli.job_parser``, which
    imports no more than the default of ``-n``)."""
    from import_graph import imports_of, modules_of

    package = Path(metta_exp.__file__).parent
    known = modules_of(package)
    found = imports_of("metta_exp.cli.jobs", package / "cli" / "jobs.py", known)
    # "metta_exp": ``from metta_exp import groups`` runs the package face first
    assert found == {
        "metta_exp",
        "metta_exp.groups",
        "metta_exp.cli.tables",
        "metta_exp.cli.job_parser",
        "metta_exp.text",
        "metta_exp.errors",
    }
    parser = imports_of("metta_exp.cli.job_parser", package / "cli" / "job_parser.py", known)
    assert parser == {"metta_exp.history"}  # its DEFAULT_LIMIT, for -n
