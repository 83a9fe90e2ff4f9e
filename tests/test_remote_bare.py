"""Item 3 of the issue "Remote, second pass": the simulator's machines are bare, as a cloud's are: a Python
with a Python stack, but neither metta-exp nor your project, unless the task's setup installs them. The
default setup installs the metta-exp that launched the job (its wheel) and the workdir's project."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import PY, run_cli, wait_group_end

from metta_exp.backends.skypilot.sim.api import FakeSkyApi
from metta_exp.errors import ConfigError
from metta_exp.status import JobStatus
from metta_exp.store import JobStore

FAST = {
    "METTA_EXP_SKY_POLL_S": "0.5",
    "METTA_EXP_SKY_LOG_S": "0.5",
}  # metta-exp's knobs; the simulator's: harsh


@pytest.mark.slow
def test_the_readme_demo_runs_on_a_bare_machine_and_its_report_has_every_runs_plots(
    state_dir: Path, tmp_path: Path
) -> None:
    sky = FakeSkyApi(tmp_path / "sky")
    env = {"METTA_EXP_FAKE_SKY_DIR": str(sky.root), **FAST}
    try:
        result = run_cli("+experiment=demo", "remote=true", "group=bare", "trainer.total_timesteps=40000", env=env,
                         timeout=300)  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        image = sky.root / "image"
        bare = subprocess.run([str(image / "bin" / "python3"), "-c", "import metta_exp"], capture_output=True,
                              text=True, env={"PYTHONPATH": str(image / "site"), "PATH": "/usr/bin:/bin"})  # fmt: skip
        assert "No module named 'metta_exp'" in bare.stderr, "the machine's own Python has no metta-exp"
        with JobStore.open(state_dir) as store:
            jobs = store.jobs("bare")
        assert [j.status for j in jobs] == [JobStatus.SUCCEEDED] * 3
        from metta_exp.metrics import fetch_metrics

        df = fetch_metrics(jobs, ["overview/reward"], progress=False)
        assert df.attrs["errors"] == {} and set(df.attrs["sources"].values()) >= {
            f"log {job.log_path}" for job in jobs
        }, df.attrs  # no W&B, no metrics file here: the progress lines the copied logs hold
        # every run is a curve to its last step, however fast the machine (its first point and its last)
        assert {j.run: df[df["run"] == j.run]["step"].max() for j in jobs} == {j.run: 40000 for j in jobs}
        assert all(len(df[df["run"] == j.run]) >= 2 for j in jobs)
        report = (Path("experiments") / "notebooks" / "bare.html").read_text()
        assert report.count("data:image/png;base64") >= 2, "the reward and SPS plots"
        assert "not fetched" not in report
    finally:
        sky.kill_all()


def test_a_module_the_machine_cannot_have_is_refused_before_anything_is_submitted(
    state_dir: Path, tmp_path: Path
) -> None:
    conf = tmp_path / "conf"
    (conf / "experiment").mkdir(parents=True)
    (conf / "experiment" / "mine.yaml").write_text(
        "# @package _global_\nmodule: mypkg.train\nruns: [a]\ngpus: 0\n"
    )
    env = {"METTA_EXP_FAKE_SKY_DIR": str(tmp_path / "sky")}
    result = run_cli("--config-dir", str(conf), "+experiment=mine", env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "Error: job a: the module 'mypkg.train' would not be found"
    )
    assert "skypilot.workdir=DIR" in lines[0] and "remote=false" in lines[0]
    assert not state_dir.exists() and not list((tmp_path / "sky").glob("jobs/*")), (
        "nothing written or submitted"
    )
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    dry = run_cli("--config-dir", str(conf), "+experiment=mine", "skypilot.workdir=.", "dry_run=true", env=env,
                  cwd=tmp_path)  # fmt: skip
    assert dry.returncode == 0, dry.stderr  # a workdir that holds it: fine


def test_modules_the_default_setups_wheel_ships_are_not_refused() -> None:
    """The Hydra launcher's job wrapper (``hydra_plugins.metta_exp_launcher._job``) is in the wheel, as
    metta-exp is: a remote Hydra job needs no workdir for it."""
    from metta_exp.backends.skypilot.check import check_jobs
    from metta_exp.config import SkyPilotSettings, WandbSettings
    from metta_exp.records import JobSpec

    def spec(module: str) -> JobSpec:
        return JobSpec(group="g", run="a", args=(), gpus=0, env={}, run_dir="/tmp/a", wandb_run_id="x",
                       module=module)  # fmt: skip

    for module in ("metta_exp.train", "hydra_plugins.metta_exp_launcher._job"):
        check_jobs([spec(module)], SkyPilotSettings(), WandbSettings(), code=True)
    with pytest.raises(ConfigError, match="'hydra_plugins.other._job' would not be found"):
        check_jobs([spec("hydra_plugins.other._job")], SkyPilotSettings(), WandbSettings(), code=True)


PROJECT_TOML = """[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "mypkg"
version = "0.3"

[tool.setuptools]
packages = ["mypkg"]
"""
TRAIN = """import importlib.metadata
from metta_exp import tracking
print("mypkg", importlib.metadata.version("mypkg"), "metta-exp", importlib.metadata.version("metta-exp"))
with tracking.init(total_steps=2) as run:
    run.log({"overview/reward": 1.0}, step=1)
"""


@pytest.mark.slow
def test_the_workdir_project_and_metta_exp_are_installed_by_the_default_setup(
    state_dir: Path, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    (project / "mypkg").mkdir(parents=True)
    (project / "pyproject.toml").write_text(PROJECT_TOML)
    (project / "mypkg" / "__init__.py").write_text("")
    (project / "mypkg" / "train.py").write_text(TRAIN)
    (project / "conf" / "experiment").mkdir(parents=True)
    (project / "conf" / "experiment" / "mine.yaml").write_text(
        "# @package _global_\nmodule: mypkg.train\nruns: [a]\ngpus: 0\ngenerate_notebook: false\n"
        "skypilot: {workdir: .}\n"
    )
    sky = FakeSkyApi(tmp_path / "sky")
    env = {"METTA_EXP_FAKE_SKY_DIR": str(sky.root), **FAST}
    try:
        result = run_cli("--config-dir", str(project / "conf"), "+experiment=mine", "group=proj", env=env,
                         cwd=project, timeout=300)  # fmt: skip
        job = wait_group_end(state_dir, "proj")[0]
        log = Path(job.log_path or "").read_text()
        assert result.returncode == 0 and job.status == JobStatus.SUCCEEDED, result.stdout + log
        assert "mypkg 0.3 metta-exp 0.1.0" in log, (
            "the project and metta-exp were installed (not just on a path)"
        )
    finally:
        sky.kill_all()


def test_the_default_setup_is_in_the_dry_run_and_can_be_left_out(state_dir: Path) -> None:
    shown = run_cli("+experiment=demo", "remote=true", "dry_run=true", "group=d")
    assert shown.returncode == 0, shown.stderr
    task = yaml.safe_load(shown.stdout.split("skypilot task:\n", 1)[1].split("\n== ", 1)[0])
    assert task["setup"].startswith(
        "# metta-exp's default setup (skypilot.default_setup=false leaves it out)"
    )
    wheel = next(dst for dst in task["file_mounts"] if dst.startswith("~/.metta-exp/wheels/"))
    assert wheel.endswith("-py3-none-any.whl") and Path(task["file_mounts"][wheel]).name == Path(wheel).name
    assert task["run"].startswith('export PATH="$HOME/.metta-exp/venv/bin:$PATH"\n')
    off = run_cli("+experiment=demo", "remote=true", "dry_run=true", "group=d", "skypilot.default_setup=false",
                  "skypilot.setup=echo mine")  # fmt: skip
    assert off.returncode == 0, off.stderr
    task = yaml.safe_load(off.stdout.split("skypilot task:\n", 1)[1].split("\n== ", 1)[0])
    assert task["setup"] == "echo mine" and "file_mounts" not in task and ".metta-exp" not in task["run"]
    assert not state_dir.exists(), "a dry run writes nothing (the wheel is packed at submit)"


def test_the_wheel_is_the_running_metta_exp(tmp_path: Path) -> None:
    from metta_exp.backends.skypilot.wheel import ensure_wheel, wheel_bytes

    first = ensure_wheel(tmp_path)
    assert ensure_wheel(tmp_path) == first and first.read_bytes() == wheel_bytes()[1], (
        "written once, same bytes"
    )
    venv = tmp_path / "venv"
    subprocess.run([PY, "-m", "venv", "--without-pip", str(venv)], check=True)
    target = tmp_path / "site"
    installed = subprocess.run(  # pip from this environment installs the wheel alone, into a bare directory
        [PY, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", "--target", str(target), str(first)],
        capture_output=True, text=True, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    assert (target / "metta_exp" / "conf" / "experiment" / "demo.yaml").exists()
    assert (target / "hydra_plugins" / "metta_exp_launcher" / "__init__.py").exists()
    meta = next(target.glob("metta_exp-*.dist-info"))
    assert "Requires-Dist: hydra-core" in (meta / "METADATA").read_text()
    assert "metta-exp = metta_exp.cli:main" in (meta / "entry_points.txt").read_text()
