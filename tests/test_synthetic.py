"""The synthetic benchmark job, run as a real subprocess in tmp_path; its curve and parser, directly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from metta_exp import tracking
from metta_exp.errors import UsageError
from metta_exp.examples.synthetic import Settings, curve, final_reward, parse_overrides

REPO = Path(__file__).resolve().parents[1]
OPTIMUM = ["trainer.learning_rate=0.003", "trainer.entropy_coef=0.01", "trainer.batch_size=512"]
FAR = ["trainer.learning_rate=0.0001", "trainer.entropy_coef=0.05", "trainer.batch_size=256"]


def run_job(tmp_path: Path, name: str, *args: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "METTA_EXP_"))}
    run_dir = tmp_path / f"run {name}"
    env.update(PYTHONPATH=str(REPO), METTA_EXP_RUN_DIR=str(run_dir), WANDB_MODE="disabled")
    out = subprocess.run(
        [sys.executable, "-m", "metta_exp.examples.synthetic", *args, "trainer.seconds=0.2"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out, run_dir


def rewards(run_dir: Path) -> list[float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["overview/reward"] for line in lines]


def test_job_prints_progress_writes_metrics_and_the_optimum_wins(tmp_path: Path) -> None:
    best, best_dir = run_job(tmp_path, "best", *OPTIMUM, "seed=1")
    far, far_dir = run_job(tmp_path, "far", *FAR, "seed=1")
    assert best.returncode == 0 and far.returncode == 0, best.stderr + far.stderr

    progress = [p for line in best.stdout.splitlines() if (p := tracking.parse_progress_line(line))]
    assert [p.step for p in progress[:20]] == [5000 * i for i in range(1, 21)]
    assert all(p.total == 100_000 and "overview/reward" in p.metrics for p in progress)
    assert (best_dir / "run.json").exists()

    best_curve, far_curve = rewards(best_dir), rewards(far_dir)
    assert len(best_curve) == len(far_curve) == 20
    assert best_curve[-1] > 90 > 10 > far_curve[-1]
    assert best_curve[3] > far_curve[3] + 30  # behind early too: what pruning needs
    assert progress[-1].metrics["overview/reward"] == pytest.approx(best_curve[-1], rel=1e-5)


def test_curve_is_deterministic_and_seeded() -> None:
    settings = parse_overrides([*OPTIMUM, "seed=4"])
    assert curve(settings) == curve(settings)
    assert curve(settings) != curve(parse_overrides([*OPTIMUM, "seed=5"]))
    unseeded = parse_overrides(OPTIMUM)
    assert unseeded.seed is None and curve(unseeded) == curve(parse_overrides(OPTIMUM))
    assert final_reward(settings) == pytest.approx(100.0)
    assert final_reward(Settings(learning_rate=3e-2)) < final_reward(Settings(learning_rate=1e-3)) < 100


def test_bad_overrides_are_usage_errors() -> None:
    assert parse_overrides(["trainer.batch_size=1", "+trainer.batch_size=64"]).batch_size == 64
    with pytest.raises(UsageError, match="did you mean 'trainer.learning_rate'"):
        parse_overrides(["trainer.learning_rat=0.1"])
    with pytest.raises(UsageError, match=r"bad value for trainer.learning_rate: '-1' \(must be"):
        parse_overrides(["trainer.learning_rate=-1"])
    with pytest.raises(UsageError, match="is not key=value"):
        parse_overrides(["seed"])
