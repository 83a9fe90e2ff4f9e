"""A finished study's results file (``search.results_file``): its best trial, in the form of Hydra's
Optuna sweeper's ``optimization_results.yaml`` (``name``, ``best_params``, ``best_value``) plus the
``group``. The group's runner writes it when the study ends, so it is there whether or not anyone
waited for the study (``hydra/sweeper=metta_exp`` with ``wait=false`` included)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from metta_exp.atomic import write_atomic
from metta_exp.paths import search_results_path
from metta_exp.records import GroupRecord
from metta_exp.store import JobStore
from metta_exp.trials import TrialRecord, best_trial
from metta_exp.trials.space import SearchSpace

STUDY_NAME = "optuna"  # what Hydra's Optuna sweeper writes as `name`


def study_results(
    space: SearchSpace, trials: Sequence[TrialRecord], direction: str, group: str
) -> dict[str, Any] | None:
    """The best complete trial's parameters (keyed as written: ``+a`` stays ``+a``) and value, or None
    when no trial completed."""
    best = best_trial(trials, direction)
    if best is None:
        return None
    keys = {d.name: d.key for d in space.dims}
    params = {keys.get(k, k): v for k, v in best.params.items()}
    return {"name": STUDY_NAME, "best_params": params, "best_value": best.value, "group": group}


def write_study_results(group: GroupRecord, trials: Sequence[TrialRecord], path: Path) -> Path | None:
    """Write ``group``'s results to ``path`` (atomically, its directory made); None when no trial
    completed (nothing is written)."""
    import yaml

    assert group.search_space is not None, "a search group"
    results = study_results(group.search_space, trials, group.exp.search.direction, group.name)
    if results is None:
        return None
    return write_atomic(path, yaml.safe_dump(results, sort_keys=False), parents=True)


def write_results_file(store: JobStore, group: GroupRecord) -> None:
    """Write a search group's ``search.results_file`` when it has one, recording a ``results`` event (or
    ``results_failed`` with the reason: a file that cannot be written must not keep the group open)."""
    path = search_results_path(group)
    if path is None:
        return
    try:
        written = write_study_results(group, store.trials(group.name), path)
    except Exception as exc:  # noqa: BLE001 - a full disk, a path that is a directory: said, not raised
        store.add_event(group.name, "results_failed", f"{type(exc).__name__}: {exc}")
        return
    if written is not None:
        store.add_event(group.name, "results", str(written))
