"""``metta-exp run RECIPE``, run as a user runs it: look-up, binding, overrides, errors, help, listing."""

from __future__ import annotations

import json
import re
import shutil
import textwrap
from pathlib import Path

import pytest
from conftest import PY, ROOT, run_cli, wait_group_end

from metta_exp.status import JobStatus
from metta_exp.store import JobStore

REFERENCE = ROOT / "tests" / "reference_recipes"

TYPED = '''
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from metta_exp import Experiment

if TYPE_CHECKING:  # a name only type checkers see: its parameter takes values as Hydra types them
    from somewhere_else import Unknown


def typed(
    i: int,
    f: float,
    b: bool,
    s: str,
    p: Path,
    names: list[str],
    nums: list[int],
    table: dict[str, float],
    nested: dict[str, list[int]],
    maybe: int | None = 5,
    opt_names: list[str] | None = None,
    pair: tuple[int, str] = (0, ""),
    mode: Literal["fast", "slow"] = "fast",
    untyped=3,
    hidden: Unknown | None = None,
) -> Experiment:
    """Echoes its arguments, with their types, as the args of one run."""
    got = dict(i=i, f=f, b=b, s=s, p=p, names=names, nums=nums, table=table, nested=nested, maybe=maybe,
               opt_names=opt_names, pair=pair, mode=mode, untyped=untyped, hidden=hidden)
    return Experiment(
        command=["python", "-c", "pass"],
        runs=["r"],
        args=[f"{k}={type(v).__name__}:{v!r}" for k, v in got.items()],
        remote=False,
        gpus=0,
    )
'''

BASE_ARGS = [
    "i=3",
    "f=1e-3",
    "b=true",
    "s=007",
    "p=~/data/x.txt",
    "names=[a,b]",
    "nums=[1,2]",
    "table={x:0.5}",
]
BASE_ARGS += ["nested={a:[1,2]}"]


def files_under(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*") if "__pycache__" not in p.parts}


def write_recipe(cwd: Path, module: str, body: str) -> None:
    path = cwd / "experiments" / "recipes" / f"{module}.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(body))


def echoed(result_stdout: str) -> dict[str, str]:
    args = json.loads(result_stdout)["args"]
    return dict(a.split("=", 1) for a in args)


@pytest.fixture
def cwd(state_dir: Path) -> Path:
    """The test's working directory (the state dir's parent), with the typed recipe in it."""
    write_recipe(state_dir.parent, "typed", TYPED)
    return state_dir.parent


def test_arguments_are_converted_by_their_annotations(cwd: Path) -> None:
    result = run_cli("run", "typed.typed", *BASE_ARGS, "--cfg")
    assert result.returncode == 0, result.stderr
    assert echoed(result.stdout) == {
        "i": "int:3",
        "f": "float:0.001",
        "b": "bool:True",
        "s": "str:'007'",
        "p": "PosixPath:PosixPath('~/data/x.txt')",
        "names": "list:['a', 'b']",
        "nums": "list:[1, 2]",
        "table": "dict:{'x': 0.5}",
        "nested": "dict:{'a': [1, 2]}",
        "maybe": "int:5",
        "opt_names": "NoneType:None",
        "pair": "tuple:(0, '')",
        "mode": "str:'fast'",
        "untyped": "int:3",
        "hidden": "NoneType:None",
    }
    more = ["maybe=null", "opt_names=[x]", "pair=[7,seven]", "mode=slow", "untyped=9", "b=False", "f=2"]
    more += ["hidden=[1,x]"]
    result = run_cli("run", "typed.typed", *BASE_ARGS, *more, "--cfg")
    assert result.returncode == 0, result.stderr
    got = echoed(result.stdout)
    assert (got["maybe"], got["opt_names"], got["pair"]) == (
        "NoneType:None",
        "list:['x']",
        "tuple:(7, 'seven')",
    )
    assert (got["mode"], got["untyped"], got["b"], got["f"]) == (
        "str:'slow'",
        "int:9",
        "bool:False",
        "float:2.0",
    )


@pytest.mark.parametrize(
    "syntax",
    [
        ['names=["a b","c"]', "nums=[1, 2]", 'table={"x": 0.5, "y": 2}', 'nested={"a": [1, 2]}'],  # JSON
        ["names=['a b',c]", "nums=[1,2]", "table={x:0.5,y:2}", "nested={a:[1,2]}"],  # Hydra
    ],
    ids=["json", "hydra"],
)
def test_lists_and_dicts_take_json_and_hydra_syntax(cwd: Path, syntax: list[str]) -> None:
    result = run_cli("run", "typed.typed", *BASE_ARGS, *syntax, "--cfg")
    assert result.returncode == 0, result.stderr
    got = echoed(result.stdout)
    assert got["names"] == "list:['a b', 'c']" and got["nums"] == "list:[1, 2]"
    assert got["table"] == "dict:{'x': 0.5, 'y': 2.0}" and got["nested"] == "dict:{'a': [1, 2]}"


BAD_ARGS = [
    (["i=abc"], "recipe typed.typed: argument 'i' must be an integer, got 'abc'"),
    (["i=1.5"], "argument 'i' must be an integer, got '1.5'"),
    (["b=maybe"], "argument 'b' must be true or false, got 'maybe'"),
    (["f=fast"], "argument 'f' must be a number, got 'fast'"),
    (["names=a"], "argument 'names' must be list[str], e.g. [a,b] or '[\"a\",\"b\"]', got 'a'"),
    (["nums=[1,x]"], "argument 'nums[1]' must be an integer, got 'x'"),
    (["table=[1]"], "argument 'table' must be dict[str, float], e.g. {a:1,b:2}"),
    (["names=[a,b"], "cannot read '[a,b': missing ']'"),
    (["mode=medium"], "argument 'mode' must be Literal['fast', 'slow'], got 'medium'"),
    (["maybe=x"], "argument 'maybe' must be int | None, got 'x'"),
    (["pair=[1]"], "argument 'pair' must have 2 items (tuple[int, str]), got 1"),
    (["nam=[a]"], "unknown argument 'nam' (did you mean 'names'?)"),
    (["gpu=2"], "unknown argument 'gpu' (did you mean 'gpus'?)"),
    (["trainer.lr=0.1"], "unknown argument 'trainer.lr': recipe typed.typed has no such parameter"),
    (
        ["trainer.lr=0.1"],
        "a training override goes in the experiment's args (\"args=['trainer.lr=...']\" replaces",
    ),
    (["remote=maybe"], "'remote' must be true or false, got 'maybe'"),
    (["max_parallel=0"], "'max_parallel' must be at least 1, got 0"),
    (["skypilot.clod=aws"], "unknown key 'skypilot.clod' (did you mean 'cloud'?)"),
    (["gpus.x=1"], "'gpus' has no sub-keys: write gpus=VALUE"),
    (["runs=[r,r]"], "run 'r' is listed twice"),
    (["extra"], "'extra' is not an argument: write key=value"),
    (["--bogus"], "unknown flag '--bogus'"),
]


@pytest.mark.parametrize(("args", "message"), BAD_ARGS, ids=[" ".join(a) for a, _ in BAD_ARGS])
def test_bad_arguments_are_one_line_exit_2_and_write_nothing(
    cwd: Path, state_dir: Path, args: list[str], message: str
) -> None:
    before = files_under(cwd)
    result = run_cli("run", "typed.typed", *BASE_ARGS, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert message in lines[0]
    assert files_under(cwd) == before and not state_dir.exists()


def test_a_missing_required_parameter_is_named(cwd: Path) -> None:
    result = run_cli("run", "typed.typed", "i=1")
    assert result.returncode == 2
    assert "recipe typed.typed needs 'f', 'b', 's', 'p', 'names', 'nums', 'table', 'nested'" in result.stderr


@pytest.mark.parametrize("override", ["remote=maybe", "max_parallel=0", "gpus=-1", "wandb.mode=sometimes"])
def test_experiment_key_overrides_are_validated_as_yaml_overrides_are(state_dir: Path, override: str) -> None:
    yaml = run_cli("+experiment=demo", override)
    recipe = run_cli("run", "metta_exp.examples.recipes.demo", override)
    assert yaml.returncode == recipe.returncode == 2
    assert "with overrides" in recipe.stderr
    assert yaml.stderr.split(": ", 2)[2] == recipe.stderr.split(": ", 2)[2]


def test_experiment_keys_override_the_returned_experiment(state_dir: Path) -> None:
    overrides = ["max_parallel=2", "skypilot.use_spot=true", "skypilot.envs.FOO=1", "wandb.mode=offline"]
    overrides += ["notebook_path=out/nb.ipynb", "args_per_run.lr_low=[x=1]", "remote=true", "gpus=2"]
    result = run_cli("run", "metta_exp.examples.recipes.demo", "runs=[lr_low,lr_mid]", *overrides, "--cfg")
    assert result.returncode == 0, result.stderr
    exp = json.loads(result.stdout)
    assert exp["runs"] == ["lr_low", "lr_mid"] and exp["max_parallel"] == 2 and exp["gpus"] == 2
    assert exp["skypilot"]["use_spot"] is True and exp["skypilot"]["envs"] == {"FOO": "1"}
    assert exp["wandb"]["mode"] == "offline" and exp["notebook_path"] == "out/nb.ipynb"
    assert exp["args_per_run"] == {"lr_low": ["x=1"], "lr_mid": ["trainer.learning_rate=0.03"]}
    assert exp["remote"] is True

    # `runs` is a parameter of demo; of a recipe without one, runs=[...] is an override selecting a subset
    write_recipe(state_dir.parent, "fixed", FIXED)
    narrowed = run_cli("run", "fixed.experiment", "runs=[b]", "--cfg")
    assert narrowed.returncode == 0, narrowed.stderr
    assert json.loads(narrowed.stdout)["args_per_run"] == {"b": ["y=2"]}

    dry = run_cli("run", "metta_exp.examples.recipes.demo", "dry_run=true", "group=g", "runs=[lr_high]")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("Dry run: group g, 1 job on local (nothing submitted)")
    assert "trainer.learning_rate=0.1" in dry.stdout and not state_dir.exists()


FIXED = """
from metta_exp import Experiment

def experiment() -> Experiment:
    return Experiment(module="x.train", runs=["a", "b"], args_per_run={"a": ["y=1"], "b": ["y=2"]}, gpus=0)
"""


def test_a_recipe_that_raises_is_one_line_with_its_traceback_in_a_log(state_dir: Path) -> None:
    write_recipe(state_dir.parent, "boom", BOOM)
    before = files_under(state_dir.parent)
    result = run_cli("run", "boom.experiment", "style=x")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    match = re.fullmatch(
        r"Error: recipe boom\.experiment raised ValueError: unknown curriculum style 'x' "
        r"\(traceback in (\S+\.log), or add --verbose\)",
        lines[0],
    )
    assert match, lines[0]
    log = Path(match.group(1))
    try:
        text = log.read_text()
    finally:
        log.unlink()
    assert text.startswith("Traceback") and "boom.py" in text and "raise ValueError" in text
    assert "metta_exp/recipes.py" not in text, "the log shows the recipe's frames, not metta-exp's"
    assert files_under(state_dir.parent) == before

    verbose = run_cli("run", "boom.experiment", "style=x", "--verbose")
    assert verbose.returncode == 2
    assert verbose.stderr.startswith("Traceback") and "raise ValueError" in verbose.stderr
    assert verbose.stderr.strip().splitlines()[-1] == (
        "Error: recipe boom.experiment raised ValueError: unknown curriculum style 'x'"
    )


BOOM = """
from metta_exp import ExperimentTool

def experiment(style: str = "easy") -> ExperimentTool:
    if style not in ("easy", "hard"):
        raise ValueError(f"unknown curriculum style {style!r}")
    return ExperimentTool(module="x.train", runs=[style])

def bad_name() -> ExperimentTool:
    return ExperimentTool(module="x.train", runs=["a b"])

def not_an_experiment():
    return {"runs": ["a"]}
"""


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        ("boom.bad_name", "Error: recipe boom.bad_name: Experiment(...): bad run name 'a b'"),
        (
            "boom.not_an_experiment",
            "recipe boom.not_an_experiment returned a dict: a recipe returns an Experiment",
        ),
        (
            "broken.experiment",
            "Error: recipe broken.experiment: importing experiments.recipes.broken failed: ",
        ),
    ],
)
def test_recipe_faults_are_one_line(state_dir: Path, recipe: str, message: str) -> None:
    write_recipe(state_dir.parent, "boom", BOOM)
    write_recipe(state_dir.parent, "broken", "import no_such_dependency_xyz\n")
    result = run_cli("run", recipe)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    for log in re.findall(r"traceback in (\S+\.log)", lines[0]):
        Path(log).unlink()


TWO_GROUPS = f"""
from metta_exp import Experiment

def experiment(fail_second: bool = False) -> list[Experiment]:
    '''Two groups: one job each.'''
    code = "import sys; sys.exit(3)" if fail_second else "pass"
    return [
        Experiment(command=[{PY!r}, "-c", "pass"], runs=["one"], group="first", remote=False, gpus=0,
                   generate_notebook=False),
        Experiment(command=[{PY!r}, "-c", code], runs=["two"], group="second", remote=False, gpus=0,
                   generate_notebook=False),
    ]

def same_group() -> list[Experiment]:
    return [Experiment(module="x.train", runs=["a"], group="g"), Experiment(module="x.train", runs=["b"], group="g")]
"""


def test_a_recipe_returning_a_list_launches_one_group_each(state_dir: Path) -> None:
    write_recipe(state_dir.parent, "two", TWO_GROUPS)
    dry = run_cli("run", "two.experiment", "dry_run=true")
    assert dry.returncode == 0 and dry.stdout.count("Dry run: group ") == 2, dry.stderr
    assert not state_dir.exists()

    clash = run_cli("run", "two.same_group", "remote=false", "gpus=0")
    assert clash.returncode == 2 and "two experiments name the group 'g'" in clash.stderr
    assert not state_dir.exists()

    result = run_cli("run", "two.experiment", "fail_second=true")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Group first: 1 job on local" in result.stdout and "Group second: 1 job on local" in result.stdout
    assert [j.status for j in wait_group_end(state_dir, "first")] == [JobStatus.SUCCEEDED]
    assert [j.status for j in wait_group_end(state_dir, "second")] == [JobStatus.FAILED]

    again = run_cli("run", "two.experiment")  # 'first' is taken: nothing of the batch is submitted
    assert again.returncode == 2 and "group 'first' already exists" in again.stderr
    with JobStore.open(state_dir) as store:
        assert sorted(g.name for g in store.list_groups()) == ["first", "second"]


def test_help_shows_the_docstring_and_typed_parameters(cwd: Path) -> None:
    result = run_cli("run", "typed.typed", "--help")
    assert result.returncode == 0, result.stderr
    assert "Echoes its arguments, with their types, as the args of one run." in result.stdout
    for line in (
        "  i: int (required)",
        "  p: Path (required)",
        "  names: list[str] (required)",
        "  table: dict[str, float] (required)",
        "  maybe: int | None = 5",
        "  opt_names: list[str] | None = None",
        "  pair: tuple[int, str] = (0, '')",
        "  mode: Literal['fast', 'slow'] = 'fast'",
        "  untyped = 3",
        "  hidden: Unknown | None = None",
    ):
        assert f"\n{line}\n" in result.stdout, line
    usage = run_cli("run", "--help")
    assert usage.returncode == 0 and "metta-exp run RECIPE [key=value ...]" in usage.stdout
    nothing = run_cli("run")
    assert nothing.returncode == 2 and nothing.stderr.startswith(
        "Error: name a recipe: metta-exp run MODULE.FUNCTION"
    )


def test_list_shows_the_recipes_of_a_package(state_dir: Path) -> None:
    cwd = state_dir.parent
    shutil.copytree(REFERENCE / "experiments", cwd / "experiments")
    write_recipe(cwd, "boom", BOOM)
    write_recipe(cwd, "broken", "import no_such_dependency_xyz\n")
    result = run_cli("run", "--list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("arena.experiment  ") and lines[0].endswith(
        "Launch a parallel experiment with multiple training runs."
    )
    names = [line.split()[0] for line in lines]
    assert names == sorted(names) and {
        "assembly_lines.experiment",
        "boom.bad_name",
        "notebook_path.experiment",
    } <= set(names)
    assert "boom.not_an_experiment" not in names, "only functions annotated to return experiments are listed"
    assert "warning: skipped experiments.recipes.broken: ModuleNotFoundError" in result.stderr

    shipped = run_cli("run", "--list", "metta_exp.examples")
    assert shipped.returncode == 0 and shipped.stdout.startswith("metta_exp.examples.recipes.demo  CartPole")
    missing = run_cli("run", "--list", "no_such_pkg")
    assert missing.returncode == 2 and "no recipe package 'no_such_pkg'" in missing.stderr


def test_recipes_are_found_by_short_name_full_name_and_file_path(state_dir: Path) -> None:
    cwd = state_dir.parent
    write_recipe(cwd, "boom", BOOM)
    (cwd / "toplevel.py").write_text(BOOM)
    (cwd / "elsewhere dir").mkdir()
    (cwd / "elsewhere dir" / "my recipe.py").write_text(BOOM)
    for spec in ("boom.experiment", "experiments.recipes.boom.experiment", "toplevel.experiment"):
        result = run_cli("run", spec, "style=hard", "--cfg")
        assert result.returncode == 0 and json.loads(result.stdout)["runs"] == ["hard"], (spec, result.stderr)
    by_path = run_cli("run", "elsewhere dir/my recipe.py:experiment", "--cfg", cwd=cwd)
    assert by_path.returncode == 0 and json.loads(by_path.stdout)["runs"] == ["easy"], by_path.stderr

    for spec, message in [
        ("bom.experiment", "no recipe module 'bom' (did you mean 'boom'?)"),
        ("boom.experimnt", "has no recipe function 'experimnt' (did you mean 'experiment'?)"),
        ("boom", "'boom' is not a recipe: write MODULE.FUNCTION"),
        ("nowhere.py:f", "recipe nowhere.py:f: no such file nowhere.py"),
    ]:
        result = run_cli("run", spec)
        assert result.returncode == 2 and message in result.stderr, (spec, result.stderr)


REFERENCE_COMMANDS = [
    # "Launching an Experiment" and the "Complete Workflow Example", each as a dry run
    (["arena.experiment"], "2 jobs on skypilot", ["baseline", "variant"]),
    (
        ["arena.experiment", 'runs=["baseline","high_lr","low_lr"]', "group=my_experiment"],
        "group my_experiment, 3",
        [],
    ),
    (["arena.experiment", 'runs=["run1","run2"]', "gpus=8"], "2 jobs on skypilot", ["accelerators"]),
    (
        [
            "arena.experiment",
            'runs=["baseline","high_lr","low_lr","high_entropy"]',
            "group=lr_sweep",
            "gpus=4",
        ],
        "group lr_sweep, 4 jobs",
        [],
    ),
    (["assembly_lines.experiment"], "2 jobs on skypilot", ["curriculum_style=easy", "curriculum_style=hard"]),
    (["custom_args.experiment"], "group custom_args_experiment, 3 jobs", ["trainer.entropy_coef=0.001"]),
    (["local_run.experiment"], "1 job on local", ["python -m arena.train"]),
    (["custom_metrics.experiment"], "2 jobs on skypilot", []),
    (["notebook_path.experiment"], "1 job on skypilot", []),
]


@pytest.mark.parametrize(
    ("args", "header", "contains"), REFERENCE_COMMANDS, ids=[" ".join(a) for a, _, _ in REFERENCE_COMMANDS]
)
def test_the_references_recipes_launch_unchanged(
    state_dir: Path, args: list[str], header: str, contains: list[str]
) -> None:
    shutil.copytree(REFERENCE / "experiments", state_dir.parent / "experiments")
    (state_dir.parent / "arena").mkdir()  # and the project's training package (a local job's module)
    (state_dir.parent / "arena" / "train.py").write_text("")
    # the reference's recipes assume a machine with GPUs (a local dry run reports what a launch refuses)
    result = run_cli("run", *args, "dry_run=true", env={"METTA_EXP_LOCAL_GPUS": "0,1,2,3"})
    assert result.returncode == 0, result.stderr
    assert header in result.stdout.splitlines()[0]
    for text in contains:
        assert text in result.stdout
    assert not state_dir.exists()


def test_a_path_is_a_notebook_path(state_dir: Path) -> None:
    shutil.copytree(REFERENCE / "experiments", state_dir.parent / "experiments")
    result = run_cli("run", "notebook_path.experiment", "--cfg")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["notebook_path"] == "my_analysis/results.ipynb"


def test_the_demo_recipe_is_the_twin_of_the_demo_yaml(state_dir: Path) -> None:
    yaml = run_cli("+experiment=demo", "dry_run=true", "group=twin")
    recipe = run_cli("run", "metta_exp.examples.recipes.demo", "dry_run=true", "group=twin")
    assert yaml.returncode == recipe.returncode == 0
    assert yaml.stdout == recipe.stdout
    assert json.loads(run_cli("--cfg", "+experiment=demo").stdout) | {"extra_args": None} == json.loads(
        run_cli("run", "metta_exp.examples.recipes.demo", "--cfg").stdout
    ) | {"extra_args": None}


@pytest.mark.slow
def test_the_demo_recipe_runs_offline_on_the_cpu(state_dir: Path) -> None:
    result = run_cli(
        "run",
        "metta_exp.examples.recipes.demo",
        "learning_rates={fast:0.1,slow:0.01}",
        "total_timesteps=2000",
        "group=twin-run",
        "generate_notebook=false",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = wait_group_end(state_dir, "twin-run")
    assert [(j.run, j.status) for j in jobs] == [("fast", JobStatus.SUCCEEDED), ("slow", JobStatus.SUCCEEDED)]
    assert all((Path(j.run_dir) / "metrics.jsonl").stat().st_size > 0 for j in jobs)


def test_run_does_not_import_hydra(state_dir: Path) -> None:
    code = (
        "import json, sys; from metta_exp.cli import main; "
        "rc = main(['run', 'metta_exp.examples.recipes.demo', 'dry_run=true', 'runs=[lr_low]']); "
        "print(json.dumps([rc, sorted(sys.modules)]))"
    )
    import subprocess

    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, check=True).stdout
    rc, modules = json.loads(out.strip().splitlines()[-1])
    assert rc == 0
    assert [
        m for m in modules if m.split(".")[0] in ("hydra", "omegaconf", "antlr4", "sky", "wandb", "pandas")
    ] == []
