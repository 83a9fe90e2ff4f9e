"""How long a 100-point sweep of a trivial job takes to be submitted, beside Hydra's own launchers.

    .venv/bin/python bench/bench_sweep.py [--points 100] [--repeat 5] [--bytecode cached,fresh]
                                          [--only metta,metta_app,plugin,grid,hydra] [--realtime] [--quick]

Every figure is a whole-process median of ``--repeat`` runs, from the command's start, in each bytecode
mode (where the time goes: until the group was recorded in the store, until its runner claimed the first
job, until every job had started; and CPU seconds, steadier than wall time on a shared machine: the
command's own, and its group's runner's until every job had started, read from ``/proc``):

- ``cached``: Python reads and writes its bytecode caches (``PYTHONDONTWRITEBYTECODE`` dropped), after
  one unmeasured warm-up run, as on a user's machine where imports are cached;
- ``fresh``: ``PYTHONDONTWRITEBYTECODE=1`` and an empty bytecode cache for everything outside the
  standard library (``PYTHONPYCACHEPREFIX`` names a directory that holds only the standard library's
  caches), so every process compiles metta-exp's, Hydra's and every other package's modules afresh, as
  on a machine that sets ``PYTHONDONTWRITEBYTECODE=1``.

The commands (``--only`` picks among them):

- ``metta``: ``metta-exp -m +experiment=bench x=range(0,N) wait=false``: until every job of the group
  has started (its attempt has a start time in the store), and until the command returned; the trivial
  job is ``true`` (no work: what is measured is submission);
- ``metta_app``: the same with the tiny Hydra app below as the job (the job Hydra's launchers run), whose
  own start-up competes with the submission, and with the command's return, for the CPUs;
- ``plugin``: the tiny ``@hydra.main`` app with ``-m hydra/launcher=metta_exp`` (``wait=false``) and
  Hydra's BasicSweeper, which composes every point's config in the app's process before the launcher
  gets them (the time it took is printed from its own debug line);
- ``grid``: the same app with ``hydra/sweeper=metta_exp_grid`` too (when that sweeper is installed): the
  same points, launched without composing each in the app's process;
- ``hydra``: the same app with ``hydra/launcher=joblib`` and with Hydra's basic launcher, until the
  command returned (they return when every job has run; there is no earlier "submitted" moment).

Everything runs in a temporary directory; every group is waited for, so no process is left behind. The
store is read with ``sqlite3`` alone, so the script also measures older metta-exp versions.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

PY = sys.executable

TINY_APP = """\
import hydra
from omegaconf import DictConfig


@hydra.main(version_base=None, config_path=None, config_name=None)
def main(cfg: DictConfig) -> None:
    pass


if __name__ == "__main__":
    main()
"""

Env = dict[str, str]
Sample = tuple[float, float] | float


def cached_env() -> Env:
    return {
        k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")
    }


def stdlib_only_cache(prefix: Path) -> Path:
    """A ``PYTHONPYCACHEPREFIX`` tree holding the standard library's bytecode caches and nothing else
    (hard links, else copies): with it, only modules outside the standard library compile afresh."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for cached in stdlib.rglob("__pycache__/*.cpython-*.pyc"):
        if ".opt-" in cached.name:
            continue
        source_dir = cached.parent.parent
        target = prefix / source_dir.relative_to(source_dir.anchor) / cached.name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(cached, target)
        except OSError:
            shutil.copy2(cached, target)
    return prefix


def environment(base: Env, state_dir: Path) -> Env:
    return {**base, "METTA_EXP_STATE_DIR": str(state_dir), "WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "1"}


def write_experiment(conf: Path, name: str, command: list[str]) -> None:
    (conf / "experiment").mkdir(parents=True, exist_ok=True)
    quoted = ", ".join(f'"{part}"' for part in command)
    body = f"""\
        # @package _global_
        command: [{quoted}]
        runs: [job]
        remote: false
        gpus: 0
        generate_notebook: false
        """
    (conf / "experiment" / f"{name}.yaml").write_text(textwrap.dedent(body))


def newest_group(db: sqlite3.Connection) -> str | None:
    row = db.execute("SELECT name FROM groups ORDER BY created_at DESC LIMIT 1").fetchone()
    return row[0] if row else None


def all_started(
    state_dir: Path, expected: int, failed: Callable[[], None], timeout: float = 300.0
) -> tuple[str, float, float | None]:
    """Wait for the newest group to have ``expected`` started jobs (``failed()`` raises if the command
    failed meanwhile); its name, the last start time and its runner's CPU seconds by then (None when it
    could not be read)."""
    deadline = time.time() + timeout
    runner_cpu: float | None = None
    while not (state_dir / "jobs.sqlite").exists():
        failed()
        time.sleep(0.02)
    db = sqlite3.connect(state_dir / "jobs.sqlite", timeout=30)
    try:
        while time.time() < deadline:
            failed()
            try:
                group = newest_group(db)
            except sqlite3.OperationalError:  # the store is being created
                group = None
            if group is not None:
                jobs, started, last = db.execute(
                    "SELECT count(*), count(a.started_at), max(a.started_at) FROM jobs j "
                    "LEFT JOIN attempts a ON a.job_id = j.id AND a.number = j.attempts WHERE j.group_name = ?",
                    (group,),
                ).fetchone()
                pid = db.execute("SELECT runner_pid FROM groups WHERE name = ?", (group,)).fetchone()[0]
                runner_cpu = cpu_seconds(pid) if pid else None
                if jobs == expected and started == expected:
                    return group, float(last), runner_cpu
            time.sleep(0.02)
    finally:
        db.close()
    raise RuntimeError(f"the jobs of the sweep did not all start within {timeout} s")


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """A live process's CPU seconds so far (user + system, from ``/proc/PID/stat``), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def wait_ended(state_dir: Path, group: str, timeout: float = 600.0) -> None:
    deadline = time.time() + timeout
    db = sqlite3.connect(state_dir / "jobs.sqlite", timeout=30)
    try:
        while db.execute("SELECT ended_at FROM groups WHERE name = ?", (group,)).fetchone()[0] is None:
            if time.time() > deadline:
                raise RuntimeError(f"group {group} did not end within {timeout} s")
            time.sleep(0.1)
    finally:
        db.close()


CPU_USED: list[float] = []  # each command's own CPU seconds (user + system), as run() measured them


def run(argv: list[str], cwd: Path, env: Env) -> tuple[float, str]:
    """Seconds the command took and its output; raises if it failed. Its CPU seconds (its own and its
    waited-for children's, not the detached runner's) go to ``CPU_USED``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.time()
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    took = time.time() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU_USED.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    output = f"{result.stdout}\n{result.stderr}"
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}):\n{output}")
    return took, output


PHASES: list[tuple[float, float]] = []  # per run: (group recorded, first job claimed by its runner)
RUNNER_CPU: list[float] = []  # per run: the runner's CPU seconds until every job had started


def phases(state_dir: Path, group: str, start: float) -> tuple[float, float]:
    """Seconds from the command's start until the group was recorded and until its runner claimed the
    first job, from the store's events."""
    db = sqlite3.connect(state_dir / "jobs.sqlite", timeout=30)
    try:
        created = db.execute("SELECT min(at) FROM events WHERE group_name = ? AND kind = 'created'", (group,))
        claimed = db.execute(
            "SELECT min(at) FROM events WHERE group_name = ? AND kind = 'status' AND new_status = 'launching'",
            (group,),
        )
        return created.fetchone()[0] - start, claimed.fetchone()[0] - start
    finally:
        db.close()


def metta_submit(argv: list[str], work: Path, base: Env, points: int) -> tuple[float, float]:
    """(seconds until every job started, seconds until the command returned) for one fresh state dir;
    where the time went goes to ``PHASES``. With ``--realtime`` the command and everything it starts
    run real-time until every job has started, then are scheduled as usual again."""
    state = Path(tempfile.mkdtemp(prefix="state-", dir=work))
    prefix = ["chrt", "--fifo", str(COMMAND_PRIORITY)] if REALTIME else []
    with tempfile.TemporaryFile(dir=work) as output:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.time()
        proc = subprocess.Popen(
            [*prefix, *argv], cwd=work, env=environment(base, state), stdout=output, stderr=output
        )

        def failed() -> None:
            if proc.poll() not in (None, 0):
                output.seek(0)
                raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{output.read().decode()}")

        try:
            group, last_start, runner_cpu = all_started(state, points, failed)
        finally:
            if REALTIME:
                usual_scheduling(str(work))
        proc.wait(timeout=900)
        returned = time.time() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        failed()
    CPU_USED.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    PHASES.append(phases(state, group, start))
    if runner_cpu is not None:
        RUNNER_CPU.append(runner_cpu)
    wait_ended(state, group)
    return last_start - start, returned


# --realtime: a quiet machine on a shared one. The commands that submit (and what they start: the runner,
# the jobs) run SCHED_FIFO, ahead of every other process, until every job has started; this script polls
# the store at a higher priority, then returns them to the usual scheduling (so the jobs' own work, which
# is not measured, takes no CPU from others). Needs CAP_SYS_NICE (root).
REALTIME = False
COMMAND_PRIORITY = 1


def usual_scheduling(marker: str) -> None:
    """Every real-time process started from this benchmark (its environment names ``marker``, the
    benchmark's directory, as METTA_EXP_STATE_DIR) back to the usual scheduling."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        try:
            if os.sched_getscheduler(pid) != os.SCHED_FIFO:
                continue
            if marker.encode() not in Path(f"/proc/{pid}/environ").read_bytes():
                continue
            os.sched_setscheduler(pid, os.SCHED_OTHER, os.sched_param(0))
        except OSError:  # it ended meanwhile
            continue


def median(samples: list[float]) -> str:
    return f"{statistics.median(samples):6.2f} s" + (f"  (runs: {', '.join(f'{s:.2f}' for s in samples)})")


QUICK = False  # --quick: every command once, without the warm-up (a smoke run: the figures mean nothing)


def measure(label: str, repeat: int, once: Callable[[], Sample]) -> None:
    if not QUICK:
        once()  # warm-up: bytecode caches (when written), page cache
    CPU_USED.clear()
    PHASES.clear()
    RUNNER_CPU.clear()
    samples = [once() for _ in range(repeat)]
    cpu = CPU_USED[:]
    print(f"  {label}")
    if isinstance(samples[0], tuple):
        print(f"      group recorded     {median([p[0] for p in PHASES])}")
        print(f"      first job claimed  {median([p[1] for p in PHASES])}")
        print(f"      all jobs started   {median([s[0] for s in samples])}")  # type: ignore[index]
        print(f"      command returned   {median([s[1] for s in samples])}")  # type: ignore[index]
    else:
        print(f"      command returned   {median(samples)}")  # type: ignore[arg-type]
    print(f"      command's CPU      {median(cpu)}   (user + system)")
    if RUNNER_CPU:
        print(f"      runner's CPU       {median(RUNNER_CPU)}   (until every job had started)")
    sys.stdout.flush()


VALIDATED = re.compile(r"Validated configs of (\d+) jobs in ([\d.]+) seconds")


def composed_points(app: Path, sweep: str, work: Path, base: Env) -> str:
    """What Hydra's BasicSweeper says it spent composing every point (its debug line), once."""
    state = Path(tempfile.mkdtemp(prefix="state-", dir=work))
    argv = [PY, str(app), "-m", "hydra/launcher=metta_exp", "hydra.launcher.wait=false"]
    argv += [
        "hydra.launcher.generate_notebook=false",
        "hydra.verbose=hydra._internal.core_plugins",
        f"+{sweep}",
    ]
    _, output = run(argv, work, environment(base, state))
    db = sqlite3.connect(state / "jobs.sqlite")
    try:
        group = newest_group(db)
    finally:
        db.close()
    if group is not None:
        wait_ended(state, group)
    found = VALIDATED.search(output)
    return f"{found.group(2)} s for {found.group(1)} points" if found else "(no debug line)"


def has_grid_sweeper() -> bool:
    try:
        import hydra_plugins.metta_exp_sweeper.config as config
    except ImportError:
        return False
    return hasattr(config, "MettaExpGridSweeperConf")


def bench_mode(mode: str, base: Env, args: argparse.Namespace, work: Path, only: set[str]) -> None:
    n = args.points
    app = work / "tiny_app.py"
    conf = work / "conf"
    sweep = f"x=range(0,{n})"
    metta = [PY, "-m", "metta_exp", "-m", "--config-dir", str(conf)]
    print(f"bytecode {mode}:")
    if "metta" in only:
        measure(
            f"metta-exp -m +experiment=bench '{sweep}' wait=false   (job: true)",
            args.repeat,
            lambda: metta_submit([*metta, "+experiment=bench", sweep, "wait=false"], work, base, n),
        )
    if "metta_app" in only:
        measure(
            f"metta-exp -m +experiment=bench_app '{sweep}' wait=false   (job: the tiny Hydra app)",
            args.repeat,
            lambda: metta_submit([*metta, "+experiment=bench_app", sweep, "wait=false"], work, base, n),
        )
    plugin = [PY, str(app), "-m", "hydra/launcher=metta_exp", "hydra.launcher.wait=false"]
    plugin += ["hydra.launcher.generate_notebook=false", f"+{sweep}"]
    if "plugin" in only:
        measure(
            f"python tiny_app.py -m hydra/launcher=metta_exp '+{sweep}'   (BasicSweeper; wait=false)",
            args.repeat,
            lambda: metta_submit(plugin, work, base, n),
        )
        print(f"      of which BasicSweeper composing each point: {composed_points(app, sweep, work, base)}")
    if "grid" in only and has_grid_sweeper():
        grid = [*plugin[:3], "hydra/sweeper=metta_exp_grid", *plugin[3:]]
        measure(
            f"python tiny_app.py -m hydra/launcher=metta_exp hydra/sweeper=metta_exp_grid '+{sweep}'   (wait=false)",
            args.repeat,
            lambda: metta_submit(grid, work, base, n),
        )
    if "hydra" in only:
        env = environment(base, work / "unused")
        joblib = [PY, str(app), "-m", "hydra/launcher=joblib", f"+{sweep}"]
        label = f"python tiny_app.py -m hydra/launcher=joblib '+{sweep}'"
        if not QUICK:  # its worker pool's start-up is most of a quick run
            measure(label, args.repeat, lambda: run(joblib, work, env)[0])
        basic = [PY, str(app), "-m", f"+{sweep}"]
        label = f"python tiny_app.py -m '+{sweep}'   (Hydra's basic launcher)"
        measure(label, 1, lambda: run(basic, work, env)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--bytecode", default="cached,fresh", help="cached, fresh or both (default)")
    parser.add_argument(
        "--only", default="metta,metta_app,plugin,grid,hydra", help="which commands (default: all)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 3 points, each command once (not joblib's)"
    )
    parser.add_argument(
        "--realtime",
        action="store_true",
        help="emulate a quiet machine on a busy one: the metta-exp commands, their runners and jobs run "
        "real-time until every job started (root only; Hydra's own launchers run as usual)",
    )
    args = parser.parse_args()
    if args.realtime:
        global REALTIME
        REALTIME = True
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(COMMAND_PRIORITY + 1))
    if args.quick:
        global QUICK
        QUICK, args.points, args.repeat, args.bytecode = True, 3, 1, "cached"
    only = set(args.only.split(","))
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        work = Path(tmp)
        app = work / "tiny_app.py"
        app.write_text(TINY_APP)
        conf = work / "conf"
        write_experiment(conf, "bench", ["true"])
        write_experiment(conf, "bench_app", [PY, str(app)])
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(
            f"{args.points}-point sweeps on {os.cpu_count()} CPUs (load average {load}), whole-process medians "
            f"of {args.repeat} after one warm-up run"
            + (", metta-exp's commands real-time until every job started" if REALTIME else "")
            + "\n"
        )
        for mode in args.bytecode.split(","):
            if mode == "cached":
                bench_mode(mode, cached_env(), args, work, only)
            elif mode == "fresh":
                prefix = stdlib_only_cache(work / "pycache-stdlib")
                env = {**cached_env(), "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": str(prefix)}
                bench_mode(mode, env, args, work, only)
            else:
                parser.error(f"--bytecode: {mode!r} is not cached or fresh")
            print()


if __name__ == "__main__":
    main()
