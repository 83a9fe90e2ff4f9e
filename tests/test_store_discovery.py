"""Where the store is: found like git finds ``.git`` (the nearest ``job_state/jobs.sqlite`` in the current
directory or a parent), ``METTA_EXP_STATE_DIR`` first, a new one under the current directory; and every
``job`` command can say which store it read. Run as a user runs them, from real directories."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest
from conftest import PY, kill_everything, run_cli, wait_group_end

from metta_exp.paths import default_state_dir

JOB = (
    "import os, sys; print('job ran', flush=True); print('cwd', os.getcwd(), flush=True); "
    "sys.exit(1 if os.environ['METTA_EXP_ATTEMPT'] == '1' and 'fail' in sys.argv else 0)"
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project directory (quotes and spaces in its path) with a subdirectory; no state dir named."""
    stray = [p for p in tmp_path.parents if (p / "job_state" / "jobs.sqlite").is_file()]
    if stray:  # a store above the temporary directory would be found first, as it should be
        pytest.skip(f"a job store above the test's directory: {stray[0] / 'job_state'}")
    root = tmp_path / "my 'project'"
    (root / "experiments" / "deep").mkdir(parents=True)
    monkeypatch.delenv("METTA_EXP_STATE_DIR", raising=False)
    yield root
    for state in (root / "job_state", root / "experiments" / "job_state", tmp_path / "elsewhere"):
        kill_everything(state)


def env_without_state_dir() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "METTA_EXP_STATE_DIR"}


def launch_in(directory: Path, group: str, *args: str) -> None:
    """Launch a one-job local group from ``directory`` with the real CLI and wait for it to end."""
    conf = directory / "my conf"
    (conf / "experiment").mkdir(parents=True, exist_ok=True)
    (conf / "experiment" / "one.yaml").write_text(
        textwrap.dedent(
            f"""\
            # @package _global_
            command: [{json.dumps(PY)}, -c, {json.dumps(JOB)}]
            runs: [only]
            gpus: 0
            remote: false
            generate_notebook: false
            wait: false
            """
        )
    )
    result = run_cli("--config-dir", str(conf), "+experiment=one", f"group={group}", *args, cwd=directory)
    assert result.returncode == 0, result.stderr


def test_the_nearest_store_in_a_parent_wins_and_the_env_var_wins_over_all(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deep = project / "experiments" / "deep"
    assert default_state_dir(deep) == deep / "job_state"  # none yet: under the current directory
    (project / "job_state").mkdir()
    assert default_state_dir(deep) == deep / "job_state"  # a directory without a store is not one
    (project / "job_state" / "jobs.sqlite").write_bytes(b"")
    assert default_state_dir(deep) == project / "job_state"
    assert default_state_dir(project) == project / "job_state"
    (project / "experiments" / "job_state").mkdir()
    (project / "experiments" / "job_state" / "jobs.sqlite").write_bytes(b"")
    assert default_state_dir(deep) == project / "experiments" / "job_state"  # the nearest
    monkeypatch.setenv("METTA_EXP_STATE_DIR", "relative state")
    monkeypatch.chdir(deep)
    assert default_state_dir() == deep / "relative state"


def test_a_group_launched_in_a_project_is_seen_and_managed_from_its_subdirectories(project: Path) -> None:
    launch_in(project, "from_root")
    assert (project / "job_state" / "jobs.sqlite").is_file()  # created where the README says
    wait_group_end(project / "job_state", "from_root")
    env = env_without_state_dir()
    deep = project / "experiments" / "deep"

    listed = run_cli("job", "list", "--json", cwd=deep, env=env)
    assert [g["group"] for g in json.loads(listed.stdout)] == ["from_root"]
    shown = run_cli("job", "show", "from_root", cwd=deep, env=env)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.rstrip().splitlines()[-1] == f"store: {project / 'job_state' / 'jobs.sqlite'}"
    logs = run_cli("job", "logs", "from_root", "only", cwd=deep, env=env)
    assert logs.stdout == f"job ran\ncwd {project}\n"
    assert not (deep / "job_state").exists() and not (project / "experiments" / "job_state").exists()

    # a launch from the subdirectory joins the project's store
    launch_in(deep, "from_deep")
    assert not (deep / "job_state").exists()
    wait_group_end(project / "job_state", "from_deep")
    listed = run_cli("job", "list", cwd=project, env=env)
    assert "from_root" in listed.stdout and "from_deep" in listed.stdout
    assert listed.stdout.rstrip().splitlines()[-1] == f"store: {project / 'job_state' / 'jobs.sqlite'}"


@pytest.mark.slow
def test_every_job_command_says_which_store_it_read_with_where(project: Path) -> None:
    launch_in(project, "g")
    wait_group_end(project / "job_state", "g")
    env = env_without_state_dir()
    deep = project / "experiments" / "deep"
    line = f"store: {project / 'job_state' / 'jobs.sqlite'}\n"
    for args in (
        ["list", "--json"],
        ["show", "g", "--json"],
        ["logs", "g", "only"],
        ["notebook", "g", "-o", str(project / "nb.ipynb")],
        ["kill", "g", "--force"],
        ["retry", "g", "--no-wait"],
    ):
        result = run_cli("job", *args, "--where", cwd=deep, env=env)
        assert result.returncode == 0, (args, result.stderr)
        assert result.stderr == line, args  # on stderr: --json output stays one JSON document
    listed = run_cli("job", "list", "--json", "--where", cwd=deep, env=env)
    assert [g["group"] for g in json.loads(listed.stdout)] == ["g"]  # stdout: the JSON alone

    elsewhere = project.parent / "elsewhere"
    elsewhere.mkdir()
    result = run_cli("job", "list", "--where", cwd=elsewhere, env=env)
    assert result.stderr == f"store: {elsewhere / 'job_state' / 'jobs.sqlite'} (none yet)\n"
    assert result.stdout.startswith(f"No groups yet in {elsewhere / 'job_state'}.")


def test_a_retry_from_a_subdirectory_starts_the_job_where_the_group_was_launched(project: Path) -> None:
    launch_in(project, "r", "args=[fail]")
    jobs = wait_group_end(project / "job_state", "r")
    assert jobs[0].status == "failed"
    deep = project / "experiments" / "deep"
    result = run_cli("job", "retry", "r", cwd=deep, env=env_without_state_dir())
    assert result.returncode == 0, result.stdout + result.stderr
    logs = run_cli("job", "logs", "r", "only", cwd=deep, env=env_without_state_dir())
    assert logs.stdout == f"job ran\ncwd {project}\n"


CHECKPOINTING = """
import os, sys
from metta_exp import tracking
with tracking.init(total_steps=1) as run:
    run.log({"overview/reward": 1.0}, step=1)
    with open(run.path("checkpoint.pt"), "w") as f:
        f.write(os.environ["METTA_EXP_RUN"])
    run.checkpoint("checkpoint.pt")
"""


def test_parallel_runs_checkpointing_the_same_relative_path_never_share_a_file(project: Path) -> None:
    conf = project / "conf"
    (conf / "experiment").mkdir(parents=True)
    (conf / "experiment" / "ckpt.yaml").write_text(
        "# @package _global_\n"
        f"command: [{json.dumps(PY)}, -c, {json.dumps(CHECKPOINTING)}]\n"
        "runs: [a, b, c]\ngpus: 0\nremote: false\ngenerate_notebook: false\nwait: false\n"
    )
    result = run_cli("--config-dir", str(conf), "+experiment=ckpt", "group=ck", cwd=project)
    assert result.returncode == 0, result.stderr
    jobs = wait_group_end(project / "job_state", "ck")
    assert [j.status for j in jobs] == ["succeeded"] * 3, [j.reason for j in jobs]
    for job in jobs:
        state = json.loads((Path(job.run_dir) / "run.json").read_text())
        assert state["checkpoint"] == str(Path(job.run_dir) / "checkpoint.pt")
        assert Path(state["checkpoint"]).read_text() == job.run
    assert not (project / "checkpoint.pt").exists()
