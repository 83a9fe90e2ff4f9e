"""Keep metta-exp's state directory out of what SkyPilot uploads with a workdir.

``workdir: .`` uploads the whole directory except what ``.skyignore`` excludes when there is one, else what
git ignores (``sky/data/storage_utils.py``: ``get_excluded_files``; outside a git repository nothing is
excluded). The state directory (``job_state/``: the store, every job's logs, local checkpoints) is often
inside it, and would go up with every launch. So before launching from a workdir that holds it, metta-exp
makes sure SkyPilot leaves it out, as SkyPilot reads ignores:

- the state directory gets a ``.gitignore`` of ``*`` (as a virtual environment does): git, and so
  SkyPilot, ignores it in a git repository;
- a workdir with a ``.skyignore`` that does not exclude it gets a line for it (SkyPilot reads only
  ``.skyignore`` then); a workdir outside any git repository without one gets a ``.skyignore`` with that line
  (no ``.gitignore`` is read there, so nothing else changes).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

__all__ = ["keep_out"]

_MARK = "# metta-exp's state (store, logs, checkpoints): never uploaded"


def keep_out(workdir: Path, state_dir: Path) -> None:
    """Make SkyPilot's upload of ``workdir`` leave ``state_dir`` out (nothing when it is not inside)."""
    try:
        relative = state_dir.resolve().relative_to(workdir.resolve())
    except (OSError, ValueError):
        return
    if not relative.parts:
        return
    state_dir.mkdir(parents=True, exist_ok=True)
    gitignore = state_dir / ".gitignore"
    if not gitignore.exists():
        gitignore.write_text(f"{_MARK}\n*\n")
    line = f"/{relative.as_posix()}/"
    skyignore = workdir / ".skyignore"
    if skyignore.exists():
        lines = {raw.strip().rstrip("/") for raw in skyignore.read_text(errors="replace").splitlines()}
        if line.rstrip("/") in lines or relative.as_posix() in lines:
            return
        with open(skyignore, "a") as f:
            f.write(f"\n{_MARK}\n{line}\n")
    elif not _in_git(workdir):
        skyignore.write_text(f"{_MARK}\n{line}\n")


def _in_git(directory: Path) -> bool:
    try:
        found = subprocess.run(
            ["git", "-c", "safe.directory=*", "-C", str(directory), "rev-parse", "--is-inside-work-tree"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return False
    return found.returncode == 0 and found.stdout.strip() == "true"
