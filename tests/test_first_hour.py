"""Paths a newcomer takes in the first hour, each as they take it: the design document's recipe pattern
whose runs differ only in name, a recipe next to a training package of the same name, Hydra's list
syntax for ``args`` on the command line, a misspelt module, and trial names whose keys end in digits."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from conftest import kill_everything, run_cli

from metta_exp.config import Experiment
from metta_exp.resolve import identical_runs, resolve
from metta_exp.status import JobStatus

REFERENCE = Path(__file__).resolve().parent / "reference_recipes"


def specs(**kw: object) -> list:  # noqa: ANN401 - test helper
    exp = Experiment(module="arena.train", gpus=0, remote=False, **kw)  # type: ignore[arg-type]
    return resolve(exp, "g", Path("/state"))


def test_runs_that_differ_only_in_name_are_found() -> None:
    same = specs(
        runs=["baseline", "high_lr", "low_lr", "high_entropy"],
        args_per_run={"baseline": ["trainer.total_timesteps=1000000"]},
    )
    assert identical_runs(same) == [["high_lr", "low_lr", "high_entropy"]]
    distinct = specs(runs=["a", "b"], args_per_run={"a": ["x=1"], "b": ["x=2"]})
    assert identical_runs(distinct) == []
    # the same arguments in another order are another command line: a trainer may read them in order
    assert (
        identical_runs(specs(runs=["a", "b"], args_per_run={"a": ["x=1", "y=2"], "b": ["y=2", "x=1"]})) == []
    )
    assert identical_runs(specs(runs=["a", "b", "c", "d"], args_per_run={"c": ["x=1"], "d": ["x=1"]})) == [
        ["a", "b"],
        ["c", "d"],
    ]


def test_the_design_documents_recipe_pattern_warns_naming_the_identical_runs(state_dir: Path) -> None:
    shutil.copytree(REFERENCE / "experiments", state_dir.parent / "experiments")
    runs = 'runs=["baseline","high_lr","low_lr","high_entropy"]'
    result = run_cli("run", "arena.experiment", runs, "group=lr_sweep", "dry_run=true")
    assert result.returncode == 0, result.stderr
    assert result.stderr == (
        "Warning: runs high_lr, low_lr, high_entropy run the same command (python -m arena.train): they "
        "differ only in name (args_per_run has no entry for them). Give each its own arguments in "
        "args_per_run (a seed, for repeats on purpose), or run one of them: 'runs=[baseline,high_lr]'.\n"
    )
    quiet = run_cli("run", "arena.experiment", 'runs=["baseline","variant"]', "dry_run=true")
    assert quiet.returncode == 0 and quiet.stderr == ""


def design_layout(root: Path) -> None:
    """The design document's layout: a training package ``arena/`` (``arena.train``) beside the recipes in
    ``experiments/recipes/arena.py``."""
    (root / "arena").mkdir()
    (root / "arena" / "__init__.py").write_text('"""The arena training package."""\n')
    (root / "arena" / "train.py").write_text("print('training')\n")
    (root / "experiments" / "recipes").mkdir(parents=True)
    (root / "experiments" / "recipes" / "arena.py").write_text(
        "from metta_exp import ExperimentTool\n\n\n"
        "def experiment() -> ExperimentTool:\n"
        "    return ExperimentTool(module='arena.train', runs=['a'], gpus=0, remote=False)\n"
    )


def test_a_recipe_beside_a_training_package_of_the_same_name_is_found(state_dir: Path) -> None:
    design_layout(state_dir.parent)
    found = run_cli("run", "arena.experiment", "dry_run=true")
    assert found.returncode == 0, found.stderr
    assert "argv:       " in found.stdout and "-m arena.train" in found.stdout

    missing = run_cli("run", "arena.sweep")
    assert missing.returncode == 2
    assert missing.stderr == (
        "Error: no recipe function 'sweep' in arena (arena/__init__.py) nor in experiments.recipes.arena "
        "(experiments/recipes/arena.py); experiments.recipes.arena's recipes: experiment\n"
    )


def test_hydras_list_syntax_with_overrides_inside_works_for_a_yaml_experiment_as_for_a_recipe(
    state_dir: Path,
) -> None:
    shown = run_cli(
        "+experiment=demo",
        "args=[trainer.total_timesteps=150000]",
        "args_per_run.lr_low=[trainer.learning_rate=0.5, trainer.gamma=0.9]",
        "runs=[lr_low]",
        "--cfg",
    )
    assert shown.returncode == 0, shown.stderr
    exp = json.loads(shown.stdout)
    assert exp["args"] == ["trainer.total_timesteps=150000"]
    assert exp["args_per_run"] == {"lr_low": ["trainer.learning_rate=0.5", "trainer.gamma=0.9"]}
    # Hydra's own forms keep working, and what no reading makes sense of is still Hydra's error
    quoted = run_cli("+experiment=demo", "args=['trainer.total_timesteps=1000']", "--cfg")
    assert json.loads(quoted.stdout)["args"] == ["trainer.total_timesteps=1000"]
    broken = run_cli("+experiment=demo", "args=[trainer.total_timesteps=1000", "dry_run=true")
    assert broken.returncode == 2 and broken.stderr.startswith("Error: ")


def test_job_retry_shows_what_happens_from_the_retry_on(state_dir: Path) -> None:
    from conftest import PY, wait_group_end

    from metta_exp.submit import launch_experiment

    flaky = "import os, sys; sys.exit(1 if os.environ['METTA_EXP_ATTEMPT'] == '1' else 0)"
    exp = Experiment(
        command=[PY, "-c", flaky], runs=["a", "b"], gpus=0, remote=False, wait=False, generate_notebook=False
    )
    exp.group = "flaky"
    assert launch_experiment(exp, name="flaky", out=io.StringIO()) == 0
    assert {j.status for j in wait_group_end(state_dir, "flaky")} == {JobStatus.FAILED}
    retried = run_cli("job", "retry", "flaky")
    assert retried.returncode == 0, retried.stderr
    lines = retried.stdout.splitlines()
    assert "(attempt 1)" not in retried.stdout, "the group's history before the retry is not replayed"
    assert any(line.endswith("retry requested (a, b)") for line in lines), lines
    assert any(line.endswith("a: pending -> launching (attempt 2)") for line in lines), lines
    assert "flaky: 2 jobs, 2 succeeded" in retried.stdout


@pytest.mark.slow
def test_a_misspelt_module_of_a_local_group_is_refused_before_anything_is_submitted(state_dir: Path) -> None:
    typo = run_cli("+experiment=demo", "module=metta_exp.examples.cartpol")
    assert typo.returncode == 2
    assert typo.stderr.startswith(
        "Error: no module named 'metta_exp.examples.cartpol' (did you mean 'metta_exp.examples.cartpole'?)"
    ), typo.stderr
    assert "Traceback" not in typo.stderr and not state_dir.exists()
    dry = run_cli("+experiment=demo", "module=metta_exp.examples.cartpol", "dry_run=true")
    assert dry.returncode == 2 and "Error: the real launch would be refused: no module named" in dry.stderr
    top = run_cli("+experiment=demo", "module=nosuchpackage.train", "dry_run=true")
    assert "no module named 'nosuchpackage'" in top.stderr
    conf = state_dir.parent / "conf"
    (conf / "experiment").mkdir(parents=True)
    (conf / "experiment" / "mine.yaml").write_text(
        "# @package _global_\ncommand: [pyhton, train.py]\nruns: [a]\ngpus: 0\nremote: false\n"
    )
    command = run_cli("--config-dir", str(conf), "+experiment=mine")
    assert command.returncode == 2 and "Error: no command 'pyhton' on the jobs' PATH" in command.stderr
    assert not state_dir.exists()


def test_a_key_ending_in_a_digit_stays_apart_from_its_value_in_run_names() -> None:
    from metta_exp.runnames import name_part
    from metta_exp.trials.space import Dimension, SearchSpace

    assert name_part("x1", "1.26", 1.26) == "x1_1.26"
    assert name_part("x1", "adam", "adam") == "x1_adam"
    assert name_part("lr", "0.001", 0.001) == "lr0.001"  # a label that ends in a letter reads as before
    dims = (
        Dimension("x1", "float", 1.0, 2.0),
        Dimension("y", "categorical", choices=(3, 4), texts=("3", "4")),
    )
    assert SearchSpace(dims, base_run="train").run_name(0, {"x1": 1.26, "y": 3}) == "t000-x1_1.26-y3"


def git(repo: Path, *args: str) -> str:
    import subprocess

    env = {
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": str(repo),
        "PATH": "/usr/bin:/bin",
    }
    return subprocess.run(
        ["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True
    ).stdout


RECIPE = """\
import sys
from metta_exp import Experiment

def experiment() -> Experiment:
    return Experiment(command=[sys.executable, "-c", "pass"], runs=["a"], gpus=0, remote=False, wait=False,
                      generate_notebook=False)
"""


def group_in_a_repo(tmp_path: Path, ignored: str | None) -> Path:
    """A git repository holding a recipe (and the user's own ``.gitignore`` holding ``ignored``) in which a
    group ran and its notebook was written to the default place; the repository."""
    from conftest import wait_group_end

    repo = tmp_path / "my project"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "recipe.py").write_text(RECIPE)
    if ignored is not None:
        (repo / ".gitignore").write_text(ignored)
    git(repo, "add", ".")
    git(repo, "-c", "user.name=me", "-c", "user.email=me@example.com", "commit", "-qm", "recipe")
    try:
        result = run_cli("run", f"{repo / 'recipe.py'}:experiment", "group=g", cwd=repo)
        assert result.returncode == 0, result.stderr
        wait_group_end(repo / "job_state", "g")
        assert run_cli("job", "notebook", "g", cwd=repo).returncode == 0  # experiments/notebooks/g.ipynb
    finally:
        kill_everything(repo / "job_state")
    return repo


def test_state_and_notebooks_stay_out_of_git_status(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("METTA_EXP_STATE_DIR", raising=False)
    repo = group_in_a_repo(tmp_path, ignored=None)
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    assert (repo / "job_state" / ".gitignore").read_text().endswith("\n*\n")
    assert (repo / "experiments" / "notebooks" / ".gitignore").is_file()


def test_a_users_own_ignore_rules_are_left_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("METTA_EXP_STATE_DIR", raising=False)
    repo = group_in_a_repo(tmp_path, ignored="job_state/\nexperiments/notebooks/\n")
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    assert not (repo / "job_state" / ".gitignore").exists()
    assert not (repo / "experiments" / "notebooks" / ".gitignore").exists()
    assert (repo / ".gitignore").read_text() == "job_state/\nexperiments/notebooks/\n"


def test_outside_git_the_ignore_file_is_written_and_a_failing_write_is_no_error(tmp_path: Path) -> None:
    from metta_exp.paths import keep_out_of_git

    (tmp_path / "state").mkdir()
    keep_out_of_git(tmp_path / "state")
    assert (tmp_path / "state" / ".gitignore").read_text().splitlines()[-1] == "*"
    keep_out_of_git(tmp_path / "gone")  # a directory that is not there: nothing raised
