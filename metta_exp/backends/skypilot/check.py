"""Can these jobs run on SkyPilot here? Asked once before a remote group is written; every "no" is one
``BackendUnavailable`` line with a fix that works.

1. SkyPilot is set up (``skypilot_setup``: without a single SDK call, so a newcomer gets the answer at
   once instead of a local API server started for nothing);
2. SkyPilot has an infra enabled (one ``enabled_clouds`` call);
3. the configured ``skypilot.cloud`` is among them, by SkyPilot's own names and aliases
   (``sky/utils/registry.py``: ``CLOUD_REGISTRY.from_str``; ``digitalocean`` is ``DO``, ``k8s`` is
   ``Kubernetes``).

The fix names ``remote=false`` to run here, with ``gpus=0`` when the jobs ask for more GPUs than this
machine has (or ``remote=false`` alone would be refused in turn).

Before those, from the settings alone (``check_jobs``): offline W&B is refused (its runs would stay on
machines SkyPilot tears down), and so is a job whose module (or ``python FILE.py``) the remote machine
cannot have: it has neither metta-exp's modules without the default setup, nor your code without a
``workdir`` that holds it (or a setup of yours that installs it).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from metta_exp.backends.skypilot.api import SkyApi, SkyApiError
from metta_exp.backends.skypilot.wheel import SHIPPED_MODULES
from metta_exp.config import SkyPilotSettings, WandbSettings
from metta_exp.errors import BackendUnavailable, ConfigError
from metta_exp.records import JobSpec
from metta_exp.tracking.wandb import wandb_mode

__all__ = ["canonical_cloud", "check_backend", "check_jobs", "local_fix"]

_SET_UP = (
    "set SkyPilot up (`sky api login` for a team's API server, or `sky check` to enable a cloud, "
    "Kubernetes or Slurm)"
)


def check_jobs(
    specs: Sequence[JobSpec], settings: SkyPilotSettings, wandb: WandbSettings, code: bool
) -> None:
    """``ConfigError`` for jobs that cannot work remotely as configured (nothing asked of SkyPilot): offline
    W&B, or (``code``) a module or script the remote machine cannot have."""
    for spec in specs:
        if code:
            _refuse_missing_code(spec, settings)
        else:
            _refuse_offline_wandb(spec, wandb)


def _refuse_offline_wandb(spec: JobSpec, wandb: WandbSettings) -> None:
    """Offline W&B data would stay on the remote machine, which SkyPilot tears down with the job."""
    if wandb_mode(spec.env) != "offline":
        return
    if wandb.mode in ("offline", "dryrun"):
        source = f"wandb.mode={wandb.mode}"
    else:
        source = f"WANDB_MODE={spec.env.get('WANDB_MODE', '')} (from your shell)"
    raise ConfigError(
        f"{source} on a remote group: the offline W&B runs would stay on the remote machines, which "
        "SkyPilot tears down when each job ends. Fix: wandb.mode=online (with WANDB_API_KEY or `wandb "
        "login`), wandb.mode=disabled, or remote=false to keep offline runs on this machine"
    )


def _refuse_missing_code(spec: JobSpec, settings: SkyPilotSettings) -> None:
    """A module (``python -m``) or script (``python FILE.py``) the remote machine will not have: not
    metta-exp's (the default setup installs those), not in the workdir, and no setup of the user's that
    could install it (a custom image may: ``skypilot.default_setup=false`` says the user takes care)."""
    if settings.setup or not settings.default_setup:
        return
    argv = list(spec.command or ())
    if spec.module:
        top, what = spec.module.split(".")[0], f"module '{spec.module}'"
        if any(spec.module == own or spec.module.startswith(f"{own}.") for own in SHIPPED_MODULES):
            return
        candidates = [f"{top}/__init__.py", f"{top}.py", f"src/{top}", f"{top}"]
    elif len(argv) >= 2 and os.path.basename(argv[0]) in ("python", "python3") and argv[1].endswith(".py"):
        if os.path.isabs(argv[1]) or argv[1].startswith("~"):
            return
        candidates, what = [argv[1]], f"script '{argv[1]}'"
    else:
        return
    workdir = Path(settings.workdir).expanduser() if settings.workdir else None
    if workdir is not None:
        if any((workdir / c).exists() for c in candidates) or (workdir / "pyproject.toml").exists():
            return
        where = f"skypilot.workdir ({workdir}) does not hold it"
    else:
        where = "no skypilot.workdir uploads it"
    raise ConfigError(
        f"job {spec.run}: the {what} would not be found on the remote machine: it is not part of metta-exp "
        f"and {where}. Fix: skypilot.workdir=DIR (the directory that holds {candidates[0].split('/')[0]}), "
        "install it in skypilot.setup, or remote=false to run here"
    )


def check_backend(api: SkyApi, settings: SkyPilotSettings, specs: Sequence[JobSpec]) -> None:
    if api.checks_local_setup:
        from metta_exp.backends.skypilot.setup import setup_problem

        problem = setup_problem()
        if problem:
            raise BackendUnavailable(f"{problem}. Fix: {local_fix(specs)}, or {_SET_UP}")
    try:
        infras = api.enabled_infras()
    except SkyApiError as exc:
        fix = f"Fix: {_SET_UP}, or {local_fix(specs)}"
        raise BackendUnavailable(f"SkyPilot is not usable here ({exc}). {fix}") from None
    if not infras:
        raise BackendUnavailable(
            f"SkyPilot has no infra enabled (no cloud, Kubernetes or Slurm). Fix: {_SET_UP}, or {local_fix(specs)}"
        )
    wanted = _cloud_part(settings.cloud)
    if wanted is None:
        return
    enabled = {i.lower() for i in infras}
    wanted = _SIMPLE_ALIASES.get(wanted, wanted)
    if wanted not in enabled:  # maybe another of SkyPilot's names for it: ask its registry
        enabled = {canonical_cloud(i) or i for i in enabled}
        wanted = canonical_cloud(wanted) or wanted
    if wanted not in enabled:
        raise BackendUnavailable(
            f"skypilot.cloud={settings.cloud} is not enabled in SkyPilot (enabled: {', '.join(sorted(infras))}). "
            f"Fix: `sky check {_cloud_part(settings.cloud)}`, choose an enabled one, or {local_fix(specs)}"
        )


_SIMPLE_ALIASES = {"k8s": "kubernetes"}  # answered without importing sky (which writes ~/.sky)


def local_fix(specs: Sequence[JobSpec]) -> str:
    """``run on this machine with remote=false`` (plus ``gpus=0`` where the jobs want GPUs it lacks)."""
    from metta_exp.backends.local import LocalBackend

    wanted = max((spec.gpus for spec in specs), default=0)
    have = len(LocalBackend().devices()) if wanted else 0
    return "run on this machine with remote=false" + (" gpus=0" if wanted > have else "")


def canonical_cloud(name: str) -> str | None:
    """SkyPilot's canonical lowercase name of a cloud or alias (``digitalocean`` -> ``do``), or None."""
    try:
        import sky.clouds  # noqa: F401 - registers every cloud
        from sky.utils import registry

        cloud = registry.CLOUD_REGISTRY.from_str(name)
    except (ImportError, ValueError):
        return None
    return str(cloud).lower() if cloud is not None else None


def _cloud_part(cloud: str | None) -> str | None:
    name = cloud.strip().split("/")[0].lower() if cloud else ""
    return None if name in ("", "*") else name
