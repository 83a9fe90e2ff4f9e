"""How a search (an adaptive sweep) reads as text: ``job show``'s search line, the monitor's header line,
and its complete trials ranked best first. Pure functions of the records; standard library only."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from metta_exp.records import GroupRecord
from metta_exp.trials import TrialRecord, TrialState, best_trial


def fmt_value(value: float) -> str:
    """An objective value: 4 significant digits (``0.8731``, ``281.2``, ``1.235e+04``)."""
    return f"{value:.4g}"


def trial_text(trial: TrialRecord, group: GroupRecord) -> str:
    """``t007-lr0.00231-... = 0.8731 (trial 7: trainer.learning_rate=0.00231, ...)``: a complete trial,
    its value and its parameters (as the run's name labels them)."""
    space = group.search_space
    dims = space.dims if space is not None else ()
    params = ", ".join(f"{d.name}={d.label(trial.params[d.name])}" for d in dims if d.name in trial.params)
    value = "?" if trial.value is None else fmt_value(trial.value)
    return f"{trial.run} = {value} (trial {trial.number}" + (f": {params})" if params else ")")


def search_size(group: GroupRecord) -> str:
    """``search of 14 trials, 2 at once``: what a search group is, counted against the study's size (its
    jobs are the trials asked so far, fewer until it ends)."""
    search = group.exp.search
    n = search.n_trials
    return (
        f"search of {n} trial{'' if n == 1 else 's'}, {search.trials_at_once(group.exp.max_parallel)} at once"
    )


def search_line(group: GroupRecord, trials: Sequence[TrialRecord]) -> str:
    """``Search: 12 of 40 trials (3 running, 7 complete, 2 pruned, 0 failed) · maximize overview/reward ·
    best: <trial_text>``: a search group's study at a glance (``best: none yet`` before a trial
    completes)."""
    search = group.exp.search
    by = Counter(t.state for t in trials)
    states = ", ".join(f"{by[s]} {s.value}" for s in TrialState)
    best = best_trial(trials, search.direction)
    return (
        f"Search: {len(trials)} of {search.n_trials} trials ({states}) · {search.direction} {search.objective} · "
        f"best: {'none yet' if best is None else trial_text(best, group)}"
    )


def search_header(group: GroupRecord, trials: Sequence[TrialRecord]) -> str:
    """``Search 12/40 · best 0.873 t007-lr0.00231-ent0.0123-bs512 · 3 running, 7 complete, 2 pruned, 0
    failed · maximize overview/reward``: ``job show``'s search line, the best trial first so that a
    narrow terminal cuts the rest (the run's name says its values)."""
    search = group.exp.search
    by = Counter(t.state for t in trials)
    best = best_trial(trials, search.direction)
    found = "none yet" if best is None else f"{fmt_value(best.value or 0.0)} {best.run}"
    states = ", ".join(f"{by[s]} {s.value}" for s in TrialState)
    return f"Search {len(trials)}/{search.n_trials} · best {found} · {states} · {search.direction} {search.objective}"


def trial_rank(trials: Sequence[TrialRecord], direction: str) -> dict[str, int]:
    """A search's complete trials by run, best first (0 is the best): the monitor lists its completed jobs
    in this order (empty for other groups, whose completed jobs come latest first)."""
    sign = -1.0 if direction == "minimize" else 1.0
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    ordered = sorted(done, key=lambda t: (-sign * float(t.value or 0.0), t.number))
    return {t.run: i for i, t in enumerate(ordered)}
