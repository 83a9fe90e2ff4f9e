"""A runner started ahead (``supervise.StandbyRunner``): a launch starts its group's runner while it
composes the config, so the runner's start-up does not follow the composition; it drives the group as a
runner ``spawn_runner`` started would, and one that is not needed, or dies, changes nothing."""

from __future__ import annotations

import gc
import os
import signal
import warnings
from pathlib import Path

import pytest
from conftest import PY, run_cli, wait_for, wait_group_end

from metta_exp.backends.procs import cmdline, process_table, read_stat
from metta_exp.config import Experiment
from metta_exp.records import GroupConfig
from metta_exp.resolve import resolve
from metta_exp.status import JobStatus
from metta_exp.store import JobStore
from metta_exp.supervise.drive import STANDBY_FLAG, StandbyRunner, ensure_driver, runner_standing_by


def standbys_in(cwd: Path) -> list[int]:
    """Standby runners started from ``cwd`` that are still alive."""
    found = []
    for pid, info in process_table().items():
        args = cmdline(pid) or []
        if not info.dead and STANDBY_FLAG.encode() in args and b"metta_exp.runner" in args:
            try:
                if Path(os.readlink(f"/proc/{pid}/cwd")) == cwd:
                    found.append(pid)
            except OSError:
                continue
    return found


@pytest.fixture
def conf(state_dir: Path) -> Path:
    conf = state_dir.parent / "conf"
    (conf / "experiment").mkdir(parents=True)
    (conf / "experiment" / "quick.yaml").write_text(
        "# @package _global_\n"
        f'command: ["{PY}", "-c", "import time; time.sleep(0.5)"]\n'
        "runs: [job]\ngpus: 0\nremote: false\ngenerate_notebook: false\n"
    )
    return conf


def test_a_launch_hands_its_group_to_the_runner_started_ahead(state_dir: Path, conf: Path) -> None:
    result = run_cli(
        "-m", "--config-dir", str(conf), "+experiment=quick", "x=1,2,3", "wait=false", "group=ahead"
    )
    assert result.returncode == 0, result.stderr
    with JobStore.open(state_dir) as store:
        runner = store.group("ahead").runner_pid
    assert runner is not None
    args = cmdline(runner)
    assert args is not None and STANDBY_FLAG.encode() in args, "the standby runner drives the group"
    info = read_stat(runner)
    assert info is not None and info.sid == runner, "detached: a session of its own"
    jobs = wait_group_end(state_dir, "ahead")
    assert [j.status for j in jobs] == [JobStatus.SUCCEEDED] * 3
    log = (state_dir / "runs" / "ahead" / "runner.log").read_text()
    assert "Traceback" not in log


def test_a_standby_not_needed_exits_having_written_nothing(state_dir: Path, conf: Path) -> None:
    work = state_dir.parent
    dry = run_cli("-m", "--config-dir", str(conf), "+experiment=quick", "x=1,2", "dry_run=true")
    bad = run_cli("-m", "--config-dir", str(conf), "+experiment=quick", "x=1,2", "gpus=-1")
    assert dry.returncode == 0 and bad.returncode == 2, dry.stderr + bad.stderr
    wait_for(lambda: not standbys_in(work), what="the unused standby runners to exit")
    assert not state_dir.exists(), "nothing was written"


def test_a_standby_that_died_is_replaced_by_a_runner_started_as_usual(state_dir: Path) -> None:
    exp = Experiment(
        command=["true"], runs=["a", "b"], gpus=0, remote=False, wait=False, generate_notebook=False
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with JobStore.open(state_dir) as store, runner_standing_by():
            store.create_group("g", "test", "local", GroupConfig(exp), resolve(exp, "g", state_dir))
            from metta_exp.supervise.drive import _standing_by

            (standby,) = _standing_by
            pid = standby.pid()
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: (info := read_stat(pid)) is None or info.dead, what="the standby to die")
            assert ensure_driver(store, "g", cwd=Path.cwd())
            runner = store.group("g").runner_pid
            assert runner is not None and runner != pid
            jobs = wait_group_end(state_dir, "g")
        gc.collect()
    assert [j.status for j in jobs] == [JobStatus.SUCCEEDED] * 2
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_a_closed_standby_reads_end_of_file_and_exits(tmp_path: Path) -> None:
    standby = StandbyRunner(tmp_path)
    pid = standby.pid()
    assert pid is not None and STANDBY_FLAG.encode() in (cmdline(pid) or [b""])
    standby.close()
    wait_for(lambda: (info := read_stat(pid)) is None or info.dead, what="the standby to exit")
    assert standby.hand(tmp_path, "g", "owner") is None, "a closed standby takes no group"
    assert list(tmp_path.iterdir()) == []
