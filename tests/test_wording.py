"""The small words a newcomer reads: counts agree with their nouns ("1 job"), a taken group name
suggests what fits that group, and a shipped experiment's description is whole in ``--help``."""

from __future__ import annotations

from pathlib import Path

from conftest import run_cli

from metta_exp.config import Experiment
from metta_exp.records import GroupConfig
from metta_exp.resolve import resolve
from metta_exp.status import JobStatus
from metta_exp.store import JobStore


def recorded_group(state_dir: Path, name: str, runs: list[str]) -> JobStore:
    """A local group recorded in a real store with its jobs pending, and no runner (nothing runs)."""
    exp = Experiment(command=["true"], runs=runs, gpus=0, remote=False, generate_notebook=False)
    specs = resolve(exp, name, state_dir, (), environ={}, instance="i")
    store = JobStore.open(state_dir)
    config = GroupConfig(exp, launch_dir=str(state_dir.parent), instance="i")
    store.create_group(name, "x", "local", config, specs)
    return store


def end_as(store: JobStore, group: str, run: str, status: JobStatus, close: bool = False) -> None:
    """``run`` ends with ``status``; with ``close``, the group ends too (as its runner ends it)."""
    store.acquire_lease(group, "host:1:test", 600, 0)
    attempt = store.claim(group, run, "host:1:test", [], "/dev/null")
    assert attempt == 1 and store.finish_attempt(group, run, attempt, status, 1)
    if close:
        assert store.end_group(group, "host:1:test")
    else:
        store.release_lease(group, "host:1:test")


def test_one_job_is_one_job_in_dry_run_show_and_kill(state_dir: Path) -> None:
    dry = run_cli("run", "metta_exp.examples.recipes.demo", "runs=[lr_low]", "dry_run=true")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("Dry run: group ") and ", 1 job on local (nothing submitted)" in dry.stdout

    store = recorded_group(state_dir, "g", ["a", "b"])
    end_as(store, "g", "b", JobStatus.FAILED)
    shown = run_cli("job", "show", "g")
    assert " · 2 jobs: 1 pending, 1 failed" in shown.stdout, shown.stdout
    killed = run_cli("job", "kill", "g", "--force")
    assert killed.returncode == 0, killed.stderr
    assert "Killed g: 1 cancelled; 1 job left as it was (0 succeeded, 1 failed)." in killed.stdout

    recorded_group(state_dir, "one", ["a"])
    assert " · 1 job: 1 pending" in run_cli("job", "show", "one").stdout
    killed = run_cli("job", "kill", "one", "--force")  # nothing left as it was: nothing to say of it
    assert killed.stdout.splitlines()[-1] == "Killed one: 1 cancelled."


def test_a_taken_group_name_suggests_what_fits_that_group(state_dir: Path) -> None:
    store = recorded_group(state_dir, "busy", ["a"])  # still open: watch it, it has nothing to rerun
    taken = run_cli("+experiment=demo", "group=busy")
    assert taken.returncode == 2
    assert "group 'busy' already exists and has not ended" in taken.stderr
    assert "metta-exp job monitor busy" in taken.stderr and "retry" not in taken.stderr

    store = recorded_group(state_dir, "failed", ["a"])
    end_as(store, "failed", "a", JobStatus.FAILED, close=True)
    taken = run_cli("+experiment=demo", "group=failed")
    assert (
        "metta-exp job retry failed" in taken.stderr
        and "rerun its 1 run that did not succeed" in taken.stderr
    )

    store = recorded_group(state_dir, "fine", ["a"])
    end_as(store, "fine", "a", JobStatus.SUCCEEDED, close=True)
    taken = run_cli("+experiment=demo", "group=fine")
    assert "group 'fine' already exists: choose another group=NAME" in taken.stderr
    assert "retry" not in taken.stderr


def test_help_shows_each_shipped_experiments_whole_description() -> None:
    text = run_cli("--help").stdout
    lines = text.splitlines()
    start = lines.index("Shipped experiments:")
    described = " ".join(line.strip() for line in lines[start + 1 : lines.index("", start)])
    assert "carried by the file itself: an Optuna study (TPE, median pruning) that the group's runner" in (
        described
    )
    assert "drives, 12 trials, 2 at once." in described
    assert all(len(line) <= 100 for line in lines[start:]), "wrapped to fit a terminal"
