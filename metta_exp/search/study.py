"""The Optuna study of a search, in memory, rebuilt from the store's trials: the one module that imports
Optuna.

The store is the study's truth: each asked trial is a row written with its job in one transaction, each
told outcome an update of that row. A runner (the first, or one that takes the group over) replays the
rows into an in-memory study, in trial-number order, so the numbers match: ended trials are added as
they ended (with their intermediate values, which pruners compare against), running ones are enqueued
with their values and asked again, giving back a live trial to report to. Asking then goes on from
there: no trial is asked twice (the store refuses a number it has) and none is lost (a trial asked but
not yet written did not happen).
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from metta_exp.config import SearchSettings
from metta_exp.errors import ConfigError
from metta_exp.trials import TrialRecord, TrialState
from metta_exp.trials.space import Dimension, SearchSpace

if TYPE_CHECKING:
    import optuna


def distribution(dim: Dimension) -> optuna.distributions.BaseDistribution:
    """The Optuna distribution of one dimension (as Hydra's Optuna sweeper maps its grammar)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if dim.kind == "categorical":
        return CategoricalDistribution(list(dim.choices))
    assert dim.low is not None and dim.high is not None
    if dim.kind == "int":
        step = int(dim.step) if dim.step else 1
        return IntDistribution(int(dim.low), int(dim.high), log=dim.log, step=step)
    return FloatDistribution(float(dim.low), float(dim.high), log=dim.log, step=dim.step)


def distributions(space: SearchSpace) -> dict[str, optuna.distributions.BaseDistribution]:
    return {d.name: distribution(d) for d in space.dims}


def grid_values(dim: Dimension) -> list[Any]:
    """The values a grid search takes in one dimension: its choices, or from low to high (included) by
    its step; ``ConfigError`` for a continuous dimension (an interval without a step)."""
    if dim.kind == "categorical":
        return list(dim.choices)
    if dim.step is None and dim.kind == "float":
        raise ConfigError(
            f"a grid search needs discrete dimensions: '{dim.key}' is {dim.describe()}; give it a step "
            "(range(a, b, step=s)) or list its values (choice(...))"
        )
    assert dim.low is not None and dim.high is not None
    step = dim.step or 1
    count = int(math.floor((dim.high - dim.low) / step + 1e-9)) + 1
    values = [dim.low + i * step for i in range(count)]
    return [int(v) for v in values] if dim.kind == "int" else [round(float(v), 12) for v in values]


def grid_size(space: SearchSpace) -> int:
    """How many points a grid search over ``space`` has."""
    return math.prod(len(grid_values(d)) for d in space.dims)


def _sampler(settings: SearchSettings, replayed: int) -> optuna.samplers.BaseSampler:
    """The sampler of a study rebuilt from ``replayed`` trials. Its seed moves on with them: a seeded
    sampler starts its random stream afresh, and replayed trials (their values given back) draw nothing
    from it, so a study rebuilt with the plain seed would ask the values of its first trials again."""
    import optuna

    seed = None if settings.seed is None else settings.seed + replayed
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if settings.sampler == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if settings.sampler == "grid":  # Study.ask enqueues each grid point in turn: nothing is sampled
        return optuna.samplers.RandomSampler(seed=seed)
    # constant_liar: trials asked while others run are not asked at the same point
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def _pruner(settings: SearchSettings) -> optuna.pruners.BasePruner:
    import optuna

    if settings.pruner == "median":
        # compare from the 2nd checkpoint on, once 3 trials have completed
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0, n_min_trials=3)
    if settings.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


class Study:
    """A search's study: ask trials, report their intermediate values, tell their outcomes."""

    def __init__(
        self, space: SearchSpace, settings: SearchSettings, trials: Sequence[TrialRecord] = ()
    ) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.space = space
        self.settings = settings
        self.dists = distributions(space)
        self.study = optuna.create_study(
            direction=settings.direction,
            sampler=_sampler(settings, len(trials)),
            pruner=_pruner(settings),
        )
        self.live: dict[int, optuna.trial.Trial] = {}
        self._replay(trials)

    def _replay(self, trials: Sequence[TrialRecord]) -> None:
        from optuna.trial import TrialState as OptunaState
        from optuna.trial import create_trial

        states = {
            TrialState.COMPLETE: OptunaState.COMPLETE,
            TrialState.PRUNED: OptunaState.PRUNED,
            TrialState.FAILED: OptunaState.FAIL,
        }
        for record in sorted(trials, key=lambda t: t.number):
            params = {k: v for k, v in record.params.items() if k in self.dists}
            if record.state == TrialState.RUNNING:
                self.study.enqueue_trial(params, skip_if_exists=False)
                trial = self.study.ask(self.dists)
                for step, value in record.steps:
                    trial.report(value, step)
                self.live[trial.number] = trial
            else:
                state = states[record.state]
                if state == OptunaState.COMPLETE and record.value is None:
                    state = OptunaState.FAIL
                self.study.add_trial(
                    create_trial(
                        params=params,
                        distributions=self.dists,
                        value=record.value if state == OptunaState.COMPLETE else None,
                        intermediate_values=dict(record.steps),
                        state=state,
                    )
                )
            assert self.asked - 1 == record.number, "trials are replayed in number order"

    def _next_grid_point(self) -> dict[str, Any] | None:
        """A grid search's next point: the first, in the grid's order, that no trial has taken yet (asked
        or replayed), so a study rebuilt by another runner goes on where it was, and no point is asked
        twice (Optuna's GridSampler picks at random among the points it saw no trial of, and a replayed
        trial it does not recognise as one)."""
        import itertools

        names = [d.name for d in self.space.dims]
        taken = {tuple(t.params.get(n) for n in names) for t in self._trials()}
        for point in itertools.product(*(grid_values(d) for d in self.space.dims)):
            if point not in taken:
                return dict(zip(names, point, strict=True))
        return None

    @property
    def asked(self) -> int:
        return len(self._trials())

    @property
    def running(self) -> int:
        """Trials asked and not told yet."""
        return len(self.live)

    def _trials(self) -> list[optuna.trial.FrozenTrial]:
        # not ``study.trials``: it deep-copies every trial, and the runner looks every cycle
        return self.study.get_trials(deepcopy=False)

    def ask(self) -> tuple[int, dict[str, Any]]:
        """A new trial: its number and its values, by dimension name."""
        if self.settings.sampler == "grid" and (point := self._next_grid_point()) is not None:
            self.study.enqueue_trial(point, skip_if_exists=False)
        trial = self.study.ask(self.dists)
        self.live[trial.number] = trial
        return trial.number, {d.name: trial.params[d.name] for d in self.space.dims}

    def report(self, number: int, points: Mapping[int, float], decide: bool = True) -> str | None:
        """Report a running trial's new intermediate values; with ``decide``, the reason to prune it, or
        None."""
        trial = self.live.get(number)
        if trial is None:
            return None
        known = self._trials()[number].intermediate_values
        new = sorted((s, v) for s, v in points.items() if s not in known)
        for step, value in new:
            trial.report(value, step)
        if not new or not decide or not trial.should_prune():
            return None
        return self._why_pruned(number, new[-1][0])

    def steps(self, number: int) -> list[tuple[int, float]]:
        """The intermediate values reported for trial ``number``, in step order."""
        return sorted(self._trials()[number].intermediate_values.items())

    def _why_pruned(self, number: int, step: int) -> str:
        from optuna.trial import TrialState as OptunaState

        mine = self._trials()[number].intermediate_values
        maximize = self.settings.direction == "maximize"
        best = max(mine.values()) if maximize else min(mine.values())
        if self.settings.pruner != "median":
            return (
                f"pruned at step {step} by {self.settings.pruner}: value {best:.4g} behind the other trials"
            )
        others = [
            t.intermediate_values[step]
            for t in self.study.get_trials(deepcopy=False, states=(OptunaState.COMPLETE,))
            if step in t.intermediate_values
        ]
        side = "below" if maximize else "above"
        median = f" ({statistics.median(others):.4g})" if others else ""
        return f"pruned at step {step}: value {best:.4g} {side} the median{median} of {len(others)} trials"

    def tell(self, number: int, state: TrialState, value: float | None = None) -> None:
        from optuna.trial import TrialState as OptunaState

        trial = self.live.pop(number, None)
        if trial is None:
            return
        try:
            if state == TrialState.COMPLETE and value is not None:
                self.study.tell(trial, value)
            elif state == TrialState.PRUNED:
                self.study.tell(trial, state=OptunaState.PRUNED)
            else:
                self.study.tell(trial, state=OptunaState.FAIL)
        except RuntimeError as exc:
            # a sampler that asks the study to stop (Optuna's GridSampler, once its grid is done): the trial
            # is told all the same (optuna/study/_tell.py stores its state in a `finally`)
            if "Study.stop" not in str(exc):
                raise


def preview(space: SearchSpace, settings: SearchSettings, count: int) -> list[dict[str, Any]]:
    """The values of the first ``count`` trials a new study asks (a dry run's; the same as the real
    launch's when ``search.seed`` is set)."""
    study = Study(space, settings)
    return [study.ask()[1] for _ in range(count)]
