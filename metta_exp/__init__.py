"""metta-exp: launch and manage groups of training runs from declarative Hydra configs.

The public API is small: ``Experiment`` (build and ``launch()`` a group from Python; ``ExperimentTool``
is the same class under the reference's name), ``groups`` (list, show, kill, retry, resume, wait for
launched groups, what ``metta-exp job`` does), ``JobStore`` and ``JobStatus`` (read groups and jobs),
``fetch_metrics`` (load the runs' metrics into a DataFrame), and the error classes.

This face imports nothing: each name loads its module when it is first asked for (``metta-exp job
--help`` reads no config schema and no store code). Heavy parts (Hydra, SkyPilot, W&B, pandas) load only
when used.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from metta_exp import groups as groups
    from metta_exp.config import Experiment, ExperimentTool, SkyPilotSettings, WandbSettings
    from metta_exp.errors import ConfigError, MettaExpError, NotFoundError, UsageError
    from metta_exp.metrics import fetch_metrics, summary_table
    from metta_exp.status import JobStatus
    from metta_exp.store import JobStore

__all__ = [
    "ConfigError",
    "Experiment",
    "ExperimentTool",
    "JobStatus",
    "JobStore",
    "MettaExpError",
    "NotFoundError",
    "SkyPilotSettings",
    "UsageError",
    "WandbSettings",
    "fetch_metrics",
    "groups",
    "summary_table",
]
__version__ = "0.1.0"

#: each public name, by the module that holds it (``groups`` is a module of its own)
_HOMES = {
    "ConfigError": "metta_exp.errors",
    "MettaExpError": "metta_exp.errors",
    "NotFoundError": "metta_exp.errors",
    "UsageError": "metta_exp.errors",
    "Experiment": "metta_exp.config",
    "ExperimentTool": "metta_exp.config",
    "SkyPilotSettings": "metta_exp.config",
    "WandbSettings": "metta_exp.config",
    "JobStatus": "metta_exp.status",
    "JobStore": "metta_exp.store",
    "fetch_metrics": "metta_exp.metrics",  # pandas loads only when they are asked for
    "summary_table": "metta_exp.metrics",
}


def __getattr__(name: str) -> Any:
    if name == "groups":
        return importlib.import_module("metta_exp.groups")
    if name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name]), name)
        globals()[name] = value  # asked once
        return value
    raise AttributeError(f"module 'metta_exp' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


def _launch(exp: Experiment, name: str, extra_args: Sequence[str] = ()) -> int:
    """What ``Experiment.launch`` calls (it finds it here when called: the schema sits at the bottom of the
    layers and imports nothing above it). The launch path loads on the first launch, not by `job`
    commands."""
    from metta_exp.submit import launch_experiment

    return launch_experiment(exp, name=name, extra_args=extra_args)
