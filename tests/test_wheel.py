"""metta-exp installed as a wheel into a fresh venv, used from outside the checkout: the config files,
templates and the Hydra launcher plugin ship inside the wheel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the wheel, a fresh venv with it installed)"""
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not on PATH (run the suite with `uv run pytest`)")
    out = tmp_path_factory.mktemp("wheel")
    env = {**os.environ, "TMPDIR": str(tmp_path_factory.mktemp("uv temp"))}  # uv's lock files: ours to drop
    subprocess.run(
        [uv, "build", "--wheel", "--out-dir", str(out), str(ROOT)], check=True, capture_output=True, env=env
    )
    wheel = next(out.glob("metta_exp-*.whl"))
    venv = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run(
        [uv, "venv", "--python", sys.executable, str(venv)], check=True, capture_output=True, env=env
    )
    subprocess.run(
        [uv, "pip", "install", "--python", str(venv / "bin" / "python"), str(wheel)],
        check=True,
        capture_output=True,
        env=env,
    )
    return wheel, venv


def test_wheel_ships_configs_templates_and_plugin(built: tuple[Path, Path]) -> None:
    names = set(zipfile.ZipFile(built[0]).namelist())
    shipped = {str(p.relative_to(ROOT / "conf")) for p in (ROOT / "conf").rglob("*.yaml")}
    assert shipped and {f"metta_exp/conf/{n}" for n in shipped} <= names
    templates = {
        str(p.relative_to(ROOT / "templates")) for p in (ROOT / "templates").rglob("*") if p.is_file()
    }
    assert {f"metta_exp/templates/{n}" for n in templates} <= names
    assert any(n.startswith("hydra_plugins/metta_exp_launcher/") for n in names)
    assert "hydra_plugins/__init__.py" not in names, "hydra_plugins must stay a namespace package"


def test_installed_wheel_runs_the_demo_outside_the_checkout(built: tuple[Path, Path], tmp_path: Path) -> None:
    installed = built[1]
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["METTA_EXP_STATE_DIR"] = str(tmp_path / "state")
    exe = installed / "bin" / "metta-exp"
    where = subprocess.run(
        [str(installed / "bin" / "python"), "-c", "import metta_exp; print(metta_exp.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert str(installed) in where.stdout, "must import the installed package, not the checkout"

    shown = subprocess.run([str(exe), "--help"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert shown.returncode == 0 and "\n  demo " in shown.stdout

    result = subprocess.run(
        [
            str(exe),
            "+experiment=demo",
            "group=wheel",
            "trainer.total_timesteps=2000",
            "generate_notebook=false",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 succeeded" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]


RECIPE = """
from metta_exp import ExperimentTool


def experiment(steps: int = 100000, runs: list[str] | None = None) -> ExperimentTool:
    '''Two short CartPole runs.'''
    return ExperimentTool(
        module="metta_exp.examples.cartpole",
        runs=runs or ["a", "b"],
        args=[f"trainer.total_timesteps={steps}"],
        gpus=0,
        remote=False,
        generate_notebook=False,
    )
"""


def test_installed_wheel_runs_recipes_outside_the_checkout(built: tuple[Path, Path], tmp_path: Path) -> None:
    installed = built[1]
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["METTA_EXP_STATE_DIR"] = str(tmp_path / "state")
    exe = str(installed / "bin" / "metta-exp")
    (tmp_path / "my recipes").mkdir()
    (tmp_path / "my recipes" / "quick.py").write_text(RECIPE)
    (tmp_path / "experiments" / "recipes").mkdir(parents=True)
    (tmp_path / "experiments" / "recipes" / "short.py").write_text(RECIPE)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [exe, "run", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )

    # the console script's sys.path has its bin directory, not the cwd: the short name is found anyway
    short = run("short.experiment", "runs=[x]", "dry_run=true")
    assert short.returncode == 0 and "Dry run: group short.experiment-" in short.stdout, short.stderr
    listed = run("--list")
    assert listed.returncode == 0 and listed.stdout.startswith("short.experiment  Two short CartPole runs.")
    shipped = run("metta_exp.examples.recipes.demo", "--help")
    assert shipped.returncode == 0 and "total_timesteps: int = 150000" in shipped.stdout

    result = run("my recipes/quick.py:experiment", "steps=1500", "group=wheel-recipe")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Group wheel-recipe: 2 jobs on local" in result.stdout and "2 succeeded" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["experiments", "my recipes", "state"]
