"""W&B on remote groups, through the real CLI: the simulated SkyPilot runs every task with only its own
envs and secrets, and the jobs' real ``wandb`` client talks to the fake W&B server.

- a remote group with default settings (no entity, no project) gets every run's W&B URL in the store,
  ``job show``, the notebook, and its data through ``fetch_metrics`` (the latest attempt's);
- the user's ``WANDB_BASE_URL``, ``WANDB_MODE`` and ``WANDB_DISABLED`` reach the job's environment,
  the API key only as a secret, looked up in netrc for the host (and port) of that base URL;
- offline W&B on a remote group is refused before anything is written;
- a multi-node job (the simulator runs every node, with SkyPilot's node variables) feeds one W&B run,
  from rank 0.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import PY, run_cli, wait_group_end
from fake_wandb import API_KEY, DEFAULT_ENTITY, FakeWandb

from metta_exp.backends.skypilot.sim.api import FakeSkyApi
from metta_exp.backends.skypilot.task import task_secrets
from metta_exp.config import Experiment, WandbSettings
from metta_exp.resolve import resolve
from metta_exp.status import JobStatus

# Reports 5 steps through metta_exp.tracking (values 10*attempt + step); `fail_first=1` fails attempt 1
# after it logged, so its retry logs steps 0..4 again.
JOB = textwrap.dedent(
    """
    import os, sys
    from metta_exp import tracking
    attempt = int(os.environ["METTA_EXP_ATTEMPT"])
    with tracking.init(total_steps=5) as run:
        for step in range(5):
            run.log({"overview/reward": 10.0 * attempt + step, "overview/sps": 100.0}, step=step)
    if "fail_first=1" in sys.argv[1:] and attempt == 1:
        raise SystemExit("first attempt fails on purpose")
    """
)


@pytest.fixture
def world(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, FakeWandb]]:
    """Simulated SkyPilot, a fake W&B server, a W&B user's shell (key, host, mode) and a conf dir."""
    fake = state_dir.parent / "fake sky"
    for key in [k for k in os.environ if k.startswith("WANDB_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("METTA_EXP_FAKE_SKY_DIR", str(fake))
    monkeypatch.setenv("METTA_EXP_SKY_POLL_S", "0.2")
    monkeypatch.setenv("METTA_EXP_SKY_LOG_S", "0.2")
    monkeypatch.setenv("HOME", str(state_dir.parent / "home"))
    monkeypatch.setenv("NETRC", str(state_dir.parent / "home" / "netrc"))
    conf = state_dir.parent / "conf"
    (conf / "experiment").mkdir(parents=True)
    (conf / "experiment" / "wb.yaml").write_text(
        "# @package _global_\n"
        f"command: [{json.dumps(PY)}, -c, {json.dumps(JOB)}]\n"
        "runs: [a, c]\n"
        "args_per_run: {c: [fail_first=1]}\n"
        "gpus: 0\n"
        "max_retries: 1\n"
        # a simulated node shares this machine's /tmp: its temporary files (W&B's) go to this test's own
        f"skypilot: {{default_setup: false, envs: {{TMPDIR: {json.dumps(os.environ['TMPDIR'])}}}}}\n"
    )
    with FakeWandb() as server:
        monkeypatch.setenv("WANDB_BASE_URL", server.url)
        monkeypatch.setenv("WANDB_API_KEY", API_KEY)
        monkeypatch.setenv("WANDB_MODE", "online")
        try:
            yield conf, server
        finally:
            FakeSkyApi(fake).kill_all()


@pytest.mark.slow
def test_remote_group_with_default_settings_gets_wandb_links_and_data(
    state_dir: Path, world: tuple[Path, FakeWandb], monkeypatch: pytest.MonkeyPatch
) -> None:
    conf, server = world
    result = run_cli("--config-dir", str(conf), "+experiment=wb", "group=wbg", "wait=false")
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = {j.run: j for j in wait_group_end(state_dir, "wbg", timeout=180)}
    assert [jobs[r].status for r in "ac"] == [JobStatus.SUCCEEDED] * 2
    assert jobs["c"].attempts == 2
    ids = {"a": jobs["a"].spec.wandb_run_id, "c": jobs["c"].spec.wandb_run_id + "-a2"}
    for run, run_id in ids.items():  # the URL the job reported, on the W&B host it used
        assert jobs[run].wandb_url == f"{server.url}/{DEFAULT_ENTITY}/metta-exp/runs/{run_id}", run

    shown = run_cli("job", "show", "wbg", "--json")
    assert shown.returncode == 0, shown.stderr
    assert {r["run"]: r["wandb_url"] for r in json.loads(shown.stdout)} == {
        r: jobs[r].wandb_url for r in "ac"
    }

    from metta_exp.metrics import fetch_metrics

    monkeypatch.delenv("WANDB_BASE_URL")  # the notebook's shell may not name the jobs' W&B server
    df = fetch_metrics(list(jobs.values()), ["overview/reward"], progress=False)
    assert df.attrs["errors"] == {}
    assert df.attrs["sources"] == {r: f"wandb {DEFAULT_ENTITY}/metta-exp/{ids[r]}" for r in "ac"}
    rewards = {r: list(df[df["run"] == r]["value"]) for r in "ac"}
    assert rewards == {"a": [10.0, 11.0, 12.0, 13.0, 14.0], "c": [20.0, 21.0, 22.0, 23.0, 24.0]}

    notebook = Path("experiments/notebooks/wbg.ipynb").read_text()
    for run in "ac":
        assert jobs[run].wandb_url in notebook


def test_users_wandb_host_and_mode_reach_the_remote_task(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.corp.example:8443")
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_DISABLED", "false")
    monkeypatch.setenv("WANDB_API_KEY", "sk-secret-key-0001")
    result = run_cli("+experiment=demo", "remote=true", "dry_run=true", "group=dry")
    assert result.returncode == 0, result.stderr
    task = yaml.safe_load(result.stdout.split("skypilot task:\n", 1)[1].split("\n== ", 1)[0])
    assert task["envs"]["WANDB_BASE_URL"] == "https://wandb.corp.example:8443"
    assert task["envs"]["WANDB_MODE"] == "online" and task["envs"]["WANDB_DISABLED"] == "false"
    assert task["secrets"] == {"WANDB_API_KEY": None}
    assert "sk-secret-key-0001" not in result.stdout
    assert not state_dir.exists(), "a dry run writes nothing"


def test_netrc_key_is_the_one_for_the_jobs_wandb_host_and_port(tmp_path: Path) -> None:
    """wandb reads the netrc entry of the base URL's host WITH its port (wandb/sdk/lib/wbauth/wbnetrc.py:
    ``authenticators(urlsplit(host.url).netloc)``); the base URL is the one the job will use."""
    netrc = tmp_path / "netrc"
    netrc.write_text(
        "machine api.wandb.ai login user password PUBLIC-KEY\n"
        "machine wandb.corp.example login user password OTHER-PORT-KEY\n"
        "machine wandb.corp.example:8443 login user password CORP-KEY\n"
    )
    netrc.chmod(0o600)
    exp = Experiment(runs=["r"], module="m")
    job_env = resolve(exp, "g", Path("/s"), environ={"WANDB_BASE_URL": "https://wandb.corp.example:8443"})[
        0
    ].env
    shell = {"HOME": str(tmp_path), "NETRC": str(netrc)}  # the runner's own shell has no WANDB_BASE_URL
    assert task_secrets(WandbSettings(), shell, job_env=job_env) == {"WANDB_API_KEY": "CORP-KEY"}
    assert task_secrets(WandbSettings(), shell, job_env={}) == {"WANDB_API_KEY": "PUBLIC-KEY"}
    no_port = {"WANDB_BASE_URL": "https://wandb.corp.example"}
    assert task_secrets(WandbSettings(), shell, job_env=no_port) == {"WANDB_API_KEY": "OTHER-PORT-KEY"}
    off = {"WANDB_BASE_URL": "https://wandb.corp.example:8443", "WANDB_DISABLED": "true"}
    assert task_secrets(WandbSettings(), shell, job_env=off) == {}, "no key for a job with W&B off"


@pytest.mark.parametrize(
    ("args", "shell_mode", "named"),
    [
        (["wandb.mode=offline"], None, "wandb.mode=offline"),
        ([], "offline", "WANDB_MODE=offline"),
        ([], "dryrun", "WANDB_MODE=dryrun"),
    ],  # fmt: skip
)
def test_offline_wandb_on_a_remote_group_is_refused_and_nothing_is_written(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], shell_mode: str | None, named: str
) -> None:
    monkeypatch.setenv("METTA_EXP_FAKE_SKY_DIR", str(state_dir.parent / "fake sky"))
    if shell_mode:
        monkeypatch.setenv("WANDB_MODE", shell_mode)
    result = run_cli("+experiment=demo", "remote=true", "group=off", *args)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert named in lines[0] and "wandb.mode=online" in lines[0] and "remote=false" in lines[0]
    assert not state_dir.exists()
    assert FakeSkyApi(state_dir.parent / "fake sky").jobs() == []


def test_readme_multi_node_example_starts_torchrun_with_skypilots_node_variables(
    state_dir: Path, tmp_path: Path
) -> None:
    """The README's multi-node experiment, as SkyPilot runs its task on node 1 of 2 (a stand-in
    ``torchrun`` on PATH prints what it was given)."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    example = readme.split("as\nSkyPilot's docs do:\n\n```yaml\n", 1)[1].split("```", 1)[0]
    conf = tmp_path / "conf"
    (conf / "experiment").mkdir(parents=True)
    (conf / "experiment" / "mn.yaml").write_text(example)
    result = run_cli("--config-dir", str(conf), "+experiment=mn", "dry_run=true", "group=mn", "lr=it's 3")
    assert result.returncode == 0, result.stderr
    task = yaml.safe_load(result.stdout.split("skypilot task:\n", 1)[1])
    assert task["num_nodes"] == 2
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "torchrun").write_text('#!/bin/sh\nfor a in "$@"; do echo "[$a]"; done\n')
    (bin_dir / "torchrun").chmod(0o755)
    node = {"SKYPILOT_NUM_NODES": "2", "SKYPILOT_NODE_RANK": "1", "SKYPILOT_NUM_GPUS_PER_NODE": "8",
            "SKYPILOT_NODE_IPS": "10.0.0.1\n10.0.0.2", "HOME": str(tmp_path)}  # fmt: skip
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", **task["envs"], **node}
    ran = subprocess.run(["bash", "-c", task["run"]], env=env, capture_output=True, text=True, timeout=30)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split("\n") == [
        "[--nnodes=2]", "[--node_rank=1]", "[--nproc_per_node=8]", "[--master_addr=10.0.0.1]",
        "[--master_port=12375]", "[train.py]", "[lr=it's 3]", "",
    ]  # fmt: skip


@pytest.mark.slow
def test_multi_node_job_reports_to_wandb_from_rank_zero_only(
    state_dir: Path, world: tuple[Path, FakeWandb]
) -> None:
    """Two nodes run the same script (SkyPilot sets SKYPILOT_NODE_RANK): one W&B run, fed by rank 0."""
    conf, server = world
    result = run_cli(
        "--config-dir", str(conf), "+experiment=wb", "group=mn", "runs=[a]", "skypilot.num_nodes=2"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    job = wait_group_end(state_dir, "mn", timeout=180)[0]
    run_id = job.spec.wandb_run_id
    assert job.wandb_url == f"{server.url}/{DEFAULT_ENTITY}/metta-exp/runs/{run_id}"
    run = server.run(run_id)
    assert run is not None and [r["_step"] for r in run.history] == [0, 1, 2, 3, 4]
    inits = [
        r for r in server.requests if r.operation == "query RunResumeStatus" and r.variables["name"] == run_id
    ]
    assert len(inits) == 1, "one wandb.init for the job, not one per node"
    log = Path(job.log_path).read_text()
    reports = [line for line in log.splitlines() if "[metta-exp]" in line]
    assert reports and all("rank=0" in line for line in reports), log
