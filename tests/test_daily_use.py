"""Daily use from a real shell: jobs find metta-exp's own interpreter first on PATH, the Python API
returns what the README says, dry runs say what the real launch would refuse, sweeps warn when their key
is also set per run, and the small things a user trips over (hints, help, what non-terminal output says)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import run_cli, wait_group_end

PROBE = "import sys, metta_exp; print('python', sys.executable, flush=True)"


def write_experiment(conf: Path, name: str, body: str) -> Path:
    (conf / "experiment").mkdir(parents=True, exist_ok=True)
    path = conf / "experiment" / f"{name}.yaml"
    path.write_text(textwrap.dedent(body))
    return path


def test_jobs_see_metta_exps_own_interpreter_first_on_path(state_dir: Path) -> None:
    """``command: [python, ...]`` from an environment that is not activated (its bin/ not on PATH)."""
    conf = state_dir.parent / "conf"
    write_experiment(
        conf,
        "probe",
        f"""\
        # @package _global_
        command: [python, -c, {json.dumps(PROBE)}]
        runs: [a]
        gpus: 0
        remote: false
        generate_notebook: false
        """,
    )
    bare = {"PATH": "/usr/bin:/bin", "VIRTUAL_ENV": ""}  # no venv, no pyenv shims: as a fresh shell
    result = run_cli("--config-dir", str(conf), "+experiment=probe", "group=p", env=bare)
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = wait_group_end(state_dir, "p")
    log = Path(jobs[0].log_path or "").read_text()
    assert log == f"python {Path(sys.executable)}\n"


def test_a_dry_run_says_the_real_launch_would_be_refused(state_dir: Path) -> None:
    env = {"METTA_EXP_LOCAL_GPUS": ""}  # declared: no GPUs here
    result = run_cli("+experiment=demo", "gpus=4", "dry_run=true", env=env)
    assert result.returncode == 2
    assert "== lr_low" in result.stdout  # the jobs are still shown
    group = re.search(r"^Dry run: group (\S+),", result.stdout, re.M)[1]  # type: ignore[index]
    assert result.stderr == (
        f"Error: the real launch would be refused: run 'lr_low' of group '{group}' asks for 4 GPU(s) but "
        "this machine has no GPUs: set gpus=0 or fewer, or declare devices with METTA_EXP_LOCAL_GPUS=0,1,...\n"
    )
    assert run_cli("+experiment=demo", "gpus=4", env=env).returncode == 2  # as the real launch is
    ok = run_cli("+experiment=demo", "gpus=2", "dry_run=true", env={"METTA_EXP_LOCAL_GPUS": "0,1"})
    assert ok.returncode == 0 and ok.stderr == ""
    assert not state_dir.exists()


SWEEP_WARNING = (
    "Warning: the sweep sets trainer.learning_rate, which args_per_run also sets for lr_low, lr_mid, "
    "lr_high; the sweep's value wins, so runs lr_low, lr_mid, lr_high get the same arguments at every "
    "point (6 runs, 2 different). To run each point once, pick one run: 'runs=[lr_low]'.\n"
)


def test_a_sweep_of_a_key_set_per_run_warns_naming_the_runs_and_the_fix(state_dir: Path) -> None:
    sweep = ["-m", "+experiment=demo", "trainer.learning_rate=0.01,0.02", "dry_run=true"]
    result = run_cli(*sweep)
    assert result.returncode == 0
    assert result.stderr == SWEEP_WARNING
    assert "Sweep: 2 points, 6 runs" in result.stdout
    fixed = run_cli(*sweep, "runs=[lr_low]")
    assert fixed.returncode == 0 and fixed.stderr == ""
    assert "Sweep: 2 points, 2 runs" in fixed.stdout
    other = run_cli("-m", "+experiment=demo", "trainer.gamma=0.9,0.99", "dry_run=true")
    assert other.returncode == 0 and other.stderr == ""  # a key no run sets: nothing to say


def test_a_file_without_the_package_line_gets_a_hint(state_dir: Path) -> None:
    conf = state_dir.parent / "conf"
    write_experiment(conf, "mine", "module: metta_exp.examples.cartpole\nruns: [a]\ngpus: 0\nremote: false\n")
    result = run_cli("--config-dir", str(conf), "+experiment=mine")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (
        "Error: conf/experiment/mine.yaml: its keys landed under 'experiment' because its first line is not "
        "'# @package _global_': add that line at the top of the file (as in conf/experiment/demo.yaml)\n"
    )
    assert not state_dir.exists()


def test_help_with_a_config_dir_lists_the_users_experiments(state_dir: Path) -> None:
    conf = state_dir.parent / "conf"
    write_experiment(conf, "mine", "# @package _global_\n# My own sweep of CartPole.\nmodule: m\nruns: [a]\n")
    result = run_cli("--config-dir", str(conf), "--help")
    assert result.returncode == 0
    assert (
        f"Your experiments ({conf / 'experiment'}):\n  mine         My own sweep of CartPole.\n"
        in result.stdout
    )
    assert "Shipped experiments:\n  arena " in result.stdout
    assert "Your experiments" not in run_cli("--help").stdout


def test_output_that_is_not_a_terminal_says_nothing_of_the_runners_internals(state_dir: Path) -> None:
    result = run_cli(
        "+experiment=demo", "trainer.total_timesteps=2000", "group=quiet", "generate_notebook=false"
    )
    assert result.returncode == 0, result.stderr
    assert "driven by" not in result.stdout and "runner" not in result.stdout
    assert "lr_low: pending -> launching" in result.stdout  # the changes themselves are still told
    assert re.search(r"lr_low: launching -> running \(pid \d+\)\n", result.stdout)  # not pid:start time


@pytest.mark.slow
def test_offline_wandb_adds_no_resume_warning_to_the_job_log(tmp_path: Path) -> None:
    from test_tracking import LOG_AND_FINISH, subprocess_env

    env = subprocess_env(tmp_path, WANDB_MODE="offline", WANDB_RUN_ID="abc123def456", WANDB_NAME="r")
    out = subprocess.run(
        [sys.executable, "-c", LOG_AND_FINISH], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "offline-run-" in out.stdout + out.stderr  # W&B did run, and spoke
    assert "resume" not in out.stdout + out.stderr
