"""``metta_exp.tracking`` with W&B online, for real: the real ``wandb`` client (its wandb-core service)
talks to the fake W&B server on 127.0.0.1 (``fake_wandb``), which drops nothing itself: the client does,
as it does against the real service.

- the job reports its W&B run on stdout (a marker line the runner reads from any backend's log);
- every attempt of a job is its own W&B run (same group and name), so a retry that logs from step 0
  loses nothing (a resumed run drops every step below the last one logged);
- only rank 0 of a multi-node or multi-process job mirrors to W&B and prints progress.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_wandb import API_KEY, DEFAULT_ENTITY, FakeWandb

from metta_exp.backends.skypilot.task import task_envs
from metta_exp.config import Experiment, SkyPilotSettings, WandbSettings
from metta_exp.resolve import resolve

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent

# Logs steps 0..4 with values 10*attempt + step, like a trainer that starts again from scratch.
TRAIN = (
    "import os\n"
    "from metta_exp import tracking\n"
    "attempt = int(os.environ.get('METTA_EXP_ATTEMPT', '1'))\n"
    "with tracking.init(total_steps=5) as run:\n"
    "    for step in range(5):\n"
    "        run.log({'overview/reward': 10.0 * attempt + step}, step=step)\n"
)


@pytest.fixture
def server() -> Iterator[FakeWandb]:
    with FakeWandb() as fake:
        yield fake


def job_env(tmp_path: Path, server: FakeWandb, env: dict[str, str], name: str) -> dict[str, str]:
    """A job's environment on a fresh machine: the given job env, the W&B key and server, HOME here."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "METTA_EXP_", "NETRC"))}
    home = tmp_path / f"home-{name}"
    home.mkdir()
    base.update(HOME=str(home), PYTHONPATH=str(REPO), WANDB_API_KEY=API_KEY, WANDB_BASE_URL=server.url)
    base.update(WANDB_SILENT="true", METTA_EXP_PROGRESS_EVERY="1000")
    base.update(env)
    base["METTA_EXP_RUN_DIR"] = str(tmp_path / f"run-{name}")
    return base


def train(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([sys.executable, "-c", TRAIN], env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    return out


def test_marker_line_round_trip_and_last_one_wins() -> None:
    from metta_exp.logs.lines import WandbRef, format_wandb_line, last_wandb, parse_wandb_line

    ref = WandbRef(url="https://w.example.com:8443/team/proj/runs/abc-a2", entity="team", project="proj",
                   run_id="abc-a2")  # fmt: skip
    line = format_wandb_line(ref)
    assert line == (
        "[metta-exp] wandb url=https://w.example.com:8443/team/proj/runs/abc-a2 entity=team project=proj id=abc-a2"
    )
    assert parse_wandb_line("(task, pid=12) " + line) == ref
    assert parse_wandb_line("[metta-exp] wandb url= entity=e") is None
    older = format_wandb_line(WandbRef(url="http://h/e/p/runs/one", entity="e", project="p", run_id="one"))
    assert last_wandb(f"{older}\nnoise\n{line}\n[metta-exp] wandb garbage\n") == ref
    assert last_wandb("nothing here\n") is None


def test_scanning_a_growing_log_reads_only_what_is_new(tmp_path: Path) -> None:
    from metta_exp.logs.lines import WandbRef, format_wandb_line
    from metta_exp.logs.tail import scan_wandb_ref

    ref = WandbRef(url="http://h:1/e/p/runs/x", entity="e", project="p", run_id="x")
    line = format_wandb_line(ref)
    log = tmp_path / "attempt-1.log"
    assert scan_wandb_ref(log) == (None, (0, 0)), "no log yet"
    log.write_text("starting\n" + line[:20])  # the line is half written
    found, mark = scan_wandb_ref(log)
    assert found is None and mark == (log.stat().st_ino, log.stat().st_size)
    with log.open("a") as f:
        f.write(line[20:] + "\n" + "x" * 600_000 + "\n")
    found, mark = scan_wandb_ref(log, mark)
    assert found == ref and mark[1] == log.stat().st_size
    assert scan_wandb_ref(log, mark) == (None, mark), "unchanged: nothing read"
    big = tmp_path / "big.log"  # printed first thing, then a lot: found in the head
    big.write_text(line + "\n" + "y\n" * 400_000)
    assert scan_wandb_ref(big)[0] == ref
    # a remote log tail copied over the log (a new file, here longer): read again from its start
    tail = tmp_path / "tail.tmp"
    tail.write_text("z\n" * 10 + line + "\n" + "w" * 600_000 + "\n")
    os.replace(tail, log)
    assert scan_wandb_ref(log, mark)[0] == ref


def test_online_run_prints_its_url_with_the_servers_host(tmp_path: Path, server: FakeWandb) -> None:
    """No entity or project configured: the marker names the default entity and project W&B used,
    and the URL's host is the W&B server the job used (never a hard-coded wandb.ai)."""
    from metta_exp.logs.lines import WandbRef, last_wandb

    env = job_env(
        tmp_path, server, {"WANDB_RUN_ID": "runid0001", "WANDB_NAME": "r", "WANDB_MODE": "online"}, "a"
    )
    out = train(env)
    ref = last_wandb(out.stdout)
    assert ref == WandbRef(
        url=f"{server.url}/{DEFAULT_ENTITY}/metta-exp/runs/runid0001",
        entity=DEFAULT_ENTITY,
        project="metta-exp",
        run_id="runid0001",
    )
    assert out.stdout.count("[metta-exp] wandb url=") == 2, "printed when W&B starts and again at the end"
    assert [r["overview/reward"] for r in server.run("runid0001").history] == [10.0, 11.0, 12.0, 13.0, 14.0]


def test_a_retry_is_its_own_wandb_run_and_loses_no_step(tmp_path: Path, server: FakeWandb) -> None:
    """Attempt 2 logs from step 0 again. Resuming attempt 1's run would drop steps 0..4 (the client
    resumes at step 5); each attempt has its own run id, in the same group, under the same name."""
    exp = Experiment(runs=["r"], module="train", wandb={"mode": "online"})
    spec = resolve(exp, "grp", Path("/state"))[0]
    ids = []
    for attempt in (1, 2):
        envs = task_envs(spec, attempt, SkyPilotSettings(), WandbSettings(mode="online"))
        envs.pop("METTA_EXP_RUN_DIR")
        ids.append(envs["WANDB_RUN_ID"])
        train(job_env(tmp_path, server, envs, f"a{attempt}"))
    first, second = server.run(ids[0]), server.run(ids[1])
    assert first is not None and second is not None
    assert [r["overview/reward"] for r in second.history] == [20.0, 21.0, 22.0, 23.0, 24.0]
    assert ids[0] == spec.wandb_run_id, "attempt 1 keeps the id known before launch"
    assert ids[0] != ids[1]
    assert [r["_step"] for r in second.history] == [0, 1, 2, 3, 4]
    assert second.group == first.group == "grp" and second.display_name == first.display_name == "r"


@pytest.mark.parametrize(
    "rank_env",
    [
        {"SKYPILOT_NODE_RANK": "1", "SKYPILOT_NUM_NODES": "2"},
        {"RANK": "3", "LOCAL_RANK": "1"},
        {"LOCAL_RANK": "1"},
        {"SKYPILOT_NODE_RANK": "0", "RANK": "2"},
    ],  # fmt: skip
    ids=["node-rank-1", "rank-3", "local-rank-1", "node-0-rank-2"],
)
def test_only_rank_zero_mirrors_to_wandb_and_prints(
    tmp_path: Path, server: FakeWandb, rank_env: dict[str, str]
) -> None:
    env = job_env(tmp_path, server, {"WANDB_RUN_ID": "ranked", "WANDB_MODE": "online", **rank_env}, "r")
    out = train(env)
    assert "[metta-exp]" not in out.stdout, out.stdout
    assert server.run("ranked") is None, "a non-zero rank must not call wandb.init with the shared id"
    assert not (tmp_path / "run-r" / "metrics.jsonl").exists(), "only rank 0 writes the run's metrics"


def test_rank_zero_of_a_multi_node_job_reports(tmp_path: Path, server: FakeWandb) -> None:
    rank0 = {"SKYPILOT_NODE_RANK": "0", "SKYPILOT_NUM_NODES": "2", "RANK": "0", "LOCAL_RANK": "0"}
    env = job_env(tmp_path, server, {"WANDB_RUN_ID": "ranked0", "WANDB_MODE": "online", **rank0}, "r0")
    out = train(env)
    assert "[metta-exp] progress step=4 total=5" in out.stdout
    assert server.run("ranked0") is not None and len(server.run("ranked0").history) == 5
