"""The work of ``hydra/sweeper=metta_exp``: a Hydra app's Optuna study as ONE metta-exp search group.

The sweeper reads Hydra's Optuna sweeper configuration (its ``params`` grammar, with its meaning of
``range(a, b, step)``: from a to b included; ``direction``; ``n_trials``; ``n_jobs`` trials at once; the
sampler group with its ``seed``) into a metta-exp search: the task function is shipped to the jobs as the
launcher ships it (``metta_exp_launcher._task``), and the group's runner asks and tells the trials
(``metta_exp.search``), detached from this terminal. The objective is the task's return value (each
trial's job prints it: ``[metta-exp] return value=X``), or a metric the task tracks (``objective: NAME``).

When the study ends, the group's runner writes the best parameters and value to
``optimization_results.yaml`` in ``hydra.sweep.dir``, as Hydra's Optuna sweeper does (the search's
``results_file``), whether or not anyone waits. With ``wait`` (the default) the terminal watches the group
to its end, then logs the best parameters and value; with ``hydra.launcher.wait=false`` it returns once
the first trials are submitted, and the study goes on.
Group-wide settings (``remote``, ``gpus``, ``group``, ``wait``, ...) are the metta-exp launcher's, read
from ``hydra.launcher`` when it is ``metta_exp`` (its defaults otherwise: this machine, no GPUs, wait).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra.errors import CompactHydraException
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.metta_exp_launcher._core import EXPERIMENT_KEYS, as_containers, refuse
from hydra_plugins.metta_exp_launcher._task import JOB_MODULE, SHIP_DIR, merge_mounts, remote_mount, ship
from metta_exp.config import RETURN_OBJECTIVE, Experiment, SearchSettings
from metta_exp.errors import ConfigError, MettaExpError
from metta_exp.store import JobStore, default_state_dir
from metta_exp.supervise.drive import runner_standing_by
from metta_exp.trials import TrialRecord, TrialState, best_trial
from metta_exp.trials.space import SearchSpace

log = logging.getLogger(__name__)

SAMPLERS = {"TPESampler": "tpe", "RandomSampler": "random", "CmaEsSampler": "cmaes", "GridSampler": "grid"}
RESULTS_FILE = "optimization_results.yaml"
LAUNCHER_TARGET = "hydra_plugins.metta_exp_launcher.metta_exp_launcher.MettaExpLauncher"


class SweepError(CompactHydraException):
    """Bad sweeper settings, or a study that failed, as Hydra sees it with ``HYDRA_FULL_ERROR=1``."""


class StudyFailed(MettaExpError):
    """No trial completed, or more failed than ``max_failure_rate`` allows: exit code 1."""


def sweep(
    settings: Mapping[str, Any],
    config: DictConfig,
    hydra_context: Any,
    task_function: Any,
    arguments: Sequence[str],
) -> None:
    """Launch the study as one search group; with ``wait``, watch it and report its best trial."""
    try:
        with runner_standing_by():  # the group's runner starts up while the study is set up
            _sweep(as_containers(settings), config, hydra_context, task_function, arguments)
    except MettaExpError as exc:
        refuse(f"Error: metta-exp sweeper: {exc}", exc, SweepError)


def _sweep(
    settings: dict[str, Any],
    config: DictConfig,
    hydra_context: Any,
    task_function: Any,
    arguments: Sequence[str],
) -> None:
    from hydra.core.utils import configure_log, setup_globals

    from metta_exp.sweep import parse_overrides
    from metta_exp.sweep.search import start_search
    from metta_exp.sweep.space import search_dims

    setup_globals()
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    launcher = launcher_settings(config)
    search = search_settings(settings, launcher.get("max_parallel"))
    lines = [f"{k}={v}" for k, v in (settings.get("params") or {}).items()] + list(arguments)
    dims, fixed = search_dims(parse_overrides(lines), range_includes_stop=True)
    if not dims:
        raise ConfigError(
            "nothing to search: give hydra.sweeper.params a dimension, e.g. x: interval(-5, 5), "
            "y: choice(a, b) or z: range(1, 9, step=2)"
        )
    task_name = str(config.hydra.job.name)
    base_run = re.sub(r"[^A-Za-z0-9._-]+", "_", task_name).strip("._-")[:60] or "task"
    sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
    space = SearchSpace(tuple(dims), base_run, ("TASK_FILE",), tuple(fixed))
    # the group's runner writes the best trial there when the study ends, waited for or not
    search = dataclasses.replace(search, results_file=str(sweep_dir / RESULTS_FILE))
    if search.sampler == "grid":
        from metta_exp.search.study import grid_size

        search = dataclasses.replace(search, n_trials=min(search.n_trials, grid_size(space)))
    for key in ("study_name", "storage"):
        if settings.get(key) is not None:
            log.info(
                f"metta-exp sweeper: {key}={settings[key]} accepted; the study lives in metta-exp's job store"
            )
    task_file = ship(sweep_dir / SHIP_DIR, "task-search.pkl", task_function, config, hydra_context)
    data: dict[str, Any] = {k: launcher[k] for k in EXPERIMENT_KEYS if launcher.get(k) is not None}
    path = str(task_file)
    if launcher.get("remote"):
        remote, mounts = remote_mount(task_file.parent)
        path = f"{remote}/{task_file.name}"
        data["skypilot"] = merge_mounts(launcher.get("skypilot"), mounts)
    data.update(module=JOB_MODULE, runs=[base_run], group=launcher.get("group"))
    data["search"] = dataclasses.asdict(search)
    exp = Experiment.from_mapping(data, source="hydra.sweeper (metta_exp)")
    space = dataclasses.replace(space, base_args=(path,))
    OmegaConf.save(config, sweep_dir / "multirun.yaml")
    state_dir = Path(launcher["state_dir"]).absolute() if launcher.get("state_dir") else default_state_dir()
    log.info(
        f"metta-exp sweeper: {search.n_trials} trials of {task_name}, {search.parallel} at once, "
        f"{search.direction} {search.objective}, sampler {search.sampler}; state in {state_dir}"
    )
    groups, code = start_search(exp, space, task_name, state_dir)
    if not groups:
        return  # a dry run
    (group,) = groups
    if not exp.wait or code == 130:
        log.info(f"metta-exp sweeper: the study goes on in group {group}: metta-exp job monitor {group}")
        return
    with JobStore.open(state_dir) as store:
        trials = store.trials(group)
    report(trials, dims_keys(space), search.direction, group, float(settings.get("max_failure_rate") or 0))


def dims_keys(space: SearchSpace) -> dict[str, str]:
    """Each dimension's name (as trials record it) -> its key as written (``+a`` stays ``+a``)."""
    return {d.name: d.key for d in space.dims}


def report(
    trials: Sequence[TrialRecord],
    keys: Mapping[str, str],
    direction: str,
    group: str,
    max_failure_rate: float,
) -> None:
    """Log the best trial (the group's runner wrote it to ``optimization_results.yaml`` when the study
    ended); ``StudyFailed`` when no trial completed or more failed than ``max_failure_rate`` allows."""
    best = best_trial(trials, direction)
    if best is not None:
        params = {keys.get(k, k): v for k, v in best.params.items()}
        log.info(f"Best parameters: {params}")
        log.info(f"Best value: {best.value}")
    failed = [t for t in trials if t.state == TrialState.FAILED]
    if best is None or (trials and len(failed) / len(trials) > max_failure_rate):
        why = failed[0].reason if failed else "none logged a value"
        raise StudyFailed(
            f"{len(failed)} of {len(trials)} trials failed "
            f"(max_failure_rate={max_failure_rate}; the first: {why}); see metta-exp job show {group}"
        )


def launcher_settings(config: DictConfig) -> dict[str, Any]:
    """The metta-exp launcher's settings when it is the app's launcher, else its defaults."""
    from hydra_plugins.metta_exp_launcher.config import MettaExpLauncherConf

    node = OmegaConf.select(config, "hydra.launcher", default=None)
    if isinstance(node, DictConfig) and node.get("_target_") == LAUNCHER_TARGET:
        values = OmegaConf.to_container(node, resolve=True)
        assert isinstance(values, dict)
        return {str(k): v for k, v in values.items()}
    return dataclasses.asdict(MettaExpLauncherConf())


def search_settings(settings: Mapping[str, Any], max_parallel: int | None) -> SearchSettings:
    """The search's settings from the sweeper's: ``ConfigError`` naming the key for what it cannot run."""
    if settings.get("custom_search_space"):
        raise ConfigError(
            "hydra.sweeper.custom_search_space is not supported: the runner asks every trial from "
            "hydra.sweeper.params; give each dimension there"
        )
    sampler = settings.get("sampler") or {}
    target = str(sampler.get("_target_") or "")
    kind = SAMPLERS.get(target.rsplit(".", 1)[-1])
    if kind is None:
        raise ConfigError(
            f"hydra.sweeper.sampler: '{target}' is not a sampler metta-exp runs; choose one with "
            "hydra/sweeper/sampler=tpe, random, cmaes or grid"
        )
    direction = settings.get("direction", "minimize")
    if isinstance(direction, list | tuple):
        if len(direction) != 1:
            raise ConfigError(
                f"hydra.sweeper.direction: {list(direction)} asks for {len(direction)} objectives; metta-exp "
                "optimises one: give minimize or maximize"
            )
        direction = direction[0]
    direction = getattr(direction, "name", direction)
    if direction not in ("minimize", "maximize"):
        raise ConfigError(f"hydra.sweeper.direction must be minimize or maximize, got {direction!r}")
    values = {
        "n_trials": settings.get("n_trials", 20),
        "parallel": settings.get("n_jobs") or max_parallel or 2,
        "objective": settings.get("objective") or RETURN_OBJECTIVE,
        "direction": direction,
        "reduce": settings.get("reduce", "last"),
        "sampler": kind,
        "pruner": settings.get("pruner", "median"),
        "seed": sampler.get("seed"),
    }
    probe = Experiment.from_mapping(
        {"module": JOB_MODULE, "runs": ["probe"], "search": values}, source="hydra.sweeper (metta_exp)"
    )
    return probe.search
