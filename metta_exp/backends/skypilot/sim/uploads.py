"""What a launch uploads from the client: the workdir and local file mounts, as SkyPilot takes them.

- **Paths** (``sky/task.py``: ``expand_and_validate_workdir``, file mounts): each is made absolute with
  ``os.path.abspath(os.path.expanduser(...))`` in the *calling* process and must exist.
- **What of a directory goes** (``sky/data/storage_utils.py``: ``get_excluded_files``, used by
  ``sky/client/common.py`` to zip uploads): everything, ``.git`` and virtual environments included,
  except what ``.skyignore`` excludes when the directory has one (its lines as globs: ``/x`` from the
  top, ``x`` anywhere, ``get_excluded_files_from_skyignore``), else what git ignores there (``git
  ls-files --others --ignored --exclude-standard --directory``: ``.gitignore`` files,
  ``.git/info/exclude``; nothing when the directory is not in a git repository,
  ``get_excluded_files_from_gitignore``).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from metta_exp.backends.skypilot.api import SkyRequestError

__all__ = ["client_paths", "copy_upload", "excluded"]


def client_paths(task: Mapping[str, Any]) -> dict[str, str]:
    """What the client uploads for ``task`` (a task YAML's dict): ``{"workdir" | "mounts/<dst under ~>":
    absolute local source}``."""
    out = {}
    workdir = task.get("workdir")
    if isinstance(workdir, str):
        path = os.path.abspath(os.path.expanduser(workdir))
        if not os.path.isdir(path):
            raise SkyRequestError(
                f"ValueError: Workdir must be a valid directory (or a symlink to a directory). {workdir} not found."
            )
        out["workdir"] = path
    for dst, src in (task.get("file_mounts") or {}).items():
        if not isinstance(src, str) or "://" in src:
            continue  # cloud storage: not uploaded from here
        path = os.path.abspath(os.path.expanduser(src))
        if not os.path.exists(path):
            raise SkyRequestError(f"ValueError: File mount source {src!r} does not exist locally.")
        if str(dst).startswith("~/"):
            out[f"mounts/{str(dst)[2:]}"] = path
    return out


def excluded(source: Path) -> set[str]:
    """The paths under ``source`` (relative, ``/``-separated) that SkyPilot leaves out of its upload."""
    skyignore = source / ".skyignore"
    if skyignore.exists():
        out: set[str] = set()
        for raw in skyignore.read_text(errors="replace").splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            pattern = "." + line if line.startswith("/") else "**/" + line
            for match in glob.glob(os.path.join(str(source), pattern), recursive=True):
                out.add(os.path.relpath(match, source).rstrip("/"))
        return out
    try:
        listed = subprocess.run(
            ["git", "-c", "safe.directory=*", "-C", str(source), "ls-files", "-z", "--others", "--ignored",
             "--exclude-standard", "--directory"],
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return set()  # not a git repository (or no git): .gitignore is not read
    items = [item.rstrip("/") for item in listed.split("\0") if item]
    return set() if "." in items else set(items)  # the whole directory ignored: SkyPilot ignores git then


def copy_upload(source: Path, target: Path) -> None:
    """Copy a file, or a directory without what SkyPilot excludes (links kept as links)."""
    if not source.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
        return
    skip = excluded(source)

    def ignore(directory: str, names: list[str]) -> set[str]:
        rel = os.path.relpath(directory, source)
        prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
        return {name for name in names if prefix + name in skip}

    shutil.copytree(source, target, ignore=ignore, symlinks=True, dirs_exist_ok=True)
