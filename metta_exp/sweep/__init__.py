"""Sweeps: every point of a Hydra sweep is a run of ONE job group.

``metta-exp -m +experiment=NAME a=1,2 b=range(0,3)`` (or an experiment file with ``hydra.sweeper.params``)
composes the experiment once, expands the sweep like Hydra's BasicSweeper (cartesian product, Hydra's
override grammar) and launches one group whose runs are the points, through the same launch path as any
group. Per point the work is only string building:

- each job gets its point's overrides exactly as written (``lr=1e-3,0.01`` gives ``lr=1e-3``); values
  that Hydra computes (``range``, casts) use Hydra's formatting;
- run names are built from the swept values (``lr0.001-ent0.01``), prefixed with the experiment's run
  when it has several (``a-lr0.001``), unique and within the run-name rule;
- ``gpus`` may be swept (it is per job); keys that apply to the whole group cannot;
- the group config keeps the points under ``sweep`` (``keys``, ``labels``, ``points``, ``base_runs``) so
  the notebook can label runs by their values;
- a sweep of more than ``METTA_EXP_SWEEP_LIMIT`` points (default 1000) is refused before anything is
  written.
"""

from __future__ import annotations

from metta_exp.runnames import key_labels, name_part, run_names, value_label
from metta_exp.sweep.command import PER_POINT_KEYS, launch_sweep, print_points
from metta_exp.sweep.grammar import Entry, ParsedOverride, count_values, parse_override, parse_overrides
from metta_exp.sweep.points import (
    DEFAULT_SWEEP_LIMIT,
    SWEEP_LIMIT_ENV,
    Point,
    check_limit,
    expand,
    named_keys,
    per_point_specs,
    sweep_experiment,
    sweep_limit,
    sweep_record,
)

__all__ = [
    "DEFAULT_SWEEP_LIMIT",
    "PER_POINT_KEYS",
    "SWEEP_LIMIT_ENV",
    "Entry",
    "ParsedOverride",
    "Point",
    "check_limit",
    "count_values",
    "expand",
    "key_labels",
    "launch_sweep",
    "named_keys",
    "name_part",
    "parse_override",
    "parse_overrides",
    "per_point_specs",
    "print_points",
    "run_names",
    "sweep_experiment",
    "sweep_limit",
    "sweep_record",
    "value_label",
]
