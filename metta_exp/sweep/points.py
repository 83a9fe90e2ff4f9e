"""The points of a sweep: the cartesian product, its limit, and the one experiment that runs them."""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from metta_exp.config import Experiment
from metta_exp.errors import UsageError
from metta_exp.records import SweepRecord
from metta_exp.runnames import key_labels, name_part, run_names
from metta_exp.sweep.grammar import Entry

if TYPE_CHECKING:
    from metta_exp.records import JobSpec

SWEEP_LIMIT_ENV = "METTA_EXP_SWEEP_LIMIT"
DEFAULT_SWEEP_LIMIT = 1000


@dataclass(frozen=True)
class Point:
    """One run of the sweep group: a point of the sweep crossed with one run of the experiment."""

    index: int
    run: str
    base_run: str
    args: tuple[str, ...]  # the point's training overrides, in command-line order
    values: Mapping[str, Any]  # swept key -> value
    settings: Mapping[str, Any]  # per-point metta-exp keys (gpus)


# --- the limit --------------------------------------------------------------------------------------


def sweep_limit(environ: Mapping[str, str] | None = None) -> int:
    """The largest sweep (in points) metta-exp launches: ``METTA_EXP_SWEEP_LIMIT``, default 1000."""
    raw = (os.environ if environ is None else environ).get(SWEEP_LIMIT_ENV, "").strip()
    if not raw:
        return DEFAULT_SWEEP_LIMIT
    if not raw.isdigit() or int(raw) < 1:
        raise UsageError(f"{SWEEP_LIMIT_ENV}={raw!r}: give a whole number of points, at least 1")
    return int(raw)


def check_limit(counts: Sequence[int], runs: int, limit: int) -> int:
    """The number of points; ``UsageError`` naming the count when it is over ``limit``."""
    points = math.prod(counts)
    if points > limit:
        jobs = f" x {runs} runs = {points * runs} jobs" if runs > 1 else ""
        raise UsageError(
            f"the sweep has {points} points{jobs}, more than the limit of {limit}; nothing was submitted. "
            f"Sweep fewer values, or raise the limit: {SWEEP_LIMIT_ENV}={points}"
        )
    return points


# --- points -----------------------------------------------------------------------------------------


def named_keys(entries: Sequence[Entry], settings: Sequence[Entry] = ()) -> list[str]:
    """The keys that name the runs: those the sweep gives more than one value."""
    return [e.name for e in (*entries, *settings) if e.swept and len(e.values) > 1]


def expand(base_runs: Sequence[str], entries: Sequence[Entry], settings: Sequence[Entry] = ()) -> list[Point]:
    """Every point of the sweep (cartesian product, in Hydra's order) crossed with every base run.

    ``entries`` are training overrides (in argv order); ``settings`` are metta-exp keys set per point.
    The ``named_keys`` name the runs; the experiment's run prefixes them when it has several runs.
    """
    axes = [e for e in (*entries, *settings) if e.swept]
    named = [e for e in axes if e.name in named_keys(entries, settings)]
    labels = key_labels([e.name for e in named])
    combos = list(itertools.product(*(range(len(e.values)) for e in axes)))
    pick = {id(e): n for n, e in enumerate(axes)}
    rows: list[tuple[int, str, tuple[str, ...], dict[str, Any], dict[str, Any]]] = []
    prefixes: list[str | None] = []
    parts: list[list[str]] = []
    for index, combo in enumerate(combos):

        def at(entry: Entry, combo: tuple[int, ...] = combo) -> int:
            return combo[pick[id(entry)]] if entry.swept else 0

        args = tuple(e.arg(at(e)) for e in entries)
        values = {e.name: e.values[at(e)] for e in axes}
        chosen = {e.name: e.values[at(e)] for e in settings}
        label_parts = [name_part(labels[e.name], e.texts[at(e)], e.values[at(e)]) for e in named]
        for base in base_runs:
            rows.append((index, base, args, values, chosen))
            prefixes.append(base if len(base_runs) > 1 or not label_parts else None)
            parts.append(label_parts)
    names = run_names(prefixes, parts)
    return [
        Point(i, name, base, args, values, chosen)
        for (i, base, args, values, chosen), name in zip(rows, names, strict=True)
    ]


def sweep_experiment(base: Experiment, points: Sequence[Point]) -> Experiment:
    """One experiment whose runs are the points: each run gets its base run's args, then its point's."""
    run_of = {(p.index, p.base_run): p.run for p in points}
    args_per_run = {p.run: [*base.args_per_run.get(p.base_run, ()), *p.args] for p in points}
    depends_on = {
        p.run: [run_of[(p.index, dep)] for dep in base.depends_on[p.base_run]]
        for p in points
        if base.depends_on.get(p.base_run)
    }
    return dataclasses.replace(
        base, runs=[p.run for p in points], args_per_run=args_per_run, depends_on=depends_on
    )


def sweep_record(points: Sequence[Point], keys: Sequence[str]) -> SweepRecord:
    """What the group keeps of its sweep: the notebook labels runs with it."""
    return SweepRecord(
        keys=tuple(keys),
        labels=key_labels(keys),
        points={p.run: dict(p.values) for p in points},
        base_runs={p.run: p.base_run for p in points},
    )


def per_point_specs(points: Sequence[Point]) -> Callable[[list[JobSpec]], list[JobSpec]]:
    """A ``specs_hook`` for ``launch_experiment`` that applies each point's swept metta-exp keys."""
    gpus = {p.run: p.settings["gpus"] for p in points if "gpus" in p.settings}

    def hook(specs: list[JobSpec]) -> list[JobSpec]:
        return [dataclasses.replace(s, gpus=gpus[s.run]) if s.run in gpus else s for s in specs]

    return hook
