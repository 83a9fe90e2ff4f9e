"""Launch latency: time from `metta-exp ...` starting until every job of a group is running.

Runs the real command (a subprocess, like a user) on a 1-run and a 50-run group of trivial jobs
(`sleep 30`) with wait=false, polling the store until all jobs are `running`, then ends them.
Prints the medians over --repeat rounds and the per-job overhead ((T50 - T1) / 49).

    .venv/bin/python bench/bench_launch.py [--jobs 50] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conftest import kill_everything  # noqa: E402

from metta_exp.status import JobStatus  # noqa: E402
from metta_exp.store import DB_NAME, JobStore  # noqa: E402


def one_round(work: Path, jobs: int, tag: str) -> float:
    conf = work / "conf" / "experiment"
    conf.mkdir(parents=True, exist_ok=True)
    runs = ", ".join(f"r{i}" for i in range(jobs))
    (conf / "bench.yaml").write_text(
        f"# @package _global_\ncommand: [sleep, '30']\nruns: [{runs}]\ngpus: 0\nremote: false\n"
        "wait: false\ngenerate_notebook: false\n"
    )
    state = work / "state"
    env = dict(os.environ, METTA_EXP_STATE_DIR=str(state), WANDB_MODE="disabled")
    group = f"bench-{tag}"
    start = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "metta_exp",
            "--config-dir",
            str(work / "conf"),
            "+experiment=bench",
            f"group={group}",
        ],
        cwd=work,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    while not (state / DB_NAME).exists():
        time.sleep(0.002)
    store = JobStore.open(state)
    try:
        while True:
            try:
                done = [j.status for j in store.jobs(group)]
            except Exception:
                done = []
            if len(done) == jobs and all(s == JobStatus.RUNNING for s in done):
                elapsed = time.perf_counter() - start
                break
            time.sleep(0.002)
        proc.wait(timeout=60)
    finally:
        store.close()
        kill_everything(state)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    results: dict[int, list[float]] = {1: [], args.jobs: []}
    for i in range(args.repeat):
        for n in results:
            work = Path(tempfile.mkdtemp(prefix="metta-bench-"))
            try:
                results[n].append(one_round(work, n, f"{n}-{i}"))
            finally:
                shutil.rmtree(work, ignore_errors=True)
    t1 = statistics.median(results[1])
    tn = statistics.median(results[args.jobs])
    print(f"command start -> 1 job running:        {t1 * 1000:8.0f} ms (median of {args.repeat})")
    print(f"command start -> {args.jobs} jobs running:      {tn * 1000:8.0f} ms (median of {args.repeat})")
    print(
        f"per-job overhead ((T{args.jobs} - T1) / {args.jobs - 1}):  {(tn - t1) / (args.jobs - 1) * 1000:8.1f} ms"
    )


if __name__ == "__main__":
    main()
