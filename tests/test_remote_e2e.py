"""The whole product on the SkyPilot backend, with the fake SDK that runs each task's script with bash:
launched, monitored, shown, killed, retried and put in a notebook, through the real CLI."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PY, run_cli, wait_for, wait_group_end

from metta_exp.backends.skypilot_fake import FakeSkyApi
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
