"""SkyPilotBackend against FakeSkyApi: real bash processes running the generated tasks, real files.

The fake is the only stand-in (for SkyPilot's API server and the cloud); every task's run script is
executed for real. Polls use ``poll_interval=0`` unless a test is about the shared queue. Jobs here skip
the queue and provisioning (``pending_s``/``starting_s`` 0): what the backend does once jobs run is the
subject; ``test_remote_weather`` keeps the simulator's harsh defaults.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from metta_exp.backends import procs
from metta_exp.backends.base import Launch, LaunchSettings, Observation
from metta_exp.backends.skypilot.api import FAKE_DIR_ENV, QueueEntry
from metta_exp.backends.skypilot.backend import SkyPilotBackend, make_skypilot_backend, observe
from metta_exp.backends.skypilot.select import default_sky_api
from metta_exp.backends.skypilot.sim.api import MANAGED_JOB_STATUSES, FakeSkyApi
from metta_exp.backends.skypilot.task import sky_job_name
from metta_exp.config import Experiment
from metta_exp.errors import BackendError, BackendUnavailable, ConfigError
from metta_exp.resolve import resolve
from metta_exp.status import JobStatus

PY = sys.executable
SECRET = "sk-test-secret-value-42"
# Writes its argv (after the output path) as JSON, and a hash of the W&B key it was given.
ARGV_PROBE = (
    "import hashlib, json, os, sys; rd = os.environ['METTA_EXP_RUN_DIR']; "
    "json.dump({'argv': sys.argv[1:], 'cwd': os.getcwd(), 'env': {k: v for k, v in os.environ.items() "
    "if k.startswith(('METTA_EXP_', 'WANDB_')) and k != 'WANDB_API_KEY'}, "
    "'key': hashlib.sha256(os.environ.get('WANDB_API_KEY', '').encode()).hexdigest()}, "
    "open(os.path.join(rd, 'probe.json'), 'w')); print('probe done')"
)
NASTY = ["it's", 'say "hi"', "two words", "$(touch pwned)", "`touch pwned2`", "a\nb", "x;y&&z", "*", ""]


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeSkyApi]:
    api = FakeSkyApi(tmp_path / "fake sky 'dir'")
    api.configure(pending_s=0, starting_s=0)
    try:
        yield api
    finally:
        api.kill_all()


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "job state"


def launches_for(exp: Experiment, group: str, state: Path, attempt: int = 1) -> list[Launch]:
    settings = LaunchSettings(exp.skypilot, exp.wandb)
    return [
        Launch(spec, attempt, Path(spec.run_dir) / f"attempt-{attempt}.log", settings=settings)
        for spec in resolve(exp, group, state)
    ]


def command_exp(runs: list[str], script: str, **kw: object) -> Experiment:
    """Jobs that run this test's own Python: no default setup needed (``test_remote_bare`` has it)."""
    kw["skypilot"] = {"default_setup": False, **dict(kw.get("skypilot") or {})}  # type: ignore[call-overload]
    return Experiment(runs=runs, command=[PY, "-c", script], gpus=0, **kw)  # type: ignore[arg-type]


def with_handles(launches: list[Launch], handles: dict[str, str]) -> list[Launch]:
    return [replace(launch, handle=handles.get(launch.name)) for launch in launches]


def poll_until(
    backend: SkyPilotBackend, launches: list[Launch], done, timeout: float = 60.0, sync: bool = False
):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    seen: list[dict[str, Observation]] = []
    while time.monotonic() < deadline:
        obs = backend.poll(launches)
        if sync:
            backend.sync_logs(launches)
        seen.append(obs)
        if done(obs):
            return obs, seen
        time.sleep(0.05)
    raise AssertionError(f"timed out; last observations: {seen[-1] if seen else None}")


def logs_complete(backend: SkyPilotBackend, launches: list[Launch], timeout: float = 30.0) -> None:
    """Poll and copy logs until every ended attempt's log is whole (SkyPilot gives it after the end)."""
    deadline = time.time() + timeout
    while not all(backend.log_complete(launch) for launch in launches):
        assert time.time() < deadline, "the final logs never came"
        backend.poll(launches)
        backend.sync_logs(launches)
        time.sleep(0.1)


def all_ended(obs: dict[str, Observation]) -> bool:
    return all(o.status is not None and o.status.is_terminal() for o in obs.values())


def backend_on(fake: FakeSkyApi, state: Path, **kw: object) -> SkyPilotBackend:
    kw.setdefault("poll_interval", 0.0)
    kw.setdefault(
        "launch_wait_s", 30.0
    )  # the ids, even on a busy machine (a test says otherwise when it means to)
    return SkyPilotBackend(fake, state, **kw)  # type: ignore[arg-type]


# --- the generated task, executed -----------------------------------------------------------------


def test_task_runs_with_every_argument_exact_and_the_secret_only_in_the_job(
    fake: FakeSkyApi, state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    exp = command_exp(["a", "b"], ARGV_PROBE, args=NASTY, wandb={"project": "p", "mode": "online"},
                      skypilot={"envs": {"EXTRA": "1"}})  # fmt: skip
    launches = launches_for(exp, "grp", state)
    backend = backend_on(fake, state)
    launches = with_handles(launches, backend.submit(launches))
    obs, _ = poll_until(backend, launches, all_ended)
    assert {o.status for o in obs.values()} == {JobStatus.SUCCEEDED}
    for launch in launches:
        job_id = int(launch.handle or 0)
        remote_run_dir = fake.job_dir(job_id) / "home" / "metta-exp" / "runs" / "grp" / launch.spec.run
        probe = json.loads((remote_run_dir / "probe.json").read_text())
        assert probe["argv"] == NASTY
        assert probe["key"] == hashlib.sha256(SECRET.encode()).hexdigest()
        assert probe["env"]["METTA_EXP_RUN_DIR"] == str(remote_run_dir)
        assert probe["env"]["WANDB_RUN_ID"] == launch.spec.wandb_run_id
        assert probe["env"]["METTA_EXP_ATTEMPT"] == "1" and probe["env"]["WANDB_PROJECT"] == "p"
        assert "METTA_EXP_STATE_DIR" not in probe["env"]
        assert not list(fake.job_dir(job_id).rglob("pwned*"))
    # the key went to SkyPilot as a secret: not into our state dir, logs, or anything we wrote
    logs_complete(backend, launches)
    for path in state.rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(errors="replace"), path


def test_workdir_is_synced_and_setup_runs_first(fake: FakeSkyApi, state: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "project dir"
    workdir.mkdir()
    (workdir / "train.py").write_text("import pathlib; print(pathlib.Path('setup.txt').read_text())\n")
    exp = Experiment(runs=["r"], command=["python", "train.py"], gpus=0,
                     skypilot={"workdir": str(workdir), "setup": "echo 'set up' > setup.txt"})  # fmt: skip
    launches = launches_for(exp, "g", state)
    backend = backend_on(fake, state)
    launches = with_handles(launches, backend.submit(launches))
    obs, _ = poll_until(backend, launches, all_ended)
    assert obs[launches[0].name].status == JobStatus.SUCCEEDED
    logs_complete(backend, launches)
    assert "set up" in launches[0].log_path.read_text()


# --- submit ---------------------------------------------------------------------------------------


def test_submit_sends_every_launch_before_collecting_any(fake: FakeSkyApi, state: Path) -> None:
    fake.configure(latency_s=0.02)
    exp = command_exp([f"r{i}" for i in range(12)], "pass")
    launches = launches_for(exp, "g", state)
    handles = backend_on(fake, state, workers=4).submit(launches)
    assert sorted(int(h) for h in handles.values()) == list(range(1, 13))
    calls = [c for c in fake.call_log() if c[0] != "api.health"]
    sequence = [c[0] for c in calls]
    # one fresh queue (its request and its get), then 12 launches (each a validate and the launch, as
    # sky/jobs/client/sdk.py sends them), then 12 gets: none waits on another
    assert sequence[:2] == ["jobs.queue_v2", "get"]
    assert (
        sorted(sequence[2:26]) == ["jobs.launch"] * 12 + ["validate"] * 12 and sequence[26:] == ["get"] * 12
    )
    assert len({c[2] for c in calls if c[0] == "jobs.launch"}) > 1  # on several threads


def test_an_existing_attempt_is_adopted_never_launched_twice(fake: FakeSkyApi, state: Path) -> None:
    exp = command_exp(["a", "b"], "import time; time.sleep(30)")
    launches = launches_for(exp, "g", state)
    first = backend_on(fake, state).submit(launches)
    # the runner "crashed" before recording: a new backend gets the same launches, handle-less
    after_crash = backend_on(fake, state)
    obs = after_crash.poll(launches)
    assert {name: o.handle for name, o in obs.items()} == first
    assert all(o.status == JobStatus.RUNNING for o in obs.values())
    assert after_crash.submit(launches) == first
    assert len(fake.jobs()) == 2 and fake.call_counts()["jobs.launch"] == 2


def test_a_job_that_shows_up_late_is_unseen_then_reconciled(fake: FakeSkyApi, state: Path) -> None:
    exp = command_exp(["late"], "import time; time.sleep(30)")
    launches = launches_for(exp, "g", state)
    fake.configure(rules=[{"match": f"{sky_job_name('g', 'late', 1)}", "visible_after_s": 2.0}])
    backend_on(fake, state, launch_wait_s=0.5).submit(launches)  # returns before the job id is known
    fresh = backend_on(fake, state)  # no memory of the launch, like a restarted runner
    first = fresh.poll(launches)[launches[0].name]
    assert first.status is None and not first.transient  # unseen: the runner's grace period applies
    obs, _ = poll_until(fresh, launches, lambda o: o[launches[0].name].status is not None)
    assert obs[launches[0].name].status == JobStatus.RUNNING and obs[launches[0].name].handle == "1"


def test_slow_launch_answer_returns_the_name_and_poll_finds_the_id(fake: FakeSkyApi, state: Path) -> None:
    fake.configure(slow={"launch_result": 2.0})
    exp = command_exp(["a"], "import time; time.sleep(30)")
    launches = launches_for(exp, "g", state)
    backend = backend_on(fake, state, launch_wait_s=0.3)
    handles = backend.submit(launches)
    assert handles == {launches[0].name: sky_job_name("g", "a", 1)}
    obs, _ = poll_until(backend, with_handles(launches, handles), lambda o: o[launches[0].name].handle == "1")
    assert obs[launches[0].name].status == JobStatus.RUNNING


def test_a_launch_still_being_sent_is_transient_then_found(fake: FakeSkyApi, state: Path) -> None:
    fake.configure(slow={"launch": 1.0})
    launches = launches_for(command_exp(["a"], "import time; time.sleep(30)"), "g", state)
    backend = backend_on(fake, state, launch_wait_s=0.2)
    handles = backend.submit(launches)
    assert handles == {launches[0].name: sky_job_name("g", "a", 1)}  # sent, not answered yet
    first = backend.poll(with_handles(launches, handles))[launches[0].name]
    assert first.status is None and first.transient  # not "unseen": this process is still sending it
    obs, _ = poll_until(backend, with_handles(launches, handles), lambda o: o[launches[0].name].handle == "1")
    assert obs[launches[0].name].status == JobStatus.RUNNING
    assert fake.call_counts()["jobs.launch"] == 1


def test_transient_launch_errors_are_retried(fake: FakeSkyApi, state: Path) -> None:
    fake.fail_next("launch", 2)
    exp = command_exp(["a"], "pass")
    handles = backend_on(fake, state).submit(launches_for(exp, "g", state))
    assert list(handles.values()) == ["1"] and fake.call_counts()["jobs.launch"] == 3


def test_refused_launches(fake: FakeSkyApi, state: Path) -> None:
    exp = command_exp(["a", "b"], "import time; time.sleep(30)")
    launches = launches_for(exp, "g", state)
    fake.fail_next("launch", 2, "bad accelerator", refuse=True)
    with pytest.raises(BackendError, match="bad accelerator"):
        backend_on(fake, state).submit(launches)  # every launch refused: say why, for all of them
    fake.fail_next("launch", 1, "quota exceeded", refuse=True)
    backend = backend_on(fake, state)
    handles = backend.submit(launches_for(exp, "g2", state))
    obs = backend.poll(with_handles(launches_for(exp, "g2", state), handles))
    outcome = {o.status: o.reason or "" for o in obs.values()}
    assert set(outcome) == {JobStatus.RUNNING, JobStatus.FAILED}
    assert "quota exceeded" in outcome[JobStatus.FAILED]


def test_submit_when_the_api_is_down_raises_and_launches_nothing(fake: FakeSkyApi, state: Path) -> None:
    fake.fail_next("queue", 10, "connection refused")
    with pytest.raises(BackendError, match="connection refused"):
        backend_on(fake, state, launch_wait_s=2.0).submit(
            launches_for(command_exp(["a"], "pass"), "g", state)
        )
    assert fake.call_counts()["jobs.launch"] == 0


# --- poll: statuses -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [*MANAGED_JOB_STATUSES, "SUBMITTED", "WINDING_DOWN", "SOMETHING_NEW"])
def test_every_managed_job_status_maps(status: str) -> None:
    obs = observe(QueueEntry(7, "n", status, failure_reason="boom" if "FAILED" in status else None))
    assert obs.handle == "7"
    if status == "SUCCEEDED":
        assert obs.status == JobStatus.SUCCEEDED and obs.exit_code == 0
    elif status == "CANCELLED":
        assert obs.status == JobStatus.CANCELLED
    elif status.startswith("FAILED"):
        assert obs.status == JobStatus.FAILED and obs.reason == f"SkyPilot {status}: boom"
    else:  # PENDING, STARTING, RUNNING, RECOVERING, CANCELLING...: SkyPilot still has it
        assert obs.status == JobStatus.RUNNING
        assert (obs.reason is None) == (status == "RUNNING")


@pytest.mark.parametrize(
    ("rule", "script", "status", "reason"),
    [
        ({"status": "FAILED_SETUP"}, "pass", JobStatus.FAILED, "SkyPilot FAILED_SETUP"),
        ({"status": "FAILED_NO_RESOURCE"}, "pass", JobStatus.FAILED, "SkyPilot FAILED_NO_RESOURCE"),
        ({"status": "FAILED_PRECHECKS"}, "pass", JobStatus.FAILED, "SkyPilot FAILED_PRECHECKS"),
        ({"status": "FAILED_CONTROLLER"}, "pass", JobStatus.FAILED, "SkyPilot FAILED_CONTROLLER"),
        ({}, "raise SystemExit(3)", JobStatus.FAILED, "SkyPilot FAILED: Job exited with exit code 3 (user"),
        ({"pending_s": 1.5, "starting_s": 0.5}, "pass", JobStatus.SUCCEEDED, None),
    ],
)
def test_outcomes_through_the_fake(
    fake: FakeSkyApi, state: Path, rule: dict[str, object], script: str, status: JobStatus, reason: str | None
) -> None:
    fake.configure(rules=[{"match": "*", **rule}])
    launches = launches_for(command_exp(["r"], script), "g", state)
    backend = backend_on(fake, state)
    launches = with_handles(launches, backend.submit(launches))
    obs, seen = poll_until(backend, launches, all_ended)
    final = obs[launches[0].name]
    assert final.status == status
    assert reason is None or (final.reason or "").startswith(reason)
    if "pending_s" in rule:  # PENDING and STARTING were seen as running, with SkyPilot's status noted
        notes = {o[launches[0].name].reason for o in seen[:-1]}
        assert "SkyPilot PENDING" in notes and all(
            o[launches[0].name].status == JobStatus.RUNNING for o in seen[:-1]
        )


def test_preemption_is_recovering_then_running_again(fake: FakeSkyApi, state: Path) -> None:
    # the first run waits to be preempted; the recovered one (a new machine: a marker outside it) ends
    marker = state.parent / "first-run-marker"
    script = (
        "import os, sys, time; first = not os.path.exists(sys.argv[1]); open(sys.argv[1], 'a').close(); "
        "print('attempt', 'first' if first else 'recovered', os.environ['SKYPILOT_TASK_ID'], flush=True); "
        "time.sleep(60 if first else 0.2)"
    )
    fake.configure(rules=[{"match": "*", "preempt_after_s": 3.0, "recover_after_s": 2.0}])
    launches = launches_for(command_exp(["r"], script, args=[str(marker)]), "g", state)
    backend = backend_on(fake, state, log_interval_s=0.1)
    launches = with_handles(launches, backend.submit(launches))
    obs, seen = poll_until(backend, launches, all_ended, sync=True)
    assert obs[launches[0].name].status == JobStatus.SUCCEEDED
    reasons = [o[launches[0].name].reason for o in seen]
    statuses = {o[launches[0].name].status for o in seen[:-1]}
    assert statuses == {JobStatus.RUNNING}  # recovering is still running for us
    assert any(r and r.startswith("SkyPilot RECOVERING") for r in reasons)
    assert fake.job(1)["recovery_count"] == 1 and obs[launches[0].name].recoveries == 1
    assert "attempt first" not in (fake.job_dir(1) / "log").read_text(), (
        "SkyPilot keeps the last machine's log"
    )
    logs_complete(backend, launches)
    log = launches[0].log_path.read_text()  # the copy keeps every machine's, each after a recovery line
    first, recovered = log.split("[metta-exp] recovery 1: ")
    assert "attempt first" in first and "attempt recovered" in recovered
    task_ids = {line.split()[-1] for line in log.splitlines() if line.startswith("attempt")}
    assert len(task_ids) == 1, "SKYPILOT_TASK_ID stays the same across recoveries"


# --- poll: batching, sharing, errors -----------------------------------------------------------------


def test_one_queue_call_per_cycle_for_all_groups(fake: FakeSkyApi, state: Path) -> None:
    groups = {g: launches_for(command_exp(["a", "b", "c"], "import time; time.sleep(30)"), g, state)
              for g in ("g1", "g2", "g3")}  # fmt: skip
    submitter = backend_on(fake, state)
    for g, launches in groups.items():
        groups[g] = with_handles(launches, submitter.submit(launches))
    runners = [SkyPilotBackend(fake, state, poll_interval=30.0) for _ in groups]  # one per group
    for runner, launches in zip(runners, groups.values(), strict=True):
        runner.poll(launches)  # each runner's first poll registers its jobs
    for _ in range(3):  # three cycles of three runners: ONE call per cycle, for the jobs of all groups
        runners[0].queue.invalidate()  # the interval passed
        before = fake.call_log()
        for runner, launches in zip(runners, groups.values(), strict=True):
            obs = runner.poll(launches)
            assert {o.status for o in obs.values()} == {JobStatus.RUNNING}
        new = [c for c in fake.call_log()[len(before) :] if c[0] != "api.health"]
        assert [c[0] for c in new] == ["jobs.queue_v2", "get"]
        assert new[1][3] > 0  # the answer's size is logged
    assert runners[0].queue.age() is not None


def test_runner_processes_share_one_queue_call(fake: FakeSkyApi, state: Path) -> None:
    launches = launches_for(command_exp(["a"], "import time; time.sleep(30)"), "g", state)
    backend_on(fake, state).submit(launches)
    (state / "skypilot").mkdir(parents=True, exist_ok=True)
    for cache in (state / "skypilot").glob("queue-*.json"):
        cache.unlink()  # start cold: the first runner to ask fetches, the others reuse its answer
    fake.configure(latency_s=0.2)
    before = fake.call_counts()["jobs.queue_v2"]
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from metta_exp.backends.skypilot.backend import SkyPilotBackend
        from metta_exp.backends.skypilot.sim.api import FakeSkyApi
        from metta_exp.backends.base import Launch
        from metta_exp.config import Experiment
        from metta_exp.resolve import resolve
        state = Path({str(state)!r})
        backend = SkyPilotBackend(FakeSkyApi({str(fake.root)!r}), state, poll_interval=60.0)
        spec = resolve(Experiment(runs=["a"], command=["x"], gpus=0), "g", state)[0]
        for _ in range(3):
            obs = backend.poll([Launch(spec, 1, Path("/dev/null"))])
            assert next(iter(obs.values())).status is not None, obs
        print("ok")
    """)
    procs_ = [subprocess.Popen([PY, "-c", script], stdout=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=120)[0] for p in procs_]
    assert all(p.returncode == 0 for p in procs_) and all("ok" in o for o in outs)
    assert fake.call_counts()["jobs.queue_v2"] - before == 1


def test_api_errors_are_transient_and_cached_for_the_interval(fake: FakeSkyApi, state: Path) -> None:
    launches = launches_for(command_exp(["a"], "import time; time.sleep(30)"), "g", state)
    launches = with_handles(launches, backend_on(fake, state).submit(launches))
    fake.fail_next("queue", 1, "API server unreachable")
    a = SkyPilotBackend(fake, state, poll_interval=30.0)
    b = SkyPilotBackend(fake, state, poll_interval=30.0)
    before = fake.call_counts()["jobs.queue_v2"]
    for backend in (a, b):
        obs = backend.poll(launches)[launches[0].name]
        assert obs.status is None and obs.transient and "API server unreachable" in (obs.reason or "")
    assert fake.call_counts()["jobs.queue_v2"] - before == 1  # the failure was shared, not repeated
    obs = backend_on(fake, state).poll(launches)[launches[0].name]  # a shorter interval asks again
    assert obs.status == JobStatus.RUNNING


def test_a_vanished_job_is_unseen_not_transient(fake: FakeSkyApi, state: Path) -> None:
    launches = launches_for(command_exp(["a"], "pass"), "g", state)
    obs = backend_on(fake, state).poll([replace(launches[0], handle="99")])[launches[0].name]
    assert obs.status is None and not obs.transient


# --- cancel and logs ----------------------------------------------------------------------------------


def test_cancel_is_one_batched_call_and_ends_the_processes(fake: FakeSkyApi, state: Path) -> None:
    exp = command_exp([f"r{i}" for i in range(5)], "import time; print('up', flush=True); time.sleep(60)")
    launches = launches_for(exp, "g", state)
    backend = backend_on(fake, state)
    launches = with_handles(launches, backend.submit(launches))
    poll_until(backend, launches, lambda o: all(x.status == JobStatus.RUNNING for x in o.values()))
    pgids = {job["pgid"] for job in fake.jobs()}
    assert all(pgids) and pgids <= {p.pgid for p in procs.process_table().values() if not p.dead}
    # one launch known only by name (a runner that crashed before recording its id)
    launches[0] = replace(launches[0], handle=None)
    before = fake.call_counts()
    SkyPilotBackend(fake, state, poll_interval=0.0).cancel(launches)
    after = fake.call_counts()
    assert after["jobs.cancel"] - before["jobs.cancel"] == 1
    live = {p.pgid for p in procs.process_table().values() if not p.dead}
    assert not pgids & live
    obs = backend.poll(launches)
    assert {o.status for o in obs.values()} == {JobStatus.CANCELLED}


def test_cancelling_is_not_terminal(fake: FakeSkyApi, state: Path) -> None:
    fake.configure(cancel_delay_s=2.0)
    launches = launches_for(command_exp(["a"], "import time; time.sleep(60)"), "g", state)
    backend = backend_on(fake, state)
    launches = with_handles(launches, backend.submit(launches))
    poll_until(backend, launches, lambda o: o[launches[0].name].status == JobStatus.RUNNING)
    backend.cancel(launches)
    first = backend.poll(launches)[launches[0].name]
    assert first.status == JobStatus.RUNNING and first.reason == "SkyPilot CANCELLING"
    obs, _ = poll_until(backend, launches, all_ended)
    assert obs[launches[0].name].status == JobStatus.CANCELLED


def test_cancel_when_the_api_fails_is_an_error(fake: FakeSkyApi, state: Path) -> None:
    launches = launches_for(command_exp(["a"], "pass"), "g", state)
    launches = with_handles(launches, backend_on(fake, state).submit(launches))
    fake.fail_next("cancel", 5, "server error")
    with pytest.raises(BackendError, match="server error"):
        backend_on(fake, state, launch_wait_s=1.0).cancel(launches)


def test_log_tails_are_synced_at_a_bounded_rate(fake: FakeSkyApi, state: Path) -> None:
    script = (  # three lines, then wait for a 'go' file in the run dir, then one more
        "import os, time\nfor i in range(3): print('line', i, flush=True)\n"
        "while not os.path.exists(os.path.join(os.environ['METTA_EXP_RUN_DIR'], 'go')): time.sleep(0.02)\n"
        "print('bye')"
    )
    fake.configure(log_download_s=0)  # here: the rate (test_remote_weather: logs that come late)
    exp = command_exp([f"r{i}" for i in range(5)], script)
    launches = launches_for(exp, "g", state)
    backend = backend_on(fake, state, log_interval_s=60.0, logs_per_cycle=2, log_lines=2)
    launches = with_handles(launches, backend.submit(launches))

    def printed(_obs: dict[str, Observation]) -> bool:
        logs = [fake.job_dir(int(x.handle or 0)) / "log" for x in launches]
        return all(log.exists() and "line 2" in log.read_text(errors="ignore") for log in logs)

    poll_until(backend, launches, printed)
    tails = lambda: fake.call_counts()["jobs.tail_logs"]  # noqa: E731
    start = tails()
    backend.sync_logs(launches)
    assert tails() - start == 2  # at most logs_per_cycle per call
    backend.sync_logs(launches)
    backend.sync_logs(launches)
    assert tails() - start == 5  # then the others, each job once: none is due again within 60 s
    backend.sync_logs(launches)
    assert tails() - start == 5
    for launch in launches:
        assert launch.log_path.read_text() == "line 0\nline 1\nline 2\n"  # the first look: all of it
        job_id = int(launch.handle or 0)
        (fake.job_dir(job_id) / "home" / "metta-exp" / "runs" / "g" / launch.spec.run / "go").touch()
    poll_until(backend, launches, all_ended)
    for _ in range(3):
        backend.sync_logs(launches)  # every job that ended gets one final tail (its whole log), no more
    assert tails() - start == 10
    assert all(backend.log_complete(launch) for launch in launches)
    assert all(launch.log_path.read_text() == "line 0\nline 1\nline 2\nbye\n" for launch in launches)


# --- check and the switch ---------------------------------------------------------------------------


@pytest.mark.slow
def test_check(fake: FakeSkyApi, state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(state.parent / "home"))  # a cloud not enabled asks sky's registry
    specs = resolve(command_exp(["a"], "pass"), "g", state)
    backend_on(fake, state).check(specs)  # the fake enables kubernetes by default
    fake.configure(enabled_infras=[])
    with pytest.raises(BackendUnavailable, match=r"no infra enabled.*sky check.*remote=false"):
        backend_on(fake, state).check(specs)
    fake.configure(enabled_infras=["aws"])
    k8s = backend_on(fake, state)
    k8s.settings = Experiment(runs=["a"], module="m", skypilot={"cloud": "k8s"}).skypilot
    with pytest.raises(BackendUnavailable, match="skypilot.cloud=k8s is not enabled"):
        k8s.check(specs)
    fake.fail_next("enabled_infras", 1, "cannot reach the API server")
    with pytest.raises(BackendUnavailable, match="cannot reach the API server"):
        backend_on(fake, state).check(specs)
    bad = backend_on(fake, state)
    bad.settings = Experiment(runs=["a"], module="m", skypilot={"accelerator": "H100:8"}).skypilot
    with pytest.raises(ConfigError):
        bad.check(specs)
    assert not state.exists()  # checking wrote nothing


def test_env_var_puts_metta_exp_on_the_fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FAKE_DIR_ENV, str(tmp_path / "fake"))
    assert isinstance(default_sky_api(), FakeSkyApi)
    backend = make_skypilot_backend(tmp_path / "state")
    assert isinstance(backend.api, FakeSkyApi) and backend.name == "skypilot"
    monkeypatch.setenv("METTA_EXP_SKY_POLL_S", "2.5")
    assert make_skypilot_backend(tmp_path / "state").poll_interval == 2.5


def test_backend_modules_do_not_import_sky() -> None:
    code = (
        "import sys\n"
        "import metta_exp.backends.skypilot.backend, metta_exp.backends.skypilot.sim.api\n"
        "import metta_exp.backends.skypilot.task, metta_exp.backends.skypilot.cache\n"
        "assert 'sky' not in sys.modules, 'sky was imported'\n"
    )
    subprocess.run([PY, "-c", code], check=True, timeout=60, env={**os.environ, FAKE_DIR_ENV: ""})


def test_sdk_errors_are_classified() -> None:
    from metta_exp.backends.skypilot.api import SkyApiError, SkyRequestError, _classify, clean_log

    class ClusterNotUpError(Exception):  # SkyPilot's, by name: the jobs controller is not up
        pass

    class ApiServerConnectionError(RuntimeError):
        pass

    assert type(_classify(ConnectionRefusedError("refused"))) is SkyApiError  # no answer: try again
    assert type(_classify(ApiServerConnectionError("down"))) is SkyApiError
    assert type(_classify(ValueError("bad task"))) is SkyRequestError  # an answer: a refusal
    no_controller = _classify(ClusterNotUpError("No in-progress managed jobs."))
    assert isinstance(no_controller, SkyRequestError) and "No in-progress" in str(no_controller)
    assert clean_log('\x1b[32mok\x1b[0m\n<sky-payload>"x"</sky-payload>\nline\n') == "ok\nline\n"
