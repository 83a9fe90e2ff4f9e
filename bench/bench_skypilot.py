"""Benchmark the SkyPilot backend on the fake API with a simulated latency per SDK call.

    .venv/bin/python bench/bench_skypilot.py [--jobs 100] [--latency 0.02] [--groups 5]

Prints:
- the time to submit one group of ``--jobs`` jobs (one queue look-up, then every launch request, then
  every answer; SDK calls counted), next to what one-at-a-time launching would cost at that latency;
- the SDK calls per poll cycle with ``--jobs`` active jobs, for one runner and for ``--groups`` runners
  (one per group) sharing the queue answer, and the log-tail calls a cycle makes.

Every job is a real ``sleep`` process started by the fake; all are killed at the end.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from metta_exp.backends.base import Launch
from metta_exp.backends.skypilot import SkyPilotBackend
from metta_exp.backends.skypilot_fake import FakeSkyApi
from metta_exp.config import Experiment
from metta_exp.resolve import resolve


def launches(group: str, runs: list[str], state: Path) -> list[Launch]:
    exp = Experiment(runs=runs, command=["sleep", "600"], gpus=0)
    return [Launch(spec, 1, Path(spec.run_dir) / "attempt-1.log") for spec in resolve(exp, group, state)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per simulated SDK call")
    parser.add_argument("--groups", type=int, default=5, help="runners sharing the poll (jobs split evenly)")
    parser.add_argument("--workers", type=int, default=16, help="launch threads")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="metta-exp-bench-") as tmp:
        root = Path(tmp)
        fake = FakeSkyApi(root / "fake")
        state = root / "state"
        try:
            fake.configure(latency_s=args.latency)
            bench_submit(fake, state, args)
            bench_poll(fake, state, args)
        finally:
            fake.kill_all()


def bench_submit(fake: FakeSkyApi, state: Path, args: argparse.Namespace) -> None:
    backend = SkyPilotBackend(fake, state, poll_interval=10.0, workers=args.workers)
    group = launches("bench", [f"run{i:03d}" for i in range(args.jobs)], state)
    before = fake.call_counts()
    start = time.perf_counter()
    handles = backend.submit(group)
    elapsed = time.perf_counter() - start
    calls = fake.call_counts() - before
    assert all(h.isdigit() for h in handles.values()) and len(handles) == args.jobs
    sequential = 2 * args.jobs * args.latency + 2 * args.latency
    print(f"submit {args.jobs} jobs at {args.latency * 1000:.0f} ms/SDK call, {args.workers} threads: "
          f"{elapsed:.2f} s ({sum(calls.values())} SDK calls: {dict(sorted(calls.items()))}); "
          f"one at a time would take >= {sequential:.2f} s")  # fmt: skip


def bench_poll(fake: FakeSkyApi, state: Path, args: argparse.Namespace) -> None:
    all_jobs = [j for j in fake.jobs()]
    runs = [f"run{i:03d}" for i in range(args.jobs)]
    active = [replace(launch, handle=str(job["job_id"]))
              for launch, job in zip(launches("bench", runs, state), all_jobs, strict=True)]  # fmt: skip
    # one runner polling every job: every cycle is a fresh queue answer (interval 0)
    single = SkyPilotBackend(fake, state, poll_interval=0.0)
    single.poll(active)  # the fake starts the 100 processes on its first look
    cycles = 5
    before = fake.call_counts()
    start = time.perf_counter()
    for _ in range(cycles):
        obs = single.poll(active)
    per_poll = (time.perf_counter() - start) / cycles
    calls = fake.call_counts() - before
    running = sum(1 for o in obs.values() if o.status is not None and not o.status.is_terminal())
    print(f"poll {len(active)} active jobs ({running} running), one runner: "
          f"{sum(calls.values()) / cycles:.0f} SDK calls per cycle ({dict(sorted(calls.items()))} over "
          f"{cycles} cycles), {per_poll * 1000:.0f} ms per poll")  # fmt: skip

    # --groups runners, one per group, sharing the queue answer through the state dir (interval 10 s)
    size = max(1, len(active) // args.groups)
    shares = [active[i : i + size] for i in range(0, len(active), size)]
    runners = [SkyPilotBackend(fake, state, poll_interval=10.0) for _ in shares]
    runners[0].queue.invalidate()
    before = fake.call_counts()
    for runner, share in zip(runners, shares, strict=True):
        runner.poll(share)
    calls = fake.call_counts() - before
    print(
        f"poll {len(active)} active jobs in {len(shares)} groups, one runner each: "
        f"{sum(calls.values())} SDK calls for the whole cycle ({dict(sorted(calls.items()))})"
    )

    logs = SkyPilotBackend(fake, state, poll_interval=0.0)
    logs.poll(active)
    before = fake.call_counts()
    logs.sync_logs(active)
    first = fake.call_counts() - before
    logs.sync_logs(active)
    second = fake.call_counts() - before - first
    print(
        f"log sync, {len(active)} running jobs: {first['jobs.tail_logs']} tail calls in a cycle "
        f"(cap {logs.logs_per_cycle}), {second['jobs.tail_logs']} in the next (each job at most every "
        f"{logs.log_interval_s:.0f} s)"
    )


if __name__ == "__main__":
    main()
