"""The sweeper's config, registered as ``hydra/sweeper=metta_exp``, with the sampler config group
``hydra/sweeper/sampler=tpe|random|cmaes|grid``.

The keys are those of Hydra's Optuna sweeper (``direction``, ``n_trials``, ``n_jobs``, ``params``,
``sampler`` with its ``seed``, ``study_name``, ``storage``, ``max_failure_rate``,
``custom_search_space``), so an app configured for it runs with only the sweeper's name changed, and
three of metta-exp's own: ``objective``, ``pruner`` and ``reduce``. Beside it ``hydra/sweeper=metta_exp_grid``,
Hydra's basic sweeper with its keys (``max_batch_size``, ``params``), whose points are composed by their
jobs rather than all in the app's process first.
"""

# No `from __future__ import annotations` here: Hydra loads plugin modules without registering them in
# sys.modules, and dataclasses cannot resolve string annotations of such a module.
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class SamplerConf:
    _target_: str = MISSING
    # the sampler's seed: the same seed asks the same first trials
    seed: int | None = None


@dataclass
class TPESamplerConf(SamplerConf):
    _target_: str = "optuna.samplers.TPESampler"


@dataclass
class RandomSamplerConf(SamplerConf):
    _target_: str = "optuna.samplers.RandomSampler"


@dataclass
class CmaEsSamplerConf(SamplerConf):
    _target_: str = "optuna.samplers.CmaEsSampler"


@dataclass
class GridSamplerConf(SamplerConf):
    _target_: str = "optuna.samplers.GridSampler"


@dataclass
class MettaExpSweeperConf:
    _target_: str = "hydra_plugins.metta_exp_sweeper.metta_exp_sweeper.MettaExpSweeper"
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}])
    # the sampler reaches the sweeper as settings (Hydra would build an Optuna sampler here, importing
    # Optuna into the app's process): the group's runner builds it
    _recursive_: bool = False

    sampler: SamplerConf = MISSING
    # minimize or maximize (one objective; a list of one is accepted)
    direction: Any = "minimize"
    # accepted for compatibility: the study lives in metta-exp's job store, its name is the group's
    storage: Any | None = None
    study_name: str | None = None
    n_trials: int = 20
    # trials running at once
    n_jobs: int = 2
    # the sweep fails when more than this fraction of its trials failed (after the study ended)
    max_failure_rate: float = 0.0
    params: dict[str, str] | None = None
    # not supported: the runner asks trials from the space in params
    custom_search_space: str | None = None
    # null: the task function's return value (a number); else a metric the task logs with
    # metta_exp.tracking (its progress lines also let the pruner stop trials that fall behind)
    objective: str | None = None
    # median, hyperband or none (a return-value objective has no curve: nothing to prune)
    pruner: str = "median"
    # how a tracked metric's curve becomes a trial's value: last, max or mean_last_10pct
    reduce: str = "last"


@dataclass
class MettaExpGridSweeperConf:
    """``hydra/sweeper=metta_exp_grid``: Hydra's basic sweeper and its keys, each point composed by its job."""

    _target_: str = "hydra_plugins.metta_exp_sweeper.metta_exp_grid_sweeper.MettaExpGridSweeper"
    # launch the points in batches of at most this many (null: all at once), as the basic sweeper does
    max_batch_size: int | None = None
    # the sweep, as on the command line: {lr: "0.1,0.01", seed: "range(0,5)"}
    params: dict[str, str] | None = None


_store = ConfigStore.instance()
_store.store(group="hydra/sweeper", name="metta_exp", node=MettaExpSweeperConf, provider="metta_exp_sweeper")
_store.store(
    group="hydra/sweeper", name="metta_exp_grid", node=MettaExpGridSweeperConf, provider="metta_exp_sweeper"
)
for _name, _node in (
    ("tpe", TPESamplerConf),
    ("random", RandomSamplerConf),
    ("cmaes", CmaEsSamplerConf),
    ("grid", GridSamplerConf),
):
    _store.store(group="hydra/sweeper/sampler", name=_name, node=_node, provider="metta_exp_sweeper")
