"""Crash and kill scenarios, repeated: does anything get lost, launched twice or left behind?

1. Crashes: --rounds groups of --jobs short jobs (each appends to ``starts.txt`` in its run dir, sleeps a
   little, exits 0; at most --parallel at once). While a group runs, its runner is killed again and
   again, SIGKILL or SIGTERM at random moments, and a new one started as any ``metta-exp job`` command
   would (``ensure_driver``). At the end every job must have succeeded, started exactly once.
2. Kills: --kill-rounds groups of --kill-jobs jobs, each starting a child and a double-forked daemon in
   a session of its own (the child and daemon carry the job's markers), are ended with ``metta-exp job
   kill --force`` (run as a user runs it). Counts the job processes left once it returns and times it.
   With --stubborn, one more round with a job that ignores SIGTERM (ended by SIGKILL after the grace).
3. A 'billion laughs' experiment file: the time until the launch command refuses it.

Prints: runners killed, jobs lost, jobs launched twice, processes left after kill, and the time of
``job kill --force`` (median and max).

    .venv/bin/python bench/bench_faults.py [--rounds 10] [--jobs 20] [--kill-rounds 10] [--stubborn] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conftest import kill_everything  # noqa: E402

from metta_exp.backends import procs  # noqa: E402
from metta_exp.config import Experiment  # noqa: E402
from metta_exp.status import JobStatus  # noqa: E402
from metta_exp.store import JobStore  # noqa: E402
from metta_exp.submit import launch_experiment  # noqa: E402
from metta_exp.supervise.drive import ensure_driver  # noqa: E402

JOB = textwrap.dedent(
    """
    import os, pathlib, random, signal, subprocess, sys, time
    opts = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
    rd = pathlib.Path(os.environ["METTA_EXP_RUN_DIR"])
    with open(rd / "starts.txt", "a") as f:
        f.write(os.environ["METTA_EXP_ATTEMPT"] + "\\n")
    if opts.get("ignore_term"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if opts.get("spawn"):
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                time.sleep(600)
            os._exit(0)
    time.sleep(float(opts.get("sleep", random.uniform(0.2, 1.5))))
    """
)


def experiment(runs: int, group: str, parallel: int, args: list[str]) -> Experiment:
    return Experiment(
        command=[sys.executable, "-c", JOB], runs=[f"r{i:03d}" for i in range(runs)], remote=False, gpus=0,
        wait=False, generate_notebook=False, max_parallel=parallel, args=args, group=group,
    )  # fmt: skip


def starts(run_dir: str) -> int:
    try:
        return len((Path(run_dir) / "starts.txt").read_text().split())
    except OSError:
        return 0


def crash_round(
    state_dir: Path, group: str, jobs: int, parallel: int, rng: random.Random
) -> tuple[int, int, int]:
    """One group driven through runner kills; returns (runners killed, jobs lost, jobs launched twice)."""
    launch_experiment(experiment(jobs, group, parallel, []), "bench", state_dir=state_dir, out=io.StringIO())
    killed = 0
    with JobStore.open(state_dir) as store:
        deadline = time.time() + 600
        while store.group(group).ended_at is None and time.time() < deadline:
            time.sleep(rng.uniform(0.2, 1.2))
            pid = store.group(group).runner_pid
            if pid and procs.pid_alive(pid):
                os.kill(pid, rng.choice((signal.SIGKILL, signal.SIGTERM)))
                killed += 1
                while procs.pid_alive(pid):
                    time.sleep(0.02)
            ensure_driver(store, group)
        final = store.jobs(group)
    lost = sum(1 for j in final if j.status != JobStatus.SUCCEEDED)
    twice = sum(1 for j in final if starts(j.run_dir) > 1)  # a requeue before any start is not one
    return killed, lost, twice


def kill_round(state_dir: Path, group: str, jobs: int, args: list[str]) -> tuple[float, int]:
    """Launch, wait until every job has spawned its helpers, ``job kill --force``; (seconds, processes left)."""
    exp = experiment(jobs, group, jobs, ["spawn=1", "sleep=600", *args])
    launch_experiment(exp, "bench", state_dir=state_dir, out=io.StringIO())
    with JobStore.open(state_dir) as store:
        markers = {(group, j.run_dir) for j in store.jobs(group)}
        want = 4 * jobs  # the wrapper, the job, its child and its daemon
        deadline = time.time() + 120
        while len(procs.marked(procs.process_table(), markers)) < want and time.time() < deadline:
            time.sleep(0.1)
    env = {**os.environ, "METTA_EXP_STATE_DIR": str(state_dir)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "metta_exp", "job", "kill", group, "--force"], env=env,
                   capture_output=True, check=True)  # fmt: skip
    took = time.perf_counter() - start
    left = procs.marked(procs.process_table(), markers)
    for pid in left:  # leave the machine clean for the next round
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return took, len(left)


BOMB = "module: x\nruns: [a]\na: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)  # 9**9 values once expanded, in 300 bytes


def yaml_bomb(tmp: Path) -> float:
    """Seconds until ``metta-exp`` refuses a 'billion laughs' experiment file."""
    conf = tmp / "conf"
    (conf / "experiment").mkdir(parents=True)
    (conf / "experiment" / "bomb.yaml").write_text(BOMB)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "metta_exp", "--config-dir", str(conf), "+experiment=bomb"],
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    took = time.perf_counter() - start
    assert result.returncode == 2 and "billion laughs" in result.stderr, result.stderr
    return took


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--parallel", type=int, default=6)
    parser.add_argument("--kill-rounds", type=int, default=10)
    parser.add_argument("--kill-jobs", type=int, default=4)
    parser.add_argument("--stubborn", action="store_true", help="also time a kill of a SIGTERM-ignoring job")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: tiny sizes, once (the test suite runs it)"
    )
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.jobs, args.parallel, args.kill_rounds, args.kill_jobs = 1, 3, 2, 1, 1
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="bench faults ") as tmp:
        state_dir = Path(tmp) / "job state"
        os.environ["METTA_EXP_STATE_DIR"] = str(state_dir)
        try:
            totals = [0, 0, 0]
            for i in range(args.rounds):
                for k, n in enumerate(crash_round(state_dir, f"crash{i}", args.jobs, args.parallel, rng)):
                    totals[k] += n
            print(f"crash rounds: {args.rounds} groups x {args.jobs} jobs (at most {args.parallel} at once)")
            print(f"  runners killed (SIGKILL or SIGTERM): {totals[0]}")
            print(f"  jobs lost (not succeeded):           {totals[1]}")
            print(f"  jobs launched twice:                 {totals[2]}")
            times, left = [], 0
            for i in range(args.kill_rounds):
                took, n = kill_round(state_dir, f"kill{i}", args.kill_jobs, [])
                times.append(took)
                left += n
            print(f"kill rounds: {args.kill_rounds} groups x {args.kill_jobs} jobs, each with a child and a "
                  "double-forked daemon")  # fmt: skip
            print(f"  processes left after kill:           {left}")
            print(f"  job kill --force: median {statistics.median(times):.2f} s, max {max(times):.2f} s")
            print(f"YAML alias bomb ({len(BOMB)} bytes) refused after {yaml_bomb(Path(tmp)):.2f} s")
            if args.stubborn:
                took, n = kill_round(state_dir, "stubborn", 1, ["ignore_term=1"])
                print(f"  job kill --force, a job ignoring SIGTERM: {took:.2f} s, {n} processes left")
        finally:
            kill_everything(state_dir)


if __name__ == "__main__":
    main()
