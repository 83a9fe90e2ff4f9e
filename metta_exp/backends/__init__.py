"""Backends: where jobs run. ``make_backend`` picks one by the name a group records."""

from __future__ import annotations

from pathlib import Path

from metta_exp.backends.base import Backend, Launch, Observation
from metta_exp.errors import UsageError

__all__ = ["Backend", "Launch", "Observation", "make_backend"]


def make_backend(name: str, state_dir: Path | None = None) -> Backend:
    """The backend a group runs on: ``local`` (this machine) or ``skypilot``."""
    if name == "local":
        from metta_exp.backends.local import LocalBackend

        return LocalBackend()
    if name == "skypilot":
        from metta_exp.backends.skypilot import make_skypilot_backend

        return make_skypilot_backend(state_dir)
    raise UsageError(f"unknown backend '{name}': use remote=true (SkyPilot) or remote=false (this machine)")
