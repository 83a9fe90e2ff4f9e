"""The package as a whole: its public API, what importing it costs, and lint and types."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

import metta_exp

HEAVY = (
    "hydra", "omegaconf", "sky", "wandb", "pandas", "matplotlib", "numpy", "nbformat", "jinja2", "rich",
    "nbconvert", "nbclient", "ipykernel", "jupyter_client", "zmq",
)  # fmt: skip


def test_public_api_is_explicit_and_resolves() -> None:
    assert sorted(metta_exp.__all__) == metta_exp.__all__
    for name in metta_exp.__all__:
        assert getattr(metta_exp, name) is not None, name
    with pytest.raises(AttributeError):
        metta_exp.no_such_thing  # noqa: B018


@pytest.mark.parametrize(
    "module",
    [
        "metta_exp",
        "metta_exp.cli",
        "metta_exp.tracking",
        "metta_exp.cli.jobs",
        "metta_exp.cli.run",
        "metta_exp.notebook.report",
    ],
)
def test_importing_loads_nothing_heavy(module: str) -> None:
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    )
    assert [m for m in loaded if m.split(".")[0] in HEAVY] == []


@pytest.mark.slow
def test_ruff_and_mypy_are_clean(tmp_path: Path) -> None:
    """Neither writes its cache into the checkout: mypy starts from a copy of the checkout's cache (a
    developer's warm one; none on a fresh clone) in this test's directory."""
    ruff = shutil.which("ruff", path=str(ROOT / ".venv" / "bin")) or shutil.which("ruff")
    assert ruff, "ruff is a dev dependency"
    lint = subprocess.run([ruff, "check", "--no-cache", str(ROOT)], capture_output=True, text=True, cwd=ROOT)
    assert lint.returncode == 0, lint.stdout
    cache = tmp_path / "mypy cache"
    if (ROOT / ".mypy_cache").is_dir():
        shutil.copytree(ROOT / ".mypy_cache", cache)
    types = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(cache), "metta_exp", "hydra_plugins"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert types.returncode == 0, types.stdout
