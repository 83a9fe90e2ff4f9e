"""The launch command run as a user runs it: real Hydra composition, real processes, exit codes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import textwrap
from pathlib import Path

import pytest
from conftest import PY, run_cli, wait_for, wait_group_end

from metta_exp.status import JobStatus
from metta_exp.store import JobStore


def files_under(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


def user_conf(tmp: Path, name: str, body: str) -> Path:
    conf = tmp / "my conf"
    (conf / "experiment").mkdir(parents=True, exist_ok=True)
    (conf / "experiment" / f"{name}.yaml").write_text("# @package _global_\n" + textwrap.dedent(body))
    return conf


BAD_INPUTS = [
    (["+experiment=demo", "gpu=8"], "unknown key 'gpu' (did you mean 'gpus'?)"),
    (["+experiment=demo", "gpus=abc"], "'gpus' must be an integer, got 'abc'"),
    (["+experiment=demo", "remote=maybe"], "'remote' must be true or false"),
    (["+experiment=demo", "runs=[a,a]"], "run 'a' is listed twice"),
    (
        ["+experiment=demo", "args_per_run={lr_lo:['x=1']}"],
        "args_per_run: 'lr_lo' is not a run of this experiment",
    ),
    (["+experiment=demo", "depends_on={lr_low:[nope]}"], "depends_on.lr_low: 'nope' is not a run"),
    (
        ["+experiment=demo", "depends_on={lr_low:[lr_mid],lr_mid:[lr_low]}"],
        "cycle: lr_low -> lr_mid -> lr_low",
    ),
    (["+experiment=demo", "runs=['a b']"], "bad run name 'a b'"),
    (["+experiment=demo", 'group="it\'s a group"'], "bad group name"),
    (["+experiment=demo", "group=x/../../y"], "bad group name"),
    (["+experiment=demo", "skypilot.clod=aws"], "unknown key 'skypilot.clod' (did you mean 'cloud'?)"),
    (["+experiment=demo", "wandb.mode=sometimes"], "'wandb.mode' must be one of online, offline, disabled"),
    (["+experiment=demo", "gpus=-1"], "'gpus' must be at least 0"),
    (["+experiment=demo", "max_parallel=0"], "'max_parallel' must be at least 1"),
    (["+experiment=demo", "gpus=[1"], "no viable alternative"),
    (["+experiment=dmeo"], "unknown experiment 'dmeo' (did you mean 'demo'?)"),
    (["gpus=2"], "choose an experiment: metta-exp +experiment=NAME"),
    (["--bogus"], "unknown flag '--bogus'"),
    (["+experiment=demo", "gpus=1"], "asks for 1 GPU"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    state_dir: Path, args: list[str], message: str
) -> None:
    before = files_under(state_dir.parent)
    result = run_cli(*args, env={"METTA_EXP_LOCAL_GPUS": ""})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stderr
    assert files_under(state_dir.parent) == before, "bad input must write nothing"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("module: x.train\nrunz: [a]\n", "unknown key 'runz' (did you mean 'runs'?)"),
        ("module: x.train\nruns: [a]\nargs_per_run: {b: [x=1]}\n", "args_per_run: 'b' is not a run"),
        ("module: x.train\ncommand: [python, t.py]\nruns: [a]\n", "set exactly one of 'module'"),
        ("runs: [a]\n", "set exactly one of 'module'"),
        ("module: x.train\nruns: [a]\ngpus: two\n", "'gpus' must be an integer"),
        ("module: 'x; rm -rf /'\nruns: [a]\n", "'module' must be a dotted Python module name"),
        ("module: x.train\nruns: a\n", "'runs' must be a list of strings"),
        ("module: x.train\nruns: []\n", "'runs' is empty"),
        (
            "module: x.train\nruns: [a]\nwandb: {mod: online}\n",
            "unknown key 'wandb.mod' (did you mean 'mode'?)",
        ),
    ],
)
def test_bad_experiment_file_names_the_file(state_dir: Path, body: str, message: str) -> None:
    conf = user_conf(state_dir.parent.parent, "broken", body)
    before = files_under(state_dir.parent)
    result = run_cli("--config-dir", str(conf), "+experiment=broken", "remote=false")
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert "broken.yaml" in result.stderr
    assert files_under(state_dir.parent) == before


def test_user_experiment_runs_with_training_overrides_passed_through(state_dir: Path) -> None:
    script = state_dir.parent / "record argv.py"
    script.write_text(
        "import json, os, sys\n"
        "json.dump(sys.argv[1:], open(os.path.join(os.environ['METTA_EXP_RUN_DIR'], 'argv.json'), 'w'))\n"
    )
    conf = user_conf(
        state_dir.parent.parent,
        "mine",
        f"""\
        command: [{json.dumps(PY)}, {json.dumps(str(script))}]
        runs: [one, two]
        args: [common=1]
        args_per_run: {{two: [only_two=2]}}
        gpus: 0
        remote: false
        """,
    )
    result = run_cli(
        "--config-dir",
        str(conf),
        "+experiment=mine",
        "group=g1",
        "trainer.lr=0.5",
        "'odd=value with spaces'",
        "generate_notebook=false",
    )
    assert result.returncode == 0, result.stderr + result.stdout
    argv = {
        run: json.loads((state_dir / "runs" / "g1" / run / "argv.json").read_text()) for run in ("one", "two")
    }
    assert argv["one"] == ["common=1", "trainer.lr=0.5", "'odd=value with spaces'"]
    assert argv["two"] == ["common=1", "only_two=2", "trainer.lr=0.5", "'odd=value with spaces'"]
    # Hydra must not litter: only the state dir appeared in the working directory
    assert sorted(p.name for p in state_dir.parent.iterdir()) == ["job state", "record argv.py"]


def test_failed_job_makes_exit_code_1_and_reports_it(state_dir: Path) -> None:
    conf = user_conf(
        state_dir.parent.parent,
        "failing",
        f"""\
        command: [{json.dumps(PY)}, -c, "import sys; print('boom'); sys.exit(4)"]
        runs: [bad]
        gpus: 0
        remote: false
        generate_notebook: false
        """,
    )
    result = run_cli("--config-dir", str(conf), "+experiment=failing", "group=failing")
    assert result.returncode == 1
    assert "bad: launching -> running" in result.stdout  # one line per change when not a terminal
    assert "bad failed: exit code 4" in result.stdout
    log = state_dir / "runs" / "failing" / "bad" / "attempt-1.log"
    assert log.read_text() == "boom\n"


def test_demo_runs_three_parallel_cartpole_jobs_reporting_reward_and_sps(state_dir: Path) -> None:
    result = run_cli(
        "+experiment=demo", "group=demo-test", "trainer.total_timesteps=4000", "generate_notebook=false"
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "3 succeeded" in result.stdout
    for run in ("lr_low", "lr_mid", "lr_high"):  # the summary gives each run's result
        assert re.search(rf"\n  {run} +succeeded · 4k steps · reward [0-9.]+ · \d+:\d\d\n", result.stdout)
    with JobStore.open(state_dir) as store:
        jobs = store.jobs("demo-test")
    assert [j.run for j in jobs] == ["lr_low", "lr_mid", "lr_high"]
    intervals = []
    for job in jobs:
        lines = [json.loads(x) for x in (Path(job.run_dir) / "metrics.jsonl").read_text().splitlines()]
        assert lines and all("overview/reward" in x and "overview/sps" in x for x in lines)
        intervals.append((job.started_at, job.ended_at))
    assert max(s for s, _ in intervals) < min(e for _, e in intervals), "the demo runs must overlap"


def test_dry_run_prints_every_job_and_writes_nothing(state_dir: Path) -> None:
    before = files_under(state_dir.parent)
    result = run_cli("+experiment=demo", "dry_run=true", "group=dry", "trainer.seed=3")
    assert result.returncode == 0, result.stderr
    assert files_under(state_dir.parent) == before
    assert result.stdout.count("\n== ") == 3
    assert (
        "argv:       python -m metta_exp.examples.cartpole trainer.total_timesteps=150000 "
        "trainer.learning_rate=0.01 trainer.seed=3" in result.stdout
    )


def test_help_lists_the_shipped_experiments(tmp_path: Path) -> None:
    result = run_cli("--help", cwd=tmp_path)
    assert result.returncode == 0
    for name in ("demo", "arena", "lr_sweep"):
        assert f"\n  {name} " in result.stdout
    assert not any(tmp_path.iterdir())


def test_python_api_launches_with_the_same_schema_and_runner(state_dir: Path) -> None:
    from metta_exp import ConfigError, Experiment

    with pytest.raises(ConfigError, match="depends_on.a: 'b' is not a run"):
        Experiment(module="x.train", runs=["a"], depends_on={"a": ["b"]})
    # in Python, per-run tables may hold other runs (a recipe picks some): their entries are left out
    table = Experiment(
        module="x.train", runs=["a"], args_per_run={"a": ["x=1"], "b": []}, depends_on={"b": ["a"]}
    )
    assert (table.args_per_run, table.depends_on) == ({"a": ["x=1"]}, {})
    exp = Experiment(
        command=[PY, "-c", "import sys; sys.exit(0)"],
        runs=["p1", "p2"],
        group="api",
        remote=False,
        gpus=0,
        wait=False,
        generate_notebook=False,
    )
    assert exp.launch(name="api-test") == 0
    jobs = wait_group_end(state_dir, "api")
    assert [j.status for j in jobs] == [JobStatus.SUCCEEDED] * 2


def test_experiment_launches_when_imported_from_its_own_module(state_dir: Path) -> None:
    """``Experiment.launch`` finds the launch path through the package face, which imports nothing itself:
    a script that imports only ``metta_exp.config`` launches all the same."""
    code = (
        "import sys\n"
        "from metta_exp.config import Experiment\n"
        f"exp = Experiment(command=[{PY!r}, '-c', 'pass'], runs=['a'], group='direct', remote=False, gpus=0,"
        " wait=False, generate_notebook=False)\n"
        "sys.exit(exp.launch())\n"
    )
    result = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert [j.status for j in wait_group_end(state_dir, "direct")] == [JobStatus.SUCCEEDED]


def test_more_gpus_than_exist_is_refused_before_submitting(state_dir: Path) -> None:
    result = run_cli("+experiment=demo", "gpus=3", env={"METTA_EXP_LOCAL_GPUS": "0,1"})
    assert result.returncode == 2
    assert "3 GPU" in result.stderr and not state_dir.exists()


def test_group_name_must_be_new(state_dir: Path) -> None:
    first = run_cli(
        "+experiment=demo",
        "group=taken",
        "trainer.total_timesteps=500",
        "wait=false",
        "generate_notebook=false",
    )
    assert first.returncode == 0, first.stderr
    wait_group_end(state_dir, "taken")
    again = run_cli("+experiment=demo", "group=taken")
    assert again.returncode == 2 and "group 'taken' already exists" in again.stderr


def _sleepy_conf(state_dir: Path) -> Path:
    return user_conf(
        state_dir.parent.parent,
        "sleepy",
        f"""\
        command: [{json.dumps(PY)}, -c, "import time; time.sleep(2)"]
        runs: [s1, s2]
        gpus: 0
        remote: false
        generate_notebook: false
        """,
    )


def _start_watching(state_dir: Path, conf: Path, group: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [PY, "-m", "metta_exp", "--config-dir", str(conf), "+experiment=sleepy", f"group={group}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    wait_for(lambda: (state_dir / "jobs.sqlite").exists(), what="the store")
    with JobStore.open(state_dir) as store:
        wait_for(
            lambda: (
                [j.status for j in store.jobs(group)] == [JobStatus.RUNNING] * 2
                if _has_group(store, group)
                else False
            ),
            what="both jobs running",
        )
    return proc


def _has_group(store: JobStore, group: str) -> bool:
    return any(s.name == group for s in store.list_groups())


def test_ctrl_c_while_watching_stops_only_the_watching(state_dir: Path) -> None:
    proc = _start_watching(state_dir, _sleepy_conf(state_dir), "interrupted")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Group interrupted: 2 jobs submitted; they go on." in out
    assert "metta-exp job monitor interrupted" in out and "metta-exp job kill interrupted" in out
    jobs = wait_group_end(state_dir, "interrupted")
    assert [j.status for j in jobs] == [JobStatus.SUCCEEDED] * 2


def test_closing_the_terminal_leaves_the_group_running_to_its_end(state_dir: Path) -> None:
    proc = _start_watching(state_dir, _sleepy_conf(state_dir), "hungup")
    os.killpg(proc.pid, signal.SIGHUP)  # the terminal's whole process group goes
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err  # watching ends as with Ctrl+C (README: signals and faults)
    assert "Group hungup: 2 jobs submitted; they go on." in out
    jobs = wait_group_end(state_dir, "hungup")
    assert [j.status for j in jobs] == [JobStatus.SUCCEEDED] * 2


def test_runs_on_the_command_line_select_a_subset_of_the_files_runs(state_dir: Path) -> None:
    result = run_cli("+experiment=demo", "runs=[lr_low,lr_high]", "dry_run=true")
    assert result.returncode == 0, result.stderr
    assert [line for line in result.stdout.splitlines() if line.startswith("== ")] == [
        "== lr_low",
        "== lr_high",
    ]
    assert "trainer.learning_rate=0.1" in result.stdout and "trainer.learning_rate=0.03" not in result.stdout

    conf = user_conf(
        state_dir.parent.parent,
        "chain",
        """\
        module: x.train
        runs: [prep, train, evaluate]
        args_per_run: {prep: [p=1], evaluate: [e=1]}
        depends_on: {train: [prep], evaluate: [train]}
        remote: false
        gpus: 0
        """,
    )
    (state_dir.parent / "x").mkdir()  # the module local jobs run, found before anything is submitted
    (state_dir.parent / "x" / "train.py").write_text("")
    chosen = run_cli("--config-dir", str(conf), "+experiment=chain", "runs=[train,evaluate]", "dry_run=true")
    assert chosen.returncode == 0, chosen.stderr
    assert "== prep" not in chosen.stdout
    assert "depends_on: -\n" in chosen.stdout.split("== evaluate")[0], (
        "train no longer waits for the dropped prep"
    )
    assert "depends_on: train\n" in chosen.stdout.split("== evaluate")[1]

    typo = user_conf(
        state_dir.parent.parent,
        "typo",
        """\
        module: x.train
        runs: [a, b]
        args_per_run: {c: [x=1]}
        """,
    )
    result = run_cli("--config-dir", str(typo), "+experiment=typo", "runs=[a]", "remote=false")
    assert result.returncode == 2 and "args_per_run: 'c' is not a run" in result.stderr
