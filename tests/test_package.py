"""The package as a whole: its public API, what importing it costs, and lint and types."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

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
def test_ruff_and_mypy_are_clean() -> None:
    ruff = shutil.which("ruff", path=str(ROOT / ".venv" / "bin")) or shutil.which("ruff")
    assert ruff, "ruff is a dev dependency"
    lint = subprocess.run([ruff, "check", str(ROOT)], capture_output=True, text=True, cwd=ROOT)
    assert lint.returncode == 0, lint.stdout
    types = subprocess.run(
        [sys.executable, "-m", "mypy", "metta_exp", "hydra_plugins"], capture_output=True, text=True, cwd=ROOT
    )
    assert types.returncode == 0, types.stdout
