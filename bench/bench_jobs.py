"""How fast the job commands are with a big store, and what the live monitor costs.

1. ``metta-exp job list`` and ``job show`` (text and ``--json``), run as a user runs them (a subprocess),
   on a store of 10,000 jobs: 50 groups of 200 jobs, and a store holding one group of 10,000 jobs (the
   worst case for ``show``). Every job that ran has a log with progress lines, as real jobs do, since
   ``show`` reads each job's progress from its log. Prints the median wall time over --repeat runs.
2. ``metta-exp job monitor`` on a live 200-job group (python jobs printing a progress line every 0.5 s,
   at most --parallel at once): the CPU seconds the monitor process used over --seconds, read from
   ``/proc/<pid>/stat`` (utime + stime), on a 200x50 terminal (a pty: the live view) and in a pipe (one
   line per change).

    .venv/bin/python bench/bench_jobs.py [--repeat 7] [--seconds 30] [--parallel 40] [--quick]
"""

from __future__ import annotations

import argparse
import fcntl
import io
import os
import pty
import select
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conftest import kill_everything  # noqa: E402

from metta_exp.config import Experiment  # noqa: E402
from metta_exp.logs.tail import final_progress  # noqa: E402
from metta_exp.paths import RunDir  # noqa: E402
from metta_exp.records import GroupConfig  # noqa: E402
from metta_exp.resolve import resolve  # noqa: E402
from metta_exp.status import JobStatus  # noqa: E402
from metta_exp.store import JobStore  # noqa: E402
from metta_exp.submit import launch_experiment  # noqa: E402

OUTCOMES = (JobStatus.SUCCEEDED,) * 6 + (JobStatus.FAILED, JobStatus.CANCELLED)
# The stores' shapes, (groups, jobs per group): the two 10,000-job stores and the 100,000-job one; the live
# group's size. --quick makes them tiny (a smoke run: the same commands, the figures meaningless).
LAYOUTS = ((50, 200), (1, 10_000))
BIG = (500, 200)
LIVE = 200


def fill_group(store: JobStore, state_dir: Path, group: str, runs: int) -> None:
    """A group of ``runs`` jobs: most ended (succeeded, some failed or cancelled), a few running, the
    rest pending; every job that ran has a log of 200 lines ending with progress lines."""
    exp = Experiment(command=["python", "train.py"], runs=[f"run_{i:05d}" for i in range(runs)], remote=False,
                     gpus=0, args=["trainer.total_timesteps=30000"], generate_notebook=False)  # fmt: skip
    specs = resolve(exp, group, state_dir)
    store.create_group(group, "bench", "local", GroupConfig(exp), specs)
    owner = f"bench:{os.getpid()}"
    assert store.acquire_lease(group, owner, 3600, os.getpid())
    for i, spec in enumerate(specs):
        if i >= runs * 9 // 10:
            continue  # pending
        log = RunDir.at(spec.run_dir).log(1)
        log.parent.mkdir(parents=True, exist_ok=True)
        lines = [f"epoch {k}: loss={1 / (k + 1):.4f}\n" for k in range(190)]
        lines += [f"[metta-exp] progress step={k * 3000} total=30000 sps=5123.4 overview/reward={k * 9.5}\n"
                  for k in range(1, 11)]  # fmt: skip
        log.write_text("".join(lines))
        attempt = store.claim(group, spec.run, owner, (), str(log))
        assert attempt == 1
        store.mark_running(group, spec.run, 1, f"{100000 + i}:1")
        if i < runs * 85 // 100:
            status = OUTCOMES[i % len(OUTCOMES)]
            code = {JobStatus.SUCCEEDED: 0, JobStatus.FAILED: 1}.get(status)
            store.finish_attempt(group, spec.run, 1, status, code, None if code == 0 else "exit code 1")
            store.set_final_progress(group, spec.run, 1, final_progress(log))  # as the runner keeps it
    store.release_lease(group, owner)


def median_time(args: list[str], env: dict[str, str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        print(".", end="", flush=True, file=sys.stderr)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "metta_exp", *args], env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=True)  # fmt: skip
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_commands(work: Path, repeat: int) -> None:
    layouts = {f"{g} groups x {n} jobs": (g, n) for g, n in LAYOUTS}
    print(f"job list / job show, median of {repeat} runs (wall time of the whole command):")
    for label, (groups, per_group) in layouts.items():
        state = work / label.split()[0]
        start = time.perf_counter()
        with JobStore.open(state) as store:
            for g in range(groups):
                fill_group(store, state, f"group-{g:02d}", per_group)
        built = time.perf_counter() - start
        env = dict(os.environ, METTA_EXP_STATE_DIR=str(state))
        print(f"  store of {label} ({groups * per_group:,} jobs; built in {built:.0f} s):")
        for args in (["job", "list"], ["job", "list", "--json"], ["job", "show", "group-00"],
                     ["job", "show", "group-00", "--json"]):  # fmt: skip
            print(f"    {' '.join(args):<28} {median_time(args, env, repeat) * 1000:7.0f} ms")
    bench_list_100k(work, repeat)
    base = median_time(["job", "--help"], dict(os.environ), repeat)
    print(f"  (for scale: `metta-exp job --help` takes {base * 1000:.0f} ms: the interpreter and imports)")


def bench_list_100k(work: Path, repeat: int) -> None:
    """``job list`` on a store of 100,000 jobs: 500 groups of 200 (each group made by ``create_group``, then
    most jobs moved to an end state in one statement: ``list`` reads only the counts)."""
    state = work / "100k"
    groups, per_group = BIG
    start = time.perf_counter()
    with JobStore.open(state) as store:
        for g in range(groups):
            group = f"group-{g:03d}"
            exp = Experiment(command=["python", "train.py"], runs=[f"run_{i:03d}" for i in range(per_group)],
                             remote=False, gpus=0, generate_notebook=False)  # fmt: skip
            specs = resolve(exp, group, state)
            store.create_group(group, "bench", "local", GroupConfig(exp), specs)
        with store.atomic() as db:
            db.execute("UPDATE jobs SET status = CASE id % 8 WHEN 0 THEN 'failed' WHEN 1 THEN 'running' "
                       "ELSE 'succeeded' END")  # fmt: skip
    built = time.perf_counter() - start
    env = dict(os.environ, METTA_EXP_STATE_DIR=str(state))
    print(
        f"  store of {groups} groups x {per_group} jobs ({groups * per_group:,} jobs; built in {built:.0f} s):"
    )
    for args in (["job", "list"], ["job", "list", "--json"]):
        print(f"    {' '.join(args):<28} {median_time(args, env, repeat) * 1000:7.0f} ms")


# --- the monitor --------------------------------------------------------------------------------------------

JOB = """
import os, sys, time
total = int(sys.argv[1]); sps = 100.0
for step in range(0, total + 1, 50):
    reward = step / total * 100
    print(f"[metta-exp] progress step={step} total={total} sps={sps} overview/reward={reward:.2f}",
          flush=True)
    if step % 500 == 0:
        print(f"epoch {step // 500}: loss={1 / (1 + step):.4f}", flush=True)
    time.sleep(0.5)
"""


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def monitor_cpu(state: Path, group: str, seconds: float, terminal: bool) -> float:
    env = dict(os.environ, METTA_EXP_STATE_DIR=str(state), TERM="xterm-256color")
    argv = [sys.executable, "-m", "metta_exp", "job", "monitor", group, "--refresh", "1.0"]
    master = None
    if terminal:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
        proc = subprocess.Popen(argv, env=env, stdin=slave, stdout=slave, stderr=slave)
        os.close(slave)
    else:
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + seconds
    while time.time() < deadline:
        if master is not None and select.select([master], [], [], 0.2)[0]:
            os.read(master, 1 << 20)  # a terminal that keeps up
        else:
            time.sleep(0.2)
    used = cpu_seconds(proc.pid)
    proc.terminate()
    proc.wait()
    if master is not None:
        os.close(master)
    return used


def bench_monitor(work: Path, seconds: float, parallel: int) -> None:
    state = work / "live"
    size = LIVE
    runs = [f"run_{i:03d}" for i in range(size)]
    steps = int(100 * (seconds * 2 + 60) / 2)  # long enough to keep running through both measurements
    exp = Experiment(command=[sys.executable, "-c", JOB], runs=runs, args=[str(steps)], remote=False, gpus=0,
                     wait=False, generate_notebook=False, max_parallel=parallel, group="live")  # fmt: skip
    launch_experiment(exp, name="bench", state_dir=state, out=io.StringIO())
    time.sleep(3 if size > 10 else 0.5)
    print(
        f"job monitor, {size} jobs ({parallel} running, {size - parallel} pending), CPU over {seconds:.0f} s:"
    )
    try:
        for terminal in (True, False):
            used = monitor_cpu(state, "live", seconds, terminal)
            where = "live view, 200x50 terminal" if terminal else "pipe, one line per change"
            print(f"    {where:<28} {used:6.2f} CPU s  ({used / seconds * 100:.1f}% of one core)")
    finally:
        kill_everything(state)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--parallel", type=int, default=40)
    parser.add_argument("--only", choices=("commands", "monitor"), help="run one half of the benchmark")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: tiny sizes, once (the test suite runs it)"
    )
    args = parser.parse_args()
    if args.quick:
        global LAYOUTS, BIG, LIVE
        LAYOUTS, BIG, LIVE = ((2, 10), (1, 20)), (3, 10), 6
        args.repeat, args.seconds, args.parallel = 1, 1.0, 2
    work = Path(tempfile.mkdtemp(prefix="bench_jobs_"))
    try:
        if args.only != "monitor":
            bench_commands(work, args.repeat)
        if args.only != "commands":
            bench_monitor(work, args.seconds, args.parallel)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
