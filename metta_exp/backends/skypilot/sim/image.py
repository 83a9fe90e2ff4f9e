"""The simulated machines' image: a Python with a Python stack, but neither metta-exp nor your project.

A cloud or Kubernetes image comes with a Python and its packages (SkyPilot's default images: conda with
numpy and friends; a GPU image: torch). What it never has is metta-exp, or the code of the project a job
runs: only the task's ``setup`` can install them (``sky/backends/task_codegen.py`` runs ``setup`` then
``run`` on the machine; nothing of the launching machine's environment comes along). The simulator's image
is built once per account in ``DIR/image``:

- ``bin/python``, ``bin/python3``, ``bin/python3.X``: the base interpreter of the Python running metta-exp
  (not its virtual environment), first on each job's ``PATH``;
- ``site/``: the third-party packages of metta-exp's own environment (links), on each job's
  ``PYTHONPATH``: the image's Python stack. metta-exp itself is left out (its package, its distribution,
  its editable-install hook, its Hydra plugin), so ``import metta_exp`` fails until a setup installs it;
- no network: ``PIP_NO_INDEX=1`` and ``UV_OFFLINE=1`` are the image's, so an install that would need PyPI
  fails at once instead of reaching it (the default setup needs nothing from it: every dependency of
  metta-exp is in the image); a project is built with the image's own build backends
  (``PIP_NO_BUILD_ISOLATION=0``, which is how pip spells "no build isolation" in its environment), where
  pip on a cloud machine would fetch them.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
import threading
from pathlib import Path

__all__ = ["IMAGE_ENV", "image_env"]

#: The image's own environment (a container image's ``ENV``), besides its ``PATH`` and ``PYTHONPATH``.
IMAGE_ENV = {
    "PIP_NO_INDEX": "1",
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    "PIP_NO_BUILD_ISOLATION": "0",
    "UV_OFFLINE": "1",
}
_OURS = (
    "metta_exp",
    "metta-exp",
    "_editable_impl_metta_exp",
    "__editable__.metta_exp",
    "__editable___metta_exp",
)


def image_env(root: Path) -> dict[str, str]:
    """``PATH`` and ``PYTHONPATH`` (and the image's other variables) of a machine of the account ``root``;
    the image is built on first use."""
    image = root / "image"
    if not (image / "ready").exists():
        _build(image)
    return {
        "PATH": os.pathsep.join([str(image / "bin"), "/usr/local/bin", "/usr/bin", "/bin"]),
        "PYTHONPATH": str(image / "site"),
        **IMAGE_ENV,
    }


def _build(image: Path) -> None:
    tmp = image.with_name(f".image.{os.getpid()}.{threading.get_ident()}")  # launches build it on threads
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "bin").mkdir(parents=True)
    (tmp / "site").mkdir()
    base = Path(getattr(sys, "_base_executable", sys.executable) or sys.executable).resolve()
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for name in ("python", "python3", version):
        (tmp / "bin" / name).symlink_to(base)
    seen: set[str] = set()
    for key in ("purelib", "platlib"):
        site = Path(sysconfig.get_paths()[key])
        if not site.is_dir() or str(site) in seen:
            continue
        seen.add(str(site))
        for entry in sorted(site.iterdir()):
            if entry.name.startswith(_OURS) or entry.name == "__pycache__" or entry.suffix == ".pth":
                continue
            _link(entry, tmp / "site" / entry.name)
    (tmp / "ready").touch()
    try:
        os.replace(tmp, image)
    except OSError:  # another process built it meanwhile
        shutil.rmtree(tmp, ignore_errors=True)


def _link(entry: Path, link: Path) -> None:
    """Link ``entry`` at ``link``; the ``hydra_plugins`` namespace gets every plugin but metta-exp's."""
    if link.exists() or link.is_symlink():
        return
    if entry.name == "hydra_plugins" and entry.is_dir():
        link.mkdir()
        for child in entry.iterdir():
            if child.name != "metta_exp_launcher":
                _link(child, link / child.name)
        return
    link.symlink_to(entry)
