"""How fast LocalBackend starts many jobs at once.

Submits N trivial jobs (``sleep 2``) and prints: the time until ``submit`` returns, the time until one
``poll`` pass reports all of them running, the time until every wrapper has written its pid file (the
job itself is being started), the cost of one ``poll`` pass, the wrapper's memory, and the time until
all have ended. Cleans up after itself (cancels whatever is left, removes its directory).

    .venv/bin/python bench/bench_local_submit.py [--jobs 50] [--python] [--quick]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from metta_exp.backends.base import Launch
from metta_exp.backends.local import LocalBackend
from metta_exp.paths import AttemptFiles
from metta_exp.records import JobSpec
from metta_exp.status import JobStatus


def make_launches(state_dir: Path, count: int, use_python: bool) -> list[Launch]:
    if use_python:
        command: tuple[str, ...] = (sys.executable, "-c", "import time; time.sleep(2)")
    else:
        command = (shutil.which("sleep") or "/bin/sleep", "2")
    launches = []
    for index in range(count):
        run = f"r{index:03d}"
        run_dir = state_dir / "runs" / "bench" / run
        spec = JobSpec(
            group="bench", run=run, args=(), env={"METTA_EXP_RUN_DIR": str(run_dir)}, gpus=0,
            run_dir=str(run_dir), wandb_run_id="0" * 16, command=command,
        )  # fmt: skip
        launches.append(Launch(spec=spec, attempt=1, log_path=run_dir / "attempt-1.log"))
    return launches


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0) -> float:
    start = time.perf_counter()
    while not predicate():
        if time.perf_counter() - start > timeout:
            raise SystemExit("timed out")
        time.sleep(0.001)
    return time.perf_counter() - start


def wrapper_rss_kb(handle: str) -> int | None:
    try:
        status = Path(f"/proc/{handle.split(':')[0]}/status").read_text()
    except OSError:
        return None
    line = next((line for line in status.splitlines() if line.startswith("VmRSS:")), None)
    return int(line.split()[1]) if line else None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--python", action="store_true", help="jobs are python -c sleep(2), not /bin/sleep 2")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: tiny sizes, once (the test suite runs it)"
    )
    args = parser.parse_args()
    if args.quick:
        args.jobs = 3

    state_dir = Path(tempfile.mkdtemp(prefix="bench local submit "))
    backend = LocalBackend(grace_s=1.0)
    launches = make_launches(state_dir, args.jobs, args.python)
    submitted: list[Launch] = []
    try:
        start = time.perf_counter()
        handles = backend.submit(launches)
        t_submit = time.perf_counter() - start
        submitted = [Launch(lc.spec, lc.attempt, lc.log_path, handle=handles[lc.name]) for lc in launches]

        t_running = t_submit + wait_for(
            lambda: all(o.status is JobStatus.RUNNING for o in backend.poll(submitted).values())
        )
        pid_files = [AttemptFiles.of(lc.log_path).pid for lc in launches]
        t_pid_files = t_submit + wait_for(lambda: all(path.exists() for path in pid_files))
        rss = wrapper_rss_kb(submitted[0].handle or "")

        passes = 20
        poll_start = time.perf_counter()
        for _ in range(passes):
            backend.poll(submitted)
        t_poll = (time.perf_counter() - poll_start) / passes

        t_ended = t_submit + wait_for(
            lambda: all(o.status is JobStatus.SUCCEEDED for o in backend.poll(submitted).values())
        )
    finally:
        backend.cancel(submitted)
        shutil.rmtree(state_dir, ignore_errors=True)

    kind = "python -c 'time.sleep(2)'" if args.python else "/bin/sleep 2"
    count = args.jobs
    print(f"{count} jobs of {kind}")
    per_job = t_submit * 1000 / count
    print(f"submit returned after          {t_submit * 1000:8.1f} ms  ({per_job:.2f} ms per job)")
    print(f"poll() saw all running after   {t_running * 1000:8.1f} ms")
    print(f"every pid file written after   {t_pid_files * 1000:8.1f} ms")
    print(
        f"one poll() pass over {count} jobs  {t_poll * 1000:8.2f} ms  ({t_poll * 1e6 / count:.0f} us per job)"
    )
    print(f"wrapper resident memory        {rss if rss is not None else '?':>8} kB")
    print(f"all succeeded after            {t_ended * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
