"""History at scale: the job commands on a store of a year of experiments, 1,000,000 jobs in 10,000 groups.

The store is built by direct SQL inserts through the store's own schema (the migrations a launch applies),
once, and cached under /tmp (``--cache DIR``; rebuilt when the schema changes): a group every 53 minutes
over a year, of 20, 50, 100, 130 or 200 runs, each run with its spec, one attempt (every 25th job two: a
failure then a retry) that ran with its final progress and metric values kept, three status events, a
dependency on the group's first run in one group of ten, GPUs (0, 1, 4 or 8; a tenth of the groups on
SkyPilot, two nodes); the newest three groups still running. Figures are whole-process wall times of the
command as a user runs it (``python -m metta_exp ...``), medians of ``--repeat`` runs, each measured twice:
compiling every import afresh (``PYTHONDONTWRITEBYTECODE=1``, as this machine's shells set it) and with
bytecode cached (the variable unset, after a warm run):

- ``job list`` (its default window, the newest 50), ``job runs --since 7d`` (and with a ``--sort``, a
  ``--where``, ``--json --all``), ``job show`` of a 200-job group;
- launching a 20-job local group (``wait=false``: until the command returns, its runner having submitted
  the jobs) on an empty store and on a copy of the big one, in turn;
- ``job rm --older-than T --force`` of the 1,000 oldest groups (about 100,000 jobs, each with a run
  directory holding a log: 200,000 files), on a copy, three slices in turn.

    uv run python bench/bench_history.py [--repeat 7] [--cache /tmp/metta-exp-bench-history] [--quick]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from metta_exp.config import Experiment, SkyPilotSettings
from metta_exp.records import GroupConfig
from metta_exp.store import DB_NAME, MIGRATIONS, GroupQuery, JobStore

ROOT = Path(__file__).resolve().parent.parent
GROUPS = 10_000
SIZES = (20, 50, 100, 130, 200)  # runs per group, in turn: 100 on average, 1,000,000 in all
YEAR = 365 * 86400.0
BUILDER = "3"  # bump when the store built here changes
LRS = ("0.0003", "0.001", "0.003", "0.01", "0.03", "0.1")
QUICK = False  # --quick: a store of 30 groups, every command once, compiled only (a smoke run)
LAUNCH_JOBS = 20
SLICE = 1000  # groups removed per job rm round


def cache_path(root: Path) -> Path:
    key = hashlib.sha256(json.dumps([MIGRATIONS, BUILDER, GROUPS, SIZES]).encode()).hexdigest()[:12]
    return root / key / DB_NAME


def total_jobs() -> int:
    return sum(SIZES[i % len(SIZES)] for i in range(GROUPS))


def group_name(i: int) -> str:
    return f"g{i:05d}-{('lr_sweep', 'arena', 'baseline', 'ablation')[i % 4]}"


def build(path: Path, now: float) -> None:
    """The store at ``path``: its schema from a real ``JobStore``, then every row inserted directly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    JobStore.open(path.parent).close()  # the schema: every migration, as a launch applies them
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous = OFF")
    db.execute("BEGIN")
    job_id = 0
    for i in range(GROUPS):
        name = group_name(i)
        created = now - (GROUPS - i) * YEAR / GROUPS
        size = SIZES[i % len(SIZES)]
        gpus = (0, 1, 4, 8)[i % 4]
        sky = i % 10 == 5
        runs = [f"lr{LRS[r % len(LRS)]}-s{r:03d}" for r in range(size)]
        exp = Experiment(
            module="arena.train",
            runs=runs,
            args=["trainer.total_timesteps=150000"],
            args_per_run={run: [f"trainer.learning_rate={run[2:].split('-')[0]}"] for run in runs},
            gpus=gpus,
            remote=sky,
            skypilot=SkyPilotSettings(num_nodes=2 if sky else 1),
            generate_notebook=False,
        )
        active = i >= GROUPS - 3
        ended = None if active else created + 3600 + 1800
        config = GroupConfig(exp, (), "/home/me/proj", f"{i:016x}")
        db.execute(
            "INSERT INTO groups (name, experiment, backend, config, created_at, ended_at) VALUES (?, ?, ?, ?, ?, ?)",
            (
                name,
                name.split("-", 1)[1],
                "skypilot" if sky else "local",
                json.dumps(config.to_dict()),
                created,
                ended,
            ),
        )
        db.execute("INSERT INTO events (group_name, at, kind, detail) VALUES (?, ?, 'created', ?)",
                   (name, created, f"{size} jobs"))  # fmt: skip
        first = job_id + 1
        jobs, attempts, events, deps = [], [], [], []
        for position, run in enumerate(runs):
            job_id += 1
            run_dir = f"/home/me/proj/job_state/runs/{name}/{run}"
            spec = {
                "group": name, "run": run, "module": "arena.train", "command": None,
                "args": list(exp.args) + list(exp.args_per_run[run]),
                "env": {"METTA_EXP_GROUP": name, "METTA_EXP_RUN": run, "METTA_EXP_RUN_DIR": run_dir,
                        "WANDB_RUN_GROUP": name, "WANDB_NAME": run, "WANDB_RUN_ID": f"{job_id:016x}",
                        "PYTHONUNBUFFERED": "1"},
                "gpus": gpus, "run_dir": run_dir, "wandb_run_id": f"{job_id:016x}",
                "depends_on": [runs[0]] if i % 10 == 3 and position else [], "labels": {},
            }  # fmt: skip
            if active:
                status = "running" if position < size // 2 else "pending"
            else:
                status = "failed" if job_id % 10 == 0 else "cancelled" if job_id % 20 == 1 else "succeeded"
            tries = 0 if status == "pending" else 2 if job_id % 25 == 0 else 1
            jobs.append((job_id, name, run, position, status, json.dumps(spec), tries,
                         None if status in ("pending", "running") else int(status == "failed"),
                         created, run_dir))  # fmt: skip
            for number in range(1, tries + 1):
                start = created + 60 + number * 900
                end = None if status == "running" else start + 600 + (job_id % 7) * 60
                state = "failed" if number < tries else status
                reward = round((job_id % 97) * 5.1, 2)
                metrics = (
                    None
                    if end is None
                    else json.dumps(
                        {"_step": 150000, "overview/sps": 9000.0 + job_id % 3000, "overview/reward": reward}
                    )
                )
                attempts.append((job_id, number, state, f"{job_id}:{number}", "", start - 30, start, end,
                                 None if end is None else int(state == "failed"), f"{run_dir}/attempt-{number}.log",
                                 None if end is None else 1.0, metrics, gpus * (2 if sky else 1)))  # fmt: skip
            if tries:
                events += [(name, run, created + 60, "status", "pending", "launching"),
                           (name, run, created + 90, "status", "launching", "running")]  # fmt: skip
            if status not in ("pending", "running"):
                events.append((name, run, created + 1800, "status", "running", status))
            if spec["depends_on"]:
                deps.append((job_id, first))
        db.executemany(
            "INSERT INTO jobs (id, group_name, run, position, status, spec, attempts, exit_code, queued_at, run_dir) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            jobs,
        )
        db.executemany(
            "INSERT INTO attempts (job_id, number, status, handle, gpu_ids, claimed_at, started_at, ended_at, "
            "exit_code, log_path, final_progress, final_metrics, gpus) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            attempts,
        )
        db.executemany(
            "INSERT INTO events (group_name, run, at, kind, old_status, new_status) VALUES (?, ?, ?, ?, ?, ?)",
            events,
        )
        db.executemany("INSERT INTO deps VALUES (?, ?)", deps)
        if ended is not None:
            db.execute("INSERT INTO events (group_name, at, kind) VALUES (?, ?, 'ended')", (name, ended))
        if i % 1000 == 999:
            print(f"  {i + 1:,} groups, {job_id:,} jobs", file=sys.stderr, flush=True)
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def the_store(cache: Path) -> tuple[Path, float]:
    """The cached big store (built when missing) and the time its history ends at."""
    path = cache_path(cache)
    stamp = path.with_name("built_at")
    if not path.exists() or not stamp.exists():
        if path.parent.exists():
            shutil.rmtree(path.parent)
        print(f"Building the store of {total_jobs():,} jobs in {path} (once; cached)...", file=sys.stderr)
        start = time.perf_counter()
        now = time.time()
        build(path, now)
        stamp.write_text(repr(now))
        print(
            f"  built in {time.perf_counter() - start:.0f} s, {path.stat().st_size / 2**30:.2f} GiB",
            file=sys.stderr,
        )
    return path, float(stamp.read_text())


def copy_of(store: Path, work: Path) -> Path:
    """A working copy of the store's directory (what a benchmark that writes may change)."""
    target = work / "copy"
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    subprocess.run(["cp", "--reflink=auto", str(store), str(target / DB_NAME)], check=True)
    return target


def env_for(state: Path, cached: bool) -> dict[str, str]:
    env = dict(os.environ, METTA_EXP_STATE_DIR=str(state))
    if cached:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def timed(
    argv: list[str], env: dict[str, str], cwd: Path | None = None, codes: tuple[int, ...] = (0, 1)
) -> float:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "metta_exp", *argv], env=env, cwd=cwd,
                            capture_output=True, text=True)  # fmt: skip
    took = time.perf_counter() - start
    if result.returncode not in codes:
        raise SystemExit(
            f"metta-exp {' '.join(argv)} failed ({result.returncode}): {result.stdout}{result.stderr}"
        )
    return took


def cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def median_of(argv: list[str], env: dict[str, str], repeat: int) -> tuple[float, float]:
    """Median wall and CPU (user + system) seconds of the command. The CPU time does not grow when other
    processes share the machine: on a busy one it is the better guide to the wall time on an idle one."""
    if not QUICK:
        timed(argv, env)  # warm: the page cache, and with bytecode cached, the bytecode
    walls, cpus = [], []
    for _ in range(repeat):
        before = cpu_of_children()
        walls.append(timed(argv, env))
        cpus.append(cpu_of_children() - before)
    return statistics.median(walls), statistics.median(cpus)


def clear_bytecode() -> None:
    """Remove metta-exp's cached bytecode: with ``PYTHONDONTWRITEBYTECODE=1`` every run then compiles its
    modules afresh (the standard library's stays cached, as an installed Python has it)."""
    for cache in (ROOT / "metta_exp").rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)


def figures(wall_cpu: tuple[float, ...]) -> str:
    return f"{wall_cpu[0]:6.3f} / {wall_cpu[1]:5.3f}"


def days_before(now: float, days: float) -> str:
    """``--since`` for ``days`` days of the store's history (it ended at ``now``, maybe hours ago)."""
    return f"{(time.time() - (now - days * 86400)) / 86400:.5f}d"


def bench_reads(state: Path, now: float, repeat: int) -> None:
    big = group_name(next(i for i in range(GROUPS - 10, 0, -1) if SIZES[i % len(SIZES)] == 200))
    week = days_before(now, 7)
    commands = {
        "job list": (["job", "list"], 0.15),
        "job runs --since 7d": (["job", "runs", "--since", week], 0.3),
        f"job show {big} (200 jobs)": (["job", "show", big], 0.1),
        "job runs --since 7d --sort reward": (["job", "runs", "--since", week, "--sort", "reward"], None),
        "job runs --since 7d --where lr>=0.01": (
            ["job", "runs", "--since", week, "--where", "trainer.learning_rate>=0.01"], None),
        "job runs --since 7d --json --all": (["job", "runs", "--since", week, "--json", "--all"], None),
        "job list --all --json": (["job", "list", "--all", "--json"], None),
        "job --help (for scale)": (["job", "--help"], None),
    }  # fmt: skip
    print(f"Reading (whole command, median of {repeat}: wall / CPU seconds; target in brackets):")
    print(f"  {'command':<42} {'compiled':>15} {'bytecode cached':>17}")
    for label, (argv, target) in commands.items():
        if not QUICK:  # a smoke run leaves the checkout as it found it
            clear_bytecode()  # compiled: metta-exp's modules from source, every run (as a fresh checkout has them)
        fresh = median_of(argv, env_for(state, cached=False), repeat)
        cached = figures(median_of(argv, env_for(state, cached=True), repeat)) if not QUICK else f"{'-':>15}"
        goal = f"  [<= {target:.2f} s]" if target else ""
        print(f"  {label:<42} {figures(fresh)}   {cached}{goal}", flush=True)


LAUNCH = """# @package _global_
# A local group of jobs that end at once.
command: ["true"]
runs: [{runs}]
args_per_run: {{{seeds}}}
gpus: 0
remote: false
wait: false
generate_notebook: false
"""


def launch_once(state: Path, conf: Path, group: str, cached: bool) -> tuple[float, float]:
    """Wall and CPU seconds of the launch command (its runner, a process of its own, not counted)."""
    state.parent.mkdir(parents=True, exist_ok=True)
    before = cpu_of_children()
    took = timed(["--config-dir", str(conf), "+experiment=bench_launch", f"group={group}"], env_for(state, cached),
                 cwd=state.parent)  # fmt: skip
    cpu = cpu_of_children()
    with JobStore.open(state, create=False, readonly=True) as store:  # let its runner end: no overlap
        deadline = time.time() + 60
        while store.group(group).ended_at is None and time.time() < deadline:
            time.sleep(0.1)
    return took, cpu - before


def bench_launch(big: Path, work: Path, repeat: int) -> None:
    conf = work / "conf" / "experiment"
    conf.mkdir(parents=True, exist_ok=True)
    runs = [f"r{i:02d}" for i in range(LAUNCH_JOBS)]
    seeds = ", ".join(f"{run}: [seed={i}]" for i, run in enumerate(runs))
    (conf / "bench_launch.yaml").write_text(LAUNCH.format(runs=", ".join(runs), seeds=seeds))
    empty = work / "empty" / "job_state"
    print(
        f"Launching a {LAUNCH_JOBS}-job group (wait=false, until the command returns; median of {repeat}, in turn):"
    )
    for cached in (False, True) if not QUICK else (False,):
        if empty.exists():
            shutil.rmtree(empty)
        empty.parent.mkdir(parents=True, exist_ok=True)
        if not QUICK and not cached:
            clear_bytecode()  # the reads' cached runs wrote it, and Python reads it whatever the variable says
        if not QUICK:
            launch_once(empty, conf.parent, f"warm-{int(cached)}", cached)
            launch_once(big, conf.parent, f"warm-{int(cached)}", cached)
        on_empty, on_big = [], []
        for n in range(repeat):
            on_empty.append(launch_once(empty, conf.parent, f"launch-{int(cached)}-{n}", cached))
            on_big.append(launch_once(big, conf.parent, f"launch-{int(cached)}-{n}", cached))
        a, b = (tuple(statistics.median(t[k] for t in times) for k in (0, 1)) for times in (on_empty, on_big))
        kind = "cached" if cached else "compiled"
        print(f"  {kind:<9} empty store {figures(a)} s   {total_jobs():,} jobs {figures(b)} s   "
              f"ratio wall {b[0] / a[0]:4.2f} CPU {b[1] / a[1]:4.2f}  [<= 1.10]", flush=True)  # fmt: skip


def oldest(n_from: int, n_to: int, now: float) -> float:
    """The ``--older-than`` age that selects groups ``n_from`` .. ``n_to - 1`` once the older ones are gone."""
    boundary = now - (GROUPS - n_to) * YEAR / GROUPS - 1
    return now - boundary


def make_files(state: Path, first: int, last: int) -> int:
    files = 0
    for i in range(first, last):
        name = group_name(i)
        root = state / "runs" / name
        for r in range(SIZES[i % len(SIZES)]):
            run_dir = root / f"lr{LRS[r % len(LRS)]}-s{r:03d}"
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "attempt-1.log").write_bytes(b"[metta-exp] progress step=1 total=1\n" * 100)
            files += 2
        (root / "runner.log").write_text("runner\n")
    return files


def bench_rm(big: Path, now: float, rounds: int) -> None:
    print(f"Removing the {SLICE:,} oldest groups (job rm --older-than T --force) on a copy in {big.parent.parent}, "
          f"{rounds} slice{'s' if rounds > 1 else ''} in turn (wall / CPU seconds):")  # fmt: skip
    for k in range(rounds):
        first, last = k * SLICE, (k + 1) * SLICE
        files = make_files(big, first, last)
        jobs = sum(SIZES[i % len(SIZES)] for i in range(first, last))
        age = oldest(first, last, now) + (time.time() - now)
        argv = ["job", "rm", "--older-than", f"{age:.0f}s", "--force"]
        before = cpu_of_children()
        took = timed(argv, env_for(big, cached=True), big, (0,))
        cpu = cpu_of_children() - before
        with JobStore.open(big, create=False, readonly=True) as store:
            left = store.find_groups(GroupQuery(until=now - (GROUPS - last) * YEAR / GROUPS))[1]
        assert left == 0, f"{left} groups of the slice left"
        kept = [group_name(i) for i in range(first, last) if (big / "runs" / group_name(i)).exists()]
        assert not kept, f"{len(kept)} run directories of the slice left: {kept[:5]}"
        print(f"  groups {first:>5}-{last - 1:<5} ({jobs:,} jobs, {files:,} files and directories)  "
              f"{figures((took, cpu))} s  [<= 5 s]", flush=True)  # fmt: skip


def rm_phases(big: Path, now: float, first: int, last: int) -> None:
    """One more slice removed in this process, the real ``plan`` and ``remove`` with their steps timed:
    finding the groups, measuring their disk, the store transaction, moving the directories away,
    deleting them."""
    from metta_exp.history import remove as rm
    from metta_exp.store import history as store_history

    spent: dict[str, tuple[float, float]] = {}

    def clocks() -> tuple[float, float]:
        return time.perf_counter(), time.process_time()  # the process's CPU: every thread's

    def since(start: tuple[float, float], then: tuple[float, float] = (0.0, 0.0)) -> tuple[float, float]:
        now = clocks()
        return now[0] - start[0] + then[0], now[1] - start[1] + then[1]

    def timing(owner: object, name: str, label: str) -> None:
        real = getattr(owner, name)

        def wrapper(*args: object, **kwargs: object) -> object:
            start = clocks()
            try:
                return real(*args, **kwargs)
            finally:
                spent[label] = since(start, spent.get(label, (0.0, 0.0)))

        setattr(owner, name, wrapper)

    timing(rm, "disk_usage_each", "measuring the disk")
    timing(store_history.History, "remove_groups", "the store transaction")
    timing(rm, "_move", "moving the directories away")
    timing(rm, "delete", "deleting them")
    make_files(big, first, last)
    age = oldest(first, last, now) + (time.time() - now)
    with JobStore.open(big, create=False) as store:
        start = clocks()
        removal = rm.plan(store, [], f"{age:.0f}s")
        planned = since(start)
        rm.remove(store, removal)
        total = since(start)
    disk = spent["measuring the disk"]
    print(f"  in process, groups {first}-{last - 1}: {figures(total)} s (wall / CPU), of which")
    print(f"    {'finding the groups':<30} {figures((planned[0] - disk[0], planned[1] - disk[1]))} s")
    for label, seconds in spent.items():
        print(f"    {label:<30} {figures(seconds)} s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "metta-exp-bench-history")
    parser.add_argument("--only", choices=("reads", "launch", "rm"), action="append")
    parser.add_argument(
        "--rm-dir",
        type=Path,
        default=Path(tempfile.gettempdir()),
        help="where job rm's copy of the store and its files go (/dev/shm: what metta-exp costs, not the disk; "
        "on an ext4 mounted with discard, as this machine's /, every unlink waits for the device to discard "
        "its blocks: minutes for 100,000 files, in rm -rf as in job rm)",
    )
    parser.add_argument("--rm-rounds", type=int, default=3)
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: tiny sizes, once (the test suite runs it)"
    )
    args = parser.parse_args()
    if args.quick:
        global QUICK, GROUPS, LAUNCH_JOBS, SLICE
        QUICK, GROUPS, LAUNCH_JOBS, SLICE, args.repeat, args.rm_rounds = True, 30, 3, 3, 1, 1
        args.cache = Path(tempfile.mkdtemp(prefix="bench-history-quick-"))
    try:
        path, now = the_store(args.cache)
        print(
            f"Store: {path} ({path.stat().st_size / 2**30:.2f} GiB; {GROUPS:,} groups, {total_jobs():,} jobs)"
        )
        only = set(args.only or ("reads", "launch", "rm"))
        if "reads" in only:
            bench_reads(path.parent, now, args.repeat)
        with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
            work = Path(tmp)
            if "launch" in only:
                bench_launch(copy_of(path, work), work, args.repeat)
        if "rm" in only:
            with tempfile.TemporaryDirectory(prefix="bench-history-rm-", dir=args.rm_dir) as tmp:
                big = copy_of(path, Path(tmp))
                bench_rm(big, now, args.rm_rounds)
                rm_phases(big, now, args.rm_rounds * SLICE, (args.rm_rounds + 1) * SLICE)
    finally:
        if QUICK:  # its small store is no cache worth keeping
            shutil.rmtree(args.cache, ignore_errors=True)


if __name__ == "__main__":
    main()
