"""What a search group's notebook adds: its trials as plain data for the ``search*`` cell templates.

Pure, standard library only (like :mod:`metta_exp.notebook.cells`, whose context this extends). The cells get
the study as literals written when the notebook is rendered (the trials the store held then), so the
notebook needs neither the store nor Optuna to run: the best trials with their parameters, the
objective by trial number, the objective against each parameter, and the objective's curve of every
run with the pruned ones marked.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from metta_exp.records import GroupRecord
from metta_exp.search.text import search_line
from metta_exp.trials import TrialRecord, TrialState, best_trial
from metta_exp.trials.space import Dimension

__all__ = ["SEARCH_CELLS", "TOP_TRIALS", "search_context"]

SEARCH_CELLS = ("search", "search_best", "search_trials", "search_params", "search_curves")
"""The cells a search group's notebook adds after :data:`metta_exp.notebook.cells.CELLS`, in order."""
TOP_TRIALS = 10
SEEN_POINTS = 50
"""At most this many of a trial's intermediate values (the pruner's) go into the notebook: the curve a
run without fetched metrics is drawn from."""
COLUMNS = ("trial", "run", "state", "value", "pruned_step", "pruned_value", "reason")
"""A trial's row in the notebook, before its parameters: ``value`` for a complete trial, ``pruned_*``
the last intermediate value the pruner saw (for a pruned trial), ``reason`` why it was pruned or failed."""


def search_context(group: GroupRecord, trials: Sequence[TrialRecord]) -> dict[str, Any] | None:
    """The ``search`` entry of the notebook's context; None for a group that is not a search."""
    space = group.search_space
    if space is None:
        return None
    settings = group.exp.search
    best = best_trial(trials, settings.direction)
    return {
        "line": search_line(group, trials),
        "objective": settings.objective,
        "direction": settings.direction,
        "settings": [
            f"{key}: {getattr(settings, key)}"
            for key in ("n_trials", "reduce", "sampler", "pruner", "seed")
            if getattr(settings, key) is not None
        ],
        "space": [f"{d.name}: {d.describe()}" for d in space.dims],
        "dims": [_dim(d) for d in space.dims],
        "columns": [*COLUMNS, *(d.name for d in space.dims)],
        "trials": [_row(t, space.dims) for t in trials],
        "seen": [[t.number, _thin(t.steps)] for t in trials if t.ended and _thin(t.steps)],
        "best": None if best is None else best.run,
        "top": TOP_TRIALS,
    }


def _dim(d: Dimension) -> dict[str, Any]:
    """A dimension as the plots need it: its name and kind, log scale, and a categorical's choices."""
    return {
        "name": d.name,
        "kind": d.kind,
        "log": d.log,
        "choices": [_plain(c) for c in d.choices] if d.kind == "categorical" else [],
    }


def _row(t: TrialRecord, dims: Sequence[Dimension]) -> list[Any]:
    """A trial as one row of :data:`COLUMNS` then its parameters (non-finite numbers as None)."""
    seen = [(s, v) for s, v in t.steps if _finite(v) is not None]
    last = seen[-1] if seen and t.state == TrialState.PRUNED else (None, None)
    return [
        t.number,
        t.run,
        t.state.value,
        _finite(t.value),
        last[0],
        last[1],
        t.reason,
        *(_plain(t.params.get(d.name)) for d in dims),
    ]


def _thin(steps: Sequence[tuple[int, float]], most: int = SEEN_POINTS) -> list[list[Any]]:
    """The finite ``(step, value)`` points, at most ``most`` of them evenly spread, the last one kept."""
    points = [[int(s), float(v)] for s, v in steps if _finite(v) is not None]
    if len(points) <= most:
        return points
    every = len(points) / most
    return [points[int(i * every)] for i in range(most - 1)] + [points[-1]]


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _plain(value: Any) -> Any:
    """A parameter value the cells can hold as a literal: finite numbers, strings, bools, None kept;
    anything else (a list choice, a NaN) as its text."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return str(value)
