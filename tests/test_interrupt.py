"""Ctrl+C at every moment of a launch, sent for real to a real launch paused at a named point
(``tests/pause_at.py``): before the group is recorded nothing is submitted and the line says so; from
the moment it is recorded, the line says how many jobs were submitted, that they go on, and the
``job kill`` command that stops them, and a runner drives them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
from conftest import PY, wait_for

from metta_exp.status import JobStatus
from metta_exp.store import DB_NAME, JobStore

HERE = Path(__file__).resolve().parent


def sleepy_conf(root: Path) -> Path:
    conf = root / "conf"
    (conf / "experiment").mkdir(parents=True)
    (conf / "experiment" / "sleepy.yaml").write_text(
        "# @package _global_\n"
        + textwrap.dedent(
            f"""\
            command: [{json.dumps(PY)}, -c, "import time; time.sleep(60)"]
            runs: [a, b, c]
            gpus: 0
            remote: false
            generate_notebook: false
            """
        )
    )
    return conf


def interrupted_at(point: str, when: str, state_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Launch ``sleepy`` paused at ``point``, press Ctrl+C there (SIGINT to the terminal's process
    group, as a terminal sends it), let it go on, and return how the command ended."""
    root = state_dir.parent
    pauses = root / "pause"
    pauses.mkdir()
    conf = sleepy_conf(root)
    args = ["--config-dir", str(conf), "+experiment=sleepy", "group=g", *extra]
    proc = subprocess.Popen(
        [PY, str(HERE / "pause_at.py"), point, when, str(pauses), "--", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        wait_for(lambda: (pauses / "ready").exists() or proc.poll() is not None, what=f"the pause at {point}")
        assert proc.poll() is None, proc.communicate()
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(0.2)
        (pauses / "go").write_text("")
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def assert_submitted_and_going(result: subprocess.CompletedProcess[str], state_dir: Path) -> None:
    assert result.returncode == 130, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "3 jobs submitted" in result.stdout and "they go on" in result.stdout, result.stdout
    assert "metta-exp job kill g" in result.stdout and "metta-exp job monitor g" in result.stdout
    with JobStore.open(state_dir) as store:  # a runner drives them: they start, nobody watching
        wait_for(
            lambda: [j.status for j in store.jobs("g")] == [JobStatus.RUNNING] * 3, what="all three running"
        )


BEFORE_RECORDED = [
    ("metta_exp.submit.resolve", "after"),
    ("metta_exp.backends.local.LocalBackend.check", "before"),
]


@pytest.mark.parametrize(("point", "when"), BEFORE_RECORDED, ids=[p for p, _ in BEFORE_RECORDED])
def test_ctrl_c_before_the_group_is_recorded_submits_nothing(state_dir: Path, point: str, when: str) -> None:
    result = interrupted_at(point, when, state_dir)
    assert result.returncode == 130, result.stderr
    assert "nothing was submitted" in result.stdout, result.stdout
    if (state_dir / DB_NAME).exists():
        with JobStore.open(state_dir) as store:
            assert store.list_groups() == []


AFTER_RECORDED = [
    ("metta_exp.store.db.Database._insert_job", "after"),  # inside the transaction that records the group
    ("metta_exp.supervise.drive.ensure_driver", "before"),  # recorded, no runner yet
    ("metta_exp.supervise.drive.StandbyRunner.hand", "after"),  # the runner has its group, its lease not yet
    ("metta_exp.monitor.live.watch", "before"),  # before the monitor's first frame
]


@pytest.mark.parametrize(("point", "when"), AFTER_RECORDED, ids=[p for p, _ in AFTER_RECORDED])
def test_ctrl_c_once_recorded_says_the_jobs_go_on_and_how_to_stop_them(
    state_dir: Path, point: str, when: str
) -> None:
    assert_submitted_and_going(interrupted_at(point, when, state_dir), state_dir)


def test_ctrl_c_while_a_group_without_wait_is_being_submitted(state_dir: Path) -> None:
    result = interrupted_at("metta_exp.submit.wait_until_submitted", "before", state_dir, "wait=false")
    assert_submitted_and_going(result, state_dir)


def test_the_processes_a_test_starts_answer_ctrl_c_even_when_the_run_ignores_it() -> None:
    """A run started in the background of a shell without job control inherits SIGINT ignored; the
    processes its tests start must answer it all the same, or every test above waits out its timeout."""
    probe = "import signal; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"
    result = subprocess.run([PY, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "True", result.stderr
