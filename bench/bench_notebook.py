"""How long the notebook takes to render for a 100-run group, and fetch_metrics to load 100 big runs.

    .venv/bin/python bench/bench_notebook.py [--runs 100] [--points 100000] [--samples 1000] [--quick]

1. ``write_group_notebook`` for a group of ``--runs`` runs (records built here, each run dir with a
   ``run.json``): the first render (templates compiled) and the mean of the next ten.
2. ``fetch_metrics`` over ``--runs`` local runs of ``--points`` lines each (``overview/reward``,
   ``overview/sps`` and one more metric per line, like the tracking module writes them) at
   ``samples=--samples``: generated in a temporary directory (about 13 MB per run at 100,000 lines),
   read with the page cache warm (the files were just written), then deleted.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import tempfile
import time
from pathlib import Path

from metta_exp.metrics import fetch_metrics
from metta_exp.notebook.cells import write_group_notebook
from metta_exp.records import GroupRecord, JobRecord, JobSpec
from metta_exp.status import JobStatus


def group_records(root: Path, runs: int) -> tuple[GroupRecord, list[JobRecord]]:
    group = GroupRecord(
        name="bench.20251127",
        experiment="cartpole",
        backend="local",
        stored_config={
            "module": "metta_exp.examples.cartpole",
            "metrics_to_track": ["overview/sps", "overview/reward"],
            "extra_args": [],
        },
        created_at=1764250000.0,
        ended_at=1764253600.0,
        cancel_requested=False,
        lease_owner=None,
        lease_expires=None,
        runner_pid=None,
    )
    jobs = []
    for i in range(runs):
        run = f"lr_{i:03d}"
        run_dir = root / "runs" / group.name / run
        run_dir.mkdir(parents=True)
        (run_dir / "run.json").write_text('{"wandb_mode": "disabled", "finished": true}')
        spec = {
            "group": group.name,
            "run": run,
            "args": [f"trainer.learning_rate={0.001 * (i + 1):g}", "trainer.seed=0"],
            "env": {"WANDB_MODE": "disabled"},
            "run_dir": str(run_dir),
            "wandb_run_id": f"{i:016x}",
        }
        jobs.append(
            JobRecord(
                group=group.name,
                run=run,
                position=i,
                status=JobStatus.SUCCEEDED if i % 10 else JobStatus.FAILED,
                stored_spec=JobSpec.from_dict(spec),
                attempts=1,
                exit_code=0 if i % 10 else 1,
                reason=None if i % 10 else "RuntimeError: x",
                run_dir=str(run_dir),
            )
        )
    return group, jobs


def bench_render(runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        group, jobs = group_records(Path(tmp), runs)
        out = Path(tmp) / "nb.ipynb"
        start = time.perf_counter()
        write_group_notebook(group, jobs, out)
        first = time.perf_counter() - start
        times = []
        for _ in range(10):
            start = time.perf_counter()
            write_group_notebook(group, jobs, out)
            times.append(time.perf_counter() - start)
        size = out.stat().st_size
    print(
        f"render notebook, {runs} runs: first {first * 1000:.0f} ms (templates compiled), "
        f"then {statistics.mean(times) * 1000:.1f} ms mean of 10 ({size / 1024:.0f} KiB file)"
    )


def write_run(path: Path, points: int, seed: int) -> None:
    rnd = random.Random(seed)
    t = 1764250000.0
    rows = []
    for i in range(points):
        t += 0.05 + rnd.random() * 0.01
        reward = 500 / (1 + math.exp(-(i - points / 2) / (points / 8))) + rnd.random() * 20
        rows.append(
            f'{{"_step": {i * 64}, "_time": {t!r}, "_attempt": 1, '
            f'"overview/sps": {3000 + rnd.random() * 300!r}, '
            f'"trainer/loss": {rnd.random()!r}, "overview/reward": {reward!r}}}\n'
        )
    path.parent.mkdir(parents=True)
    path.write_text("".join(rows))


def bench_fetch(runs: int, points: int, samples: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        dirs = []
        for i in range(runs):
            dirs.append(Path(tmp) / f"run{i:03d}")
            write_run(dirs[-1] / "metrics.jsonl", points, seed=i)
        size = sum((d / "metrics.jsonl").stat().st_size for d in dirs)
        elapsed = time.perf_counter() - start
        print(f"generated {runs} runs x {points:,} lines ({size / 1e6:,.0f} MB) in {elapsed:.1f} s")
        start = time.perf_counter()
        import pandas  # noqa: F401  (imported by the first fetch_metrics call; timed apart)

        print(f"import pandas: {time.perf_counter() - start:.2f} s (once per process)")
        for workers in (8, 4, 2, 1, 8):
            start = time.perf_counter()
            df = fetch_metrics(dirs, samples=samples, workers=workers, progress=False)
            elapsed = time.perf_counter() - start
            print(
                f"fetch_metrics, {runs} runs x {points:,} points, samples={samples}, workers={workers}: "
                f"{elapsed:.2f} s ({elapsed / runs * 1000:.0f} ms per run, {len(df):,} rows)"
            )
        last = df.groupby(["run", "metric"], observed=True)["step"].max()
        assert (last == (points - 1) * 64).all(), "the last point of every run and metric is kept"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: tiny sizes, once (the test suite runs it)"
    )
    args = parser.parse_args()
    if args.quick:
        args.runs, args.points, args.samples = 3, 200, 10
    bench_render(args.runs)
    bench_fetch(args.runs, args.points, args.samples)


if __name__ == "__main__":
    main()
