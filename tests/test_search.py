"""Searches (adaptive sweeps) through the real CLI: an Optuna study driven by the group's runner, with real
job processes, a real store, and the runner killed and taken over mid-study."""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from pathlib import Path

import pytest
from conftest import PY, run_cli, wait_for, wait_group_end

from metta_exp.status import JobStatus
from metta_exp.store import JobStore
from metta_exp.trials import TrialState

JOB = str(Path(__file__).with_name("searchjob.py"))
# every trial the same curve (``y`` does not change it) but trial 4's, at 1% of it and slow: the median
# pruner must end trial 4 once trials 0-3 have completed
PRUNE_T004 = ("y=interval(0.0, 1.0)", "x=0.8", "bad=t004", "slow=t004", "slow_sleep=0.5")


@pytest.fixture
def conf(state_dir: Path) -> Path:
    """A config dir with the ``search`` experiment: one run of tests/searchjob.py on this machine."""
    conf = state_dir.parent / "conf"
    (conf / "experiment").mkdir(parents=True)
    (conf / "experiment" / "search.yaml").write_text(
        "# @package _global_\n"
        f"command: [{json.dumps(PY)}, {json.dumps(JOB)}]\n"
        "runs: [train]\n"
        "args_per_run: {train: [n=10]}\n"
        "gpus: 0\nremote: false\ngenerate_notebook: false\n"
    )
    return conf


def search(conf: Path, *args: str) -> list[str]:
    return ["--config-dir", str(conf), "-m", "+experiment=search", *args]


def trials_of(state_dir: Path, group: str):  # noqa: ANN201
    with JobStore.open(state_dir) as store:
        return store.trials(group), {j.run: j for j in store.jobs(group)}


def test_a_small_search_runs_end_to_end(state_dir: Path, conf: Path) -> None:
    result = run_cli(
        *search(
            conf,
            "x=interval(0.1, 1.0)",
            "opt=choice(fast,slow)",
            "group=s",
            "search.n_trials=6",
            "search.parallel=2",
            "search.seed=3",
            "search.pruner=none",
        ),  # fmt: skip
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # counted against the study's size, not the trials asked so far
    assert "Group s: search of 6 trials, 2 at once, on local, state in" in result.stdout
    assert "Watching s: search of 6 trials, 2 at once · 2 jobs, 2 pending" in result.stdout
    trials, jobs = trials_of(state_dir, "s")
    assert [t.number for t in trials] == list(range(6))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert len({(t.params["x"], t.params["opt"]) for t in trials}) == 6, "no trial asked twice"
    for t in trials:
        job = jobs[t.run]
        assert t.run.startswith(f"t{t.number:03d}-x")
        assert job.status == JobStatus.SUCCEEDED
        # the job got the trial's values, exactly; its objective is its last value of x
        assert f"x={t.params['x']!r}" in job.spec.args and f"opt={t.params['opt']}" in job.spec.args
        assert t.value == pytest.approx(t.params["x"], rel=1e-5)
    assert set(jobs) == {t.run for t in trials}


def test_a_failing_trial_is_told_failed_and_the_search_goes_on(state_dir: Path, conf: Path) -> None:
    result = run_cli(
        *search(
            conf,
            "x=interval(0.1, 1.0)",
            "fail=t001",
            "quiet=t002",
            "group=f",
            "search.n_trials=4",
            "search.parallel=2",
            "search.seed=1",
            "search.pruner=none",
        ),  # fmt: skip
    )
    assert result.returncode == 1, "a failed trial fails the search's exit code"
    trials, jobs = trials_of(state_dir, "f")
    by = {t.number: t for t in trials}
    assert [by[n].state for n in range(4)] == [
        TrialState.COMPLETE,
        TrialState.FAILED,
        TrialState.FAILED,
        TrialState.COMPLETE,
    ]
    assert by[1].reason == "its job failed: exit code 3"
    retried = run_cli("job", "retry", "f")
    assert retried.returncode == 2 and retried.stderr.startswith(
        "Error: 'f' is a search: each trial's outcome"
    )
    assert by[2].reason == "its job succeeded but logged no 'overview/reward' value"
    assert jobs[by[1].run].status == JobStatus.FAILED and jobs[by[2].run].status == JobStatus.SUCCEEDED


def test_a_clearly_bad_trial_is_pruned_and_the_study_still_succeeds(state_dir: Path, conf: Path) -> None:
    """Trials 0-3 complete one after another with the same curve (``y`` does not change it); trial 4 stays
    at 1% of it, slowly: the median pruner ends it at an early checkpoint (past the warm-up fifth), and
    its job is PRUNED (not failed): exit code 0."""
    result = run_cli(
        *search(
            conf,
            *PRUNE_T004,
            "group=p",
            "search.n_trials=5",
            "search.parallel=1",
            "search.seed=2",
        ),  # fmt: skip
    )
    assert result.returncode == 0, result.stdout + result.stderr
    trials, jobs = trials_of(state_dir, "p")
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4 + [TrialState.PRUNED]
    pruned = trials[4]
    job = jobs[pruned.run]
    assert job.status == JobStatus.PRUNED and job.reason == pruned.reason
    assert pruned.reason is not None
    assert pruned.reason.startswith("pruned at step ") and " below the median (" in pruned.reason
    assert pruned.reason.endswith(" of 4 trials")
    step = int(pruned.reason.split()[3].rstrip(":"))
    assert 200 <= step < 1000, "ended early (past the warm-up), not at its last checkpoint"
    assert pruned.steps and pruned.steps[-1][0] == step
    assert "1 pruned" in result.stdout


@pytest.mark.slow
def test_a_search_goes_on_after_its_runner_is_killed_without_asking_or_telling_twice(
    state_dir: Path, conf: Path
) -> None:
    launched = run_cli(
        *search(
            conf,
            "x=interval(0.1, 1.0)",
            "sleep=0.15",
            "group=k",
            "wait=false",
            "search.n_trials=8",
            "search.parallel=2",
            "search.seed=5",
            "search.pruner=none",
        ),  # fmt: skip
    )
    assert launched.returncode == 0, launched.stderr
    with JobStore.open(state_dir) as store:
        wait_for(lambda: len(store.trials("k")) >= 4, timeout=60, what="4 trials asked")
        pid = store.group("k").runner_pid
        assert pid
        os.kill(pid, signal.SIGKILL)  # no chance to hand on: the next command takes over
        asked_before = len(store.trials("k"))
    resumed = run_cli("job", "resume", "k")
    assert resumed.returncode == 0, resumed.stderr
    jobs = wait_group_end(state_dir, "k", timeout=120)
    trials, _ = trials_of(state_dir, "k")
    assert [t.number for t in trials] == list(range(8)) and asked_before < 8
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted(j.run for j in jobs) == sorted(t.run for t in trials), "one job per trial"
    assert len({t.params["x"] for t in trials}) == 8
    with JobStore.open(state_dir) as store:
        asked = Counter(e.run for e in store.events("k") if e.kind == "trial")
    # trials 0 and 1 came with the group; every later one was asked once, by one runner or the other
    assert sorted(asked.values()) == [1] * 6


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "x=interval(1.0, 0.1)",
            "bad search 'x=interval(1.0, 0.1)': an interval needs two numbers, the first below",
        ),
        ("x=tag(log, interval(0, 1))", "a log interval needs a positive lower bound, got 0"),
        ("x=tag(fast, interval(0.1, 1))", "unknown tag fast; a search reads only log"),
        ("y=glob(*)", "glob(...) is not supported"),
        ("y=choice([1,2],[3])", "a choice must be a number, a string, true/false or null, got [1, 2]"),
        (
            "search.sampler=tpee",
            "'search.sampler' must be one of tpe, random, cmaes, grid, got 'tpee' (did you mean",
        ),
        (
            "runs=[train,other]",
            "a search runs one run of the experiment per trial, and it has 2 (train, other)",
        ),
        ("gpus=0,1", "a search cannot also sweep metta-exp keys (gpus=0,1): set one value"),
        ("search.n_trials=0", "'search.n_trials' must be at least 1, got 0"),
    ],
)
def test_a_bad_search_is_one_error_line_and_writes_nothing(
    state_dir: Path, conf: Path, override: str, message: str
) -> None:
    result = run_cli(*search(conf, "x=interval(0.1, 1.0)", override))
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.stderr
    assert not state_dir.exists()


def test_a_dry_run_prints_the_space_and_the_first_trials_jobs(state_dir: Path, conf: Path) -> None:
    args = ("x=tag(log, interval(1e-4, 1e-2))", "k=range(1, 9, 2)", "opt=adam,sgd", "n=5", "group=d",
            "search.parallel=2", "search.seed=7", "dry_run=true")  # fmt: skip
    first = run_cli(*search(conf, *args))
    assert first.returncode == 0, first.stderr
    head = first.stdout.split("\nDry run: ")[0].splitlines()
    assert head == [
        "Search: 20 trials, 2 at once, maximize overview/reward (reduce last); sampler tpe (seed 7), pruner median",
        "  x    float in [0.0001, 0.01], log",
        "  k    int in [1, 7] step 2",
        "  opt  one of adam, sgd",
        "  n=5  (every trial)",
        "The first 2 trials' jobs:",
    ]
    assert "Dry run: group d, 2 jobs on local (nothing submitted)" in first.stdout
    runs = [line[3:] for line in first.stdout.splitlines() if line.startswith("== ")]
    assert [r[:5] for r in runs] == ["t000-", "t001-"]
    assert run_cli(*search(conf, *args)).stdout == first.stdout, "a seeded dry run shows the same trials"
    assert not state_dir.exists()


@pytest.mark.slow
def test_a_search_runs_on_the_skypilot_backend(
    state_dir: Path, conf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the SkyPilot simulator (asynchronous submits, managed jobs, log tails copied back): each
    trial's value comes from the progress lines of its copied log, and pruning ends a managed job."""
    from metta_exp.backends.skypilot.sim.api import FakeSkyApi

    fake = state_dir.parent / "fake sky"
    monkeypatch.setenv("METTA_EXP_FAKE_SKY_DIR", str(fake))
    monkeypatch.setenv("METTA_EXP_SKY_POLL_S", "0.2")
    monkeypatch.setenv("METTA_EXP_SKY_LOG_S", "0.2")
    monkeypatch.setenv("HOME", str(state_dir.parent / "home"))
    (conf / "experiment" / "search.yaml").write_text(
        (conf / "experiment" / "search.yaml")
        .read_text()
        .replace(  # this test's Python has metta-exp
            "remote: false", "remote: true\nskypilot: {default_setup: false}"
        )
    )
    try:
        result = run_cli(
            *search(
                conf,
                *PRUNE_T004,
                "sleep=0.1",
                "group=r",
                "search.n_trials=5",
                "search.parallel=2",
                "search.seed=4",
            ),  # fmt: skip
        )
        assert result.returncode == 0, result.stdout + result.stderr
        with JobStore.open(state_dir) as store:
            assert store.group("r").backend == "skypilot"
        trials, jobs = trials_of(state_dir, "r")
        assert [t.state for t in trials][:4] == [TrialState.COMPLETE] * 4
        assert all(t.value == pytest.approx(0.8) for t in trials[:4])
        assert trials[4].state == TrialState.PRUNED and jobs[trials[4].run].status == JobStatus.PRUNED
        # the pruned managed job was cancelled on the (simulated) cloud, not left running
        pruned = next(
            j for j in FakeSkyApi(fake).jobs() if j["name"].startswith(f"metta-exp-r-{trials[4].run}-")
        )
        assert pruned["status"] == "CANCELLED", pruned
    finally:
        FakeSkyApi(fake).kill_all()


def test_an_experiment_file_carries_its_own_search(state_dir: Path, conf: Path) -> None:
    """As a grid sweep can be: ``hydra.sweeper.params`` with an interval, and ``search:`` keys, no -m."""
    (conf / "experiment" / "filed.yaml").write_text(
        (conf / "experiment" / "search.yaml").read_text()
        + "search: {n_trials: 3, parallel: 3, seed: 11, pruner: none}\n"
        + "hydra:\n  sweeper:\n    params:\n      x: tag(log, interval(0.01, 1.0))\n      opt: a,b\n"
    )
    result = run_cli("--config-dir", str(conf), "+experiment=filed", "group=ff", "search.n_trials=4")
    assert result.returncode == 0, result.stdout + result.stderr
    trials, _ = trials_of(state_dir, "ff")
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4, "the command line's search.n_trials wins"
    assert all(0.01 <= t.params["x"] <= 1.0 and t.params["opt"] in ("a", "b") for t in trials)


@pytest.mark.parametrize("sampler", ["random", "cmaes"])
def test_every_sampler_runs_a_search(state_dir: Path, conf: Path, sampler: str) -> None:
    """``search.sampler=cmaes`` needs the ``cmaes`` package: a dependency, so the runner can ask."""
    result = run_cli(
        *search(
            conf,
            "x=interval(0.1, 1.0)",
            "z=interval(0, 10)",
            f"group={sampler}",
            "search.n_trials=6",
            "search.parallel=1",
            "search.pruner=none",
            f"search.sampler={sampler}",
            "search.seed=0",
        ),  # fmt: skip
    )
    assert result.returncode == 0, result.stdout + result.stderr
    trials, _ = trials_of(state_dir, sampler)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 6, "asked after trials completed, too"
