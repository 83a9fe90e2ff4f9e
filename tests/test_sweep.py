"""Sweeps (``metta-exp -m``, in-file ``hydra.sweeper.params``): real sweeps through ``python -m metta_exp``
with the local backend and a training command that records its argv, plus the pure parts exactly."""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from conftest import PY, run_cli, wait_group_end

from metta_exp.config import RUN_NAME, Experiment
from metta_exp.errors import ConfigError, UsageError
from metta_exp.status import JobStatus
from metta_exp.store import JobStore
from metta_exp.sweep import (
    DEFAULT_SWEEP_LIMIT,
    Entry,
    check_limit,
    count_values,
    expand,
    key_labels,
    parse_overrides,
    run_names,
    sweep_experiment,
    sweep_limit,
)
from metta_exp.trials.space import Dimension, SearchSpace

# The training command: records its argv, start and end, and (with REC_BARRIER=N) does not end before N
# jobs of its group have started, so a sweep whose jobs ran one after another could never succeed.
RECORD_ARGV = """\
import json, os, pathlib, sys, time
rd = pathlib.Path(os.environ["METTA_EXP_RUN_DIR"])
start = time.time()
(rd / "started").write_text("")
want = int(os.environ.get("REC_BARRIER", "0"))
started = lambda: len(list(rd.parent.glob("*/started")))
while want and started() < want and time.time() < start + 120:
    time.sleep(0.02)
record = {"argv": sys.argv[1:], "start": start, "end": time.time(), "together": started() >= want,
          "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "run": os.environ["METTA_EXP_RUN"]}
(rd / "argv.json").write_text(json.dumps(record))
sys.exit(1 if "outcome=fail" in sys.argv or not record["together"] else 0)
"""


def experiment_dir(tmp: Path, name: str, body: str = "", runs: str = "[main]") -> Path:
    """A --config-dir holding experiment ``name`` whose jobs run the recording command on this machine."""
    script = tmp / "record_argv.py"
    script.write_text(RECORD_ARGV)
    conf = tmp / "my conf"
    (conf / "experiment").mkdir(parents=True, exist_ok=True)
    head = f"""\
        # @package _global_
        command: [{json.dumps(PY)}, {json.dumps(str(script))}]
        runs: {runs}
        remote: false
        gpus: 0
        wait: true
        generate_notebook: false
        """
    (conf / "experiment" / f"{name}.yaml").write_text(textwrap.dedent(head) + textwrap.dedent(body))
    return conf


def only_group(state_dir: Path) -> str:
    with JobStore.open(state_dir) as store:
        groups = store.list_groups()
    assert len(groups) == 1, [g.name for g in groups]
    return groups[0].name


def recorded(state_dir: Path, group: str) -> dict[str, dict[str, Any]]:
    """run -> what its job recorded."""
    out = {}
    for path in (state_dir / "runs" / group).glob("*/argv.json"):
        data = json.loads(path.read_text())
        out[data["run"]] = data
    return out


def group_sweep(state_dir: Path, group: str) -> Mapping[str, Any]:
    """The group's sweep record, in its stored form."""
    with JobStore.open(state_dir) as store:
        sweep = store.group(group).sweep
    assert sweep is not None
    return sweep.to_dict()


def files_under(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


# --- real sweeps ------------------------------------------------------------------------------------


def test_sweep_is_one_group_of_concurrent_jobs_each_with_its_values(state_dir: Path, tmp_path: Path) -> None:
    conf = experiment_dir(tmp_path, "rec")
    result = run_cli(
        "-m",
        "--config-dir",
        str(conf),
        "+experiment=rec",
        "trainer.learning_rate=0.0003,1e-3,0.003",
        "trainer.entropy_coef=0.01,0.001",
        "seed=7",
        env={"REC_BARRIER": "6"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    group = only_group(state_dir)
    jobs = wait_group_end(state_dir, group)
    assert [j.status for j in jobs] == [JobStatus.SUCCEEDED] * 6
    names = [j.run for j in jobs]
    assert names == [
        "lr0.0003-ent0.01",
        "lr0.0003-ent0.001",
        "lr1e-3-ent0.01",
        "lr1e-3-ent0.001",
        "lr0.003-ent0.01",
        "lr0.003-ent0.001",
    ]
    runs = recorded(state_dir, group)
    # every job got its own point, values exactly as written (1e-3 stays 1e-3), in command-line order
    assert runs["lr1e-3-ent0.001"]["argv"] == [
        "trainer.learning_rate=1e-3",
        "trainer.entropy_coef=0.001",
        "seed=7",
    ]
    assert runs["lr0.003-ent0.01"]["argv"] == [
        "trainer.learning_rate=0.003",
        "trainer.entropy_coef=0.01",
        "seed=7",
    ]
    assert len({tuple(r["argv"]) for r in runs.values()}) == 6
    # launched without waiting for each other: each job saw all six started before it ended
    assert all(r["together"] for r in runs.values())
    assert max(r["start"] for r in runs.values()) < min(r["end"] for r in runs.values())
    sweep = group_sweep(state_dir, group)
    assert sweep["keys"] == ["trainer.learning_rate", "trainer.entropy_coef"]
    assert sweep["labels"] == {"trainer.learning_rate": "lr", "trainer.entropy_coef": "ent"}
    assert sweep["points"]["lr1e-3-ent0.001"] == {
        "trainer.learning_rate": 0.001,
        "trainer.entropy_coef": 0.001,
    }
    assert set(sweep["base_runs"].values()) == {"main"}


def test_a_failing_point_fails_alone_and_the_exit_code_says_so(state_dir: Path, tmp_path: Path) -> None:
    conf = experiment_dir(tmp_path, "rec")
    result = run_cli("-m", "--config-dir", str(conf), "+experiment=rec", "outcome=ok,fail,fine")
    assert result.returncode == 1, result.stdout + result.stderr
    jobs = {j.run: j for j in wait_group_end(state_dir, only_group(state_dir))}
    assert {r: j.status for r, j in jobs.items()} == {
        "outcome_ok": JobStatus.SUCCEEDED,
        "outcome_fail": JobStatus.FAILED,
        "outcome_fine": JobStatus.SUCCEEDED,
    }
    assert jobs["outcome_fail"].exit_code == 1


def test_odd_values_reach_jobs_as_written_under_valid_unique_names(state_dir: Path, tmp_path: Path) -> None:
    conf = experiment_dir(tmp_path, "rec")
    values = ['"a b"', "'c/d'", '"it\'s"', "/data/x", r"e\,f", "'" + "v" * 80 + "'", "a_b"]
    result = run_cli(
        "-m", "--config-dir", str(conf), "+experiment=rec", "msg=" + ",".join(values), "wait=false"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    group = only_group(state_dir)
    jobs = wait_group_end(state_dir, group)
    assert all(j.status == JobStatus.SUCCEEDED for j in jobs)
    names = [j.run for j in jobs]
    assert len(set(names)) == len(values)
    assert all(RUN_NAME.match(n) and len(n) <= 64 for n in names), names
    assert names[:5] == ["msg_a_b", "msg_c_d", "msg_it_s", "msg_data_x", "msg_e_f"]
    assert names[6] == "msg_a_b-2"  # 'a_b' reads like '"a b"': a suffix keeps it unique
    argvs = {tuple(r["argv"]) for r in recorded(state_dir, group).values()}
    assert argvs == {(f"msg={v}",) for v in values}


def test_runs_of_the_experiment_prefix_the_points_and_keep_their_dependencies(
    state_dir: Path, tmp_path: Path
) -> None:
    body = """\
        args: [common=1]
        args_per_run: {b: [only_b=2]}
        depends_on: {b: [a]}
        """
    conf = experiment_dir(tmp_path, "pair", body, runs="[a, b]")
    result = run_cli("-m", "--config-dir", str(conf), "+experiment=pair", "x=1,2,3")
    assert result.returncode == 0, result.stdout + result.stderr
    group = only_group(state_dir)
    jobs = {j.run: j for j in wait_group_end(state_dir, group)}
    assert list(jobs) == ["a-x1", "b-x1", "a-x2", "b-x2", "a-x3", "b-x3"]
    assert jobs["b-x2"].depends_on == ("a-x2",)
    assert jobs["a-x2"].depends_on == ()
    runs = recorded(state_dir, group)
    assert runs["b-x3"]["argv"] == ["common=1", "only_b=2", "x=3"]
    assert runs["a-x3"]["argv"] == ["common=1", "x=3"]
    assert runs["b-x1"]["start"] >= runs["a-x1"]["end"]
    assert group_sweep(state_dir, group)["base_runs"]["b-x2"] == "b"


def test_in_file_sweep_launches_without_m(state_dir: Path, tmp_path: Path) -> None:
    body = """\
        hydra:
          sweeper:
            params:
              trainer.learning_rate: 1e-3,0.01
              batch_size: 8,16
        """
    conf = experiment_dir(tmp_path, "grid", body)
    result = run_cli("--config-dir", str(conf), "+experiment=grid", "steps=5", "batch_size=32")
    assert result.returncode == 0, result.stdout + result.stderr
    group = only_group(state_dir)
    jobs = wait_group_end(state_dir, group)
    assert [j.run for j in jobs] == ["lr1e-3", "lr0.01"]  # batch_size given on the command line wins
    runs = recorded(state_dir, group)
    assert runs["lr1e-3"]["argv"] == ["trainer.learning_rate=1e-3", "steps=5", "batch_size=32"]


def test_in_file_sweep_crosses_a_command_line_sweep_with_m(state_dir: Path, tmp_path: Path) -> None:
    body = "hydra: {sweeper: {params: {lr: '0.1,0.2'}}}\n"
    conf = experiment_dir(tmp_path, "grid", body)
    result = run_cli("-m", "--config-dir", str(conf), "+experiment=grid", "seed=1,2", "dry_run=true")
    assert result.returncode == 0, result.stderr
    assert "Sweep: 4 points, 4 runs, over lr, seed" in result.stdout
    for name in ("lr0.1-seed1", "lr0.1-seed2", "lr0.2-seed1", "lr0.2-seed2"):
        assert f"== {name}\n" in result.stdout
    assert "record_argv.py lr=0.2 seed=1\n" in result.stdout


def test_sweeping_gpus_sets_each_points_jobs(state_dir: Path, tmp_path: Path) -> None:
    conf = experiment_dir(tmp_path, "rec")
    result = run_cli(
        "-m",
        "--config-dir",
        str(conf),
        "+experiment=rec",
        "gpus=1,2",
        "x=a,b",
        env={"METTA_EXP_LOCAL_GPUS": "0,1,2,3"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    group = only_group(state_dir)
    jobs = {j.run: j for j in wait_group_end(state_dir, group)}
    assert {r: j.spec.gpus for r, j in jobs.items()} == {
        "x_a-gpus1": 1,
        "x_a-gpus2": 2,
        "x_b-gpus1": 1,
        "x_b-gpus2": 2,
    }
    runs = recorded(state_dir, group)
    assert len(runs["x_b-gpus2"]["cuda"].split(",")) == 2
    assert len(runs["x_a-gpus1"]["cuda"].split(",")) == 1
    assert runs["x_a-gpus1"]["argv"] == ["x=a"]  # metta-exp keys are not training overrides


def test_dry_run_lists_points_and_runs_and_writes_nothing(state_dir: Path, tmp_path: Path) -> None:
    conf = experiment_dir(tmp_path, "rec")
    before = files_under(state_dir.parent)
    result = run_cli(
        "-m", "--config-dir", str(conf), "+experiment=rec", "x=range(0.1,0.35,0.1)", "y=p,q", "dry_run=true"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Sweep: 6 points, 6 runs, over x, y"
    assert lines[1].split() == ["x0.1-y_p", "x=0.1", "y=p"]
    assert lines[5].split() == ["x0.3-y_p", "x=0.30000000000000004", "y=p"]
    assert lines[7].startswith("Dry run: group rec-") and "6 jobs on local" in lines[7]
    assert "record_argv.py x=0.30000000000000004 y=q\n" in result.stdout  # Hydra's formatting for range
    assert files_under(state_dir.parent) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["remote=true,false"], "cannot sweep 'remote'"),
        (["max_parallel=1,2"], "cannot sweep 'max_parallel'"),
        (["wait=true,false"], "cannot sweep 'wait'"),
        (["group=g1,g2"], "cannot sweep 'group'"),
        (["x=glob(*)"], "glob(...) is not supported"),
        (["gpus=0,-1"], "'gpus' must be at least 0, got -1"),
        (["x=[1,2"], "bad override 'x=[1,2'"),
        (["x=range(0,5000)"], "the sweep has 5000 points, more than the limit of 1000"),
        (["x=range(0,40)", "y=range(0,30)"], "raise the limit: METTA_EXP_SWEEP_LIMIT=1200"),
    ],
)
def test_bad_sweeps_are_refused_before_anything_is_written(
    state_dir: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    conf = experiment_dir(tmp_path, "rec")
    before = files_under(state_dir.parent)
    result = run_cli("-m", "--config-dir", str(conf), "+experiment=rec", *args)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.stderr
    assert files_under(state_dir.parent) == before


def test_the_limit_counts_runs_of_the_experiment_and_can_be_raised(state_dir: Path, tmp_path: Path) -> None:
    conf = experiment_dir(tmp_path, "pair", runs="[a, b]")
    refused = run_cli("-m", "--config-dir", str(conf), "+experiment=pair", "x=range(0,1001)")
    assert refused.returncode == 2
    assert "1001 points x 2 runs = 2002 jobs, more than the limit of 1000" in refused.stderr
    raised = run_cli(
        "-m",
        "--config-dir",
        str(conf),
        "+experiment=pair",
        "x=range(0,1001)",
        "dry_run=true",
        env={"METTA_EXP_SWEEP_LIMIT": "1001"},
    )
    assert raised.returncode == 0, raised.stderr
    assert raised.stdout.startswith("Sweep: 1001 points, 2002 runs, over x\n")


# --- the pure parts ---------------------------------------------------------------------------------


def entries(*lines: str) -> list[Entry]:
    return [p.entry() for p in parse_overrides(list(lines))]


def test_parsing_keeps_the_text_of_listed_values_and_hydras_formatting_of_computed_ones() -> None:
    lr, name, flag, cast, rng, chosen = entries(
        "lr=1e-3,0.010",
        "+name='a b',\"c\"",
        "flag=true,null",
        "f=float(1,2)",
        "r=range(0,0.3,0.1)",
        "c=sort(3e0,1,2)",
    )
    assert (lr.key, lr.texts, lr.values) == ("lr", ("1e-3", "0.010"), (0.001, 0.01))
    assert (name.key, name.name, name.texts, name.values) == ("+name", "name", ("'a b'", '"c"'), ("a b", "c"))
    assert flag.texts == ("true", "null") and flag.hydra_texts == ("True", "null")
    assert cast.texts == ("1.0", "2.0")
    assert rng.texts == ("0.0", "0.1", "0.2") and rng.values == (0.0, 0.1, 0.2)
    assert chosen.texts == ("1", "2", "3e0")
    assert [e.arg(1) for e in (lr, name)] == ["lr=0.010", '+name="c"']


def test_a_key_given_twice_keeps_its_first_place_and_last_values() -> None:
    parsed = parse_overrides(["a=1,2", "b=3", "a=5,6,7"])
    assert [(p.key, p.line) for p in parsed] == [("a", "a=5,6,7"), ("b", "b=3")]


def test_a_plain_override_hydra_cannot_parse_passes_as_written_but_a_sweep_must_parse() -> None:
    plain, sweep = parse_overrides(["data.path=/data/été", "x=1,2"])
    assert (plain.key, plain.is_sweep, plain.count(), plain.entry().arg(0)) == (
        "data.path",
        False,
        1,
        "data.path=/data/été",
    )
    assert sweep.count() == 2
    with pytest.raises(ConfigError, match="bad override 'u=é,f': LexerNoViableAltException"):
        parse_overrides(["u=é,f"])


@pytest.mark.parametrize(
    "line",
    [
        "x=range(0,1,0.1)",
        "x=range(0.005,0.03,0.005)",
        "x=range(1,0,-0.25)",
        "x=range(10)",
        "x=range(5,0,-2)",
        "x=range(0,1,3)",
        "x=range(1,1)",
        "x=a,b,c",
        "x=choice(1)",
        "x=7",
    ],
)
def test_counting_values_agrees_with_enumerating_them(line: str) -> None:
    (parsed,) = parse_overrides([line])
    count = count_values(parsed.override)
    if parsed.is_sweep and count == 0:
        with pytest.raises(ConfigError, match="no values"):
            parsed.entry()
    else:
        assert count == len(parsed.entry().values)


def test_names_read_like_the_point_and_fit_the_rule() -> None:
    assert key_labels(["trainer.learning_rate", "trainer.entropy_coef", "seed", "model/optimizer"]) == {
        "trainer.learning_rate": "lr",
        "trainer.entropy_coef": "ent",
        "seed": "seed",
        "model/optimizer": "opt",
    }
    assert key_labels(["trainer.lr", "optim.lr", "data.number_of_workers_total"]) == {
        "trainer.lr": "trainer.lr",
        "optim.lr": "optim.lr",
        "data.number_of_workers_total": "nowt",
    }
    assert run_names([None, "a", None], [["lr0.1"], ["lr0.1"], []]) == ["lr0.1", "a-lr0.1", "run"]
    long = run_names([None, None], [["k" + "9" * 80], ["k" + "9" * 80]])
    assert [len(n) for n in long] == [64, 64] and long[0] != long[1]
    assert all(RUN_NAME.match(n) for n in long)
    assert run_names([None] * 3, [["x"], ["x"], ["x-2"]]) == ["x", "x-2", "x-2-2"]


def test_points_cross_the_experiments_runs_in_hydras_order() -> None:
    base = Experiment(
        runs=["a", "b"], command=["true"], args_per_run={"b": ["bb=1"]}, depends_on={"b": ["a"]}, remote=False
    )
    sweep = entries("lr=0.1,0.2", "fixed=1", "opt=adam,sgd")
    points = expand(base.runs, sweep)
    assert [p.run for p in points] == [
        "a-lr0.1-opt_adam",
        "b-lr0.1-opt_adam",
        "a-lr0.1-opt_sgd",
        "b-lr0.1-opt_sgd",
        "a-lr0.2-opt_adam",
        "b-lr0.2-opt_adam",
        "a-lr0.2-opt_sgd",
        "b-lr0.2-opt_sgd",
    ]
    assert points[3].args == ("lr=0.1", "fixed=1", "opt=sgd")
    assert points[3].values == {"lr": 0.1, "opt": "sgd"}
    exp = sweep_experiment(base, points)
    assert exp.args_per_run["b-lr0.2-opt_sgd"] == ["bb=1", "lr=0.2", "fixed=1", "opt=sgd"]
    assert exp.depends_on == {p.run: [p.run.replace("b-", "a-", 1)] for p in points if p.base_run == "b"}


def test_negative_values_keep_their_sign_in_run_names() -> None:
    """``y=-5`` must not read ``y5`` (nor collide with ``y=5`` into ``y5-2``): the sign stays, after a
    ``_`` so that it does not read as the separator between parts."""
    points = expand(["job"], entries("x=-5.5,0.5", "y=-5,0,5"))
    assert [p.run for p in points] == [
        "x_-5.5-y_-5",
        "x_-5.5-y0",
        "x_-5.5-y5",
        "x0.5-y_-5",
        "x0.5-y0",
        "x0.5-y5",
    ]
    assert all(RUN_NAME.match(p.run) for p in points)
    dims = (Dimension("y", "categorical", choices=(-5, 0, 5), texts=("-5", "0", "5")),)
    assert SearchSpace(dims, base_run="train").run_name(3, {"y": -5}) == "t003-y_-5"
    assert SearchSpace(dims, base_run="train").run_name(4, {"y": -1e-7}) == "t004-y_-1e-07"


def test_the_limit_is_an_environment_setting() -> None:
    assert sweep_limit({}) == DEFAULT_SWEEP_LIMIT == 1000
    assert sweep_limit({"METTA_EXP_SWEEP_LIMIT": "5000"}) == 5000
    with pytest.raises(UsageError, match="METTA_EXP_SWEEP_LIMIT='many'"):
        sweep_limit({"METTA_EXP_SWEEP_LIMIT": "many"})
    assert check_limit([10, 100], 1, 1000) == 1000
    with pytest.raises(UsageError, match=re.escape("the sweep has 1010 points, more than the limit of 1000")):
        check_limit([10, 101], 1, 1000)
