"""A search group built directly in a real store (no runner, no Optuna): the records ``job show``, the
monitor and the notebook read. Trials move as the runner moves them: asked (``add_trial``), claimed and
running, then complete (the job succeeded, the value told), pruned (``prune_trial``) or failed."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from metta_exp.config import Experiment, SearchSettings
from metta_exp.records import GroupConfig, JobSpec
from metta_exp.status import JobStatus
from metta_exp.store import JobStore
from metta_exp.trials import TrialState
from metta_exp.trials.space import Dimension, SearchSpace

OWNER = "host:1:test"
SPACE = SearchSpace(
    (
        Dimension("trainer.learning_rate", "float", 1e-4, 1e-2, log=True),
        Dimension("trainer.entropy_coef", "float", 0.001, 0.05),
        Dimension(
            "trainer.batch_size", "categorical", choices=(256, 512, 1024), texts=("256", "512", "1024")
        ),
    ),
    base_run="arena",
)
SEARCH = {"n_trials": 40, "parallel": 8, "objective": "overview/reward", "direction": "maximize"}


def _p(lr: float, ent: float, bs: int) -> dict[str, Any]:
    return {"trainer.learning_rate": lr, "trainer.entropy_coef": ent, "trainer.batch_size": bs}


# (number, params, outcome, value, steps): outcome "complete", "pruned", "failed" or "running"
TRIALS: list[tuple[int, dict[str, Any], str, float | None, list[tuple[int, float]]]] = [
    (0, _p(0.0005, 0.02, 512), "complete", 0.61, [(1000, 0.3), (2000, 0.5)]),
    (1, _p(0.0001, 0.04, 256), "pruned", None, [(1000, 0.1), (2000, 0.12)]),
    (2, _p(0.00231, 0.0123, 512), "complete", 0.873, [(1000, 0.4), (2000, 0.7)]),
    (3, _p(0.009, 0.003, 1024), "failed", None, []),
    (4, _p(0.001, 0.01, 256), "running", None, [(1000, 0.35)]),
]
PRUNE_REASON = "pruned at step 2000: value 0.12 below the median of 2 trials"


def make_search_group(
    store: JobStore, name: str = "search", trials: Sequence[tuple[Any, ...]] = TRIALS, **search: Any
) -> dict[int, str]:
    """A search group with ``trials`` in their states; each trial's run name by number."""
    exp = Experiment(module="pkg.train", runs=["arena"], remote=False, gpus=0, generate_notebook=False)
    exp = dataclasses.replace(exp, search=SearchSettings(**(SEARCH | search)))
    store.create_group(name, "arena", "local", GroupConfig(exp, search_space=SPACE), [])
    assert store.acquire_lease(name, OWNER, 600, 0)
    runs = {}
    for number, params, outcome, value, steps in trials:
        run = SPACE.run_name(number, params)
        runs[number] = run
        run_dir = str(store.state_dir / "runs" / name / run)
        spec = JobSpec(
            name, run, tuple(SPACE.args(params)), {}, 0, run_dir, f"id{number}", module="pkg.train"
        )
        assert store.add_trial(name, OWNER, number, params, spec)
        attempt = store.claim(name, run, OWNER, [], str(Path(run_dir) / "attempt-1.log"))
        assert attempt == 1
        assert store.mark_running(name, run, attempt, None)  # no process: nothing for a cleanup to end
        if steps:
            store.set_trial_steps(name, number, steps)
        if outcome == "complete":
            assert store.finish_attempt(name, run, attempt, JobStatus.SUCCEEDED, 0)
            assert store.end_trial(name, number, TrialState.COMPLETE, value)
        elif outcome == "pruned":
            reason = PRUNE_REASON if number == 1 else f"pruned at step {steps[-1][0]}"
            assert store.prune_trial(name, number, run, attempt, reason, steps)
        elif outcome == "failed":
            assert store.finish_attempt(name, run, attempt, JobStatus.FAILED, 1, "exit code 1")
            assert store.end_trial(name, number, TrialState.FAILED, None, "exit code 1")
    store.release_lease(name, OWNER)  # the lease named this test's pid: no cleanup may signal it
    return runs


def synthetic_study(
    n: int = 16, seed: int = 0
) -> tuple[list[tuple[Any, ...]], dict[int, list[tuple[int, float]]]]:
    """``n`` trials of a made-up study whose reward peaks near lr 0.002, ent 0.01, batch 512, and each
    trial's reward curve (1024 steps a point): the clearly bad ones pruned a third of the way, one failed,
    the last one running. Returns (trials as :func:`make_search_group` takes them, curves by number)."""
    import math
    import random

    rnd = random.Random(seed)
    trials, curves = [], {}
    for number in range(n):
        params = _p(
            round(10 ** rnd.uniform(-4, -2), 6),
            round(rnd.uniform(0.001, 0.05), 5),
            rnd.choice((256, 512, 1024)),
        )
        quality = math.exp(-((math.log10(params["trainer.learning_rate"]) + 2.7) ** 2) / 0.5)
        quality *= (
            1
            - abs(params["trainer.entropy_coef"] - 0.01) * 8
            - (0.1 if params["trainer.batch_size"] != 512 else 0)
        )
        final = round(max(0.05, quality), 4)
        points = 60
        curve = [
            ((i + 1) * 1024, round(final * (1 - math.exp(-(i + 1) / 12)) + rnd.gauss(0, 0.015), 4))
            for i in range(points)
        ]
        if number == n - 1:
            outcome, value, curve = "running", None, curve[:25]
        elif number == 5:
            outcome, value, curve = "failed", None, curve[:8]
        elif number >= 4 and final < 0.6:
            outcome, value, curve = "pruned", None, curve[:20]
        else:
            outcome, value = "complete", curve[-1][1]
        seen = [(s, v) for s, v in curve if s % 5120 == 0]
        trials.append((number, params, outcome, value, seen))
        curves[number] = curve
    return trials, curves


def write_curve(run_dir: Path, curve: Sequence[tuple[int, float]]) -> None:
    """A run's metrics file (what ``tracking`` writes) holding the reward curve ``curve``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    t = 1764250000.0
    lines = [
        json.dumps({"_step": s, "_time": t + i, "_attempt": 1, "overview/reward": v, "overview/sps": 3000.0})
        for i, (s, v) in enumerate(curve)
    ]
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
