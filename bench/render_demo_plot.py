"""Render the plot cell of a group's notebook to a PNG (the README's docs/demo-plot.png).

    .venv/bin/python bench/render_demo_plot.py RUN_DIR [RUN_DIR ...] [-o docs/demo-plot.png]
    .venv/bin/python bench/render_demo_plot.py --train /tmp/demo-group [-o docs/demo-plot.png]
    .venv/bin/python bench/render_demo_plot.py --quick   # a smoke run: tiny training, a temporary PNG

Given the run directories of a finished group (``job_state/runs/<group>/*``), it writes the group's
notebook with :func:`metta_exp.notebook.cells.write_group_notebook`, executes it with nbclient (as a user
running it top to bottom would) and saves the image the plots cell displays. The records are rebuilt
from each run's ``run.json`` (name, group, finished or not). ``--train DIR`` first trains a small demo
group there with the CartPole example trainer (three learning rates, W&B off), for when no real group
is at hand.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from metta_exp.notebook.cells import write_group_notebook
from metta_exp.records import GroupRecord, JobRecord, JobSpec
from metta_exp.status import JobStatus

DEMO_RATES = ("0.003", "0.01", "0.03")


def records_from_run_dirs(
    run_dirs: list[Path], metrics: list[str], experiment: str = "cartpole"
) -> tuple[GroupRecord, list[JobRecord]]:
    """A group record and job records for finished run directories, from their ``run.json``."""
    jobs = []
    group_name = "demo"
    for position, run_dir in enumerate(run_dirs):
        state = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").exists() else {}
        group_name = state.get("group") or group_name
        ok = state.get("finished", True)
        run = str(state.get("run") or run_dir.name)
        spec: dict[str, Any] = {
            "group": group_name,
            "run": run,
            "args": [],
            "env": {},
            "run_dir": str(run_dir.absolute()),
            "wandb_run_id": "",
        }
        jobs.append(
            JobRecord(
                group=group_name,
                run=run,
                position=position,
                status=JobStatus.SUCCEEDED if ok else JobStatus.FAILED,
                stored_spec=JobSpec.from_dict(spec),
                attempts=state.get("attempt", 1),
                exit_code=0 if ok else 1,
                run_dir=str(run_dir.absolute()),
                wandb_url=state.get("wandb_url"),
            )
        )
    group = GroupRecord(
        name=group_name,
        experiment=experiment,
        backend="local",
        stored_config={
            "module": "metta_exp.examples.cartpole",
            "metrics_to_track": metrics,
            "extra_args": [],
        },
        created_at=0.0,
        ended_at=None,
        cancel_requested=False,
        lease_owner=None,
        lease_expires=None,
        runner_pid=None,
    )
    return group, jobs


def render_plot(run_dirs: list[Path], out: Path, metrics: list[str]) -> Path:
    """Execute the group's notebook and write the plots cell's image to ``out``."""
    import nbformat

    from metta_exp.notebook.report import execute_notebook

    group, jobs = records_from_run_dirs(run_dirs, metrics)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_group_notebook(group, jobs, Path(tmp) / "group.ipynb")
        nb = nbformat.read(path, as_version=4)
        execute_notebook(nb, Path(tmp))  # the reports' own kernel (on sockets of its own)
    plots = next(c for c in nb.cells if c.get("id", "").startswith("plots-"))
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    if errors:
        raise RuntimeError(f"the notebook failed: {errors[0].ename}: {errors[0].evalue}")
    image = next(o.data["image/png"] for o in plots.outputs if "image/png" in o.get("data", {}))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(base64.b64decode(image))
    return out


def train_demo_group(directory: Path, steps: int = 40000) -> list[Path]:
    """Train the CartPole demo at three learning rates (in parallel), W&B off; their run dirs."""
    procs = []
    for rate in DEMO_RATES:
        run = f"lr_{rate}"
        run_dir = directory / run
        env = dict(
            os.environ,
            METTA_EXP_RUN_DIR=str(run_dir),
            METTA_EXP_RUN=run,
            METTA_EXP_GROUP="cartpole-demo",
            WANDB_MODE="disabled",
        )
        argv = [
            sys.executable,
            "-m",
            "metta_exp.examples.cartpole",
            f"trainer.learning_rate={rate}",
            f"trainer.total_timesteps={steps}",
        ]
        run_dir.mkdir(parents=True, exist_ok=True)
        log = (run_dir / "train.log").open("w")
        procs.append((subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT), log, run_dir))
    for proc, log, run_dir in procs:
        code = proc.wait()
        log.close()
        if code != 0:
            raise RuntimeError(f"training {run_dir.name} failed (exit {code}); see {run_dir / 'train.log'}")
    return [run_dir for _, _, run_dir in procs]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="*", type=Path, help="run directories of one finished group")
    parser.add_argument("--train", type=Path, metavar="DIR", help="train a demo group in DIR first")
    parser.add_argument(
        "-o", "--out", type=Path, default=Path(__file__).parent.parent / "docs" / "demo-plot.png"
    )
    parser.add_argument("--metrics", nargs="+", default=["overview/sps", "overview/reward"])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: a tiny demo group trained, the PNG into a temporary file",
    )
    args = parser.parse_args(argv)
    if args.quick:
        with tempfile.TemporaryDirectory(prefix="demo plot ") as tmp:
            runs = train_demo_group(Path(tmp) / "runs", steps=2000)
            print(render_plot(runs, Path(tmp) / "demo-plot.png", args.metrics))
        return 0
    run_dirs = list(args.run_dirs)
    if args.train:
        run_dirs += train_demo_group(args.train)
    if not run_dirs:
        parser.error("give run directories, or --train DIR")
    print(render_plot(run_dirs, args.out, args.metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
