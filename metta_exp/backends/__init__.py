"""Backends: where jobs run. ``make_backend`` picks one by the name a group records."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from metta_exp.errors import UsageError

if TYPE_CHECKING:
    from metta_exp.backends.base import Backend
    from metta_exp.config import Experiment

__all__ = ["make_backend"]  # what a backend is and takes: backends.base; the process table: backends.procs


def make_backend(
    name: str,
    state_dir: Path | None = None,
    exp: Experiment | None = None,
    location: Mapping[str, str] | None = None,
) -> Backend:
    """The backend a group runs on: ``local`` (this machine) or ``skypilot``.

    ``exp`` gives the backend the experiment's settings, so ``check`` can refuse what cannot run (an
    infra that is not enabled, a bad accelerator) before anything is written. ``location`` is where the
    group's backend said it runs at launch (``Backend.location``): the backend is that one, or
    ``BackendUnavailable`` says which variable to set.
    """
    if name == "local":
        from metta_exp.backends.local import LocalBackend

        return LocalBackend()
    if name == "skypilot":
        from metta_exp.backends.skypilot.backend import make_skypilot_backend

        return make_skypilot_backend(
            state_dir,
            settings=exp.skypilot if exp else None,
            wandb=exp.wandb if exp else None,
            location=location,
        )
    raise UsageError(f"unknown backend '{name}': use remote=true (SkyPilot) or remote=false (this machine)")
