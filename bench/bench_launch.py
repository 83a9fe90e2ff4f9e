"""Launch latency: time from `metta-exp ...` starting until every job of a group is running.

Runs the real command (a subprocess, like a user) on a 1-run and a 50-run group of trivial jobs
(`sleep 30`) with wait=false, polling the store until all jobs are `running`, then ends them.
Prints the medians over --repeat rounds and the per-job overhead ((T50 - T1) / 49), then the CPU the
runner (the detached process that drives a group) uses over 30 s while 200 jobs run.

    .venv/bin/python bench/bench_launch.py [--jobs 50] [--repeat 3] [--cpu-jobs 200] [--cpu-seconds 30] [--quick]
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


def runner_cpu(work: Path, jobs: int, seconds: float) -> float:
    """CPU seconds the runner of a group of ``jobs`` sleeping jobs uses over ``seconds``."""
    import io

    from metta_exp.config import Experiment
    from metta_exp.submit import launch_experiment

    state = work / "state"
    exp = Experiment(command=["sleep", str(int(seconds + 30))], runs=[f"r{i}" for i in range(jobs)],
                     remote=False, gpus=0, wait=False, generate_notebook=False, group="cpu")  # fmt: skip
    launch_experiment(exp, "bench", state_dir=state, out=io.StringIO())
    with JobStore.open(state) as store:
        pid = store.group("cpu").runner_pid
    assert pid is not None
    try:
        time.sleep(3)  # past the launch
        start = _cpu(pid)
        time.sleep(seconds)
        return _cpu(pid) - start
    finally:
        kill_everything(state)


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cpu-jobs", type=int, default=200)
    parser.add_argument("--cpu-seconds", type=float, default=30.0)
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: tiny sizes, once (the test suite runs it)"
    )
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.repeat, args.cpu_jobs, args.cpu_seconds = 3, 1, 3, 1.0
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
    work = Path(tempfile.mkdtemp(prefix="metta-bench-"))
    try:
        cpu = runner_cpu(work, args.cpu_jobs, args.cpu_seconds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    share = cpu / args.cpu_seconds * 100
    print(
        f"runner CPU, {args.cpu_jobs} running jobs, {args.cpu_seconds:.0f} s: {cpu:.2f} s ({share:.1f}% of one core)"
    )


if __name__ == "__main__":
    main()
