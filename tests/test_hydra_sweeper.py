"""``hydra/sweeper=metta_exp``: Hydra's Optuna sweeper configuration run as ONE metta-exp search group.

The sphere app of Hydra's Optuna sweeper example (``examples/hydra_app``, whose only change is the
sweeper's name) runs its 20 trials as one group and writes ``optimization_results.yaml``; a grid sampler
with ``wait=false`` returns at once while the study goes on; bad settings are one ``Error:`` line."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import PY, ROOT, wait_group_end

from metta_exp.status import JobStatus
from metta_exp.store import JobStore
from metta_exp.trials import TrialState, best_trial

SPHERE = ROOT / "examples" / "hydra_app" / "sphere.py"


def run_sphere(work: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, str(SPHERE), "-m", *overrides],
        cwd=work,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
    )


def only_group(state_dir: Path) -> str:
    with JobStore.open(state_dir) as store:
        (group,) = [g.name for g in store.list_groups()]
    return group


@pytest.mark.slow
def test_the_sphere_example_runs_its_study_as_one_group(state_dir: Path) -> None:
    work = state_dir.parent
    result = run_sphere(work)
    assert result.returncode == 0, result.stdout + result.stderr
    group = only_group(state_dir)
    assert group.startswith("sphere-")
    with JobStore.open(state_dir) as store:
        jobs, trials, record = store.jobs(group), store.trials(group), store.group(group)
    assert len(jobs) == len(trials) == 20
    assert all(j.status == JobStatus.SUCCEEDED for j in jobs)
    assert record.exp.search.objective == "return value" and record.exp.search.direction == "minimize"
    for trial in trials:  # the trial's value is what sphere() returned for its parameters
        x, y = trial.params["x"], trial.params["y"]
        assert trial.state == TrialState.COMPLETE and trial.value == x**2 + y**2
        assert -5.5 <= x <= 5.5 and (x * 2).is_integer() and y in (-5, 0, 5)
    best = best_trial(trials, "minimize")
    assert best is not None
    (results_file,) = (work / "multirun").glob("*/*/optimization_results.yaml")
    results = yaml.safe_load(results_file.read_text())
    assert results == {
        "name": "optuna",
        "best_params": dict(best.params),
        "best_value": best.value,
        "group": group,
    }
    assert f"Best parameters: {dict(best.params)}" in result.stdout
    assert f"Best value: {best.value}" in result.stdout
    assert (results_file.parent / "multirun.yaml").is_file()
    assert (results_file.parent / "0" / ".hydra" / "config.yaml").is_file()  # trial 0's Hydra outputs
    assert (
        work / "experiments" / "notebooks" / f"{group}.html"
    ).is_file()  # the report, search cells and all


@pytest.mark.slow
def test_a_grid_search_returns_at_once_and_goes_on(state_dir: Path) -> None:
    """``range`` includes its stop as in Hydra's Optuna sweeper; the grid caps the trials at its size; the
    results file is written when the study ends, though the terminal did not wait for it."""
    work = state_dir.parent
    result = run_sphere(
        work,
        "hydra/sweeper/sampler=grid",
        "hydra/launcher=metta_exp",
        "hydra.launcher.wait=false",
        "hydra.launcher.generate_notebook=false",
        "hydra.sweeper.n_jobs=3",
        "x=range(0, 2)",
        "y=choice(-5, 5)",
        "z=7",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    group = only_group(state_dir)
    assert f"the study goes on in group {group}" in result.stdout
    jobs = wait_group_end(state_dir, group)
    with JobStore.open(state_dir) as store:
        trials = store.trials(group)
    assert len(jobs) == 6 and all(j.status == JobStatus.SUCCEEDED for j in jobs)
    assert sorted((t.params["x"], t.params["y"]) for t in trials) == [
        (x, y) for x in (0, 1, 2) for y in (-5, 5)
    ]
    assert all(t.value == t.params["x"] ** 2 + t.params["y"] ** 2 for t in trials)
    assert "z=7" in jobs[0].spec.args  # a fixed override reaches every trial
    # nobody waited for the study: its runner wrote the results file when it ended
    best = best_trial(trials, "minimize")
    assert best is not None
    (results_file,) = (work / "multirun").glob("*/*/optimization_results.yaml")
    assert yaml.safe_load(results_file.read_text()) == {
        "name": "optuna",
        "best_params": dict(best.params),
        "best_value": best.value,
        "group": group,
    }
    assert (results_file.parent / "multirun.yaml").is_file()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["hydra.sweeper.sampler._target_=optuna.samplers.NSGAIISampler"],
            "hydra.sweeper.sampler: 'optuna.samplers.NSGAIISampler' is not a sampler metta-exp runs; choose "
            "one with hydra/sweeper/sampler=tpe, random, cmaes or grid",
        ),
        (
            ["x=interval(5, 1)"],
            "bad search 'x=interval(5, 1)': an interval needs two numbers, the first below the second",
        ),
        (["x=glob(*)"], "bad search 'x=glob(*)': glob(...) is not supported"),
        (["hydra.sweeper.direction=[minimize,maximize]"], "asks for 2 objectives; metta-exp optimises one"),
        (
            ["hydra/sweeper/sampler=grid", "x=interval(0, 1)"],
            "a grid search needs discrete",
        ),
        (["hydra.sweeper.n_trials=0"], "'search.n_trials' must be at least 1, got 0"),
    ],
)
def test_bad_sweeper_settings_are_one_error_line(state_dir: Path, overrides: list[str], message: str) -> None:
    """One ``Error:`` line and exit code 2, as for the metta-exp command (not Hydra's exit code 1 and its
    HYDRA_FULL_ERROR hint)."""
    result = run_sphere(state_dir.parent, *overrides)
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith("Error: metta-exp sweeper: ") and message in line, result.stderr
    assert not state_dir.exists(), "nothing was written"


def test_a_failed_study_is_one_error_line_and_exit_1(state_dir: Path) -> None:
    work = state_dir.parent
    overrides = ["hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2", "error=true"]
    result = run_sphere(
        work, *overrides, "hydra/launcher=metta_exp", "hydra.launcher.generate_notebook=false"
    )
    assert result.returncode == 1, result.stdout + result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    group = only_group(state_dir)
    assert line.startswith(
        "Error: metta-exp sweeper: 2 of 2 trials failed (max_failure_rate=0.0; the first: "
    )
    assert line.endswith(f"see metta-exp job show {group}")
    assert not list((work / "multirun").glob("*/*/optimization_results.yaml")), "no trial completed"
