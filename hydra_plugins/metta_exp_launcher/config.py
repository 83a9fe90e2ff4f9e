"""The launcher's config, registered as ``hydra/launcher=metta_exp``.

Its keys are the group-wide keys of a metta-exp experiment (``metta-exp --help``), with defaults for a
user's own app on this machine: local, no GPUs, and waiting for the group (as Hydra's own launchers do).
Set them on the command line (``hydra.launcher.gpus=1``) or in the app's config (``hydra: launcher:``).
"""

# No `from __future__ import annotations` here: Hydra loads plugin modules without registering them in
# sys.modules, and dataclasses cannot resolve string annotations of such a module.
from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore


@dataclass
class MettaExpLauncherConf:
    _target_: str = "hydra_plugins.metta_exp_launcher.metta_exp_launcher.MettaExpLauncher"

    # job group name; generated from the app's name and the time when null
    group: str | None = None
    # false: this machine; true: SkyPilot
    remote: bool = False
    # true: watch the group until it ends, and fail the multirun if a job failed; false: return once submitted
    wait: bool = True
    # GPUs per job
    gpus: int = 0
    max_parallel: int | None = None
    max_retries: int = 0
    timeout_s: int | None = None
    generate_notebook: bool = True
    notebook_path: str | None = None
    # null: metta-exp's default metrics
    metrics_to_track: list[str] | None = None
    # resolve and print every job; submit nothing
    dry_run: bool = False
    # W&B settings (entity, project, mode) and SkyPilot task settings, as in an experiment file
    wandb: dict[str, Any] | None = None
    skypilot: dict[str, Any] | None = None
    # where the job store lives; null: $METTA_EXP_STATE_DIR, else the nearest job_state/ (as git finds .git)
    state_dir: str | None = None
    # refuse sweeps of more points; null: $METTA_EXP_SWEEP_LIMIT, else 1000
    sweep_limit: int | None = None


ConfigStore.instance().store(
    group="hydra/launcher", name="metta_exp", node=MettaExpLauncherConf, provider="metta_exp_launcher"
)
