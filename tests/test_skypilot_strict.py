"""Regression tests for the remote path's known gaps, each on the strict SkyPilot simulator (or, where the
gap was in reading SkyPilot's own answers, on SkyPilot's real exception and SDK objects).

Item numbers are those of the issue "Remote groups that hold up on real SkyPilot".
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import PY, run_cli, wait_for, wait_group_end

from metta_exp.backends.base import Launch, LaunchSettings
from metta_exp.backends.skypilot.backend import SkyPilotBackend
from metta_exp.backends.skypilot.sim.api import FakeSkyApi, like
from metta_exp.backends.skypilot.task import build_task_config, task_secrets, validate_settings
from metta_exp.config import Experiment, SkyPilotSettings, WandbSettings
from metta_exp.errors import ConfigError
from metta_exp.resolve import resolve
from metta_exp.status import JobStatus
from metta_exp.store import JobStore


def conf_dir(where: Path, script: str, extra: str = "") -> Path:
    """A config dir with experiment ``remote``: one run ``r`` of ``python -c SCRIPT`` on SkyPilot, with this
    test's own Python (which has metta-exp: no default setup; ``test_remote_bare`` has that)."""
    conf = where / "conf"
    (conf / "experiment").mkdir(parents=True, exist_ok=True)
    sky = (
        extra.replace("skypilot:\n", "skypilot:\n  default_setup: false\n")
        if "skypilot:" in extra
        else (f"skypilot: {{default_setup: false}}\n{extra}")
    )
    (conf / "experiment" / "remote.yaml").write_text(
        f"# @package _global_\ncommand: [{json.dumps(PY)}, -c, {json.dumps(script)}]\nruns: [r]\ngpus: 0\n"
        f"generate_notebook: false\n{sky}"
    )
    return conf


def exp_of(runs: list[str], script: str, **kw: object) -> Experiment:
    """Jobs running this test's own Python (no default setup needed: ``test_remote_bare`` has it)."""
    kw["skypilot"] = {"default_setup": False, **dict(kw.get("skypilot") or {})}  # type: ignore[call-overload]
    return Experiment(runs=runs, command=[PY, "-c", script], gpus=0, **kw)  # type: ignore[arg-type]


def launches_of(exp: Experiment, group: str, state: Path, instance: str | None = None) -> list[Launch]:
    settings = LaunchSettings(exp.skypilot, exp.wandb, instance)
    return [
        Launch(s, 1, Path(s.run_dir) / "attempt-1.log", settings=settings) for s in resolve(exp, group, state)
    ]


def submitted(backend: SkyPilotBackend, launches: list[Launch]) -> list[Launch]:
    handles = backend.submit(launches)
    return [replace(launch, handle=handles.get(launch.name)) for launch in launches]


def poll_until(backend: SkyPilotBackend, launches: list[Launch], done, timeout: float = 60.0):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        obs = backend.poll(launches)
        seen.append(obs)
        if done(obs):
            return obs, seen
        time.sleep(0.05)
    raise AssertionError(f"timed out; last observations: {seen[-1] if seen else None}")


# --- 1. a stopped controller is transient, and the final statuses are read after it starts again -------


def test_stopped_controller_is_transient_and_final_statuses_are_read(
    sky_account: FakeSkyApi, tmp_path: Path
) -> None:
    sky_account.configure(controller_idle_s=0.5)
    state = tmp_path / "state"
    launches = launches_of(exp_of(["a"], "print('done')"), "g", state)
    launches = submitted(SkyPilotBackend(sky_account, state, poll_interval=0.0), launches)
    wait_for(
        lambda: sky_account.controller_status() == "STOPPED",
        timeout=30,
        what="the controller to stop when idle",
    )
    # a runner started later (job monitor/resume)
    restarted = SkyPilotBackend(sky_account, state, poll_interval=0.0)
    first = restarted.poll(launches)[launches[0].name]
    assert first.status is None and first.transient, "a stopped controller is no vanished job"
    assert "stopped" in (first.reason or "")
    obs, _ = poll_until(restarted, launches, lambda o: o[launches[0].name].status is not None, timeout=30)
    assert obs[launches[0].name].status == JobStatus.SUCCEEDED
    assert sky_account.controller_status() == "UP"  # started again by a refreshing call


# --- 3. workdir and file mounts are absolute at launch and stored ------------------------------------------


def test_relative_workdir_is_made_absolute_at_launch_and_stored(state_dir: Path, tmp_path: Path) -> None:
    fake_dir = tmp_path / "sky account"
    env = {"METTA_EXP_FAKE_SKY_DIR": str(fake_dir), "METTA_EXP_SKY_POLL_S": "0.2"}
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    for directory, text in ((project, "project files"), (elsewhere, "wrong files")):
        directory.mkdir()
        (directory / "marker.txt").write_text(text)
    script = (
        "import os; print('sees:', open('marker.txt').read(), flush=True); "
        "raise SystemExit(1 if os.environ['METTA_EXP_ATTEMPT'] == '1' else 0)"
    )
    conf = conf_dir(tmp_path, script, "skypilot:\n  workdir: .\n  file_mounts: {'~/data.txt': marker.txt}\n")
    result = run_cli("--config-dir", str(conf), "+experiment=remote", "group=wd", cwd=project, env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    with JobStore.open(state_dir) as store:
        sky = store.group("wd").exp.skypilot
    assert sky.workdir == str(project) and sky.file_mounts == {"~/data.txt": str(project / "marker.txt")}
    retried = run_cli("job", "retry", "wd", cwd=elsewhere, env=env)  # a runner started from elsewhere
    assert retried.returncode == 0, retried.stdout + retried.stderr
    job = wait_group_end(state_dir, "wd")[0]
    assert job.attempts == 2 and job.status == JobStatus.SUCCEEDED
    log = Path(job.log_path or "").read_text()
    assert "sees: project files" in log and "wrong files" not in log


# --- 4. no log tail for a job that has not started --------------------------------------------------------


def test_no_log_tail_for_a_job_that_has_not_started(sky_account: FakeSkyApi, tmp_path: Path) -> None:
    """Of a PENDING job and a RUNNING one, one log sync tails the running one only (SkyPilot's tail of a
    job that has not started blocks until it starts: sky/jobs/utils.py, stream_logs_by_id)."""
    sky_account.configure(rules=[{"match": "*-g-a-*", "pending_s": 60}])
    state = tmp_path / "state"
    backend = SkyPilotBackend(sky_account, state, poll_interval=0.0, log_interval_s=0.0)
    exp = exp_of(["a", "b"], "import time; print('hi', flush=True); time.sleep(60)")
    launches = submitted(backend, launches_of(exp, "g", state))
    wait_for(
        lambda: sorted(j["status"] for j in sky_account.jobs()) == ["PENDING", "RUNNING"],
        what="b running, a pending",
    )
    obs = backend.poll(launches)
    assert {o.status for o in obs.values()} == {JobStatus.RUNNING}  # PENDING in SkyPilot is running to us
    backend.sync_logs(launches)  # returns once the cycle's tails are fetched (a blocked one: after 1 s)
    wait_for(lambda: launches[1].log_path.exists(), what="the running job's tail")
    assert sky_account.call_counts()["jobs.tail_logs"] == 1, "a tail of a PENDING job waits until it runs"


# --- 5. a group instance never adopts another instance's jobs ---------------------------------------------


def test_a_group_name_used_again_never_adopts_the_old_groups_job(tmp_path: Path) -> None:
    fake_dir = tmp_path / "sky account"
    env = {"METTA_EXP_FAKE_SKY_DIR": str(fake_dir), "METTA_EXP_SKY_POLL_S": "0.2"}
    conf = conf_dir(tmp_path, "print('ran')")
    for name in ("first", "second"):  # two state directories (two machines, or a cleaned-up one)
        env["METTA_EXP_STATE_DIR"] = str(tmp_path / name)
        result = run_cli("--config-dir", str(conf), "+experiment=remote", "group=same", cwd=tmp_path, env=env)
        assert result.returncode == 0, result.stdout + result.stderr
    jobs = FakeSkyApi(fake_dir).jobs()
    assert len(jobs) == 2 and {j["status"] for j in jobs} == {"SUCCEEDED"}, "the second group ran its own job"
    assert jobs[0]["name"] != jobs[1]["name"]


# --- 6. the unseen grace covers a first controller start; late jobs of ended groups are cancelled --------


@pytest.mark.slow
def test_a_job_that_shows_up_late_is_never_failed_as_vanished(
    sky_account: FakeSkyApi, state_dir: Path
) -> None:
    """The runner dies while a first launch waits for the controller; the runner that takes over cannot
    see the job for longer than the old 30 s grace, and must neither fail it nor launch it again."""
    sky_account.configure(visible_after_s=40.0)  # a first launch: the controller takes minutes to come up
    env = {
        "METTA_EXP_FAKE_SKY_DIR": str(sky_account.root),
        "METTA_EXP_SKY_POLL_S": "0.5",
        "METTA_EXP_SKY_LAUNCH_WAIT_S": "0.5",
    }
    conf = conf_dir(state_dir.parent, "print('ran')")
    result = run_cli("--config-dir", str(conf), "+experiment=remote", "group=late", "wait=false", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    wait_for(lambda: sky_account.jobs(), timeout=30, what="the launch request")
    with JobStore.open(state_dir) as store:
        os.killpg(store.group("late").runner_pid or 0, signal.SIGKILL)
    resumed = run_cli("job", "resume", "late", env=env, timeout=180)  # a new runner, no memory of the launch
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    job = wait_group_end(state_dir, "late")[0]
    assert job.status == JobStatus.SUCCEEDED and job.attempts == 1, job.reason
    assert len(sky_account.jobs()) == 1


def test_a_job_that_shows_up_after_its_group_was_killed_is_cancelled(
    state_dir: Path, tmp_path: Path, sky_account: FakeSkyApi
) -> None:
    # the first launch starts the controller: the job shows up late
    sky_account.configure(controller_start_s=3.0)
    env = {
        "METTA_EXP_FAKE_SKY_DIR": str(sky_account.root),
        "METTA_EXP_SKY_POLL_S": "0.2",
        "METTA_EXP_SKY_LAUNCH_WAIT_S": "0.5",
    }
    conf = conf_dir(tmp_path, "import time; time.sleep(120)")
    result = run_cli("--config-dir", str(conf), "+experiment=remote", "group=k", "wait=false", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not sky_account.jobs()[0]["pgid"] and sky_account.controller_status() == "INIT"
    killed = run_cli("job", "kill", "k", "--force", env=env)
    assert killed.returncode == 0, killed.stdout + killed.stderr
    assert [j.status for j in wait_group_end(state_dir, "k")] == [JobStatus.CANCELLED]
    wait_for(
        lambda: sky_account.jobs()[0]["status"] == "CANCELLED",
        timeout=30,
        what="the late job to be cancelled",
    )


# --- 10. a newcomer without SkyPilot set-up ---------------------------------------------------------------


def test_a_newcomer_without_skypilot_gets_one_error_line_at_once(tmp_path: Path) -> None:
    home = tmp_path / "new home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("METTA_EXP_FAKE_SKY", "SKYPILOT_API"))}
    env.update(
        HOME=str(home), METTA_EXP_STATE_DIR=str(tmp_path / "state"), SKYPILOT_DISABLE_LOCAL_API_SERVER="1"
    )
    argv = ["--config-dir", str(conf_dir(tmp_path, "print(1)")), "+experiment=remote", "gpus=1", "group=n"]
    # "at once" is a figure of bench/bench_skypilot.py (the newcomer's wait), not a timed assertion here
    result = subprocess.run([PY, "-m", "metta_exp", *argv], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: SkyPilot is not set up"), result.stderr
    assert "remote=false gpus=0" in lines[0] and "sky check" in lines[0]
    assert list(home.iterdir()) == [] and not (tmp_path / "state").exists(), "nothing written"
    # the fix given works
    fixed = subprocess.run([PY, "-m", "metta_exp", *argv, "remote=false", "gpus=0"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr


# --- 11. polls ask only for the jobs of active groups -----------------------------------------------------


def test_polls_ask_only_for_the_jobs_of_active_groups(sky_account: FakeSkyApi, tmp_path: Path) -> None:
    state = tmp_path / "state"
    old = launches_of(exp_of([f"r{i}" for i in range(20)], "pass"), "old", state)
    backend = SkyPilotBackend(sky_account, state, poll_interval=0.0)
    old = submitted(backend, old)
    poll_until(backend, old, lambda o: all(x.status == JobStatus.SUCCEEDED for x in o.values()))
    backend.close()  # that group's runner ends
    active = submitted(backend, launches_of(exp_of(["a", "b"], "import time; time.sleep(30)"), "new", state))
    before = len(sky_account.call_log())
    obs = SkyPilotBackend(sky_account, state, poll_interval=0.0).poll(active)
    assert {o.status for o in obs.values()} == {JobStatus.RUNNING}
    answers = [size for call, _, _, size in sky_account.call_log()[before:] if call == "get"]
    one_record = len(json.dumps({"job_id": 1, "task_id": 0, "job_name": active[0].name + "-12345678",
                                 "status": "RUNNING", "failure_reason": None, "recovery_count": 0,
                                 "submitted_at": 1e9, "end_at": None}))  # fmt: skip
    assert len(answers) == 1 and answers[0] < 3 * one_record, "the 20 finished jobs are not in the answer"


# --- 12. the smaller items --------------------------------------------------------------------------------


def test_cloud_aliases_pass_the_check(sky_account: FakeSkyApi, tmp_path: Path) -> None:
    sky_account.configure(enabled_infras=["Kubernetes"])  # what sdk.enabled_clouds answers: str(cloud)
    specs = resolve(exp_of(["a"], "pass"), "g", tmp_path / "state")

    def check(cloud: str) -> None:
        SkyPilotBackend(sky_account, tmp_path / "state", settings=SkyPilotSettings(cloud=cloud)).check(specs)

    for cloud in ("k8s", "kubernetes", "Kubernetes/my-context"):
        check(cloud)  # the enabled infra by three of its names: accepted
    assert sky_account.call_counts()["enabled_clouds"] == 3  # each check asked SkyPilot
    # a cloud that is not enabled is refused (that asks SkyPilot's registry, so sky is imported: in
    # SDK_PROBE, with the aliases only that registry knows: digitalocean is DO)


def test_use_spot_on_slurm_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        validate_settings(SkyPilotSettings(cloud="slurm", use_spot=True), 0)
    assert str(refused.value) == (
        "skypilot.use_spot=true: Slurm has no spot instances; drop skypilot.use_spot, or choose a cloud "
        "that has them (skypilot.cloud=aws, gcp, ...)"
    )
    # without spot, a Slurm cluster is a task's infra like any other
    spec = resolve(exp_of(["a"], "pass"), "g", tmp_path / "state")[0]
    config = build_task_config(
        spec, 1, SkyPilotSettings(cloud="slurm/mycluster", use_spot=False), WandbSettings()
    )
    assert {k: v for k, v in config["resources"].items() if k != "labels"} == {
        "infra": "slurm/mycluster",
        "use_spot": False,
    }


def test_netrc_lookup_keeps_the_hosts_port(tmp_path: Path) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text(
        "machine localhost login user password wrong-key\nmachine localhost:8080 login user password right-key\n"
    )
    netrc.chmod(0o600)
    env = {"WANDB_BASE_URL": "http://localhost:8080", "HOME": str(tmp_path)}
    assert task_secrets(WandbSettings(), env, str(netrc)) == {"WANDB_API_KEY": "right-key"}


SDK_PROBE = textwrap.dedent(
    """
    import json
    import sky.client.sdk as client_sdk
    from sky import exceptions
    from sky.utils import status_lib
    from metta_exp.backends.skypilot import api

    out = {}
    for status in (status_lib.ClusterStatus.STOPPED, status_lib.ClusterStatus.INIT, None):
        err = api._classify(exceptions.ClusterNotUpError("No in-progress managed jobs.", cluster_status=status))
        out[str(status)] = [type(err).__name__, getattr(err, "status", "-")]
    out["interrupted"] = type(api._classify(exceptions.RequestInterruptedError("retry"))).__name__
    out["forgotten"] = type(api._classify(RuntimeError("Failed to get request abc: 404 Not Found"))).__name__
    for refusal in (exceptions.ApiServerAuthenticationError("http://x:1"), exceptions.APIVersionMismatchError("v"),
                    exceptions.APINotSupportedError("old")):
        err = api._classify(refusal)
        out[type(refusal).__name__] = [type(err).__name__, bool(getattr(err, "fix", ""))]
    client_sdk.get = lambda request_id: 7   # a server answering a launch with a single int job id
    out["int_id"] = api.SdkSkyApi().launch_result("req-1")
    from metta_exp.backends.skypilot.check import check_backend
    from metta_exp.config import SkyPilotSettings

    class Enabled(api.SdkSkyApi):  # SkyPilot says DigitalOcean is enabled, by its own name
        checks_local_setup = False
        def enabled_infras(self):
            return ["do"]
    out["aliases"] = {}
    for cloud in ("digitalocean", "do", "DO", "aws"):
        try:
            check_backend(Enabled(), SkyPilotSettings(cloud=cloud), [])
            out["aliases"][cloud] = "accepted"
        except Exception as exc:
            out["aliases"][cloud] = str(exc)
    print(json.dumps(out))
    """
)


@pytest.mark.slow
def test_sdk_answers_are_read_as_skypilot_means_them(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path)}
    result = subprocess.run([PY, "-c", SDK_PROBE], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    # 1/6: a stopped or starting controller keeps its status (transient); only a missing one is "no jobs"
    assert out["ClusterStatus.STOPPED"] == ["ControllerNotUp", "STOPPED"]
    assert out["ClusterStatus.INIT"] == ["ControllerNotUp", "INIT"]
    assert out["None"] == ["ControllerNotUp", None]
    assert out["interrupted"] == out["forgotten"] == "RequestLost", (
        "the request's answer is lost: not a refusal"
    )
    for refusal in ("ApiServerAuthenticationError", "APIVersionMismatchError", "APINotSupportedError"):
        assert out[refusal] == ["SkyRefused", True], "a lasting refusal, with its fix"
    assert out["int_id"] == 7
    assert out["aliases"] == {  # digitalocean is SkyPilot's alias of DO
        "digitalocean": "accepted",
        "do": "accepted",
        "DO": "accepted",
        "aws": "skypilot.cloud=aws is not enabled in SkyPilot (enabled: do). "
        "Fix: `sky check aws`, choose an enabled one, or run on this machine with remote=false",
    }


# --- the simulator's own strictness -----------------------------------------------------------------------


def test_name_match_is_sqls_like() -> None:
    assert like("metta-exp-g_1", "metta-exp-gx1-r-a1") and like("EXP", "metta-exp-g")  # _ any char, any case
    assert like("a%c", "xxabbbcxx") and not like("abc", "ab-c")


def test_simulator_runs_nodes_with_skypilots_variables_and_nothing_from_the_shell(
    sky_account: FakeSkyApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEAKED_FROM_SHELL", "1")
    script = "import json, os; print('env', os.environ['SKYPILOT_NODE_RANK'], json.dumps(sorted(os.environ)))"
    exp = exp_of(["n"], script, skypilot={"num_nodes": 2, "envs": {"MINE": "1"}})
    state = tmp_path / "state"
    backend = SkyPilotBackend(sky_account, state, poll_interval=0.0)
    launches = submitted(backend, launches_of(exp, "g", state))
    poll_until(backend, launches, lambda o: o[launches[0].name].status == JobStatus.SUCCEEDED)
    log = (sky_account.job_dir(1) / "log").read_text()
    lines = [line for line in log.splitlines() if " env " in line]
    assert len(lines) == 2 and any(line.startswith("(head, rank=0, pid=") for line in lines)
    assert any(line.startswith("(worker1, rank=1, pid=") for line in lines)
    names = json.loads(lines[0].split(" env ", 1)[1].split(" ", 1)[1])
    assert "LEAKED_FROM_SHELL" not in names and "MINE" in names and "SKYPILOT_NODE_IPS" in names
    assert not any(n.startswith("METTA_EXP_STATE") for n in names)


def test_simulator_controller_lifecycle_and_blocking_calls(sky_account: FakeSkyApi, tmp_path: Path) -> None:
    from metta_exp.backends.skypilot.api import ControllerNotUp

    sky_account.configure(controller_start_s=1.0, visible_after_s=0.5, controller_idle_s=1.0)
    with pytest.raises(ControllerNotUp) as absent:
        sky_account.queue()
    assert absent.value.status is None
    request = sky_account.launch({"name": "metta-exp-x", "run": "sleep 1"}, {})
    with pytest.raises(ControllerNotUp) as starting:
        sky_account.queue()
    assert starting.value.status == "INIT"
    start = time.monotonic()
    job_id = sky_account.launch_result(request)  # sky.get waits until the controller has the job
    assert time.monotonic() - start >= 1.2 and [e.job_id for e in sky_account.queue(job_ids=[job_id])] == [
        job_id
    ]
    sky_account.tail_logs(job_id, 10)  # waits until RUNNING
    assert sky_account.job(job_id)["status"] in ("RUNNING", "SUCCEEDED")
    wait_for(lambda: sky_account.controller_status() == "STOPPED", timeout=30, what="idle stop")
    with pytest.raises(ControllerNotUp) as stopped:
        sky_account.queue(job_ids=[job_id])
    assert stopped.value.status == "STOPPED"
    assert [e.status for e in sky_account.queue(job_ids=[job_id], refresh=True)] == ["SUCCEEDED"]
    counts = sky_account.call_counts()
    assert counts["validate"] == counts["jobs.launch"] == 1 and counts["api.health"] >= 1


def test_skypilot_set_up_is_recognised_from_its_files(tmp_path: Path) -> None:
    """Set-up users are never refused: an endpoint (env or config) or a cached enabled infra is enough."""
    import sqlite3

    from metta_exp.backends.skypilot.setup import setup_problem

    home = tmp_path / "home"
    (home / ".sky").mkdir(parents=True)
    env = {"HOME": str(home)}
    assert setup_problem(env, tmp_path) is not None
    assert setup_problem({**env, "SKYPILOT_API_SERVER_ENDPOINT": "http://sky.corp:46580"}, tmp_path) is None
    (home / ".sky" / "config.yaml").write_text("api_server:\n  endpoint: http://sky.corp:46580\n")
    assert setup_problem(env, tmp_path) is None  # what `sky api login` writes
    (home / ".sky" / "config.yaml").unlink()
    db = sqlite3.connect(home / ".sky" / "state.db")  # what `sky check` leaves (sky/global_user_state.py)
    db.execute("CREATE TABLE config (key TEXT PRIMARY KEY, value TEXT)")
    db.execute("INSERT INTO config VALUES ('enabled_clouds_default_storage', '[\"AWS\"]')")
    db.commit()
    assert setup_problem(env, tmp_path) is not None  # storage only: no infra to run on
    db.execute("INSERT INTO config VALUES ('u1_enabled_clouds_default_compute', '[\"AWS\"]')")
    db.commit()
    db.close()
    assert setup_problem(env, tmp_path) is None
    (tmp_path / ".sky.yaml").write_text("api_server: {endpoint: 'http://x:1'}\n")
    assert setup_problem({"HOME": str(tmp_path / "nobody")}, tmp_path) is None  # a project config
