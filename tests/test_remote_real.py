"""A smoke test of the whole product on SkyPilot, through the CLI as a user types it: two jobs (one a
metta-exp trainer that reports through ``tracking``, installed by the default setup on a bare machine; one
that sleeps until it is killed), a runner that dies and is resumed, ``job kill``, and the final logs
waited for (never the first tail after the end).

It runs on YOUR SkyPilot when ``METTA_EXP_TEST_SKY_INFRA`` names an enabled infra (``k8s``, ``aws``, ...;
your API server and credentials, as ``sky check`` shows them)::

    METTA_EXP_TEST_SKY_INFRA=k8s uv run pytest tests/test_remote_real.py -p no:xdist

About 5-8 minutes (provisioning, then ``pip install`` of metta-exp's dependencies on each machine); its cost:
two small CPU machines (SkyPilot's default 4-vCPU instance, about $0.20 an hour each on a cloud) for a few
minutes, and SkyPilot's jobs controller, which stops itself after 10 idle minutes: well under $0.10 on a
cloud, nothing on your own Kubernetes cluster. Every job is cancelled at the end, whatever happens.

Without that variable the same steps run on the SkyPilot simulator (``METTA_EXP_FAKE_SKY_DIR``), so the
test's own code is exercised by every ``pytest`` run.
"""

from __future__ import annotations

import json
import os
import signal
import textwrap
import time
from pathlib import Path

import pytest
from conftest import run_cli, wait_for

from metta_exp.status import JobStatus
from metta_exp.store import JobStore

pytestmark = pytest.mark.slow
REAL_INFRA = os.environ.get("METTA_EXP_TEST_SKY_INFRA", "")

EXPERIMENT = textwrap.dedent(
    """
    # @package _global_
    # The smoke test's group: a tracked CartPole trainer (metta-exp's own module) and a sleeper to kill.
    module: metta_exp.examples.cartpole
    runs: [tracked, sleeper]
    args: [trainer.total_timesteps=20000]
    args_per_run:
      sleeper: [trainer.total_timesteps=100000000]
    gpus: 0
    generate_notebook: false
    """
)


def smoke(tmp_path: Path, env: dict[str, str], infra: str | None, timeout: float) -> None:
    """The steps, on the SkyPilot ``env`` points at (``infra``: SkyPilot's name of the infra to use)."""
    conf = tmp_path / "conf"
    (conf / "experiment").mkdir(parents=True)
    (conf / "experiment" / "smoke.yaml").write_text(EXPERIMENT)
    state = Path(env["METTA_EXP_STATE_DIR"])
    group = f"smoke-{int(time.time())}"
    extra = [f"skypilot.cloud={infra}"] if infra else []
    try:
        launched = run_cli("--config-dir", str(conf), "+experiment=smoke", f"group={group}", "wait=false",
                           *extra, env=env, cwd=tmp_path, timeout=600)  # fmt: skip
        assert launched.returncode == 0, launched.stdout + launched.stderr
        with JobStore.open(state, readonly=True) as store:

            def running() -> bool:  # the sleeper's command runs (its SkyPilot status is RUNNING: no note)
                job = store.job(group, "sleeper")
                return job.status == JobStatus.RUNNING and job.reason is None

            wait_for(running, timeout=timeout, interval=2.0, what="the sleeper to run")
            pid = store.group(group).runner_pid
        os.killpg(pid or 0, signal.SIGKILL)  # the runner dies; a new one adopts the jobs
        resumed = run_cli("job", "resume", group, "--no-wait", env=env, cwd=tmp_path)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        with JobStore.open(state, readonly=True) as store:
            wait_for(lambda: store.job(group, "tracked").status.is_terminal(), timeout=timeout, interval=2.0,
                     what="the tracked job to end")  # fmt: skip
        killed = run_cli("job", "kill", group, "--force", env=env, cwd=tmp_path)
        assert killed.returncode == 0, killed.stdout + killed.stderr
        with JobStore.open(state, readonly=True) as store:  # the group ends once every final log is in
            wait_for(
                lambda: store.group(group).ended_at, timeout=timeout, interval=2.0, what="the group to end"
            )
        rows = {r["run"]: r for r in json.loads(run_cli("job", "show", group, "--json", env=env).stdout)}
        assert rows["tracked"]["status"] == "succeeded" and rows["tracked"]["progress"] == 1.0, rows
        assert rows["sleeper"]["status"] == "cancelled", rows
        log = run_cli("job", "logs", group, "tracked", env=env).stdout
        assert "[metta-exp] progress step=20000 total=20000" in log, log[-2000:]
    finally:
        run_cli("job", "kill", group, "--force", env=env, cwd=tmp_path)  # nothing runs on, whatever happened


@pytest.mark.skipif(
    not REAL_INFRA, reason="set METTA_EXP_TEST_SKY_INFRA=<infra> (k8s, aws, ...) to use your SkyPilot"
)
def test_the_product_on_real_skypilot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # pragma: no cover
    monkeypatch.delenv(
        "SKYPILOT_DISABLE_LOCAL_API_SERVER", raising=False
    )  # a local API server may start: yours
    env = {k: v for k, v in os.environ.items() if not k.startswith("METTA_EXP_FAKE_SKY")}
    env.update(METTA_EXP_STATE_DIR=str(tmp_path / "state"), METTA_EXP_SKY_POLL_S="10")
    smoke(tmp_path, env, REAL_INFRA, timeout=540)


def test_the_smoke_test_runs_on_the_simulator(tmp_path: Path) -> None:
    env = {**os.environ, "METTA_EXP_FAKE_SKY_DIR": str(tmp_path / "sky"), "METTA_EXP_STATE_DIR": str(tmp_path / "s"),
           "METTA_EXP_SKY_POLL_S": "0.5", "METTA_EXP_SKY_LOG_S": "0.5"}  # fmt: skip
    try:
        smoke(tmp_path, env, None, timeout=120)
    finally:
        from metta_exp.backends.skypilot.sim.api import FakeSkyApi

        FakeSkyApi(tmp_path / "sky").kill_all()
