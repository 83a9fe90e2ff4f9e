"""Grid, random, TPE and TPE with median pruning through metta-exp's runner, and a ``@hydra.main`` app's
study through ``hydra/sweeper=metta_exp``, on the synthetic training job with the same budget of
job-seconds.

    uv run python bench/bench_search.py               # full: 2 s trials, 3 study seeds (about 5 min on 2 CPUs)
    uv run python bench/bench_search.py --quick       # smoke run (the test suite's): 0.3 s trials, 2 points, one seed
    uv run python bench/bench_search.py --seeds 6 --methods random,tpe,pruned   # more seeds, no Hydra

The job is ``python -m metta_exp.examples.synthetic`` (:mod:`metta_exp.examples.synthetic`): a seeded
learning curve costing ``--seconds`` of sleep whose final reward (at most 100) peaks at learning rate
3e-3, entropy coefficient 0.01 and batch size 512, inside the space searched::

    trainer.learning_rate=tag(log, interval(1e-4, 1e-2))  trainer.entropy_coef=interval(0.001, 0.05)
    trainer.batch_size=choice(256, 512, 1024)

Methods, each a group launched by one ``metta-exp -m`` command with ``--parallel`` jobs at once:

- grid: 4 learning rates (log-spaced) x 3 entropy coefficients x 2 batch sizes (256, 1024), every axis
  spanning its search range with its endpoints; its job-seconds are the budget;
- random, TPE: ``search.n_trials`` = the grid's points; TPE + median pruning: twice as many trials
  (pruned trials are cheap), judged within the grid's budget. The study seed is ``search.seed``. TPE's
  first 10 trials are random (Optuna's startup trials), so with ``--quick``'s 8 TPE is random search;
- ``hydra/sweeper=metta_exp`` (TPE, no pruning, the grid's points as ``n_trials``, ``--parallel``
  trials at once): the same curve returned by a ``@hydra.main`` app's task function, its study one
  metta-exp search group whose objective is the return value, configured as for Hydra's Optuna
  sweeper with only the sweeper's name changed. (Hydra's own Optuna sweeper is not compared: its
  release for hydra-core 1.3 needs ``optuna<3``, and its development version fails on hydra-core 1.3.)
  Its job-seconds are the time trials spent in the task function (the job's start and its Hydra
  composition are not billed), so its wall time is the figure to compare.

Figures per method and study seed: the best objective (a trial's last ``overview/reward``, as
``search.reduce=last`` reads it) and the noise-free reward of its parameters (``true``); job-seconds
(the sum over jobs of their attempts' ``ended_at - started_at`` in the store; for Hydra, the time each
trial spent in the training function); wall time of the command; trials and pruned trials; the best
objective among trials that had ended when the method's job-seconds reached the grid's budget plus 5%
(``best@budget``: as many full trials cost a little more or less from run to run); and the job-seconds
spent when a trial first reached the grid's best objective (``to grid best``; ``-`` if none did). The
goal of issue 14: TPE with pruning reaching the grid's best with at most half its job-seconds.

Everything runs in a temporary directory with its own ``METTA_EXP_STATE_DIR``; a group still running
when the benchmark stops (an error, Ctrl+C) is killed with ``metta-exp job kill``, so no process is left.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from metta_exp.examples.synthetic import Settings, final_reward, parse_overrides

PY = sys.executable
LR, ENT, BS = "trainer.learning_rate", "trainer.entropy_coef", "trainer.batch_size"
SPACE = {
    LR: "tag(log, interval(1e-4, 1e-2))",
    ENT: "interval(0.001, 0.05)",
    BS: "choice(256, 512, 1024)",
}
OBJECTIVE = "overview/reward"
PRUNED = "tpe + median pruning"
SLACK = (
    0.05  # best@budget allows 5% more job-seconds than the grid's: trials of a run cost a little more or less
)


@dataclass(frozen=True)
class Trial:
    """One job of a method: when it ran, how it ended, its objective (None unless it completed)."""

    started: float
    ended: float
    value: float | None
    pruned: bool
    settings: Settings


@dataclass(frozen=True)
class Outcome:
    method: str
    seed: int | None
    trials: list[Trial]
    wall: float


@dataclass(frozen=True)
class Plan:
    seconds: float
    parallel: int
    grid: dict[str, list[str]]
    seeds: list[int]
    hydra_joblib: bool


# ---------------------------------------------------------------------------------------------------
# Figures (pure)


def job_seconds(trials: Sequence[Trial]) -> float:
    return sum(t.ended - t.started for t in trials)


def spent_by(trials: Sequence[Trial], moment: float) -> float:
    """Job-seconds spent by all trials up to ``moment`` (wall clock)."""
    return sum(max(0.0, min(t.ended, moment) - t.started) for t in trials)


def moment_of_budget(trials: Sequence[Trial], budget: float) -> float:
    """The wall-clock moment at which the trials had spent ``budget`` job-seconds (their last end if never)."""
    low, high = min(t.started for t in trials), max(t.ended for t in trials)
    if spent_by(trials, high) <= budget:
        return high
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if spent_by(trials, middle) < budget else (low, middle)
    return high


def best(trials: Sequence[Trial]) -> Trial | None:
    done = [t for t in trials if t.value is not None]
    return max(done, key=lambda t: t.value or 0.0) if done else None


def best_within(trials: Sequence[Trial], budget: float) -> float | None:
    """The best objective of the trials that had ended when ``budget`` job-seconds (plus ``SLACK``) were spent."""
    moment = moment_of_budget(trials, budget * (1 + SLACK))
    found = best([t for t in trials if t.ended <= moment])
    return None if found is None else found.value


def seconds_to_reach(trials: Sequence[Trial], target: float) -> float | None:
    """Job-seconds spent when the first trial with an objective >= ``target`` ended."""
    reached = [t.ended for t in trials if t.value is not None and t.value >= target]
    return spent_by(trials, min(reached)) if reached else None


def table(outcomes: Sequence[Outcome], budget: float, target: float) -> str:
    head = (
        f"{'method':<26}{'seed':>5}{'best':>8}{'true':>7}{'job-s':>8}{'wall s':>8}{'trials':>7}"
        f"{'pruned':>7}{'best@budget':>12}{'to grid best':>13}"
    )
    rows = [head, "-" * len(head)]
    for o in outcomes:
        top = best(o.trials)
        reach = seconds_to_reach(o.trials, target)
        at_budget = best_within(o.trials, budget)
        rows.append(
            f"{o.method:<26}{'-' if o.seed is None else o.seed:>5}{_f(top and top.value):>8}"
            f"{_f(top and final_reward(top.settings)):>7}{job_seconds(o.trials):>8.1f}{o.wall:>8.1f}"
            f"{len(o.trials):>7}{sum(t.pruned for t in o.trials):>7}{_f(at_budget):>12}"
            f"{'-' if reach is None else f'{reach:.1f}':>13}"
        )
    return "\n".join(rows)


def reached_in_half(o: Outcome, budget: float, target: float) -> bool:
    reach = seconds_to_reach(o.trials, target)
    return reach is not None and reach <= budget / 2


def summary(outcomes: Sequence[Outcome], budget: float, target: float) -> str:
    """Per method over its seeds: medians of best@budget, of the true reward of its best trial and of the
    job-seconds to the grid's best (never counts as infinite), and how often that took <= half the grid's."""
    head = f"{'method':<26}{'seeds':>6}{'best@budget':>12}{'true':>7}{'to grid best':>13}   <= half the grid's job-s"
    rows = [head, "-" * len(head)]
    for method in dict.fromkeys(o.method for o in outcomes if o.seed is not None):
        runs = [o for o in outcomes if o.method == method]
        at_budget = [v for o in runs if (v := best_within(o.trials, budget)) is not None]
        true = [final_reward(top.settings) for o in runs if (top := best(o.trials)) is not None]
        reach = statistics.median(r or math.inf for o in runs for r in [seconds_to_reach(o.trials, target)])
        hits = sum(reached_in_half(o, budget, target) for o in runs)
        rows.append(
            f"{method:<26}{len(runs):>6}{_f(_median(at_budget)):>12}{_f(_median(true)):>7}"
            f"{'-' if math.isinf(reach) else f'{reach:.1f}':>13}   {hits} of {len(runs)}"
        )
    return "\n".join(rows)


def verdict(outcomes: Sequence[Outcome], budget: float, target: float) -> str:
    """Whether each TPE + pruning study reached the grid's best with at most half the grid's job-seconds."""
    studies = [o for o in outcomes if o.method == PRUNED]
    hits = sum(reached_in_half(o, budget, target) for o in studies)
    lines = [
        f"The goal (issue 14): TPE + median pruning reaching the grid's best ({target:.2f}) with at most half "
        f"its job-seconds ({budget / 2:.2f}): met in {hits} of {len(studies)} studies"
    ]
    for o in studies:
        reach = seconds_to_reach(o.trials, target)
        spent = "never reached" if reach is None else f"reached after {reach:.2f} job-s"
        lines.append(
            f"  seed {o.seed}: {'met    ' if reached_in_half(o, budget, target) else 'not met'} ({spent})"
        )
    return "\n".join(lines)


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


# ---------------------------------------------------------------------------------------------------
# metta-exp


def write_experiment(conf: Path, seconds: float) -> None:
    (conf / "experiment").mkdir(parents=True, exist_ok=True)
    body = f"""\
        # @package _global_
        # The synthetic learning curve of bench/bench_search.py.
        module: metta_exp.examples.synthetic
        runs: [trial]
        args: [trainer.seconds={seconds}]
        gpus: 0
        remote: false
        generate_notebook: false
        wait: true
        """
    (conf / "experiment" / "synthetic.yaml").write_text(textwrap.dedent(body))


def environment(state_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("METTA_EXP_", "WANDB_"))}
    env.update(METTA_EXP_STATE_DIR=str(state_dir), WANDB_MODE="disabled", HYDRA_FULL_ERROR="1")
    return env


def timed(argv: Sequence[str], cwd: Path, env: dict[str, str], timeout: float = 900) -> float:
    """Seconds the command took; raises with its output if it failed."""
    start = time.time()
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return time.time() - start


def last_value(run_dir: str) -> float | None:
    from metta_exp.metrics.local import read_metrics_file
    from metta_exp.paths import RunDir

    path = RunDir.at(run_dir).metrics
    points = read_metrics_file(path, [OBJECTIVE]).get(OBJECTIVE) if path.exists() else None
    return points.values[-1] if points and points.values else None


def group_trials(state_dir: Path, group: str) -> list[Trial]:
    """Every launched job of ``group``: its attempts' times from the store, and its objective: the value
    told to the study for a search's trial, the last value in its ``metrics.jsonl`` for a grid's job."""
    from metta_exp.status import JobStatus
    from metta_exp.store import JobStore
    from metta_exp.trials import TrialState

    trials = []
    with JobStore.open(state_dir, create=False) as store:
        told = {t.run: t.value for t in store.trials(group) if t.state == TrialState.COMPLETE}
        for job in store.jobs(group):
            attempts = [a for a in store.attempts(group, job.run) if a.started_at is not None]
            if not attempts:
                continue
            ended = max(a.ended_at or a.started_at for a in attempts)
            spent = sum((a.ended_at or a.started_at) - a.started_at for a in attempts)
            done = job.status == JobStatus.SUCCEEDED
            value = told.get(job.run) if told else last_value(job.run_dir) if done else None
            trials.append(
                Trial(
                    started=ended - spent,
                    ended=ended,
                    value=value,
                    pruned=job.status == JobStatus.PRUNED,
                    settings=parse_overrides(job.spec.args),
                )
            )
    return trials


class Metta:
    """Launches groups in one temporary state dir and kills any it leaves running."""

    def __init__(self, work: Path, plan: Plan) -> None:
        self.work, self.plan = work, plan
        self.state = work / "state"
        self.conf = work / "conf"
        write_experiment(self.conf, plan.seconds)
        self.env = environment(self.state)
        self.groups: list[str] = []

    def run(self, method: str, seed: int | None, overrides: Sequence[str]) -> Outcome:
        group = f"{method.replace(' ', '').replace('+', '-')}-{len(self.groups)}"
        self.groups.append(group)
        argv = [PY, "-m", "metta_exp", "-m", "--config-dir", str(self.conf), "+experiment=synthetic"]
        wall = timed([*argv, *overrides, f"group={group}"], self.work, self.env)
        return Outcome(method, seed, group_trials(self.state, group), wall)

    def grid(self) -> Outcome:
        points = [f"{key}={','.join(values)}" for key, values in self.plan.grid.items()]
        return self.run("grid", None, [*points, f"max_parallel={self.plan.parallel}"])

    def search(self, method: str, seed: int, n_trials: int, sampler: str, pruner: str) -> Outcome:
        space = [f"{key}={value}" for key, value in SPACE.items()]
        settings = [
            f"search.n_trials={n_trials}",
            f"search.parallel={self.plan.parallel}",
            f"search.sampler={sampler}",
            f"search.pruner={pruner}",
            f"search.seed={seed}",
        ]
        return self.run(method, seed, [*space, *settings])

    def kill_leftovers(self) -> None:
        from metta_exp.store import DB_NAME, JobStore

        if not (self.state / DB_NAME).exists():
            return
        with JobStore.open(self.state, create=False) as store:
            running = [g.name for g in store.list_groups() if g.ended_at is None]
        for group in running:
            kill = [PY, "-m", "metta_exp", "job", "kill", "--force", group]
            subprocess.run(kill, cwd=self.work, env=self.env, capture_output=True, timeout=120)


# ---------------------------------------------------------------------------------------------------
# A @hydra.main app's study through hydra/sweeper=metta_exp

HYDRA_APP = """\
import json, os, time

import hydra
from omegaconf import DictConfig

from metta_exp.examples.synthetic import Settings, train


@hydra.main(version_base=None, config_path=".", config_name="search")
def main(cfg: DictConfig) -> float:
    settings = Settings(
        learning_rate=float(cfg.trainer.learning_rate),
        entropy_coef=float(cfg.trainer.entropy_coef),
        batch_size=int(cfg.trainer.batch_size),
        seconds=float(cfg.trainer.seconds),
    )
    started = time.time()
    value = train(settings)
    record = {"started": started, "ended": time.time(), "value": value, "lr": settings.learning_rate,
              "ent": settings.entropy_coef, "bs": settings.batch_size}
    with open(os.environ["BENCH_TRIALS_FILE"], "a") as out:
        out.write(json.dumps(record) + "\\n")
    return value


if __name__ == "__main__":
    main()
"""


def hydra_config(seconds: float, n_trials: int, seed: int) -> str:
    params = "\n".join(f"      {key}: {value}" for key, value in SPACE.items())
    return f"""\
defaults:
  - override hydra/sweeper: metta_exp
  - override hydra/launcher: metta_exp
  - _self_
trainer: {{learning_rate: 0.001, entropy_coef: 0.01, batch_size: 512, seconds: {seconds}}}
hydra:
  launcher:
    generate_notebook: false
  sweeper:
    direction: maximize
    n_trials: {n_trials}
    sampler: {{seed: {seed}}}
    params:
{params}
"""


def hydra_trials(path: Path) -> list[Trial]:
    trials = []
    for line in path.read_text().splitlines():
        r = json.loads(line)
        settings = Settings(learning_rate=r["lr"], entropy_coef=r["ent"], batch_size=r["bs"])
        trials.append(Trial(r["started"], r["ended"], r["value"], False, settings))
    return trials


def hydra_run(work: Path, plan: Plan, n_trials: int, seed: int, parallel: int) -> Outcome:
    app_dir = work / f"hydra-{seed}-{parallel}"
    app_dir.mkdir()
    (app_dir / "app.py").write_text(HYDRA_APP)
    (app_dir / "search.yaml").write_text(hydra_config(plan.seconds, n_trials, seed))
    trials_file = app_dir / "trials.jsonl"
    env = {**environment(work / f"state-hydra-{seed}"), "BENCH_TRIALS_FILE": str(trials_file)}
    argv = [PY, str(app_dir / "app.py"), "-m", f"hydra.sweep.dir={app_dir / 'multirun'}"]
    argv += [f"hydra.sweeper.n_jobs={parallel}"]
    wall = timed(argv, app_dir, env)
    label = f"hydra/sweeper=metta_exp (x{parallel})"
    return Outcome(label, seed, hydra_trials(trials_file), wall)


# ---------------------------------------------------------------------------------------------------
# The benchmark


def plans(quick: bool, seconds: float | None, parallel: int, seeds: int | None) -> Plan:
    if quick:
        grid = {LR: ["1e-4", "1e-2"], ENT: ["0.001"], BS: ["256"]}
        return Plan(seconds or 0.3, parallel, grid, list(range(seeds or 1)), hydra_joblib=False)
    lrs = [f"{10 ** (-4 + 2 * i / 3):.4g}" for i in range(4)]
    grid = {LR: lrs, ENT: ["0.001", "0.0255", "0.05"], BS: ["256", "1024"]}
    return Plan(seconds or 2.0, parallel, grid, list(range(seeds or 3)), hydra_joblib=True)


METHODS = ("random", "tpe", "pruned", "hydra")


def run_methods(work: Path, plan: Plan, methods: Sequence[str]) -> list[Outcome]:
    """The grid first, then each chosen method for each seed."""
    metta = Metta(work, plan)
    points = math.prod(len(v) for v in plan.grid.values())
    started = time.time()
    outcomes = []
    try:
        outcomes.append(metta.grid())
        for seed in plan.seeds:
            if "random" in methods:
                outcomes.append(metta.search("random", seed, points, "random", "none"))
            if "tpe" in methods:
                outcomes.append(metta.search("tpe", seed, points, "tpe", "none"))
            if "pruned" in methods:
                outcomes.append(metta.search(PRUNED, seed, 2 * points, "tpe", "median"))
            if "hydra" in methods:
                outcomes.append(hydra_run(work, plan, points, seed, plan.parallel))
            print(f"  seed {seed} done ({time.time() - started:.0f} s)", flush=True)
    finally:
        metta.kill_leftovers()
    return outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small, fast run (smoke test)")
    parser.add_argument("--seconds", type=float, help="wall time of one full trial (default 2, quick 0.3)")
    parser.add_argument("--parallel", type=int, default=4, help="jobs running at once (default 4)")
    parser.add_argument("--seeds", type=int, help="study seeds 0..N-1 per method (default 3, quick 1)")
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"besides the grid, any of {','.join(METHODS)} (default all; quick: pruned,hydra)",
    )
    args = parser.parse_args()
    if args.quick and args.methods == ",".join(
        METHODS
    ):  # random and tpe are pruned's code without its pruner
        args.methods = "pruned,hydra"
    methods = [m for m in args.methods.split(",") if m]
    if unknown := set(methods) - set(METHODS):
        parser.error(f"unknown methods {sorted(unknown)}; choose from {', '.join(METHODS)}")
    plan = plans(args.quick, args.seconds, args.parallel, args.seeds)
    points = math.prod(len(v) for v in plan.grid.values())
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"{points}-point budget, {plan.seconds} s trials, {plan.parallel} at once, {os.cpu_count()} CPUs "
        f"(load average {load}), study seeds {plan.seeds}\n",
        flush=True,
    )
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        outcomes = run_methods(Path(tmp), plan, methods)
    grid = outcomes[0]
    budget, target = job_seconds(grid.trials), best(grid.trials).value  # type: ignore[union-attr]
    print(f"\ngrid budget: {budget:.1f} job-s; grid best: {target:.2f}\n")
    print(table(outcomes, budget, target))
    print(f"\n{summary(outcomes, budget, target)}")
    if any(o.method == PRUNED for o in outcomes):
        print(f"\n{verdict(outcomes, budget, target)}")
    print(f"\nbenchmark wall time: {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
