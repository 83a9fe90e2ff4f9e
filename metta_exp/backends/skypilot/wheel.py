"""The wheel of the metta-exp that is running: what the default setup installs on each remote machine.

A cloud or Kubernetes machine has a Python, never metta-exp; a job whose command runs a metta-exp module
(or a trainer that imports ``metta_exp.tracking``) needs the same metta-exp as the one that launched it.
metta-exp packs itself into a standard ``py3-none-any`` wheel, in memory, from the code that runs:

- its package (``metta_exp/``, configs and templates included: inside the package when installed from a
  wheel, ``conf/`` and ``templates/`` beside it in a checkout, packed where the wheel keeps them, as
  ``pyproject.toml``'s hatch settings say) and its Hydra plugin (``hydra_plugins/metta_exp_launcher``);
- its installed distribution's ``METADATA`` (name, version, dependencies) and ``entry_points.txt``
  (the ``metta-exp`` command), with a ``WHEEL`` and a ``RECORD`` of its own.

The zip is deterministic (sorted, fixed timestamps), so the same code makes the same bytes, and the file
is written once under ``<state dir>/skypilot/wheels/<hash>/`` (``ensure_wheel``); the dry run shows that
path without writing it (``wheel_path``).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.metadata
import importlib.util
import io
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["SHIPPED_MODULES", "ensure_wheel", "wheel_bytes", "wheel_path"]

#: The packages the wheel holds: metta-exp, and its Hydra launcher (whose job wrapper remote jobs run).
SHIPPED_MODULES = ("metta_exp", "hydra_plugins.metta_exp_launcher")

DIST = "metta-exp"
_EPOCH = (1980, 1, 1, 0, 0, 0)
_SKIP_DIRS = {"__pycache__"}
_SKIP_SUFFIXES = (".pyc", ".pyo")


@functools.lru_cache(maxsize=1)
def wheel_bytes() -> tuple[str, bytes]:
    """(the wheel's file name, its bytes), packed once per process."""
    package = Path(__file__).resolve().parents[2]  # metta_exp/, as this process runs it
    version, metadata, entry_points = _distribution()
    files: dict[str, bytes] = {}
    for path in _walk(package):
        files[f"metta_exp/{path.relative_to(package).as_posix()}"] = path.read_bytes()
    for extra in ("conf", "templates"):  # a checkout keeps them beside the package; the wheel inside it
        source = package.parent / extra
        if not (package / extra).is_dir() and source.is_dir():
            for path in _walk(source):
                files[f"metta_exp/{extra}/{path.relative_to(source).as_posix()}"] = path.read_bytes()
    plugin_module = SHIPPED_MODULES[1]
    spec = importlib.util.find_spec(plugin_module)
    if spec is not None and spec.submodule_search_locations:
        plugin = Path(next(iter(spec.submodule_search_locations))).resolve()
        where = plugin_module.replace(".", "/")
        for path in _walk(plugin):
            files[f"{where}/{path.relative_to(plugin).as_posix()}"] = path.read_bytes()
    info = f"metta_exp-{version}.dist-info"
    files[f"{info}/METADATA"] = metadata.encode()
    if entry_points:
        files[f"{info}/entry_points.txt"] = entry_points.encode()
    files[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: metta-exp\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    record = [f"{name},sha256={_digest(data)},{len(data)}" for name, data in sorted(files.items())]
    files[f"{info}/RECORD"] = ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            entry = zipfile.ZipInfo(name, date_time=_EPOCH)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, files[name])
    return f"metta_exp-{version}-py3-none-any.whl", out.getvalue()


def wheel_path(directory: Path) -> Path:
    """Where ``ensure_wheel`` writes the wheel under ``directory`` (nothing is written here)."""
    name, data = wheel_bytes()
    return directory / hashlib.sha256(data).hexdigest()[:16] / name


def ensure_wheel(directory: Path) -> Path:
    """The wheel under ``directory``, written now unless the same bytes are there already."""
    path = wheel_path(directory)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(wheel_bytes()[1])
        os.replace(tmp, path)
    return path


def _distribution() -> tuple[str, str, str]:
    """(version, METADATA, entry_points.txt) of the installed metta-exp (a minimal METADATA without one)."""
    try:
        dist = importlib.metadata.distribution(DIST)
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown", f"Metadata-Version: 2.1\nName: {DIST}\nVersion: 0+unknown\n", ""
    return dist.version, dist.read_text("METADATA") or "", dist.read_text("entry_points.txt") or ""


def _walk(root: Path) -> Iterator[Path]:
    for directory, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        for name in sorted(names):
            if not name.endswith(_SKIP_SUFFIXES):
                yield Path(directory) / name


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
