"""metta-exp used from a project of one's own, as the README's "In your own project" says: a uv project
that depends on metta-exp from a path (``uv add PATH``), its own trainer and experiment file, a group
launched from its own directory. Local jobs run in the project's environment; state stays in the project
(and out of its git status)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, kill_everything

pytestmark = pytest.mark.slow

TRAIN = """\
import os, pathlib, sys
from metta_exp import tracking

steps = int(dict(a.split("=", 1) for a in sys.argv[1:]).get("steps", "100"))
(pathlib.Path(os.environ["METTA_EXP_RUN_DIR"]) / "prefix.txt").write_text(sys.prefix)
with tracking.init(total_steps=steps) as run:
    for step in range(0, steps + 1, 10):
        run.log({"overview/reward": step / 10, "overview/sps": 1000.0}, step=step)
"""

EXPERIMENT = """\
# @package _global_
# My project's experiment: two runs of my own trainer on this machine.
module: my_project.train
runs: [short, long]
args_per_run: {short: [steps=50], long: [steps=100]}
gpus: 0
remote: false
generate_notebook: false
"""


def readme_commands() -> list[list[str]]:
    """The commands of the README's "In your own project" section, as shell words."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## In your own project\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None, "the section shows its commands"
    return [shlex.split(line, comments=True) for line in block[1].splitlines() if line.strip()]


def test_a_project_of_ones_own_depends_on_metta_exp_from_a_path_and_runs_a_group(tmp_path: Path) -> None:
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not on PATH (run the suite with `uv run pytest`)")
    project = tmp_path / "my project"
    project.mkdir()
    env = {
        k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "METTA_EXP_STATE_DIR")
    }
    env |= {"UV_OFFLINE": "1", "TMPDIR": str(tmp_path), "UV_PROJECT_ENVIRONMENT": str(project / ".venv")}

    def run(*argv: str, cwd: Path = project) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)

    init = run(
        uv,
        "init",
        "--bare",
        "--name",
        "my-project",
        "--python",
        os.path.realpath(shutil.which("python3") or "python3"),
    )
    assert init.returncode == 0, init.stderr
    add, launch, listing = readme_commands()
    assert add == ["uv", "add", "/path/to/metta-exp"]
    added = run(uv, *add[1:-1], str(ROOT))
    offline_miss = ("need to be downloaded from a registry", "because the network was disabled")
    if added.returncode != 0 and any(why in added.stderr for why in offline_miss):
        # offline, uv resolves from the registry pages it has cached; a fresh cache (a sync by the lock
        # downloads wheels by URL and fetches none) has none, and tests use no network
        pytest.skip("uv's cache holds no registry pages to resolve a new project offline (a fresh cache)")
    assert added.returncode == 0, added.stderr
    (project / "my_project").mkdir()
    (project / "my_project" / "__init__.py").write_text("")
    (project / "my_project" / "train.py").write_text(TRAIN)
    (project / "conf" / "experiment").mkdir(parents=True)
    (project / "conf" / "experiment" / "mine.yaml").write_text(EXPERIMENT)
    try:
        result = run(uv, *launch[1:], "group=mine")  # named, to find its files below
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Group mine: 2 jobs on local" in result.stdout and "mine: 2 jobs, 2 succeeded" in result.stdout
        # each job ran in the project's environment, where a trainer's dependencies belong
        venv = (project / ".venv").resolve()
        for run_name in ("short", "long"):
            prefix = Path((project / "job_state" / "runs" / "mine" / run_name / "prefix.txt").read_text())
            assert prefix.resolve() == venv
        listed = run(uv, *listing[1:], cwd=project / "my_project")  # from a directory below, too
        assert listed.returncode == 0 and "mine" in listed.stdout, listed.stderr
        assert (project / "job_state" / ".gitignore").is_file()
    finally:
        kill_everything(project / "job_state")
