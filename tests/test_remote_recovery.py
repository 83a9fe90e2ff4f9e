"""Item 2 of the issue "Remote, second pass": a spot job that SkyPilot recovers on a new machine starts its
command again there (its run directory and checkpoints were on the old machine). No step of any recovery
may be dropped: W&B drops steps below a resumed run's last one (``wandb/sdk/internal/handler.py``), so a
recovery that starts below it goes on in a W&B run of its own; the store and the log say a recovery
happened; the notebook's ``fetch_metrics`` shows each recovery's data (from W&B, or from the log)."""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PY, run_cli, wait_for, wait_group_end
from fake_wandb import API_KEY, FakeWandb

from metta_exp.backends.skypilot.sim.api import FakeSkyApi
from metta_exp.status import JobStatus
from metta_exp.store import JobStore

pytestmark = pytest.mark.slow

# The first machine logs steps 0..4 and is preempted while it waits; the new machine (which finds the marker
# the first left outside the machines) starts again from step 0 and logs 0..7, with the same WANDB_RUN_ID.
JOB = textwrap.dedent(
    """
    import os, sys, time
    from metta_exp import tracking
    marker = sys.argv[1]
    first = not os.path.exists(marker)
    open(marker, "a").close()
    with tracking.init(total_steps=8) as run:
        for step in range(5 if first else 8):
            run.log({"overview/reward": 100.0 * (not first) + step, "overview/sps": 10.0}, step=step)
    if first:  # what it logged reached W&B (wandb sends history in the background: a preempted machine
        print("first machine done", flush=True)  # loses what it had not sent yet); now it can be preempted
        time.sleep(600)
    """
)


@pytest.fixture
def spot(
    state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Path, FakeSkyApi]]:
    sky = FakeSkyApi(tmp_path / "sky")
    for key in [k for k in os.environ if k.startswith("WANDB_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("METTA_EXP_FAKE_SKY_DIR", str(sky.root))
    monkeypatch.setenv("METTA_EXP_SKY_POLL_S", "0.3")
    monkeypatch.setenv("METTA_EXP_SKY_LOG_S", "0.3")
    conf = tmp_path / "conf"
    (conf / "experiment").mkdir(parents=True)
    (conf / "experiment" / "spot.yaml").write_text(
        "# @package _global_\n"
        f"command: [{json.dumps(PY)}, -c, {json.dumps(JOB)}, {json.dumps(str(tmp_path / 'marker'))}]\n"
        "runs: [r]\ngpus: 0\ngenerate_notebook: false\n"
        "skypilot: {use_spot: true, default_setup: false, envs: {METTA_EXP_PROGRESS_EVERY: '0'}}\n"
    )
    try:
        yield conf, sky
    finally:
        sky.kill_all()


def run_preempted(conf: Path, sky: FakeSkyApi, state_dir: Path, group: str) -> tuple:  # noqa: ANN001
    """Launch the spot job, preempt its first machine once that machine's W&B data is sent, and wait for
    the group to end: (its job, its log)."""
    result = run_cli("--config-dir", str(conf), "+experiment=spot", f"group={group}", "wait=false")
    assert result.returncode == 0, result.stdout + result.stderr
    with JobStore.open(state_dir, readonly=True) as store:
        log = Path(wait_for(lambda: store.job(group, "r").log_path, timeout=60, what="the attempt"))
    # once the runner's copy of its log has it all (a copy lags the machine by up to METTA_EXP_SKY_LOG_S)
    wait_for(
        lambda: log.exists() and "first machine done" in log.read_text(),
        timeout=120,
        what="the first machine",
    )
    sky.preempt(1, recover_after_s=1.0)  # SkyPilot takes the machine back
    job = wait_group_end(state_dir, group, timeout=180)[0]
    assert job.status == JobStatus.SUCCEEDED, job.reason
    with JobStore.open(state_dir) as store:
        events = [e for e in store.events(group, kind="recovered") if e.run == "r"]
    assert len(events) == 1 and "recovery 1" in (events[0].detail or ""), "the store says it was recovered"
    log = Path(job.log_path or "").read_text()
    assert "[metta-exp] recovery 1: SkyPilot restarted the job on a new machine" in log
    return job, log


def test_a_recovered_spot_job_keeps_every_step_in_wandb(
    state_dir: Path, spot: tuple[Path, FakeSkyApi], monkeypatch: pytest.MonkeyPatch
) -> None:
    conf, sky = spot
    with FakeWandb() as server:
        for key, value in (
            ("WANDB_BASE_URL", server.url),
            ("WANDB_API_KEY", API_KEY),
            ("WANDB_MODE", "online"),
        ):
            monkeypatch.setenv(key, value)
        job, _log = run_preempted(conf, sky, state_dir, "sp")
        base = job.spec.wandb_run_id
        runs = {key[2]: run for key, run in server.runs.items()}
        assert [row["_step"] for row in runs[base].history] == [0, 1, 2, 3, 4]
        again = [run for run_id, run in runs.items() if run_id.startswith(f"{base}-r")]
        assert len(again) == 1 and [row["_step"] for row in again[0].history] == list(range(8)), runs
        assert job.wandb_url and job.wandb_url.endswith(again[0].run_id), "the latest W&B run is linked"

        from metta_exp.metrics import fetch_metrics

        monkeypatch.delenv("WANDB_BASE_URL")
        df = fetch_metrics([job], ["overview/reward"], progress=False)
        assert df.attrs["errors"] == {}, df.attrs
        steps = {run: sorted(df[df["run"] == run]["step"]) for run in ("r", "r (recovery 1)")}
        assert steps == {"r": [0, 1, 2, 3, 4], "r (recovery 1)": list(range(8))}


def test_a_recovered_spot_job_without_wandb_shows_each_machines_curve(
    state_dir: Path, spot: tuple[Path, FakeSkyApi]
) -> None:
    conf, sky = spot
    job, _log = run_preempted(conf, sky, state_dir, "sp")
    from metta_exp.metrics import fetch_metrics

    df = fetch_metrics([job], ["overview/reward"], progress=False)
    assert df.attrs["errors"] == {}, df.attrs
    values = {run: list(df[df["run"] == run]["value"]) for run in ("r", "r (recovery 1)")}
    assert values["r"][0] == 0.0 and values["r (recovery 1)"][-1] == 107.0, values
    assert len(values["r (recovery 1)"]) >= 2 and all(v >= 100 for v in values["r (recovery 1)"])


def test_spot_jobs_are_preempted_once_after_the_knobs_seconds(tmp_path: Path) -> None:
    """``METTA_EXP_FAKE_SKY_PREEMPT_AFTER_S``: every spot job, and only spot jobs, is preempted once."""
    from dataclasses import replace

    from metta_exp.backends.base import Launch, LaunchSettings
    from metta_exp.backends.skypilot.backend import SkyPilotBackend
    from metta_exp.config import Experiment
    from metta_exp.resolve import resolve

    sky = FakeSkyApi(tmp_path / "sky")
    sky.configure(pending_s=0, starting_s=0.5, preempt_after_s=1.0)
    state = tmp_path / "state"
    try:
        launches = []
        for run, spot in (("spot", True), ("plain", False)):
            exp = Experiment(runs=[run], command=[PY, "-c", "import time; time.sleep(4)"], gpus=0,
                             skypilot={"use_spot": spot, "default_setup": False})  # fmt: skip
            spec = resolve(exp, "g", state)[0]
            launches.append(
                Launch(spec, 1, state / f"{run}.log", settings=LaunchSettings(exp.skypilot, exp.wandb))
            )
        backend = SkyPilotBackend(sky, state, poll_interval=0.0, launch_wait_s=30.0)
        handles = backend.submit(launches)
        launches = [replace(launch, handle=handles[launch.name]) for launch in launches]
        wait_for(lambda: all(j["status"] == "SUCCEEDED" for j in sky.jobs()), timeout=90, what="both to end")
        assert {j["name"].split("-")[3]: j["recovery_count"] for j in sky.jobs()} == {"spot": 1, "plain": 0}
    finally:
        sky.kill_all()
