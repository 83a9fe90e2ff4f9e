"""Fault injection, processes and signals: daemons that escape a job's tree, jobs that ignore SIGTERM,
SIGTERM and SIGHUP to a runner, SIGHUP to a watching terminal. Real runners, real job processes."""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import run_cli, wait_for, wait_group_end
from faultjob import alive, drain, experiment, kill_quietly, launch, read_pid

from metta_exp.status import JobStatus
from metta_exp.store import JobStore


def running(store: JobStore, group: str, n: int) -> None:
    wait_for(
        lambda: sum(j.status == JobStatus.RUNNING for j in store.jobs(group)) == n,
        what=f"{n} jobs of {group} to run",
    )


def test_kill_force_ends_double_forked_daemons(state_dir: Path) -> None:
    store = launch(state_dir, experiment(["a", "b"], args=["daemon=1", "gate=1"]), "daemons")
    running(store, "daemons", 2)
    pid_files = [Path(j.run_dir) / "daemon.pid" for j in store.jobs("daemons")]
    daemons = [wait_for(lambda p=p: read_pid(p), what=f"{p}") for p in pid_files]
    try:
        assert all(alive(pid) for pid in daemons)
        result = run_cli("job", "kill", "daemons", "--force")
        assert result.returncode == 0, result.stderr
        assert [pid for pid in daemons if alive(pid)] == []  # gone when the command returns
        assert {j.status for j in store.jobs("daemons")} == {JobStatus.CANCELLED}
    finally:
        for pid in daemons:
            kill_quietly(pid)


def test_a_job_that_ended_leaving_processes_keeps_its_gpu_and_group_until_they_are_gone(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job whose main process ended while processes it started live on (a child in its session that
    ignores SIGTERM, a daemon of its own session) stays running, its GPU held, until the runner has
    ended them (SIGTERM, SIGKILL after the grace); only then is its outcome recorded and its GPU given
    to the next job, and the group ends with nothing of it left."""
    monkeypatch.setenv("METTA_EXP_LOCAL_GPUS", "0")  # one GPU: 'next' gets it only after 'leaky'
    monkeypatch.setenv("METTA_EXP_KILL_GRACE_S", "2")
    exp = experiment(["leaky", "next"], args_per_run={"leaky": ["child=1", "daemon=1"]})
    exp.gpus = 1
    store = launch(state_dir, exp, "leaky")
    run_dir = state_dir / "runs" / "leaky"
    child = wait_for(lambda: read_pid(run_dir / "leaky" / "child.pid"), what="the child")
    daemon = wait_for(lambda: read_pid(run_dir / "leaky" / "daemon.pid"), what="the daemon")
    try:
        started = run_dir / "next" / "started"
        left = lambda: alive(child) or alive(daemon)  # noqa: E731
        wait_for(lambda: started.exists() or not left(), timeout=60, what="next to start, or leaky's to go")
        assert not (started.exists() and left()), "'next' was given the GPU that leaky's processes hold"
        jobs = {j.run: j for j in wait_group_end(state_dir, "leaky")}
        assert not left()
        assert jobs["leaky"].status == JobStatus.SUCCEEDED and jobs["leaky"].exit_code == 0
        assert jobs["next"].status == JobStatus.SUCCEEDED and jobs["next"].gpu_ids == (0,)
        (told,) = [e for e in store.events("leaky") if e.kind == "leftovers"]
        assert (told.run, told.detail) == (
            "leaky",
            "ended (exit code 0), leaving 2 processes running; ending them",
        )
    finally:
        kill_quietly(child)
        kill_quietly(daemon)


def test_kill_force_ends_what_outlived_an_ended_group(state_dir: Path) -> None:
    """A process carrying an ended job's markers that the runner could not have seen (started after the
    group ended) is a leftover 'job kill --force' ends; the job's record is left as it was."""
    store = launch(state_dir, experiment(["a"]), "leaky")
    (job,) = wait_group_end(state_dir, "leaky")
    assert job.status == JobStatus.SUCCEEDED
    env = {**os.environ, "METTA_EXP_GROUP": "leaky", "METTA_EXP_RUN_DIR": job.run_dir}
    late = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], env=env)
    try:
        result = run_cli("job", "kill", "leaky", "--force")
        assert result.returncode == 0, result.stderr
        assert "end the leftover processes of 1 ended job (a)" in result.stdout
        assert late.wait(timeout=30) == -signal.SIGTERM
        assert store.job("leaky", "a").status == JobStatus.SUCCEEDED  # left as it was
    finally:
        late.kill()
        late.wait()


def timed_out(store: JobStore, group: str, run: str) -> bool:
    return any(e.kind == "timed_out" and e.run == run for e in store.events(group))


def test_a_timed_out_job_ignoring_sigterm_does_not_hold_up_the_runner(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runner ends a timed-out job that ignores SIGTERM (SIGKILL after the grace) and meanwhile
    records another job's end; the stubborn job is recorded failed, and its group ended, only once it is
    gone."""
    monkeypatch.setenv("METTA_EXP_KILL_GRACE_S", "5")
    exp = experiment(  # 'quick' starts after 'opener' (2.5 s), is released once 'stubborn' timed out (4 s)
        ["stubborn", "opener", "quick"],
        args_per_run={"stubborn": ["ignore_term=1", "gate=1"], "opener": ["sleep=2.5"], "quick": ["gate=1"]},
        depends_on={"quick": ["opener"]},
        timeout_s=4,
    )
    store = launch(state_dir, exp, "stubborn")
    stubborn = wait_for(lambda: read_pid(state_dir / "runs" / "stubborn" / "stubborn" / "started"))
    wait_for(lambda: timed_out(store, "stubborn", "stubborn"), what="the timeout")
    (state_dir / "runs" / "stubborn" / "quick").mkdir(parents=True, exist_ok=True)
    (state_dir / "runs" / "stubborn" / "quick" / "go").touch()
    wait_for(lambda: store.job("stubborn", "quick").status.is_terminal(), timeout=90, what="quick to end")
    # recorded while the stubborn job still lives out its grace, which is not over for the store either
    assert alive(stubborn), "the runner waited out the stubborn job's grace before recording 'quick'"
    assert store.job("stubborn", "quick").status == JobStatus.SUCCEEDED
    assert store.job("stubborn", "stubborn").status == JobStatus.RUNNING
    assert store.group("stubborn").ended_at is None
    wait_for(lambda: not alive(stubborn), timeout=60, what="the stubborn job to be SIGKILLed")
    (job,) = [j for j in wait_group_end(state_dir, "stubborn") if j.run == "stubborn"]
    assert job.status == JobStatus.FAILED and job.reason == "timed out after 4 s"


def test_a_timed_out_job_keeps_its_gpu_until_it_is_gone(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METTA_EXP_LOCAL_GPUS", "0")  # one GPU: 'next' gets it only after 'stubborn'
    monkeypatch.setenv("METTA_EXP_KILL_GRACE_S", "3")
    exp = experiment(
        ["stubborn", "next"], args_per_run={"stubborn": ["ignore_term=1", "gate=1"]}, timeout_s=3
    )
    exp.gpus = 1
    store = launch(state_dir, exp, "gpu")
    stubborn = wait_for(lambda: read_pid(state_dir / "runs" / "gpu" / "stubborn" / "started"))
    started = state_dir / "runs" / "gpu" / "next" / "started"
    wait_for(
        lambda: started.exists() or not alive(stubborn), timeout=60, what="next to start, or stubborn to go"
    )
    assert not (started.exists() and alive(stubborn)), "'next' was given the GPU 'stubborn' still holds"
    jobs = {j.run: j for j in wait_group_end(state_dir, "gpu")}
    assert jobs["stubborn"].reason == "timed out after 3 s" and jobs["next"].status == JobStatus.SUCCEEDED
    assert store.job("gpu", "next").gpu_ids == (0,)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_signalled_runner_hands_the_group_on(state_dir: Path, sig: signal.Signals) -> None:
    store = launch(state_dir, experiment(["a", "b"], args=["gate=1"]), "handed")
    running(store, "handed", 2)
    runner = store.group("handed").runner_pid
    assert runner and alive(runner)
    jobs = [wait_for(lambda j=j: read_pid(Path(j.run_dir) / "started")) for j in store.jobs("handed")]
    os.kill(runner, sig)
    wait_for(lambda: not alive(runner), timeout=30, what="the runner to stop")
    group = store.group("handed")
    assert group.lease_owner is None and group.runner_pid is None  # handed on: anyone may drive it now
    assert all(pid and alive(pid) for pid in jobs)  # the jobs go on
    stopped = [e for e in store.events("handed") if e.kind == "runner_stopped"]
    assert len(stopped) == 1 and f"({sig.name})" in (stopped[0].detail or "")
    log = (state_dir / "runs" / "handed" / "runner.log").read_text()
    assert f"runner stopped ({sig.name})" in log
    listed = run_cli("job", "list")
    assert "Resume it: metta-exp job resume handed" in listed.stdout
    shown = run_cli("job", "show", "handed")
    assert f"No runner drives handed (last: runner stopped ({sig.name}))" in shown.stdout
    assert "Resume it: metta-exp job resume handed" in shown.stdout
    assert run_cli("job", "resume", "handed", "--no-wait").returncode == 0
    for job in store.jobs("handed"):
        (Path(job.run_dir) / "go").touch()
    assert {j.status for j in wait_group_end(state_dir, "handed")} == {JobStatus.SUCCEEDED}


@pytest.mark.parametrize("terminal", [False, True], ids=["pipe", "tty"])
def test_sighup_ends_watching_and_the_group_goes_on(state_dir: Path, terminal: bool) -> None:
    store = launch(state_dir, experiment(["a"], args=["gate=1"]), "watched")
    running(store, "watched", 1)
    argv = [sys.executable, "-m", "metta_exp", "job", "monitor", "watched"]
    shown = bytearray()  # what the terminal showed, for a failure to say
    if terminal:
        master, slave = pty.openpty()
        watcher = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
        os.close(slave)
        threading.Thread(target=drain, args=(master, shown), daemon=True).start()
    else:
        watcher = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: store.group("watched").runner_pid, what="a runner")
        if terminal:  # the watcher is up once it has the store open
            wait_for(lambda: watcher.poll() is None and _has_read(watcher.pid), what="the watcher to start")
        else:
            assert watcher.stdout is not None
            assert watcher.stdout.readline().startswith("Watching watched:")
        watcher.send_signal(signal.SIGHUP)
        code = watcher.wait(timeout=30)
        assert code == 130, shown[-4000:].decode(errors="replace") or watcher.communicate()
        if not terminal:
            assert "Stopped watching. Group watched:" in watcher.communicate()[0]
    finally:
        kill_quietly(watcher.pid)
        if terminal:
            os.close(master)
    assert store.job("watched", "a").status == JobStatus.RUNNING
    runner = store.group("watched").runner_pid
    assert runner and alive(runner)
    (Path(store.job("watched", "a").run_dir) / "go").touch()
    assert wait_group_end(state_dir, "watched")[0].status == JobStatus.SUCCEEDED


def _has_read(pid: int) -> bool:
    """Whether the process has the store open (it is watching)."""
    try:
        return any(
            os.readlink(f"/proc/{pid}/fd/{fd}").endswith("jobs.sqlite")
            for fd in os.listdir(f"/proc/{pid}/fd")
        )
    except OSError:
        return False
