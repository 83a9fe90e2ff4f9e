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
"""

from __future__ import annotations

from collections.abc import Sequence

from metta_exp.backends.skypilot.api import SkyApi, SkyApiError
from metta_exp.config import SkyPilotSettings
from metta_exp.errors import BackendUnavailable
from metta_exp.records import JobSpec

__all__ = ["canonical_cloud", "check_backend", "local_fix"]

_SET_UP = (
    "set SkyPilot up (`sky api login` for a team's API server, or `sky check` to enable a cloud, "
    "Kubernetes or Slurm)"
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
