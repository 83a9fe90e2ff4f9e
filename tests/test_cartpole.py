"""The demo trainer, run as a real subprocess in tmp_path; its override parser, directly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from metta_exp import tracking
from metta_exp.errors import UsageError
from metta_exp.examples.cartpole import Settings, parse_overrides

REPO = Path(__file__).resolve().parents[1]
METRIC_KEYS = {"overview/sps", "trainer/loss", "trainer/entropy", "overview/reward", "trainer/episode_length"}


def run_trainer(tmp_path: Path, *args: str, progress_every: str = "0") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "METTA_EXP_"))}
    (tmp_path / "home").mkdir(exist_ok=True)
    env.update(
        HOME=str(tmp_path / "home"),
        PYTHONPATH=str(REPO),
        METTA_EXP_RUN_DIR=str(tmp_path / "run dir"),
        METTA_EXP_PROGRESS_EVERY=progress_every,
        WANDB_MODE="disabled",
    )
    return subprocess.run(
        [sys.executable, "-m", "metta_exp.examples.cartpole", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_trainer_runs_and_reports(tmp_path: Path) -> None:
    import numpy as np

    out = run_trainer(tmp_path, "trainer.total_timesteps=3000", "trainer.batch_steps=500", "trainer.seed=3")
    assert out.returncode == 0, out.stderr
    run_dir = tmp_path / "run dir"
    lines = out.stdout.splitlines()
    assert lines[0] == (
        "[cartpole] learning_rate=0.03 total_timesteps=3000 seed=3 batch_steps=500 gamma=0.99"
        f" run_dir={run_dir}"
    )

    records = read_metrics(run_dir)
    steps = [r["_step"] for r in records]
    assert steps == sorted(steps) and steps[-1] == 3000 and len(steps) >= 4
    assert all(r["_step"] - s >= 500 for r, s in zip(records[1:-1], steps[:-2], strict=True))
    for record in records[:-1]:  # the last batch may be cut by the budget and finish no episode
        assert set(record) == {"_step", "_time", "_attempt"} | METRIC_KEYS
        assert 8 <= record["overview/reward"] <= 500
        assert record["overview/reward"] == record["trainer/episode_length"]  # CartPole: 1 per step
        assert 0 < record["trainer/entropy"] <= np.log(2) + 1e-9
        assert record["overview/sps"] > 0

    checkpoint = run_dir / "checkpoint.npz"
    with np.load(checkpoint) as weights:
        assert weights["policy"].shape == (5, 2)
        assert int(weights["step"]) == 3000
        assert np.abs(weights["policy"]).sum() > 0  # it was trained
    state = json.loads((run_dir / "run.json").read_text())
    assert (
        state["checkpoint"] == str(checkpoint) and state["finished"] is True and state["total_steps"] == 3000
    )
    assert tracking.last_checkpoint(out.stdout) == str(checkpoint)

    progress = [p for p in map(tracking.parse_progress_line, lines) if p is not None]
    assert len(progress) == len(records) + 1  # every log (METTA_EXP_PROGRESS_EVERY=0) and the finish
    assert [p.step for p in progress[:-1]] == steps
    assert all(p.total == 3000 and p.sps is not None and p.sps > 0 for p in progress)
    final = tracking.last_progress(out.stdout)
    assert final is not None and final.fraction == 1.0
    assert set(final.metrics) == METRIC_KEYS - {"overview/sps"}
    assert out.stderr == ""


def test_trainer_learns(tmp_path: Path) -> None:
    out = run_trainer(
        tmp_path, "trainer.learning_rate=0.1", "trainer.total_timesteps=15000", progress_every="1000"
    )
    assert out.returncode == 0, out.stderr
    rewards = [r["overview/reward"] for r in read_metrics(tmp_path / "run dir") if "overview/reward" in r]
    assert sum(rewards[-3:]) / 3 > 3 * sum(rewards[:3]) / 3, rewards


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        (
            "trainer.learning_rat=0.1",
            "metta_exp.examples.cartpole: unknown override key 'trainer.learning_rat' "
            "(did you mean 'trainer.learning_rate'?); known: trainer.learning_rate, trainer.total_timesteps, "
            "trainer.seed, trainer.batch_steps, trainer.gamma, trainer.fail_at_step",
        ),
        (
            "trainer.total_timesteps=lots",
            "metta_exp.examples.cartpole: bad value for trainer.total_timesteps: 'lots' (not a valid number)",
        ),
    ],
)
def test_bad_override_exits_2_with_one_line(tmp_path: Path, arg: str, message: str) -> None:
    out = run_trainer(tmp_path, "trainer.seed=1", arg)
    assert out.returncode == 2
    assert out.stderr == message + "\n"
    assert out.stdout == ""
    assert not (tmp_path / "run dir").exists()  # nothing written


def test_fail_at_step_fails_with_a_traceback(tmp_path: Path) -> None:
    out = run_trainer(tmp_path, "trainer.total_timesteps=3000", "trainer.fail_at_step=1200")
    assert out.returncode == 1
    assert "Traceback (most recent call last):" in out.stderr
    assert out.stderr.rstrip().endswith("RuntimeError: trainer.fail_at_step=1200: failing on purpose")
    records = read_metrics(tmp_path / "run dir")
    assert records and records[-1]["_step"] < 1200
    state = json.loads((tmp_path / "run dir" / "run.json").read_text())
    assert state["finished"] is False and state["checkpoint"] is None
    assert tracking.last_progress(out.stdout).step == records[-1]["_step"]  # type: ignore[union-attr]


def test_parse_overrides_values() -> None:
    assert parse_overrides([]) == Settings()
    assert parse_overrides(
        [
            "trainer.learning_rate=1e-3",
            "trainer.total_timesteps=20_000",
            "trainer.seed=7",
            "trainer.batch_steps=256",
            "trainer.gamma=1",
            "trainer.fail_at_step=0",
        ]
    ) == Settings(
        learning_rate=0.001, total_timesteps=20000, seed=7, batch_steps=256, gamma=1.0, fail_at_step=0
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["learning_rate=0.1"], "unknown override key 'learning_rate'"),
        (["trainer.learning_rate"], "override 'trainer.learning_rate' is not key=value"),
        (
            ["trainer.learning_rate=0"],
            "bad value for trainer.learning_rate: '0' (must be a finite number > 0)",
        ),
        (
            ["trainer.learning_rate=nan"],
            "bad value for trainer.learning_rate: 'nan' (must be a finite number > 0)",
        ),
        (["trainer.gamma=1.5"], "bad value for trainer.gamma: '1.5' (must be in (0, 1])"),
        (
            ["trainer.total_timesteps=0"],
            "bad value for trainer.total_timesteps: '0' (must be an integer >= 1)",
        ),
        (
            ["trainer.total_timesteps=2e4"],
            "bad value for trainer.total_timesteps: '2e4' (not a valid number)",
        ),
        (["trainer.seed=-1"], "bad value for trainer.seed: '-1' (must be an integer >= 0)"),
        (["+trainer.seed=1"], "unknown override key '+trainer.seed'"),
    ],
)
def test_parse_overrides_errors(args: list[str], message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_overrides(args)
    assert str(info.value).startswith(message)


def test_an_override_given_again_wins() -> None:
    assert parse_overrides(["trainer.seed=1", "trainer.learning_rate=0.5", "trainer.seed=2"]) == Settings(
        seed=2, learning_rate=0.5
    )
