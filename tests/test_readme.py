"""The README, to the letter: every command in its ``bash`` blocks is run here (as ``python -m metta_exp``,
which is what ``uv run metta-exp`` and an activated ``metta-exp`` start), for real on this machine or as a
dry run where it needs a cloud, and the runs, names and counts its text states are checked. A command
added to the README without an entry here fails ``test_every_readme_command_is_checked``."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ROOT, run_cli, wait_group_end
from test_readme_history import HISTORY_COMMANDS

from metta_exp.store import JobStore
from metta_exp.text import plural

README = (ROOT / "README.md").read_text()


def bash_commands() -> list[tuple[str, ...]]:
    """Every command line of the README's ``bash`` blocks as shell words, without its comment."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if words:
                lines.append(tuple(words))
    return lines


def words(line: str) -> tuple[str, ...]:
    return tuple(shlex.split(line))


@dataclass(frozen=True)
class Stated:
    """What the README's text says of a command: its runs, in order (a sweep: its point count too)."""

    runs: tuple[str, ...]
    real: bool = False  # run it for real here (else: as a dry run)
    points: int | None = None


DEMO = ("lr_low", "lr_mid", "lr_high")
ARENA_SWEEP = tuple(f"lr{lr}-ent{ent}" for lr in ("0.0003", "0.001", "0.003") for ent in ("0.01", "0.001"))
LAUNCHES = {
    "uv run metta-exp +experiment=demo": Stated(DEMO, real=True),
    "uv run metta-exp +experiment=demo trainer.total_timesteps=50000 'runs=[lr_low,lr_high]' group=quick": Stated(
        ("lr_low", "lr_high"), real=True
    ),
    "metta-exp +experiment=lr_sweep gpus=8": Stated(("baseline", "high_lr", "low_lr", "high_entropy")),
    "metta-exp +experiment=arena skypilot.use_spot=true skypilot.accelerator=A100 'runs=[variant]'": Stated(
        ("variant",)
    ),
    "metta-exp +experiment=arena dry_run=true": Stated(("baseline", "variant")),
    "metta-exp -m +experiment=arena trainer.learning_rate=0.0003,0.001,0.003 trainer.entropy_coef=0.01,0.001 "
    "'runs=[baseline]'": Stated(ARENA_SWEEP, points=6),
    "metta-exp -m +experiment=demo 'trainer.learning_rate=range(0.005,0.03,0.005)' 'runs=[lr_mid]' "
    "group=lr_grid": Stated(("lr0.005", "lr0.01", "lr0.015", "lr0.02", "lr0.025"), points=5),
    "metta-exp +experiment=lr_grid": Stated(("lr0.001", "lr0.003", "lr0.01", "lr0.03"), points=4),
}
# "Adaptive sweeps (search)": each search, as a dry run, prints its space and its first trials' jobs.
SEARCHES = {
    "metta-exp -m +experiment=arena 'trainer.learning_rate=tag(log, interval(1e-4, 1e-2))' "
    "'trainer.entropy_coef=interval(0.001, 0.05)' 'trainer.batch_size=choice(256,512,1024)' "
    "search.n_trials=40 search.parallel=8 'runs=[baseline]'": (
        "Search: 40 trials, 8 at once, maximize overview/reward",
        "trainer.learning_rate  float in [0.0001, 0.01], log",
        "trainer.batch_size     one of 256, 512, 1024",
        ", 8 jobs on ",
    ),
    "metta-exp +experiment=lr_search": (
        "Search: 12 trials, 2 at once, maximize overview/reward",
        "trainer.learning_rate  float in [0.001, 0.1], log",
        ", 2 jobs on local",
        "== t000-lr0.0125-bs250\n",  # seeded: the README names it
    ),
}
NOT_HERE = {
    "uv run pytest": "the test suite itself",
    "uv add /path/to/metta-exp": "run for real, in a project of its own, by tests/test_own_project.py",
    "uv run metta-exp --config-dir conf +experiment=mine": "run by tests/test_own_project.py",
    "uv run metta-exp job list": "run by tests/test_own_project.py",
    "uv run ruff check . && uv run mypy metta_exp": "run by tests/test_package.py",
    "python my_train.py -m hydra/launcher=metta_exp lr=1e-3,1e-4": "a user's own app (the launcher plugin "
    "is run for real in tests/test_hydra_plugin.py)",
}
BENCH = re.compile(r"uv run python bench/\w+\.py")  # the benchmarks print figures; they are not tests


# "Recipes in Python": each command, run in a directory holding the reference's recipes (as
# experiments/recipes/), a ./my_recipes.py and a my_project/recipes package; launches as dry runs
# (their experiments are remote). Each maps to what its output must show.
MY_RECIPES = """
from metta_exp import ExperimentTool


def sweep(lrs: dict[str, float]) -> ExperimentTool:
    \"\"\"One run per named learning rate.\"\"\"
    return ExperimentTool(
        module="arena.train",
        runs=list(lrs),
        args_per_run={name: [f"trainer.learning_rate={lr}"] for name, lr in lrs.items()},
    )
"""
RECIPE_COMMANDS: dict[str, tuple[bool, tuple[str, ...]]] = {  # line: (add dry_run=true, expected output)
    "metta-exp run assembly_lines.experiment": (
        True,
        ("== assembly_lines_easy", "== assembly_lines_hard"),
    ),
    'metta-exp run arena.experiment runs=\'["baseline","high_lr","low_lr"]\' group=my_experiment gpus=8': (
        True,
        ("my_experiment", "== baseline", "== high_lr", "== low_lr"),
    ),
    "metta-exp run arena.experiment 'runs=[baseline,high_lr]' remote=false max_parallel=2": (
        True,
        ("== baseline", "== high_lr"),
    ),
    "metta-exp run ./my_recipes.py:sweep 'lrs={fast:0.1,slow:0.01}' dry_run=true": (
        False,
        ("== fast", "== slow", "trainer.learning_rate=0.1", "trainer.learning_rate=0.01"),
    ),
    "metta-exp run arena.experiment --help": (False, ("Launch a parallel experiment", "gpus")),
    "metta-exp run --list": (False, ("arena.experiment", "assembly_lines.experiment")),
    "metta-exp run --list my_project.recipes": (False, ("my_project.recipes.sweeps.sweep",)),
    "metta-exp run metta_exp.examples.recipes.demo": (True, ("== lr_low", "== lr_mid", "== lr_high")),
}


# "Try remote groups offline": run for real, in order, on the SkyPilot simulator (the account in a
# temporary directory instead of /tmp/sky-sim); each line with the exit code and output it must give.
OFFLINE_COMMANDS = {
    "export METTA_EXP_FAKE_SKY_DIR=/tmp/sky-sim": (0, ""),
    "metta-exp +experiment=demo remote=true": (0, "3 jobs on skypilot"),
    "metta-exp +experiment=demo remote=true wait=false group=sim-demo": (0, "Submitted."),
    "metta-exp job monitor sim-demo": (0, "3 succeeded"),
}


def test_every_readme_command_is_checked() -> None:
    checked = {
        words(line)
        for line in (*LAUNCHES, *NOT_HERE, *RECIPE_COMMANDS, *OFFLINE_COMMANDS, *SEARCHES, *HISTORY_COMMANDS)
    }
    for line in bash_commands():
        if line in checked or BENCH.fullmatch(" ".join(line)):
            continue
        assert line[:2] == ("metta-exp", "job"), f"README command not checked by this test: {line}"
        assert line in JOB_COMMANDS, f"README job command not checked by this test: {line}"
    assert {words(line) for line in (*LAUNCHES, *RECIPE_COMMANDS, *SEARCHES)} <= set(bash_commands()), (
        "a command here is no longer in the README"
    )


def argv_of(line: str) -> list[str]:
    words = shlex.split(line)
    words = words[2:] if words[:2] == ["uv", "run"] else words
    assert words[0] == "metta-exp"
    return words[1:]


@pytest.mark.parametrize("line", [k for k, v in LAUNCHES.items() if not v.real])
def test_readme_launches_as_dry_runs_list_the_runs_the_text_states(state_dir: Path, line: str) -> None:
    stated = LAUNCHES[line]
    result = run_cli(*argv_of(line), "dry_run=true")
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.findall(r"^== (\S+)$", result.stdout, re.M) == list(stated.runs)
    assert f", {plural(len(stated.runs), 'job')} on " in result.stdout
    if stated.points is not None:
        assert f"Sweep: {stated.points} points, {len(stated.runs)} runs" in result.stdout
    assert "Warning" not in result.stderr  # the README's sweeps repeat no run
    assert not state_dir.exists()  # nothing written


@pytest.mark.parametrize("line", list(SEARCHES))
def test_readme_searches_as_dry_runs_print_their_space_and_first_trials(state_dir: Path, line: str) -> None:
    result = run_cli(*argv_of(line), "dry_run=true")
    assert result.returncode == 0, result.stdout + result.stderr
    for text in SEARCHES[line]:
        assert text in result.stdout, (text, result.stdout[:2000])
    trials = re.findall(r"^== (t\d{3}-\S+)$", result.stdout, re.M)
    at_once = re.search(r"^Search: \d+ trials, (\d+) at once", result.stdout, re.M)
    assert at_once is not None
    parallel = int(at_once[1])
    assert [t[:4] for t in trials] == [f"t{n:03d}" for n in range(parallel)]
    assert not state_dir.exists()  # nothing written


@pytest.mark.slow
@pytest.mark.parametrize("line", [k for k, v in LAUNCHES.items() if v.real])
def test_readme_launches_run_here_as_the_text_says(state_dir: Path, line: str) -> None:
    stated = LAUNCHES[line]
    result = run_cli(*argv_of(line), timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr  # "exits 0 when all ... succeeded"
    group = re.search(r"^Group (\S+): ", result.stdout, re.M)
    assert group is not None
    with JobStore.open(state_dir) as store:
        jobs = store.jobs(group[1])
    assert [j.run for j in jobs] == list(stated.runs)
    assert all(j.status == "succeeded" for j in jobs)
    if "group=quick" in line:
        assert group[1] == "quick"
        assert all("trainer.total_timesteps=50000" in j.spec.args for j in jobs)
    else:  # the quickstart: notebook and report where the README says
        notebook = Path("experiments/notebooks") / f"{group[1]}.ipynb"
        assert notebook.is_file() and notebook.with_suffix(".html").is_file()


def test_the_python_api_example_does_what_the_readme_says(state_dir: Path) -> None:
    """Without SkyPilot set up the example's launch raises MettaExpError, which it prints."""
    block = re.search(r"### From Python\n.*?```python\n(.*?)```", README, re.S)
    assert block is not None
    code = block[1]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Error: SkyPilot is not set up on this machine"), result.stdout
    assert "Traceback" not in result.stderr
    assert not state_dir.exists()

    local = textwrap.dedent(
        """
        from metta_exp import Experiment
        print(Experiment(command=["true"], runs=["a", "b"], gpus=0, remote=False, generate_notebook=False).launch())
        """
    )
    result = subprocess.run([sys.executable, "-c", local], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("\n0")  # returns the exit code
    group = json.loads(run_cli("job", "list", "--json").stdout)[0]["group"]
    assert [j.status for j in wait_group_end(state_dir, group)] == ["succeeded", "succeeded"]


def test_the_python_groups_example_manages_a_group_as_the_job_commands_do(state_dir: Path) -> None:
    """The README's ``metta_exp.groups`` example, run as written on a group whose high_lr run fails once."""
    block = re.search(r"### From Python: `metta_exp.groups`\n.*?```python\n(.*?)```", README, re.S)
    assert block is not None
    job = (
        "import os, sys; sys.exit(1 if os.environ['METTA_EXP_ATTEMPT'] == '1' and sys.argv[-1] == 'x' else 0)"
    )
    launch = textwrap.dedent(
        f"""
        from metta_exp import Experiment
        Experiment(command=[{sys.executable!r}, "-c", {job!r}], runs=["low_lr", "high_lr"],
                   args_per_run={{"high_lr": ["x"]}}, gpus=0, remote=False, group="lr_sweep",
                   generate_notebook=False).launch()
        """
    )
    subprocess.run([sys.executable, "-c", launch], check=True, capture_output=True, timeout=120)
    wait_group_end(state_dir, "lr_sweep")
    result = subprocess.run([sys.executable, "-c", block[1]], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    notebook = Path("experiments/notebooks/lr_sweep.ipynb").absolute()
    assert result.stdout == (
        "lr_sweep 2 1\n"
        "requeued: [('high_lr', <JobStatus.FAILED: 'failed'>)]\n"
        "{'low_lr': 'succeeded', 'high_lr': 'succeeded'}\n"
        f"notebook: {notebook}\n"
        "2 succeeded\n"
    )
    assert notebook.is_file()
    with JobStore.open(state_dir) as store:
        assert store.job("lr_sweep", "high_lr").attempts == 2


@pytest.mark.slow
def test_the_offline_skypilot_example_runs_as_the_readme_says(state_dir: Path, tmp_path: Path) -> None:
    assert [words(line) for line in OFFLINE_COMMANDS] == [
        line for line in bash_commands() if line[0] == "export" or "sim-demo" in line or "remote=true" in line
    ][: len(OFFLINE_COMMANDS)]
    env = {"METTA_EXP_FAKE_SKY_DIR": str(tmp_path / "sky-sim"), "METTA_EXP_SKY_POLL_S": "0.5"}
    for line, (code, says) in list(OFFLINE_COMMANDS.items())[1:]:
        result = run_cli(*argv_of(line), env=env, timeout=600)
        assert result.returncode == code, line + "\n" + result.stdout + result.stderr
        assert says in result.stdout, line + "\n" + result.stdout
    from metta_exp.backends.skypilot.sim.api import FakeSkyApi

    jobs = FakeSkyApi(env["METTA_EXP_FAKE_SKY_DIR"]).jobs()
    assert len(jobs) == 6 and {j["status"] for j in jobs} == {"SUCCEEDED"}  # six managed jobs ran


# `metta-exp job ...` as the README lists them, against a real local group named as in the README: its
# run high_lr fails its first attempt, so retry has something to do. In README order: each command's exit
# code, and a check of what its README comment says it prints (given stdout and stderr).
RUNS = ("baseline", "high_lr", "low_lr", "high_entropy")


def _listed(out: str, err: str) -> None:  # every group, newest first, counts by status and age
    header, row = out.splitlines()[:2]
    assert header.split()[:10] == [
        "GROUP", "BACKEND", "TOTAL", "PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "SKIPPED", "AGE"
    ]  # fmt: skip
    assert re.fullmatch(r"lr_sweep +local +4 +0 +0 +3 +1 +0 +0 +\d+s +ended", row.rstrip()), row


def _listed_json(out: str, err: str) -> None:
    [group] = json.loads(out)
    assert {k: group[k] for k in ("group", "total", "succeeded", "failed", "backend")} == {
        "group": "lr_sweep", "total": 4, "succeeded": 3, "failed": 1, "backend": "local"
    }  # fmt: skip


def _shown(out: str, err: str) -> None:  # every job: status, attempts, exit code, times, progress, W&B, ...
    lines = out.splitlines()
    assert lines[1].split() == [
        "RUN", "STATUS", "ATTEMPTS", "EXIT", "STARTED", "TIME", "PROGRESS", "DEPENDS", "ON", "REASON"
    ]  # fmt: skip
    rows = [line.split() for line in lines[2:6]]
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("baseline", "succeeded", "1", "0"), ("high_lr", "failed", "1", "1"),
        ("low_lr", "succeeded", "1", "0"), ("high_entropy", "succeeded", "1", "0"),
    ]  # fmt: skip
    assert lines[2 + 1].endswith("exit code 1")  # the reason
    assert lines[7].split() == ["RUN", "LOG", "W&B"]
    assert [line.split()[0] for line in lines[8:12]] == list(RUNS)


def _shown_json(out: str, err: str) -> None:
    rows = json.loads(out)
    assert [(r["run"], r["status"], r["attempts"], r["exit_code"], r["reason"]) for r in rows] == [
        ("baseline", "succeeded", 1, 0, None), ("high_lr", "failed", 1, 1, "exit code 1"),
        ("low_lr", "succeeded", 1, 0, None), ("high_entropy", "succeeded", 1, 0, None),
    ]  # fmt: skip
    assert all(r["log_path"].endswith(f"/lr_sweep/{r['run']}/attempt-1.log") for r in rows)


def _watched(out: str, err: str) -> None:  # the view until the group ends (it has): its end
    assert out.startswith("lr_sweep: 4 jobs, 3 succeeded, 1 failed")
    assert "  high_lr failed: exit code 1\n      training high_lr\n" in out


def _nothing_to_kill(out: str, err: str) -> None:  # it ended: nothing to ask about
    assert out == "Nothing to kill in lr_sweep: no job is running or pending (4 ended).\n"


def _log(out: str, err: str) -> None:
    assert out == "training high_lr\n"


def _retried(out: str, err: str) -> None:  # relaunch failed, cancelled and skipped runs as new attempts
    assert out.startswith("Requeued 1 run of lr_sweep: high_lr (failed).\n")
    assert re.search(r"\nlr_sweep: 4 jobs, 4 succeeded · \d+:\d\d elapsed\n", out), out
    assert "high_lr: pending -> launching (attempt 2)" in out


def _notebook(out: str, err: str) -> None:  # (re)write the group's notebook
    assert out.startswith("Notebook: analysis.ipynb\n")
    nb = json.loads(Path("analysis.ipynb").read_text())
    assert "lr\\_sweep" in "".join(nb["cells"][0]["source"])


def _report(out: str, err: str) -> None:  # (re)write the group's HTML report and open it
    assert out == f"Report: {Path('experiments/notebooks/lr_sweep.html').absolute()}\n"


def _resumed(out: str, err: str) -> None:  # drive a group whose runner stopped: this one has ended
    assert out.startswith("lr_sweep has ended; nothing to drive.\n")


JOB_COMMANDS = {
    words(line): said
    for line, said in {
        "metta-exp job list": (0, _listed),
        "metta-exp job list --json": (0, _listed_json),
        "metta-exp job show lr_sweep": (0, _shown),
        "metta-exp job show lr_sweep --json": (0, _shown_json),
        "metta-exp job monitor lr_sweep --refresh 2.0": (1, _watched),  # the group ended with a failed job
        "metta-exp job monitor lr_sweep --no-logs": (1, _watched),
        "metta-exp job kill lr_sweep": (0, _nothing_to_kill),
        "metta-exp job kill lr_sweep --force": (0, _nothing_to_kill),
        "metta-exp job logs lr_sweep high_lr --tail 50": (0, _log),
        "metta-exp job logs lr_sweep high_lr --follow": (1, _log),  # the job failed
        "metta-exp job retry lr_sweep": (0, _retried),  # its second attempt succeeds
        "metta-exp job notebook lr_sweep -o analysis.ipynb": (0, _notebook),
        "metta-exp job report lr_sweep --open": (0, _report),
        "metta-exp job resume lr_sweep": (0, _resumed),
    }.items()
}
FLAKY_FIRST = (
    "import os, sys; print('training', os.environ['METTA_EXP_RUN'], flush=True); "
    "sys.exit(1 if os.environ['METTA_EXP_RUN'] == 'high_lr' and os.environ['METTA_EXP_ATTEMPT'] == '1' else 0)"
)


@pytest.mark.slow
def test_readme_job_commands_do_what_their_comments_say(state_dir: Path, tmp_path: Path) -> None:
    from metta_exp.config import Experiment

    exp = Experiment(
        command=[sys.executable, "-c", FLAKY_FIRST],
        runs=list(RUNS),
        gpus=0,
        remote=False,
        wait=False,
        generate_notebook=False,
        group="lr_sweep",
    )
    assert exp.launch() == 0
    wait_group_end(state_dir, "lr_sweep")
    browser = tmp_path / "browser"
    browser.write_text(
        f"#!{sys.executable}\nimport sys\nopen({str(tmp_path / 'opened')!r}, 'w').write(sys.argv[1])\n"
    )
    browser.chmod(0o755)
    # run on the simulator by their own test; the History section's by tests/test_readme_history.py
    others = {words(line) for line in (*OFFLINE_COMMANDS, *HISTORY_COMMANDS)}
    listed = [line for line in bash_commands() if line[:2] == ("metta-exp", "job") and line not in others]
    assert listed == list(JOB_COMMANDS)
    for line in listed:
        result = run_cli(*line[1:], env={"BROWSER": str(browser)}, timeout=300)
        code, says = JOB_COMMANDS[line]
        assert result.returncode == code, (line, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr, line
        says(result.stdout, result.stderr)
    with JobStore.open(state_dir) as store:
        assert [j.status for j in store.jobs("lr_sweep")] == ["succeeded"] * 4
    assert Path("analysis.ipynb").is_file()
    assert (tmp_path / "opened").read_text().endswith("/experiments/notebooks/lr_sweep.html")


@pytest.mark.parametrize("line", list(RECIPE_COMMANDS))
def test_readme_recipe_commands_do_what_the_text_says(state_dir: Path, line: str) -> None:
    import shutil

    work = state_dir.parent
    shutil.copytree(ROOT / "tests" / "reference_recipes" / "experiments", work / "experiments")
    (work / "my_recipes.py").write_text(MY_RECIPES)
    (work / "my_project" / "recipes").mkdir(parents=True)
    (work / "my_project" / "__init__.py").write_text("")
    (work / "my_project" / "recipes" / "__init__.py").write_text("")
    (work / "my_project" / "recipes" / "sweeps.py").write_text(MY_RECIPES)
    (work / "arena").mkdir()  # the project's training package: a local job's module must be found
    (work / "arena" / "train.py").write_text("")
    dry, expected = RECIPE_COMMANDS[line]
    gpus = {"METTA_EXP_LOCAL_GPUS": "0,1,2,3"}  # a machine with the 4 GPUs a local arena run asks for
    result = run_cli(*argv_of(line), *(["dry_run=true"] if dry else []), cwd=work, env=gpus)
    assert result.returncode == 0, result.stdout + result.stderr
    for text in expected:
        assert text in result.stdout, f"{text!r} not in:\n{result.stdout}"
    assert not state_dir.exists()  # dry runs, help and lists write nothing
