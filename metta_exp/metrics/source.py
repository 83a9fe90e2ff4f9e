"""Where one run's metrics are (``RunSource``): what ``fetch_metrics`` makes of each run it is given."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["RunSource"]


@dataclass(frozen=True)
class RunSource:
    """Where one run's metrics are: its run directory and/or its W&B run path (``entity/project/id``).

    ``problem`` says why the run could not even be located (a name found in no group, or in several).
    """

    name: str
    run_dir: Path | None = None
    wandb_path: str | None = None
    wandb_mode: str | None = None
    problem: str | None = None
    wandb_base_url: str | None = None  # the W&B server the run used (its WANDB_BASE_URL); None: the default
    attempt: int | None = None  # the attempt whose run.json tells about its W&B run (None: the latest)
    log: Path | None = None  # its latest attempt's log: the progress lines (``metrics.logged``)
    recovery: int | None = None  # only this part of the log (after a SkyPilot recovery); None: all of it
