"""The cloud's weather, on the simulator's harsh defaults: logs that arrive after the end, jobs that queue,
calls that are refused for good or lose their answer, a server restarted under a launch, another API
server's job ids, a store shared by two machines, a workdir that holds the state directory.

Each test is a regression test of one item of the issue "Remote, second pass" (numbers in the names of
the sections); each failed on the code before it.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import PY, run_cli, wait_for, wait_group_end

from metta_exp.backends.base import Launch, LaunchSettings
from metta_exp.backends.skypilot.api import QueueEntry
from metta_exp.backends.skypilot.backend import SkyPilotBackend, observe
from metta_exp.backends.skypilot.sim.api import FakeSkyApi
from metta_exp.config import Experiment
from metta_exp.records import GroupConfig
from metta_exp.resolve import resolve
from metta_exp.status import JobStatus
from metta_exp.store import JobStore


def exp_of(runs: list[str], script: str, **kw: object) -> Experiment:
    """Jobs running this test's own Python (no default setup needed: ``test_remote_bare`` has it)."""
    kw["skypilot"] = {"default_setup": False, **dict(kw.get("skypilot") or {})}  # type: ignore[call-overload]
    return Experiment(runs=runs, command=[PY, "-c", script], gpus=0, **kw)  # type: ignore[arg-type]


def launches_of(exp: Experiment, group: str, state: Path) -> list[Launch]:
    settings = LaunchSettings(exp.skypilot, exp.wandb, "inst")
    return [
        Launch(s, 1, Path(s.run_dir) / "attempt-1.log", settings=settings) for s in resolve(exp, group, state)
    ]


def submitted(backend: SkyPilotBackend, launches: list[Launch]) -> list[Launch]:
    handles = backend.submit(launches)
    return [replace(launch, handle=handles.get(launch.name)) for launch in launches]


def until(backend: SkyPilotBackend, launches: list[Launch], done, timeout: float = 60.0, sync: bool = True):  # noqa: ANN001, ANN201
    deadline = time.time() + timeout
    while time.time() < deadline:
        obs = backend.poll(launches)
        if sync:
            backend.sync_logs(launches)
        if done(obs):
            return obs
        time.sleep(0.05)
    raise AssertionError(f"timed out; last observations: {obs}")


def ended(obs: dict) -> bool:  # noqa: ANN001
    return all(o.status is not None and o.status.is_terminal() for o in obs.values())


def conf(where: Path, script: str, extra: str = "") -> Path:
    """A config dir with experiment ``remote``: one run ``r`` of ``python -c SCRIPT`` on SkyPilot."""
    directory = where / "conf"
    (directory / "experiment").mkdir(parents=True, exist_ok=True)
    (directory / "experiment" / "remote.yaml").write_text(
        f"# @package _global_\ncommand: [{json.dumps(PY)}, -c, {json.dumps(script)}]\nruns: [r]\ngpus: 0\n"
        f"generate_notebook: false\nskypilot: {{default_setup: false}}\n{extra}"
    )
    return directory


# --- 1. a log that comes after the end, and a tail that failed, are not the log -------------------------


def test_the_log_of_an_ended_job_is_waited_for_not_taken_from_the_first_tail(
    sky_account: FakeSkyApi, tmp_path: Path
) -> None:
    sky_account.configure(log_download_s=3.0, pending_s=0, starting_s=0)
    state = tmp_path / "state"
    script = "print('first line'); print('[metta-exp] progress step=10 total=10'); print('last line')"
    backend = SkyPilotBackend(sky_account, state, poll_interval=0.0, log_interval_s=0.0)
    launches = submitted(backend, launches_of(exp_of(["a"], script), "g", state))
    until(backend, launches, ended, sync=False)  # it ended before any tail: only the final log can say
    sky_account.fail_next("tail_logs", 1)  # a tail whose request fails answers "" (sky/jobs/client/sdk.py)
    backend.sync_logs(launches)
    backend.sync_logs(launches)
    assert not backend.log_complete(launches[0]), "SkyPilot's terminal-state line is no log"
    assert "already in terminal state" not in (
        launches[0].log_path.read_text() if launches[0].log_path.exists() else ""
    )
    until(backend, launches, lambda _: backend.log_complete(launches[0]), timeout=30)
    assert (
        launches[0].log_path.read_text() == "first line\n[metta-exp] progress step=10 total=10\nlast line\n"
    )


CHATTY = """
import time
print("[metta-exp] progress step=0 total=100", flush=True)
for i in range(1200):
    print(f"line {i}", flush=True)
    if i % 300 == 0:
        time.sleep(1.0)
print("[metta-exp] progress step=100 total=100", flush=True)
"""


def test_logs_of_a_chatty_job_are_whole_and_follow_cleanly(state_dir: Path, tmp_path: Path) -> None:
    """Done when: with METTA_EXP_FAKE_SKY_LOG_DOWNLOAD_S=5, ``job logs`` of an ended remote job holds its whole
    log (1202 lines: far more than a tail), ``job show --json`` its final progress, and ``job logs --follow``
    printed every line once, in order (item 8: the local copy only ever grows)."""
    env = {"METTA_EXP_FAKE_SKY_DIR": str(tmp_path / "sky"), "METTA_EXP_FAKE_SKY_LOG_DOWNLOAD_S": "5",
           "METTA_EXP_SKY_POLL_S": "0.3", "METTA_EXP_SKY_LOG_S": "0.5"}  # fmt: skip
    launched = run_cli("--config-dir", str(conf(tmp_path, CHATTY)), "+experiment=remote", "group=chat",
                       "wait=false", env=env)  # fmt: skip
    assert launched.returncode == 0, launched.stdout + launched.stderr
    with JobStore.open(state_dir) as store:
        log = wait_for(lambda: store.job("chat", "r").log_path, timeout=30, what="the attempt")
    follow = subprocess.Popen([PY, "-m", "metta_exp", "job", "logs", "chat", "r", "--follow"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={**os.environ, **env})  # fmt: skip
    followed, _ = follow.communicate(timeout=120)
    wait_group_end(state_dir, "chat", timeout=60)
    whole = [f"line {i}" for i in range(1200)]
    assert [x for x in followed.decode().splitlines() if x.startswith("line ")] == whole
    shown = run_cli("job", "logs", "chat", "r", env=env)
    assert [x for x in shown.stdout.splitlines() if x.startswith("line ")] == whole
    assert Path(log).read_text().splitlines()[-1] == "[metta-exp] progress step=100 total=100"
    rows = json.loads(run_cli("job", "show", "chat", "--json", env=env).stdout)
    assert rows[0]["progress"] == 1.0 and rows[0]["status"] == "succeeded"


# --- 4. a refusal that stays stops the runner, with the reason and the fix ----------------------------------


def test_a_refusal_that_stays_stops_the_runner_with_its_fix(
    state_dir: Path, tmp_path: Path, sky_account: FakeSkyApi
) -> None:
    env = {"METTA_EXP_FAKE_SKY_DIR": str(sky_account.root), "METTA_EXP_SKY_POLL_S": "0.5"}
    launched = run_cli("--config-dir", str(conf(tmp_path, "import time; time.sleep(900)")),
                       "+experiment=remote", "group=ref", "wait=false", env=env)  # fmt: skip
    assert launched.returncode == 0, launched.stdout + launched.stderr
    wait_for(
        lambda: sky_account.jobs() and sky_account.jobs()[0]["status"] == "RUNNING",
        timeout=60,
        what="the job to run",
    )
    sky_account.configure(refuse="auth")  # the login expired: every call is refused from now on
    start = time.monotonic()
    with JobStore.open(state_dir) as store:
        wait_for(lambda: store.group("ref").lease_owner is None, timeout=60, what="the runner to stop")
    assert time.monotonic() - start < 60
    shown = run_cli("job", "show", "ref", env=env)
    assert "ApiServerAuthenticationError" in shown.stdout and "sky api login" in shown.stdout
    assert "metta-exp job resume ref" in shown.stdout
    listed = run_cli("job", "list", env=env)
    assert "No runner drives ref: SkyPilot refuses every call" in listed.stdout, listed.stdout
    monitor = subprocess.Popen([PY, "-m", "metta_exp", "job", "monitor", "ref"], stdout=subprocess.PIPE,
                               text=True, env={**os.environ, **env})  # fmt: skip
    time.sleep(3)  # it watches, and leaves a refused group alone: no runner is started for it
    monitor.terminate()
    watched, _ = monitor.communicate(timeout=30)
    assert "SkyPilot refuses every call" in watched and "job resume ref" in watched, watched
    with JobStore.open(state_dir) as store:
        assert store.group("ref").lease_owner is None
    sky_account.configure(refuse="")  # logged in again
    resumed = run_cli("job", "resume", "ref", "--no-wait", env=env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    killed = run_cli("job", "kill", "ref", "--force", env=env)
    assert killed.returncode == 0, killed.stdout + killed.stderr
    ended = wait_group_end(state_dir, "ref", timeout=60)
    with JobStore.open(state_dir) as store:
        events = [(e.kind, e.run, e.new_status, e.detail) for e in store.events("ref")]
    assert [j.status for j in ended] == [JobStatus.CANCELLED], (killed.stdout, events)


# --- 5. timeout_s counts running, not queueing; SkyPilot's status is the reason meanwhile -------------------


def test_a_job_that_queued_longer_than_its_timeout_is_not_timed_out(state_dir: Path, tmp_path: Path) -> None:
    env = {"METTA_EXP_FAKE_SKY_DIR": str(tmp_path / "sky"), "METTA_EXP_FAKE_SKY_PENDING_S": "4",
           "METTA_EXP_SKY_POLL_S": "0.3"}  # fmt: skip
    # a job that runs for no time at all (no Python to start: on a loaded machine that alone took 5 s), after
    # 4 s in the queue, with a timeout of 3 s
    config = conf(tmp_path, "", "timeout_s: 3\n")
    remote = config / "experiment" / "remote.yaml"
    remote.write_text(remote.read_text().replace(f'command: [{json.dumps(PY)}, -c, ""]', "command: ['true']"))
    launched = run_cli("--config-dir", str(config), "+experiment=remote", "group=q", "wait=false", env=env)
    assert launched.returncode == 0, launched.stdout + launched.stderr
    with JobStore.open(state_dir) as store:
        reason = wait_for(
            lambda: store.job("q", "r").reason, timeout=30, what="SkyPilot's status as the reason"
        )
    assert reason.startswith("SkyPilot PENDING"), reason
    job = wait_group_end(state_dir, "q", timeout=60)[0]
    assert job.status == JobStatus.SUCCEEDED, job.reason


def test_a_simulated_jobs_start_at_is_when_its_machine_runs_it(
    sky_account: FakeSkyApi, tmp_path: Path
) -> None:
    """``start_at`` (what ``timeout_s`` counts from) is set once the machine runs the job: preparing the
    machine (the simulated image, built on an account's first launch: seconds on a loaded machine) is
    provisioning, not running."""
    sky_account.configure(pending_s=0, starting_s=0)
    state = tmp_path / "state"
    backend = SkyPilotBackend(sky_account, state, poll_interval=0.0)
    launches = submitted(backend, launches_of(exp_of(["a"], "pass"), "g", state))
    until(backend, launches, ended, sync=False)
    assert (sky_account.root / "image" / "ready").stat().st_mtime <= sky_account.job(1)["start_at"]


# --- 6. a SkyPilot call slower than the lease does not let a second runner in ------------------------------


def test_a_call_slower_than_the_lease_keeps_the_lease(sky_account: FakeSkyApi, state_dir: Path) -> None:
    from metta_exp.runner import Runner
    from metta_exp.supervise.lease import lease_owner_id

    sky_account.configure(pending_s=0, starting_s=0)
    exp = exp_of(["a"], "import time; time.sleep(8)")
    with JobStore.open(state_dir) as store:
        specs = resolve(exp, "slow", state_dir)
        store.create_group("slow", "x", "skypilot", GroupConfig(exp), specs)
    runners: list[Runner] = []

    def drive() -> None:
        with JobStore.open(state_dir) as own:
            runners.append(
                Runner(own, "slow", SkyPilotBackend(sky_account, state_dir, poll_interval=0.0), lease_ttl=1.5)
            )
            runners[0].drive()

    thread = threading.Thread(target=drive, daemon=True)
    thread.start()
    with JobStore.open(state_dir) as store:
        wait_for(lambda: store.job("slow", "a").status == JobStatus.RUNNING, timeout=30, what="the job")
        sky_account.configure(slow={"queue": 4.0})  # from now on every poll takes longer than the lease
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            assert not store.acquire_lease("slow", lease_owner_id(), 1.5, os.getpid()), "the lease expired"
            time.sleep(0.2)
    runners[0].stop("test over")
    thread.join(timeout=30)


# --- 7. launches that fail for a while, lose their answer, or are cut by a server restart --------------------


def test_a_launch_that_cannot_get_through_for_a_while_is_sent_again(
    sky_account: FakeSkyApi, tmp_path: Path
) -> None:
    sky_account.configure(pending_s=0, starting_s=0)
    state = tmp_path / "state"
    # the API server restarts: about 4 s without answers
    sky_account.fail_next("launch", 4, "connection refused")
    backend = SkyPilotBackend(sky_account, state, poll_interval=0.0, launch_wait_s=0.5)
    launches = submitted(backend, launches_of(exp_of(["a"], "pass"), "g", state))
    first = backend.poll(launches)[launches[0].name]
    assert first.status is None and first.transient, "still being sent: not an attempt that vanished"
    obs = until(backend, launches, ended, timeout=60, sync=False)
    assert obs[launches[0].name].status == JobStatus.SUCCEEDED
    assert len(sky_account.jobs()) == 1


def test_a_launch_whose_answer_was_lost_is_found_not_launched_again(
    sky_account: FakeSkyApi, tmp_path: Path
) -> None:
    sky_account.configure(pending_s=0, starting_s=0)
    state = tmp_path / "state"
    # the job exists; the answer never came
    sky_account.fail_next("launch", 1, "connection reset", mode="lost")
    backend = SkyPilotBackend(sky_account, state, poll_interval=0.0)
    launches = submitted(backend, launches_of(exp_of(["a"], "pass"), "g", state))
    obs = until(backend, launches, ended, sync=False)
    assert obs[launches[0].name].status == JobStatus.SUCCEEDED
    assert [j["status"] for j in sky_account.jobs()] == ["SUCCEEDED"], "one job, not two"


@pytest.mark.parametrize("wipe", [False, True], ids=["interrupted", "request-table-wiped"])
def test_a_server_restart_during_a_launch_launches_it_again(
    sky_account: FakeSkyApi, tmp_path: Path, wipe: bool
) -> None:
    # the launch request waits for it
    sky_account.configure(pending_s=0, starting_s=0, controller_start_s=2.0)
    state = tmp_path / "state"
    backend = SkyPilotBackend(sky_account, state, poll_interval=0.0, launch_wait_s=0.3)
    launches = submitted(backend, launches_of(exp_of(["a"], "pass"), "g", state))
    sky_account.restart_server(wipe=wipe)  # the request is interrupted: its job is never made
    obs = until(backend, launches, ended, timeout=60, sync=False)
    assert obs[launches[0].name].status == JobStatus.SUCCEEDED
    assert [j["status"] for j in sky_account.jobs()] == ["SUCCEEDED"]


# --- 8. the local copy of a log only grows --------------------------------------------------------------------


def test_the_local_copy_of_a_long_log_only_grows(sky_account: FakeSkyApi, tmp_path: Path) -> None:
    sky_account.configure(pending_s=0, starting_s=0, log_download_s=0)
    state = tmp_path / "state"
    script = (
        "import time\nfor i in range(2000):\n    print('line', i, flush=True)\n    i % 400 or time.sleep(0.5)"
    )
    backend = SkyPilotBackend(sky_account, state, poll_interval=0.0, log_interval_s=0.0, log_lines=100)
    launches = submitted(backend, launches_of(exp_of(["a"], script), "g", state))
    seen = ""
    while not backend.log_complete(launches[0]):
        backend.poll(launches)
        backend.sync_logs(launches)
        now = launches[0].log_path.read_text() if launches[0].log_path.exists() else ""
        assert now.startswith(seen), "the copy was rewritten: `job logs --follow` reads it by offset"
        seen = now
    assert seen.splitlines() == [f"line {i}" for i in range(2000)]


def test_a_line_being_written_is_copied_only_once_it_is_whole(
    sky_account: FakeSkyApi, tmp_path: Path
) -> None:
    """A tail read while the job writes a line ends with part of it (an unbuffered ``print`` writes its
    pieces one by one): that part is not a line yet, and copying it garbled the copy (the next tails did
    not meet it, and the whole log was appended again)."""
    sky_account.configure(pending_s=0, starting_s=0, log_download_s=0)
    state = tmp_path / "state"
    script = "import sys, time\nprint('first', flush=True)\nsys.stdout.write('sec'); sys.stdout.flush()\n"
    script += "time.sleep(3)\nprint('ond', flush=True)"
    backend = SkyPilotBackend(sky_account, state, poll_interval=0.0, log_interval_s=0.0)
    launches = submitted(backend, launches_of(exp_of(["a"], script), "g", state))
    machine_log = sky_account.job_dir(1) / "log"
    wait_for(
        lambda: machine_log.exists() and machine_log.read_text().endswith("sec"), timeout=60, what="'sec'"
    )
    for _ in range(3):  # copied while the line is half written
        backend.poll(launches)
        backend.sync_logs(launches)
    until(backend, launches, lambda _: backend.log_complete(launches[0]), timeout=60)
    assert launches[0].log_path.read_text() == "first\nsecond\n"


# --- 9. a job id is adopted only with its name --------------------------------------------------------------


def test_a_job_id_of_another_job_is_neither_read_nor_cancelled(
    sky_account: FakeSkyApi, tmp_path: Path
) -> None:
    sky_account.configure(pending_s=0, starting_s=0)
    state = tmp_path / "state"
    other = submitted(SkyPilotBackend(sky_account, state, poll_interval=0.0),
                      launches_of(exp_of(["x"], "import time; time.sleep(60)"), "other", state))  # fmt: skip
    assert other[0].handle == "1"
    ours = [
        replace(launches_of(exp_of(["a"], "pass"), "ours", state)[0], handle="1")
    ]  # another server's id 1
    backend = SkyPilotBackend(sky_account, state, poll_interval=0.0)
    obs = backend.poll(ours)[ours[0].name]
    assert obs.status is None and "another job" in (obs.reason or ""), obs
    backend.cancel(ours)
    assert sky_account.job(1)["status"] == "RUNNING", "another job is never cancelled for ours"


# --- 10. the W&B link of a chatty job that is killed before it finishes ------------------------------------


CHATTY_WANDB = """
import time
print("[metta-exp] wandb url=https://wandb.example/team/proj/runs/abc123 entity=team project=proj id=abc123")
for i in range(1500):
    print("line", i, flush=True)
time.sleep(600)
"""


def test_a_chatty_job_killed_before_it_ends_gets_its_wandb_link(
    state_dir: Path, tmp_path: Path, sky_account: FakeSkyApi
) -> None:
    env = {
        "METTA_EXP_FAKE_SKY_DIR": str(sky_account.root),
        "METTA_EXP_SKY_POLL_S": "0.3",
        "METTA_EXP_SKY_LOG_S": "60",
    }
    launched = run_cli("--config-dir", str(conf(tmp_path, CHATTY_WANDB)), "+experiment=remote", "group=wb",
                       "wait=false", env=env)  # fmt: skip
    assert launched.returncode == 0, launched.stdout + launched.stderr
    log = sky_account.job_dir(1) / "log"
    wait_for(lambda: log.exists() and "line 1499" in log.read_text(), timeout=60, what="the job's 1500 lines")
    killed = run_cli("job", "kill", "wb", "--force", env=env)  # its W&B line is far above any tail
    assert killed.returncode == 0, killed.stdout + killed.stderr
    job = wait_group_end(state_dir, "wb", timeout=60)[0]
    assert job.status == JobStatus.CANCELLED
    assert job.wandb_url == "https://wandb.example/team/proj/runs/abc123", "read from its whole final log"


# --- 11. the state directory is not uploaded with the workdir -----------------------------------------------


@pytest.mark.parametrize("git", [False, True], ids=["plain-dir", "git-repo"])
def test_the_state_directory_stays_out_of_the_workdir_upload(
    sky_account: FakeSkyApi, tmp_path: Path, git: bool
) -> None:
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "train.py").write_text("print('hi')\n")
    (project / "data" / "big.bin").write_text("x")
    if git:
        subprocess.run(["git", "init", "-q", str(project)], check=True)
        (project / ".gitignore").write_text("data/\n")
    state = project / "job_state"
    (state / "runs").mkdir(parents=True)
    (state / "jobs.sqlite").write_text("the store")
    exp = Experiment(runs=["a"], command=["python", "train.py"], gpus=0,
                     skypilot={"workdir": str(project), "default_setup": False})  # fmt: skip
    submitted(SkyPilotBackend(sky_account, state, poll_interval=0.0), launches_of(exp, "g", state))
    uploaded = {p.relative_to(sky_account.job_dir(1) / "upload" / "workdir").as_posix()
                for p in (sky_account.job_dir(1) / "upload" / "workdir").rglob("*")}  # fmt: skip
    assert "train.py" in uploaded and not any(p.startswith("job_state") for p in uploaded), uploaded
    assert ("data/big.bin" in uploaded) != git, "the user's own ignores stay as they were"
    assert (project / ".skyignore").exists() != git, "a .skyignore in a git repository would drop .gitignore"


# --- 12. the smaller ones -------------------------------------------------------------------------------------


def test_a_store_shared_by_two_machines_sees_both_machines_jobs(
    sky_account: FakeSkyApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sky_account.configure(pending_s=0, starting_s=0)
    state = tmp_path / "state"
    monkeypatch.setenv("SKYPILOT_USER_ID", "machine-a")
    launches = submitted(SkyPilotBackend(sky_account, state, poll_interval=0.0),
                         launches_of(exp_of(["a"], "import time; time.sleep(30)"), "g", state))  # fmt: skip
    monkeypatch.setenv("SKYPILOT_USER_ID", "machine-b")  # the runner now runs on the other machine
    assert sky_account.queue() == [], "SkyPilot answers only this machine's jobs without all_users"
    obs = SkyPilotBackend(sky_account, state, poll_interval=0.0).poll(launches)[launches[0].name]
    assert obs.status == JobStatus.RUNNING, obs


def test_a_failed_jobs_reason_is_its_exit_not_skypilots_controller_log() -> None:
    failure = "Job exited with exit code 3 (user program failure). To see the details, run: sky jobs logs"
    failure += " --controller 7"
    obs = observe(QueueEntry(7, "n", "FAILED", failure_reason=failure))
    assert obs.reason == "SkyPilot FAILED: Job exited with exit code 3 (user program failure)."
    assert obs.exit_code == 3


JOB_GROUP_PROBE = """
import json, sky
from metta_exp.backends.skypilot import api
seen = {}
sky.jobs.launch = lambda task, **kw: seen.update(kw) or "req-1"
api.SdkSkyApi().launch({"name": "metta-exp-x", "run": "echo hi"}, {})
print(json.dumps(seen))
"""


def test_launches_never_attach_to_a_surrounding_job_group(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path), "SKYPILOT_MANAGED_JOB_ID": "5", "SKYPILOT_ROOT_JOB_ID": "5"}
    result = subprocess.run([PY, "-c", JOB_GROUP_PROBE], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"name": "metta-exp-x", "job_group": None}


# --- 13. a group remembers where it runs ------------------------------------------------------------------


def test_a_simulated_group_is_driven_on_its_simulator_from_any_shell(
    state_dir: Path, tmp_path: Path, sky_account: FakeSkyApi
) -> None:
    import signal

    env = {"METTA_EXP_FAKE_SKY_DIR": str(sky_account.root), "METTA_EXP_SKY_POLL_S": "0.3"}
    launched = run_cli("--config-dir", str(conf(tmp_path, "import time; time.sleep(2)")), "+experiment=remote",
                       "group=where", "wait=false", env=env)  # fmt: skip
    assert launched.returncode == 0, launched.stdout + launched.stderr
    with JobStore.open(state_dir) as store:
        os.killpg(store.group("where").runner_pid or 0, signal.SIGKILL)  # the runner dies
    assert "METTA_EXP_FAKE_SKY_DIR" not in os.environ
    watched = run_cli("job", "monitor", "where", env={"METTA_EXP_SKY_POLL_S": "0.3"}, timeout=120)
    assert watched.returncode == 0, watched.stdout + watched.stderr  # driven on the simulator, to its end
    assert [j["status"] for j in sky_account.jobs()] == ["SUCCEEDED"]


def test_a_group_on_skypilot_is_driven_only_through_its_api_server(monkeypatch: pytest.MonkeyPatch) -> None:
    from metta_exp.backends.skypilot.select import sky_api_at
    from metta_exp.errors import BackendUnavailable

    where = {"api_server": "https://sky.team.example"}
    monkeypatch.setenv("METTA_EXP_FAKE_SKY_DIR", "/tmp/anything")
    with pytest.raises(BackendUnavailable, match="Fix: unset METTA_EXP_FAKE_SKY_DIR"):
        sky_api_at(where)
    monkeypatch.delenv("METTA_EXP_FAKE_SKY_DIR")
    monkeypatch.setenv("SKYPILOT_API_SERVER_ENDPOINT", "https://sky.other.example")
    with pytest.raises(BackendUnavailable, match="SKYPILOT_API_SERVER_ENDPOINT=https://sky.team.example"):
        sky_api_at(where)
    monkeypatch.setenv("SKYPILOT_API_SERVER_ENDPOINT", "https://sky.team.example/")
    assert sky_api_at(where).identity == "sdk"
