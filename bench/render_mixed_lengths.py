"""The HTML report of a group whose runs differ 100x in length, as a PNG (docs/mixed-lengths-report.png).

    uv run python bench/render_mixed_lengths.py [-o docs/mixed-lengths-report.png] [--quick]

Runs a real group in a temporary directory: four runs of 20,000 steps (2 s each) and one of 2,000,000
(150 s, so that its steps per second are like the others') of the synthetic trainer
(``metta_exp.examples.synthetic``), each at its own learning rate, on this machine. When it ends, its
runner writes the notebook and the report, whose plots take a log x axis (the lengths differ more than
10x); the top of the report is loaded in headless Chromium (``/usr/bin/chromium``) and saved.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from bench_report import screenshot  # noqa: E402

RUNS = {  # run: (steps, learning rate, seconds): the synthetic trainer's SPS is its steps over its seconds
    "short_lr1e-3": (20_000, 0.001, 2),
    "short_lr3e-3": (20_000, 0.003, 2),
    "short_lr1e-2": (20_000, 0.01, 2),
    "short_lr3e-2": (20_000, 0.03, 2),
    "long_lr3e-3": (2_000_000, 0.003, 150),
}
QUICK_RUNS = {"short_lr1e-3": (2_000, 0.001, 0.2), "long_lr3e-3": (200_000, 0.003, 1)}  # --quick

LAUNCH = """
from metta_exp import Experiment
runs = {runs!r}
exp = Experiment(
    module="metta_exp.examples.synthetic",
    runs=list(runs),
    args=["trainer.log_points=60"],
    args_per_run={{
        run: [f"trainer.total_timesteps={{steps}}", f"trainer.learning_rate={{lr}}", f"trainer.seconds={{s}}"]
        for run, (steps, lr, s) in runs.items()
    }},
    group="mixed-lengths",
    gpus=0,
    remote=False,
)
raise SystemExit(exp.launch(name="mixed-lengths"))
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "docs" / "mixed-lengths-report.png")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: tiny runs, the picture into a temporary file"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mixed lengths ") as tmp:
        work = Path(tmp)
        if args.quick:
            args.output = work / "mixed-lengths-report.png"
        env = dict(os.environ, METTA_EXP_STATE_DIR=str(work / "job_state"), WANDB_MODE="disabled")
        launch = LAUNCH.format(runs=QUICK_RUNS if args.quick else RUNS)
        done = subprocess.run(
            [sys.executable, "-c", launch], cwd=work, env=env, capture_output=True, text=True
        )
        if done.returncode != 0:
            sys.exit(f"the group failed:\n{done.stdout}{done.stderr}")
        report = work / "experiments" / "notebooks" / "mixed-lengths.html"
        screenshot(report, args.output)
        print(f"report: {report.stat().st_size / 1024:.0f} KiB; screenshot: {args.output}")


if __name__ == "__main__":
    main()
