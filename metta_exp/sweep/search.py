"""``metta-exp -m ... 'lr=interval(1e-4, 1e-2)'``: launch a search, a group whose runner drives an Optuna
study. Here: check the search, ask its first ``search.parallel`` trials and launch them as the group's
first jobs (recorded with their trials); the runner asks the rest (:mod:`metta_exp.search.driver`)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from metta_exp.config import Experiment
from metta_exp.errors import ConfigError
from metta_exp.sweep.grammar import ParsedOverride
from metta_exp.sweep.space import search_dims
from metta_exp.text import plural
from metta_exp.trials.space import SearchSpace

if TYPE_CHECKING:
    from metta_exp.compose import CommandLine


def launch_search(
    cl: CommandLine,
    name: str,
    base: Experiment,
    training: Sequence[ParsedOverride],
    literals: Sequence[str],
    settings: Sequence[ParsedOverride],
) -> int:
    """Launch the search; returns the interface's exit code (``ConfigError`` for a bad search)."""
    if settings:
        keys = ", ".join(p.line for p in settings)
        raise ConfigError(f"a search cannot also sweep metta-exp keys ({keys}): set one value")
    if len(base.runs) != 1:
        raise ConfigError(
            f"a search runs one run of the experiment per trial, and it has {len(base.runs)} "
            f"({', '.join(base.runs)}): pick one with runs=[{base.runs[0]}]"
        )
    dims, fixed = search_dims(training)
    if len({d.name for d in dims}) != len(dims):
        raise ConfigError("a search dimension is given twice")
    base_run = base.runs[0]
    space = SearchSpace(
        tuple(dims), base_run, tuple(base.args_per_run.get(base_run, ())), (*fixed, *literals)
    )
    if cl.show_config:
        print(json.dumps(base.to_dict() | {"extra_args": [], "search_space": space.to_dict()}, indent=2))
        return 0
    return start_search(base, space, name)[1]


def start_search(
    base: Experiment, space: SearchSpace, name: str, state_dir: Path | None = None
) -> tuple[list[str], int]:
    """Ask the study's first ``search.parallel`` trials and launch them as the group's first jobs (the
    runner asks the rest); watch the group when the experiment waits. The group launched (none for a dry
    run) and the interface's exit code."""
    search = base.search
    if search.sampler == "grid":
        from metta_exp.search.study import grid_size

        grid_size(space)  # a ConfigError for a dimension a grid cannot take, before anything is written
    first = min(search.trials_at_once(base.max_parallel), search.n_trials)

    from metta_exp.search.driver import trial_experiment
    from metta_exp.search.study import preview

    trials = list(enumerate(preview(space, search, first)))
    exp = trial_experiment(base, space, trials)
    if exp.dry_run:
        print_search(space, base, first)
    from metta_exp.submit import submit_experiments

    return submit_experiments([exp], name, state_dir=state_dir, search_space=space, trials=trials)


def print_search(space: SearchSpace, exp: Experiment, first: int, out: TextIO | None = None) -> None:
    """A dry run's account of the search: its settings, its dimensions, and which trials follow."""
    out = out or sys.stdout
    s = exp.search
    seed = f" (seed {s.seed})" if s.seed is not None else ""
    at_once = s.trials_at_once(exp.max_parallel)
    print(
        f"Search: {plural(s.n_trials, 'trial')}, {at_once} at once, {s.direction} {s.objective} "
        f"(reduce {s.reduce}); sampler {s.sampler}{seed}, pruner {s.pruner}",
        file=out,
    )
    width = max(len(d.key) for d in space.dims)
    for d in space.dims:
        print(f"  {d.key:<{width}}  {d.describe()}", file=out)
    for arg in space.fixed:
        print(f"  {arg}  (every trial)", file=out)
    same = "" if s.seed is not None else " (set search.seed to launch these same trials)"
    print(f"The first {plural(first, 'trial')}' jobs{same}:", file=out)
