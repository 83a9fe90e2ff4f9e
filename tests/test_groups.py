"""``metta_exp.groups``, the Python API under ``metta-exp job``: typed results from a real store, with real
job processes and real runners."""

from __future__ import annotations

import io
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import PY, wait_for, wait_group_end

from metta_exp import NotFoundError, groups
from metta_exp.config import Experiment
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


def test_logs_write_the_current_attempt(state_dir: Path) -> None:
    store = launch("l", ["a"])
    wait_for(lambda: store.job("l", "a").status == JobStatus.RUNNING, what="a running")
    (state_dir / "runs" / "l" / "a" / "go").write_text("")
    wait_group_end(state_dir, "l")
    out = io.BytesIO()
    assert groups.logs("l", "a", None, None, out, sys.stderr, follow=False) == 0
    assert out.getvalue() == b"started\n"
    assert groups.logs("l", "a", None, None, io.BytesIO(), sys.stderr, follow=True) == 0


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
