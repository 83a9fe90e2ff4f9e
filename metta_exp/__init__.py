"""metta-exp: launch and manage groups of training runs from declarative Hydra configs.

The public API is small: ``Experiment`` (build and ``launch()`` a group from Python; ``ExperimentTool``
is the same class under the reference's name), ``groups`` (list, show, kill, retry, resume, wait for
launched groups, what ``metta-exp job`` does), ``JobStore`` and ``JobStatus`` (read groups and jobs),
``fetch_metrics`` (load the runs' metrics into a DataFrame), and the error classes. Heavy parts (Hydra,
SkyPilot, W&B, pandas) load only when used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from metta_exp import groups
from metta_exp.config import Experiment, ExperimentTool, SkyPilotSettings, WandbSettings, install_launcher
from metta_exp.errors import ConfigError, MettaExpError, NotFoundError, UsageError
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


def _launch(exp: Experiment, name: str, extra_args: Sequence[str] = ()) -> int:
    from metta_exp.submit import launch_experiment  # loaded on the first launch, not by `job` commands

    return launch_experiment(exp, name=name, extra_args=extra_args)


install_launcher(_launch)  # Experiment.launch; the schema does not import the launch path above it


def __getattr__(name: str) -> Any:
    if name in ("fetch_metrics", "summary_table"):  # pandas loads only when they are asked for
        from metta_exp import metrics

        return getattr(metrics, name)
    raise AttributeError(f"module 'metta_exp' has no attribute {name!r}")
