"""The whole product on the SkyPilot backend, with the fake SDK that runs each task's script with bash:
launched, monitored, shown, killed, retried and put in a notebook, through the real CLI."""

from __future__ import annotations

import json
import os
import signal
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PY, run_cli, wait_for, wait_group_end
from fake_wandb import API_KEY, DEFAULT_ENTITY, FakeWandb

from metta_exp.backends.skypilot.sim.api import FakeSkyApi
from metta_exp.status import JobStatus
from metta_exp.store import JobStore

pytestmark = pytest.mark.slow

# Prints progress like metta_exp.tracking does, then fails on its first attempt when asked to.
JOB = textwrap.dedent(
    """
    import os, sys, time
    opts = dict(a.split("=", 1) for a in sys.argv[1:])
    print("[metta-exp] progress step=5 total=10 sps=100", flush=True)
    time.sleep(float(opts.get("sleep", "0")))
    print("argv:", sys.argv[1:], "run dir:", os.environ["METTA_EXP_RUN_DIR"], flush=True)
    if opts.get("fail_first") == "1" and os.environ["METTA_EXP_ATTEMPT"] == "1":
        raise SystemExit("first attempt fails on purpose")
    """
)


@pytest.fixture
def remote(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fake SkyPilot world shared by the test, the runner and every CLI process; a conf dir."""
    fake = state_dir.parent / "fake sky"
    monkeypatch.setenv("METTA_EXP_FAKE_SKY_DIR", str(fake))
    monkeypatch.setenv("METTA_EXP_SKY_POLL_S", "0.2")
    monkeypatch.setenv("METTA_EXP_SKY_LOG_S", "0.2")
    monkeypatch.setenv("HOME", str(state_dir.parent / "home"))
    conf = state_dir.parent / "conf"
    (conf / "experiment").mkdir(parents=True)
    (conf / "experiment" / "remote.yaml").write_text(
        "# @package _global_\n"
        f"command: [{json.dumps(PY)}, -c, {json.dumps(JOB)}]\n"
        "runs: [a, b, c]\n"
        'args: ["note=it\'s $(echo injected) `x`"]\n'
        "args_per_run: {c: [fail_first=1]}\n"
        "gpus: 0\n"
        "skypilot: {default_setup: false}\n"  # this test's own Python has metta-exp (test_remote_bare: setup)
    )
    try:
        yield conf
    finally:
        FakeSkyApi(fake).kill_all()


def test_remote_group_runs_fails_retries_and_gets_its_notebook(state_dir: Path, remote: Path) -> None:
    result = run_cli("--config-dir", str(remote), "+experiment=remote", "group=rg")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "c failed" in result.stdout
    with JobStore.open(state_dir) as store:
        jobs = {j.run: j for j in store.jobs("rg")}
        assert store.group("rg").backend == "skypilot"
    assert jobs["a"].status == jobs["b"].status == JobStatus.SUCCEEDED
    assert jobs["c"].status == JobStatus.FAILED and jobs["c"].reason
    # kept once the last tail was fetched (after the end was seen), as the log then shows it
    assert (jobs["a"].final_progress, jobs["b"].final_progress) == (0.5, 0.5)
    # the argument reached the job exactly, through the generated (quoted) run script
    log = Path(jobs["a"].log_path).read_text()
    assert 'argv: ["note=it\'s $(echo injected) `x`"]' in log
    assert "~" not in log.split("run dir:", 1)[1].split()[0]
    assert Path("experiments/notebooks/rg.ipynb").exists()

    shown = run_cli("job", "show", "rg", "--json")
    assert shown.returncode == 0, shown.stderr
    rows = {r["run"]: r for r in json.loads(shown.stdout)}
    assert rows["a"]["progress"] == 0.5 and rows["c"]["status"] == "failed"

    retried = run_cli("job", "retry", "rg", "--no-wait")
    assert retried.returncode == 0, retried.stderr
    jobs = {j.run: j for j in wait_group_end(state_dir, "rg")}
    assert jobs["c"].status == JobStatus.SUCCEEDED and jobs["c"].attempts == 2
    assert jobs["a"].attempts == jobs["b"].attempts == 1, "succeeded runs are not rerun"

    watched = run_cli("job", "monitor", "rg")
    assert watched.returncode == 0, watched.stdout + watched.stderr
    notebook = run_cli("job", "notebook", "rg", "-o", "again.ipynb")
    assert notebook.returncode == 0 and Path("again.ipynb").exists()


def test_remote_kill_cancels_in_one_call_and_nothing_runs_after(state_dir: Path, remote: Path) -> None:
    result = run_cli(
        "--config-dir",
        str(remote),
        "+experiment=remote",
        "group=kg",
        "wait=false",
        "generate_notebook=false",
        "args=['sleep=60']",
    )
    assert result.returncode == 0, result.stderr
    fake = FakeSkyApi(Path(__import__("os").environ["METTA_EXP_FAKE_SKY_DIR"]))
    wait_for(
        lambda: len([j for j in fake.jobs() if j["status"] == "RUNNING"]) == 3,
        timeout=60,
        what="three running managed jobs",
    )
    before = fake.call_counts()["jobs.cancel"]
    killed = run_cli("job", "kill", "kg", "--force")
    assert killed.returncode == 0, killed.stderr
    assert fake.call_counts()["jobs.cancel"] - before == 1, "one batched cancel for the whole group"
    jobs = wait_group_end(state_dir, "kg")
    assert [j.status for j in jobs] == [JobStatus.CANCELLED] * 3
    assert {j["status"] for j in fake.jobs()} == {"CANCELLED"}
    assert len(fake.jobs()) == 3, "nothing launched after the kill"


TRAIN = textwrap.dedent(
    """
    import os, time
    from metta_exp import tracking
    print("sees:", open("marker.txt").read().strip(), flush=True)
    with tracking.init(total_steps=10) as run:
        for step in range(5):
            run.log({"overview/reward": float(step), "overview/sps": 100.0}, step=step)
    if os.environ["METTA_EXP_RUN"] == "b":
        if os.environ["METTA_EXP_ATTEMPT"] == "1":
            raise SystemExit("first attempt fails on purpose")
        time.sleep(300)
    """
)


def test_remote_group_survives_its_runner_an_idle_controller_and_commands_from_anywhere(
    state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every strict behaviour on: launches answer late, the controller takes a while to start and stops
    when idle; ``workdir: .``; the runner dies; ``job monitor`` (another directory) takes over through a
    stopped controller; ``job retry`` (a third directory) uploads the same workdir; kill; the notebook
    with every attempt's W&B link (the jobs' real wandb client against the fake W&B server)."""
    fake = FakeSkyApi(tmp_path / "sky account")
    wandb_server = FakeWandb().__enter__()
    for key in [k for k in os.environ if k.startswith("WANDB_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("WANDB_BASE_URL", wandb_server.url)
    monkeypatch.setenv("WANDB_API_KEY", API_KEY)
    monkeypatch.setenv("WANDB_MODE", "online")
    for knob, value in (("VISIBLE_AFTER_S", "1"), ("CONTROLLER_START_S", "2"), ("CONTROLLER_IDLE_S", "3")):
        monkeypatch.setenv(f"METTA_EXP_FAKE_SKY_{knob}", value)
    monkeypatch.setenv("METTA_EXP_FAKE_SKY_DIR", str(fake.root))
    monkeypatch.setenv("METTA_EXP_SKY_POLL_S", "0.3")
    monkeypatch.setenv("METTA_EXP_SKY_LOG_S", "0.3")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    project, monitor_dir, retry_dir = (tmp_path / d for d in ("project", "somewhere else", "third place"))
    for directory in (project, monitor_dir, retry_dir):
        directory.mkdir()
        (directory / "marker.txt").write_text(f"files of {directory.name}")
    (project / "train.py").write_text(TRAIN)
    conf = project / "conf"
    (conf / "experiment").mkdir(parents=True)
    (conf / "experiment" / "e2e.yaml").write_text(
        "# @package _global_\ncommand: [python, train.py]\nruns: [a, b]\ngpus: 0\nskypilot:\n  workdir: .\n"
        # a simulated node shares this machine's /tmp: its temporary files (W&B's) go to this test's own
        f"  envs: {{TMPDIR: {json.dumps(os.environ['TMPDIR'])}}}\n"
    )
    try:
        launched = run_cli(
            "--config-dir", str(conf), "+experiment=e2e", "group=e2e", "wait=false", cwd=project
        )
        assert launched.returncode == 0, launched.stdout + launched.stderr
        with JobStore.open(state_dir) as store:
            assert store.group("e2e").exp.skypilot.workdir == str(project)
            os.killpg(store.group("e2e").runner_pid or 0, signal.SIGKILL)  # the runner dies
        wait_for(lambda: len(fake.jobs()) == 2 and all(j["end_at"] for j in fake.jobs()), timeout=60,
                 what="both jobs to end unobserved")  # fmt: skip
        wait_for(
            lambda: fake.controller_status() == "STOPPED", timeout=30, what="the idle controller to stop"
        )

        watched = run_cli("job", "monitor", "e2e", cwd=monitor_dir, timeout=120)  # takes over, reads the ends
        assert watched.returncode == 1, watched.stdout + watched.stderr
        with JobStore.open(state_dir) as store:
            jobs = {j.run: j for j in store.jobs("e2e")}
            assert jobs["a"].status == JobStatus.SUCCEEDED and jobs["b"].status == JobStatus.FAILED
            assert "vanished" not in (jobs["b"].reason or "")
        assert "sees: files of project" in Path(jobs["a"].log_path or "").read_text()
        urls = {run: f"{wandb_server.url}/{DEFAULT_ENTITY}/metta-exp/runs/{jobs[run].spec.wandb_run_id}"
                for run in "ab"}  # fmt: skip
        assert {run: jobs[run].wandb_url for run in "ab"} == urls, "links read from the logs SkyPilot kept"

        retried = run_cli("job", "retry", "e2e", "--no-wait", cwd=retry_dir)
        assert retried.returncode == 0, retried.stdout + retried.stderr
        wait_for(
            lambda: any(j["status"] == "RUNNING" for j in fake.jobs()), timeout=60, what="the retry to run"
        )
        with JobStore.open(state_dir) as store:
            log = Path(store.job("e2e", "b").log_path or "")
        wait_for(lambda: log.exists() and "sees:" in log.read_text(), timeout=30, what="the retry's log tail")
        assert "sees: files of project" in log.read_text(), "the retry uploaded the launch's workdir"
        with JobStore.open(state_dir) as store:
            wait_for(lambda: (store.job("e2e", "b").wandb_url or "").endswith("-a2"), timeout=60,
                     what="the retry's own W&B run link")  # fmt: skip

        killed = run_cli("job", "kill", "e2e", "--force", cwd=retry_dir)
        assert killed.returncode == 0, killed.stdout + killed.stderr
        jobs = {j.run: j for j in wait_group_end(state_dir, "e2e")}
        assert jobs["b"].status == JobStatus.CANCELLED and jobs["b"].attempts == 2
        assert jobs["a"].status == JobStatus.SUCCEEDED and jobs["a"].attempts == 1
        assert len(fake.jobs()) == 3 and all(
            j["status"] in ("SUCCEEDED", "FAILED", "CANCELLED") for j in fake.jobs()
        )

        notebook = run_cli("job", "notebook", "e2e", "-o", str(tmp_path / "e2e.ipynb"), cwd=monitor_dir)
        assert notebook.returncode == 0, notebook.stdout + notebook.stderr
        text = (tmp_path / "e2e.ipynb").read_text()
        assert urls["a"] in text and urls["b"] + "-a2" in text, (
            "the notebook links every run's latest attempt"
        )
    finally:
        fake.kill_all()
        wandb_server.__exit__(None, None, None)
