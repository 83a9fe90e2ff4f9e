"""LocalBackend with real processes, under a state directory whose path holds spaces and quotes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import pytest

import metta_exp
from metta_exp.backends import procs
from metta_exp.backends.base import Launch, Observation
from metta_exp.backends.gpus import parse_gpu_list
from metta_exp.backends.local import (
    VANISHED,
    LocalBackend,
    describe_exit,
    path_with,
)
from metta_exp.errors import BackendError, BackendUnavailable, UsageError
from metta_exp.paths import AttemptFiles
from metta_exp.records import JobSpec
from metta_exp.status import JobStatus

PY = sys.executable
REPO = Path(metta_exp.__file__).resolve().parent.parent
T = TypeVar("T")

# A job that says it started, then waits for a 'go' file in its run dir before it ends with TAIL.
GATED = """import os, pathlib, sys, time
rd = pathlib.Path(os.environ["METTA_EXP_RUN_DIR"])
(rd / "started.tmp").write_text(str(os.getpid())); (rd / "started.tmp").replace(rd / "started")
while not (rd / "go").exists():
    time.sleep(0.02)
"""

# A job whose tree is hard to end: a child that ignores SIGTERM, and a middle child whose own child
# left the session with setsid and ignores SIGTERM too.
STUBBORN = """import os, pathlib, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
p = pathlib.Path(sys.argv[1]); t = p.with_suffix(".tmp")
t.write_text(str(os.getpid())); t.replace(p)
time.sleep(600)
"""
MIDDLE = """import os, pathlib, subprocess, sys, time
subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]], start_new_session=True)
p = pathlib.Path(sys.argv[3]); t = p.with_suffix(".tmp")
t.write_text(str(os.getpid())); t.replace(p)
time.sleep(600)
"""
TREE = f"""import os, pathlib, subprocess, sys, time
rd = pathlib.Path(os.environ["METTA_EXP_RUN_DIR"])
subprocess.Popen([sys.executable, "-c", {STUBBORN!r}, str(rd / "child.pid")])
grandchild, middle = str(rd / "grandchild.pid"), str(rd / "middle.pid")
subprocess.Popen([sys.executable, "-c", {MIDDLE!r}, {STUBBORN!r}, grandchild, middle])
(rd / "job.tmp").write_text(str(os.getpid())); (rd / "job.tmp").replace(rd / "job.pid")
time.sleep(600)
"""

SUBMITTER = """import json, sys
from pathlib import Path
from metta_exp.backends.base import Launch
from metta_exp.backends.local import LocalBackend
from metta_exp.records import JobSpec
data = json.loads(sys.argv[1])
launch = Launch(JobSpec.from_dict(data["spec"]), attempt=data["attempt"], log_path=Path(data["log_path"]))
print(LocalBackend().submit([launch])[launch.name])
"""


class Jobs:
    """Makes launches under ``state_dir`` and remembers every one started, to end them after the test."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.backend = LocalBackend(grace_s=0.5)
        self.started: list[Launch] = []

    def launch(
        self, run: str, code: str, attempt: int = 1, gpu_ids: tuple[int, ...] = (), gpus: int = 0
    ) -> Launch:
        run_dir = self.state_dir / "runs" / "g" / run
        env = {"METTA_EXP_GROUP": "g", "METTA_EXP_RUN": run, "METTA_EXP_RUN_DIR": str(run_dir)}
        spec = JobSpec(
            group="g", run=run, args=(), env=env, gpus=gpus, run_dir=str(run_dir), wandb_run_id="0" * 16,
            command=(PY, "-c", code),
        )  # fmt: skip
        return Launch(
            spec=spec, attempt=attempt, log_path=run_dir / f"attempt-{attempt}.log", gpu_ids=gpu_ids
        )

    def submit(self, *launches: Launch) -> list[Launch]:
        handles = self.backend.submit(launches)
        submitted = [replace(launch, handle=handles[launch.name]) for launch in launches]
        self.started += submitted
        return submitted

    def poll(self, launch: Launch, backend: LocalBackend | None = None) -> Observation:
        return (backend or self.backend).poll([launch])[launch.name]


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "state dir 'q' \"x\""
    directory.mkdir()
    return directory


@pytest.fixture
def jobs(state_dir: Path) -> Iterator[Jobs]:
    """Jobs for one test; afterwards every process of every session it started must be gone."""
    jobs = Jobs(state_dir)
    yield jobs
    jobs.backend.cancel(jobs.started)
    sessions = {wrapper_pid(launch) for launch in jobs.started if launch.handle}
    left = [p for p in procs.process_table().values() if p.sid in sessions and not p.dead]
    assert left == [], f"processes left behind: {left}"


def wait_until(predicate: Callable[[], T | None], what: str, timeout: float = 60.0) -> T:
    """Poll ``predicate`` until it returns something truthy (a bounded wait, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


def wrapper_pid(launch: Launch) -> int:
    assert launch.handle is not None
    return int(launch.handle.split(":")[0])


def run_dir(launch: Launch) -> Path:
    return Path(launch.spec.run_dir)


def gone(pid: int) -> bool:
    proc = procs.read_stat(pid)
    return proc is None or proc.dead


def wait_ended(jobs: Jobs, launch: Launch, backend: LocalBackend | None = None) -> Observation:
    def ended() -> Observation | None:
        obs = jobs.poll(launch, backend)
        return obs if obs.status is not None and obs.status.is_terminal() else None

    return wait_until(ended, f"{launch.name} to end")


def test_jobs_run_together_and_their_exit_codes_are_recorded(jobs: Jobs) -> None:
    tails = {"ok": "sys.exit(0)", "three": "sys.exit(3)", "killed": "os.kill(os.getpid(), 9)"}
    launches = jobs.submit(*(jobs.launch(run, GATED + tail) for run, tail in tails.items()))
    wait_until(lambda: all((run_dir(launch) / "started").exists() for launch in launches), "all to start")

    observed = jobs.backend.poll(launches)
    assert {obs.status for obs in observed.values()} == {JobStatus.RUNNING}

    for launch in launches:
        (run_dir(launch) / "go").touch()
    ok, three, killed = (wait_ended(jobs, launch) for launch in launches)
    assert ok == Observation(JobStatus.SUCCEEDED, exit_code=0)
    assert three == Observation(JobStatus.FAILED, exit_code=3, reason="exit code 3")
    assert killed == Observation(JobStatus.FAILED, exit_code=137, reason="killed by SIGKILL (exit code 137)")
    assert AttemptFiles.of(launches[1].log_path).exit.read_text().strip() == "3"


def test_environment_working_directory_and_log(
    jobs: Jobs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir = tmp_path / "work dir"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    code = """import json, os, signal, sys
keys = ["METTA_EXP_ATTEMPT", "CUDA_VISIBLE_DEVICES", "METTA_EXP_RUN", "PATH"]
print("ENV " + json.dumps({k: os.environ.get(k) for k in keys}))
print("CWD " + os.getcwd())
print("SIGTERM " + str(signal.getsignal(signal.SIGTERM) == signal.SIG_DFL))
print("to stderr", file=sys.stderr)
"""
    with_gpus = jobs.launch("gpus", code, attempt=2, gpu_ids=(0, 2))
    no_gpus = jobs.launch("nogpu", code)
    with_gpus.log_path.parent.mkdir(parents=True)
    with_gpus.log_path.write_text("earlier output\n")
    for launch in jobs.submit(with_gpus, no_gpus):
        assert wait_ended(jobs, launch).status is JobStatus.SUCCEEDED

    log = with_gpus.log_path.read_text().splitlines()
    assert log[0] == "earlier output"
    env = json.loads(next(line for line in log if line.startswith("ENV "))[4:])
    assert env == {
        "METTA_EXP_ATTEMPT": "2",
        "CUDA_VISIBLE_DEVICES": "0,2",
        "METTA_EXP_RUN": "gpus",
        "PATH": path_with(str(Path(sys.executable).parent), os.environ["PATH"]),  # metta-exp's python first
    }
    assert f"CWD {workdir}" in log
    assert "SIGTERM True" in log
    assert "to stderr" in log
    files = AttemptFiles.of(with_gpus.log_path)
    assert (files.pid.name, files.exit.name) == ("attempt-2.pid", "attempt-2.exit")
    assert files.exit.read_text().strip() == "0"

    other = no_gpus.log_path.read_text().splitlines()
    env = json.loads(next(line for line in other if line.startswith("ENV "))[4:])
    assert (env["METTA_EXP_ATTEMPT"], env["CUDA_VISIBLE_DEVICES"]) == ("1", "")


def test_handle_is_pid_and_start_time_and_the_pid_file_names_the_wrapper(jobs: Jobs) -> None:
    (launch,) = jobs.submit(jobs.launch("h", GATED))
    assert launch.handle is not None
    pid, starttime = (int(part) for part in launch.handle.split(":"))
    stat = procs.read_stat(pid)
    assert stat is not None and stat.starttime == starttime and stat.sid == pid
    files = AttemptFiles.of(launch.log_path)
    assert wait_until(lambda: read_pid(files.pid), "the pid file") == pid
    assert not files.pid.with_name(files.pid.name + ".tmp").exists()


def test_a_job_outlives_the_process_that_submitted_it(jobs: Jobs) -> None:
    launch = jobs.launch("survivor", GATED + "sys.exit(0)")
    payload = json.dumps({"spec": launch.spec.to_dict(), "attempt": 1, "log_path": str(launch.log_path)})
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    submitter = subprocess.run(
        [PY, "-c", SUBMITTER, payload], env=env, capture_output=True, text=True, check=True
    )
    launch = replace(launch, handle=submitter.stdout.strip())
    jobs.started.append(launch)

    fresh = LocalBackend()
    wait_until(lambda: (run_dir(launch) / "started").exists(), "the job to start")
    assert jobs.poll(launch, fresh) == Observation(JobStatus.RUNNING)
    wrapper = procs.read_stat(wrapper_pid(launch))
    assert wrapper is not None and wrapper.sid == wrapper.pid  # its own session, its submitter gone

    (run_dir(launch) / "go").touch()
    assert wait_ended(jobs, launch, fresh) == Observation(JobStatus.SUCCEEDED, exit_code=0)


def test_a_wrapper_killed_without_an_exit_code_is_reported_vanished_and_its_job_can_be_cancelled(
    jobs: Jobs,
) -> None:
    (launch,) = jobs.submit(jobs.launch("vanish", GATED))
    job_pid = wait_until(lambda: read_pid(run_dir(launch) / "started"), "the job to start")
    os.kill(wrapper_pid(launch), signal.SIGKILL)

    # A backend that is not the wrapper's parent cannot reap it: it must take the zombie for dead.
    fresh = LocalBackend()
    obs = wait_until(lambda: (o := jobs.poll(launch, fresh)).status is not JobStatus.RUNNING and o, "its end")
    assert obs == Observation(JobStatus.FAILED, exit_code=None, reason=VANISHED)
    assert jobs.poll(launch) == obs  # and so does its parent, which reaps it
    assert not gone(job_pid)  # orphaned, still running in the wrapper's session
    jobs.backend.cancel([launch])
    assert gone(job_pid)


def test_reconciles_from_the_pid_file_when_the_handle_was_never_recorded(jobs: Jobs) -> None:
    (launch,) = jobs.submit(jobs.launch("lost", GATED))
    unrecorded = replace(launch, handle=None)
    fresh = LocalBackend()
    wait_until(lambda: AttemptFiles.of(launch.log_path).pid.exists(), "the pid file")
    assert jobs.poll(unrecorded, fresh) == Observation(JobStatus.RUNNING, handle=launch.handle)
    never = jobs.launch("never", GATED)
    assert jobs.poll(never, fresh) == Observation(status=None)

    (run_dir(launch) / "go").touch()
    obs = wait_ended(jobs, unrecorded, fresh)
    assert (obs.status, obs.exit_code) == (JobStatus.SUCCEEDED, 0)
    assert obs.handle is not None and obs.handle.split(":")[0] == str(wrapper_pid(launch))


def test_a_pid_file_naming_another_process_is_not_our_job(jobs: Jobs) -> None:
    launch = jobs.launch("stale", GATED)
    files = AttemptFiles.of(launch.log_path)
    files.pid.parent.mkdir(parents=True)
    files.pid.write_text(f"{os.getpid()}\n")  # a live process, but not a wrapper of this attempt
    obs = jobs.poll(launch)
    assert (obs.status, obs.reason, obs.handle) == (JobStatus.FAILED, VANISHED, str(os.getpid()))
    me = procs.read_stat(os.getpid())
    assert me is not None
    jobs.backend.cancel([launch, replace(launch, handle=f"{os.getpid()}:{(me.starttime or 0) + 1}")])
    assert not gone(os.getpid())  # still here


def test_cancel_ends_whole_trees_including_setsid_grandchildren_and_sigterm_ignorers(jobs: Jobs) -> None:
    launches = jobs.submit(jobs.launch("tree1", TREE), jobs.launch("tree2", TREE))
    pids: list[int] = []
    for launch in launches:
        for name in ("job", "child", "middle", "grandchild"):
            pids.append(wait_until(lambda: read_pid(run_dir(launch) / f"{name}.pid"), f"{name}.pid"))  # noqa: B023
        pids.append(wrapper_pid(launch))
    grandchild = procs.read_stat(pids[3])
    assert grandchild is not None and grandchild.sid == pids[3]  # it did leave the job's session

    jobs.backend.cancel(launches)
    assert [pid for pid in pids if not gone(pid)] == []
    assert {obs.status for obs in jobs.backend.poll(launches).values()} == {JobStatus.FAILED}
    jobs.backend.cancel(launches)  # idempotent
    jobs.backend.cancel([jobs.launch("never", TREE)])  # never started: nothing to do


def test_a_cancelled_job_records_the_signal_that_ended_it(jobs: Jobs) -> None:
    (launch,) = jobs.submit(jobs.launch("term", GATED))
    wait_until(lambda: (run_dir(launch) / "started").exists(), "the job to start")
    jobs.backend.cancel([launch])
    assert jobs.poll(launch) == Observation(
        JobStatus.FAILED, exit_code=143, reason="killed by SIGTERM (exit code 143)"
    )


def test_without_procfs_handles_are_plain_pids(jobs: Jobs) -> None:
    jobs.backend._procfs = False  # the degraded path of machines without /proc
    done, cancelled = jobs.submit(jobs.launch("plain", GATED + "sys.exit(0)"), jobs.launch("plain2", GATED))
    assert done.handle is not None and done.handle.isdigit()
    wait_until(lambda: (run_dir(done) / "started").exists(), "the job to start")
    assert jobs.poll(done) == Observation(JobStatus.RUNNING)
    (run_dir(done) / "go").touch()
    assert wait_ended(jobs, done) == Observation(JobStatus.SUCCEEDED, exit_code=0)

    job_pid = wait_until(lambda: read_pid(run_dir(cancelled) / "started"), "the job to start")
    jobs.backend.cancel([cancelled])
    assert gone(job_pid) and gone(wrapper_pid(cancelled))


def test_submit_skips_launches_it_cannot_start_and_fails_when_none_start(jobs: Jobs, tmp_path: Path) -> None:
    blocker = tmp_path / "a file"
    blocker.write_text("")
    bad = replace(jobs.launch("bad", "pass"), log_path=blocker / "attempt-1.log")
    good = jobs.launch("good", "pass")
    handles = jobs.backend.submit([bad, good])
    jobs.started.append(replace(good, handle=handles[good.name]))
    assert list(handles) == [good.name]
    with pytest.raises(BackendError, match="could not start any of 1 job"):
        jobs.backend.submit([bad])


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0,1,2,3", [0, 1, 2, 3]), (" 1, 3 ", [1, 3]), ("7", [7]), ("", []), ("none", []), ("NONE", [])],
)
def test_parse_gpu_list(value: str, expected: list[int]) -> None:
    assert parse_gpu_list(value) == expected


@pytest.mark.parametrize("value", ["0,x", "-1", "0,,1", "0,0", "gpu0", "1.5"])
def test_parse_gpu_list_rejects_malformed_values(value: str) -> None:
    with pytest.raises(UsageError, match="METTA_EXP_LOCAL_GPUS=.*expected .* like '0,1,2,3'"):
        parse_gpu_list(value)


def fake_nvidia_smi(tmp_path: Path, script: str) -> str:
    """A directory holding an ``nvidia-smi`` (this machine has no GPU): the boundary we cannot reach."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "nvidia-smi"
    exe.write_text("#!/bin/sh\n" + script)
    exe.chmod(0o755)
    return str(bin_dir)


def test_devices_come_from_the_variable_then_nvidia_smi(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METTA_EXP_LOCAL_GPUS", "2,3")
    backend = LocalBackend()
    assert backend.devices() == [2, 3]
    monkeypatch.setenv("METTA_EXP_LOCAL_GPUS", "0")
    assert backend.devices() == [2, 3]  # cached

    monkeypatch.delenv("METTA_EXP_LOCAL_GPUS")
    script = 'test "$*" = "--query-gpu=index --format=csv,noheader" || exit 4\nprintf "0\\n1\\n"\n'
    monkeypatch.setenv("PATH", fake_nvidia_smi(tmp_path, script))
    assert LocalBackend().devices() == [0, 1]
    monkeypatch.setenv("METTA_EXP_LOCAL_GPUS", "none")
    assert LocalBackend().devices() == []


@pytest.mark.parametrize("script", ["echo 'NVIDIA-SMI has failed' >&2; exit 9\n", "echo 'No devices'\n"])
def test_devices_are_none_when_nvidia_smi_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str
) -> None:
    monkeypatch.delenv("METTA_EXP_LOCAL_GPUS", raising=False)
    monkeypatch.setenv("PATH", fake_nvidia_smi(tmp_path, script))
    assert LocalBackend().devices() == []
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert LocalBackend().devices() == []


def test_devices_reject_a_malformed_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METTA_EXP_LOCAL_GPUS", "0;1")
    with pytest.raises(UsageError, match="METTA_EXP_LOCAL_GPUS"):
        LocalBackend().devices()


def test_check_refuses_jobs_that_want_more_gpus_than_exist(
    jobs: Jobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METTA_EXP_LOCAL_GPUS", "0")
    backend = LocalBackend()
    backend.check([jobs.launch("one", "pass", gpus=1).spec])
    with pytest.raises(BackendUnavailable) as caught:
        backend.check([jobs.launch("one", "pass", gpus=1).spec, jobs.launch("big", "pass", gpus=2).spec])
    assert str(caught.value) == (
        "run 'big' of group 'g' asks for 2 GPU(s) but this machine has 1 GPU(s) (ids 0): "
        "set gpus=1 or fewer, or declare devices with METTA_EXP_LOCAL_GPUS=0,1,..."
    )
    assert caught.value.exit_code == 2
    monkeypatch.setenv("METTA_EXP_LOCAL_GPUS", "none")
    with pytest.raises(
        BackendUnavailable, match="asks for 1 GPU\\(s\\) but this machine has no GPUs: set gpus=0"
    ):
        LocalBackend().check([jobs.launch("one", "pass", gpus=1).spec])


def test_describe_exit() -> None:
    assert describe_exit(1) == "exit code 1"
    assert describe_exit(137) == "killed by SIGKILL (exit code 137)"
    assert describe_exit(143) == "killed by SIGTERM (exit code 143)"
    assert describe_exit(255) == "exit code 255"


def test_attempt_files_sit_beside_the_log() -> None:
    files = AttemptFiles.of("/s/runs/g/r/attempt-2.log")
    assert files == AttemptFiles(
        Path("/s/runs/g/r/attempt-2.log"),
        Path("/s/runs/g/r/attempt-2.pid"),
        Path("/s/runs/g/r/attempt-2.exit"),
    )


def test_tree_follows_sessions_groups_and_ppid_links() -> None:
    def proc(pid: int, ppid: int, sid: int, state: str = "S") -> procs.ProcInfo:
        return procs.ProcInfo(pid, ppid, sid, sid, state, pid * 10)

    table = {
        p.pid: p
        for p in [
            proc(1, 0, 1),
            proc(10, 1, 10),  # the wrapper, a session leader
            proc(11, 10, 10),  # the job
            proc(12, 11, 12),  # left the session with setsid
            proc(13, 12, 12),  # its child
            proc(14, 1, 10),  # orphaned, still in the session
            proc(15, 11, 10, "Z"),  # a zombie
            proc(20, 1, 20),  # someone else
        ]
    }
    assert procs.tree(table, [10], [10]) == {10: 100, 11: 110, 12: 120, 13: 130, 14: 140}
    del table[10], table[11]
    assert procs.tree(table, [10], []) == {14: 140}  # leader gone: its session lives on


def test_read_stat_copes_with_spaces_and_parentheses_in_the_command_name(tmp_path: Path) -> None:
    sleeper = tmp_path / "we) ird (name"
    sleeper.symlink_to(shutil.which("sleep") or "/bin/sleep")
    proc = subprocess.Popen([str(sleeper), "30"])
    try:
        stat = procs.read_stat(proc.pid)
        assert stat is not None and (stat.ppid, stat.sid) == (os.getpid(), os.getsid(0))
        assert stat.starttime is not None and stat.starttime > 0
    finally:
        proc.kill()
        proc.wait()


class SlowSubmitBackend(LocalBackend):
    """Takes its time between two starts, as a loaded machine submitting a hundred jobs does."""

    def _start(self, launch: Launch, base_env: dict[str, str], gate: int) -> str:  # type: ignore[override]
        handle = super()._start(launch, base_env, gate)
        time.sleep(0.5)
        return handle


def test_a_batch_starts_together_once_it_is_all_submitted(jobs: Jobs) -> None:
    """Jobs wait at the start gate while the rest of their batch is spawned, then all go at once."""
    jobs.backend = SlowSubmitBackend(grace_s=0.5)
    code = (
        "import os, pathlib, sys, time; t = time.time(); "
        "pathlib.Path(os.environ['METTA_EXP_RUN_DIR'], 'at').write_text(repr([t, sys.stdin.read()]))"
    )
    launches = [jobs.launch(f"b{i}", code) for i in range(3)]
    before = time.time()
    submitted = jobs.submit(*launches)
    returned = time.time()
    assert returned - before >= 1.5
    for launch in submitted:
        wait_until(lambda launch=launch: jobs.poll(launch).status == JobStatus.SUCCEEDED, "the job to end")
        started, stdin = eval((Path(launch.spec.run_dir) / "at").read_text())
        assert started >= returned - 0.5, "no job may start before its whole batch is submitted"
        assert stdin == "", "jobs read an empty stdin, not the gate"


class ThreadNamingBackend(LocalBackend):
    """Notes which thread started each launch."""

    def __init__(self) -> None:
        super().__init__(grace_s=0.5)
        self.threads: set[str] = set()

    def _start(self, launch: Launch, base_env: dict[str, str], gate: int) -> str:  # type: ignore[override]
        self.threads.add(threading.current_thread().name)
        return super()._start(launch, base_env, gate)


def test_a_large_batch_is_spawned_by_several_threads_each_job_once(jobs: Jobs, tmp_path: Path) -> None:
    """A spawn waits for its child to start the wrapper, so a batch of many is spawned by a few threads
    at once: every job gets its own handle, one that cannot start is left out, and all of them run."""
    backend = ThreadNamingBackend()
    jobs.backend = backend
    blocker = tmp_path / "a file"
    blocker.write_text("")
    good = [jobs.launch(f"t{i:02d}", "pass") for i in range(16)]
    bad = replace(jobs.launch("bad", "pass"), log_path=blocker / "attempt-1.log")
    handles = backend.submit([*good[:8], bad, *good[8:]])
    jobs.started += [replace(launch, handle=handles[launch.name]) for launch in good]
    assert sorted(handles) == sorted(launch.name for launch in good)
    assert len(set(handles.values())) == len(good)
    assert len(backend.threads) > 1 and threading.current_thread().name not in backend.threads
    for launch in jobs.started:
        assert wait_ended(jobs, launch).status == JobStatus.SUCCEEDED
