"""What a local job needs that can be checked before anything is submitted: its ``module`` found by the
interpreter that will run it, from the directory it will start in, and its ``command`` on its ``PATH``.

A typo (``module: metta_exp.examples.cartpol``) is then one ``Error:`` line with the closest name,
instead of a group whose every job fails at once. Nothing is imported: modules are looked up on the
path as ``python -m`` would find them (the start directory first, then this interpreter's path), with
``importlib.machinery.PathFinder``, which runs no package's code.
"""

from __future__ import annotations

import importlib.machinery
import os
import pkgutil
import shutil
import sys
from collections.abc import Sequence

from metta_exp.errors import ConfigError, did_you_mean

__all__ = ["check_command", "check_module", "module_search_path"]


def module_search_path(start_dir: str) -> list[str]:
    """Where ``python -m`` started in ``start_dir`` by this interpreter looks for modules."""
    return [start_dir, *(p for p in sys.path[1:] if p)]


def check_module(module: str, start_dir: str, python: str = sys.executable) -> None:
    """A ConfigError naming the first part of ``module`` that cannot be found (and the closest name
    there), where jobs would start and with which interpreter."""
    path: Sequence[str] | None = module_search_path(start_dir)
    parts = module.split(".")
    for depth in range(1, len(parts) + 1):
        name = ".".join(parts[:depth])
        spec = importlib.machinery.PathFinder.find_spec(name, path) if path is not None else None
        if spec is None and depth == 1 and name in sys.builtin_module_names:
            return
        if spec is None:
            parent = ".".join(parts[: depth - 1])
            known = [f"{parent}.{m.name}" if parent else m.name for m in pkgutil.iter_modules(path)]
            raise ConfigError(
                f"no module named '{name}'{did_you_mean(name, known)}: jobs run `python -m {module}` with {python} in "
                f"{start_dir}; fix `module:`, or install it into that environment"
            )
        path = spec.submodule_search_locations


def check_command(argv0: str, start_dir: str, job_path: str) -> None:
    """A ConfigError when a command's program is neither on the job's ``PATH`` nor a file."""
    if os.sep in argv0:
        found = os.path.isfile(os.path.join(start_dir, argv0))
    else:
        found = shutil.which(argv0, path=job_path) is not None
    if not found:
        raise ConfigError(
            f"no command '{argv0}' on the jobs' PATH (this environment's bin/ first, then yours); "
            "fix `command:`, or give its full path"
        )
