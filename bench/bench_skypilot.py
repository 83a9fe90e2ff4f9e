"""Benchmark the SkyPilot backend on the SkyPilot simulator, which counts HTTP requests as the real
client makes them (a health check at most every 5 s per process; a launch is ``validate`` +
``jobs.launch`` + ``get``; a queue or cancel is the request + ``get``) and takes ``--latency`` s for each.

    uv run python bench/bench_skypilot.py [--jobs 100] [--groups 5] [--finished 10000] [--latency 0.02] [--quick]

Prints:
- the time to submit one group of ``--jobs`` jobs, and its SDK calls;
- the SDK calls and answer size of one poll cycle for ``--groups`` groups of ``--jobs`` active jobs
  (one runner each, sharing the answer) in an account that holds ``--finished`` finished jobs, next to
  what asking for every ``metta-exp-*`` job (the old poll) would return;
- how long a newcomer without any SkyPilot set-up waits for the error (the real CLI, an empty HOME).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from metta_exp.backends.base import Launch, LaunchSettings
from metta_exp.backends.skypilot.backend import SkyPilotBackend
from metta_exp.backends.skypilot.sim.api import FakeSkyApi
from metta_exp.config import Experiment
from metta_exp.resolve import resolve


def launches(group: str, n: int, state: Path) -> list[Launch]:
    exp = Experiment(runs=[f"run{i:03d}" for i in range(n)], command=["sleep", "600"], gpus=0)
    settings = LaunchSettings(instance=f"bench-{group}")
    return [
        Launch(s, 1, Path(s.run_dir) / "attempt-1.log", settings=settings) for s in resolve(exp, group, state)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--groups", type=int, default=5)
    parser.add_argument("--finished", type=int, default=10_000)
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per simulated HTTP request")
    parser.add_argument("--workers", type=int, default=16, help="launch threads")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: tiny sizes, once (the test suite runs it)"
    )
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.groups, args.finished, args.latency, args.workers = 3, 2, 20, 0.0, 2
    with tempfile.TemporaryDirectory(prefix="metta-exp-bench-") as tmp:
        root = Path(tmp)
        fake = FakeSkyApi(root / "account")
        try:
            fake.configure(rules=[{"match": "*", "pending_s": 3600}])  # active, but no processes to start
            fake.seed_finished(args.finished, "metta-exp-old-")
            fake.configure(latency_s=args.latency)
            groups = bench_submit(fake, root / "state", args)
            bench_poll(fake, root / "state", groups, args)
        finally:
            fake.kill_all()
        bench_newcomer(root)


def bench_submit(fake: FakeSkyApi, state: Path, args: argparse.Namespace) -> list[list[Launch]]:
    groups = []
    for g in range(args.groups):
        backend = SkyPilotBackend(fake, state, poll_interval=10.0, workers=args.workers, launch_wait_s=300.0)
        group = launches(f"g{g}", args.jobs, state)
        before = fake.call_counts()
        start = time.perf_counter()
        handles = backend.submit(group)
        elapsed = time.perf_counter() - start
        calls = fake.call_counts() - before
        assert all(h.isdigit() for h in handles.values()) and len(handles) == args.jobs
        groups.append([replace(launch, handle=handles[launch.name]) for launch in group])
        if g == 0:
            print(f"submit {args.jobs} jobs at {args.latency * 1000:.0f} ms per request, {args.workers} threads: "
                  f"{elapsed:.2f} s, {sum(calls.values())} SDK calls {dict(sorted(calls.items()))}")  # fmt: skip
    return groups


def bench_poll(fake: FakeSkyApi, state: Path, groups: list[list[Launch]], args: argparse.Namespace) -> None:
    runners = [SkyPilotBackend(fake, state, poll_interval=10.0) for _ in groups]
    for runner, group in zip(runners, groups, strict=True):
        runner.poll(group)  # each runner registers its jobs
    runners[0].queue.invalidate()  # the interval passed: one cycle of every runner
    log = len(fake.call_log())
    start = time.perf_counter()
    for runner, group in zip(runners, groups, strict=True):
        obs = runner.poll(group)
        assert all(o.status is not None for o in obs.values())
    elapsed = time.perf_counter() - start
    calls = fake.call_log()[log:]
    size = sum(c[3] for c in calls)
    active = sum(len(g) for g in groups)
    print(f"poll cycle, {len(groups)} groups x {args.jobs} active jobs, account with {args.finished} finished "
          f"jobs: {len(calls)} SDK calls {[c[0] for c in calls]}, answer {size / 1024:.0f} KiB "
          f"({active} records), {elapsed:.2f} s")  # fmt: skip
    log = len(fake.call_log())
    old = fake.queue("metta-exp-")  # what the old poll asked for: every metta-exp job ever
    old_size = sum(c[3] for c in fake.call_log()[log:])
    print(
        f"  the old poll (name_match='metta-exp-', every job ever): {len(old)} records, {old_size / 1024:.0f} KiB"
    )


def bench_newcomer(root: Path) -> None:
    home = root / "newcomer"
    home.mkdir()
    conf = root / "conf" / "experiment"
    conf.mkdir(parents=True)
    (conf / "x.yaml").write_text("# @package _global_\nmodule: train\nruns: [a]\ngpus: 1\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("METTA_EXP_FAKE", "SKYPILOT_API"))}
    env.update(HOME=str(home), METTA_EXP_STATE_DIR=str(root / "newcomer-state"))
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "metta_exp", "--config-dir", str(conf.parent), "+experiment=x"],
                            env=env, cwd=root, capture_output=True, text=True, timeout=300)  # fmt: skip
    elapsed = time.perf_counter() - start
    written = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
    print(
        f"newcomer without SkyPilot set-up: exit {result.returncode} after {elapsed:.2f} s, "
        f"files written under HOME: {json.dumps(written)}\n  {result.stderr.strip()}"
    )


if __name__ == "__main__":
    main()
