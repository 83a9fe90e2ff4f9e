"""Typed records at the store boundary, and one owner of derived paths.

The store hands out a group's ``Experiment`` and a job's ``JobSpec`` (decoded on first use, so a reader
that never looks at them pays nothing); no module reads a stored config or spec by string key; a launch
carries typed settings; every path derived from the state directory is built in ``metta_exp.paths``.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

from metta_exp import paths
from metta_exp.backends.base import LaunchSettings
from metta_exp.config import Experiment, SkyPilotSettings, WandbSettings
from metta_exp.records import GroupRecord, JobRecord, JobSpec
from metta_exp.resolve import resolve
from metta_exp.status import JobStatus
from metta_exp.store import JobStore
from metta_exp.supervise import launch_of

PACKAGE = Path(__file__).resolve().parent.parent / "metta_exp"


def make_group(store: JobStore, exp: Experiment, name: str = "g", specs: list[JobSpec] | None = None) -> None:
    specs = specs if specs is not None else resolve(exp, name, store.state_dir)
    extra = {"extra_args": ["x=1"], "launch_dir": "/somewhere", "instance": "abc123"}
    store.create_group(name, "exp", "local", exp.to_dict() | extra, [s.to_dict() for s in specs])


def test_a_group_is_its_experiment_and_its_launch_facts(tmp_path: Path) -> None:
    exp = Experiment(
        module="pkg.train",
        runs=["a", "b"],
        remote=False,
        gpus=0,
        max_parallel=3,
        timeout_s=60,
        metrics_to_track=["overview/reward"],
        skypilot=SkyPilotSettings(cloud="aws", envs={"K": "v"}),
        wandb=WandbSettings(project="p"),
    )
    with JobStore.open(tmp_path) as store:
        make_group(store, exp)
        group = store.group("g")
    assert isinstance(group.exp, Experiment)
    assert group.exp.to_dict() == exp.to_dict()
    assert group.exp.skypilot == SkyPilotSettings(cloud="aws", envs={"K": "v"})
    assert group.exp.wandb == WandbSettings(project="p")
    assert (group.extra_args, group.launch_dir, group.instance) == (("x=1",), "/somewhere", "abc123")
    assert group.sweep == {}
    assert paths.launch_dir(group) == Path("/somewhere")


def test_a_job_is_its_spec_labels_and_all(tmp_path: Path) -> None:
    exp = Experiment(
        command=["python", "t.py"], runs=["a", "b"], depends_on={"b": ["a"]}, remote=False, gpus=0
    )
    specs = [
        dataclasses.replace(s, labels={"team": "rl", "kind": s.run}) for s in resolve(exp, "g", tmp_path)
    ]
    with JobStore.open(tmp_path) as store:
        make_group(store, exp, specs=specs)
        jobs = store.jobs("g")
    assert [j.spec for j in jobs] == specs
    assert jobs[1].spec.labels == {"team": "rl", "kind": "b"}
    assert JobSpec.from_dict(specs[0].to_dict()) == specs[0]


def test_specs_and_configs_are_decoded_on_first_use_only(tmp_path: Path) -> None:
    exp = Experiment(module="pkg.train", runs=[f"r{i}" for i in range(5)], remote=False, gpus=0)
    with JobStore.open(tmp_path) as store:
        make_group(store, exp)
        jobs = store.jobs("g")
        group = store.group("g")
    assert all("spec" not in vars(j) for j in jobs)  # a reader that never asks decodes nothing
    assert "exp" not in vars(group)
    assert jobs[2].spec.run == "r2" and jobs[2].args == list(jobs[2].spec.args)
    assert "spec" in vars(jobs[2]) and "spec" not in vars(jobs[1])
    assert jobs[2].spec is jobs[2].spec  # decoded once


def test_a_launch_carries_typed_settings(tmp_path: Path) -> None:
    exp = Experiment(
        module="pkg.train", runs=["a"], remote=False, gpus=0, skypilot=SkyPilotSettings(region="eu"),
        wandb=WandbSettings(entity="e"),
    )  # fmt: skip
    with JobStore.open(tmp_path) as store:
        make_group(store, exp)
        launch = launch_of(store.group("g"), store.job("g", "a"))
    assert launch.settings == LaunchSettings(
        SkyPilotSettings(region="eu"), WandbSettings(entity="e"), "abc123"
    )
    assert launch.spec == resolve(exp, "g", tmp_path)[0]


def test_records_built_in_code_take_a_typed_spec() -> None:
    spec = JobSpec("g", "a", ("x=1",), {}, 0, "/r/a", "id")
    job = JobRecord("g", "a", 0, JobStatus.PENDING, spec, "/r/a")
    assert job.spec is spec and job.args == ["x=1"]
    group = GroupRecord(
        "g", "e", "local", {"runs": ["a"], "max_parallel": 2}, 0.0, None, False, None, None, None
    )
    assert group.exp.max_parallel == 2 and group.exp.runs == ["a"] and group.extra_args == ()


def test_derived_paths() -> None:
    state = Path("/s")
    assert paths.run_dir(state, "g", "r") == Path("/s/runs/g/r")
    assert paths.runner_log(state, "g") == Path("/s/runs/g/runner.log")
    assert paths.attempt_log("/s/runs/g/r", 2) == Path("/s/runs/g/r/attempt-2.log")
    assert paths.attempt_pid_exit("/s/runs/g/r/attempt-2.log") == (
        Path("/s/runs/g/r/attempt-2.pid"),
        Path("/s/runs/g/r/attempt-2.exit"),
    )
    assert paths.run_file("/s/runs/g/r") == Path("/s/runs/g/r/run.json")
    assert paths.metrics_file("/s/runs/g/r") == Path("/s/runs/g/r/metrics.jsonl")
    assert paths.report_path(Path("/n/g.ipynb")) == Path("/n/g.html")


def _sources() -> list[tuple[Path, ast.AST]]:
    return [(p, ast.parse(p.read_text())) for p in sorted(PACKAGE.rglob("*.py"))]


def test_no_module_reads_a_stored_config_or_spec_by_key() -> None:
    """``group.config[...]``, ``group.config.get(...)``, ``job.spec[...]``, ``job.spec.get(...)``: nowhere
    (``metta_exp.records`` decodes them, once)."""
    found = []
    for path, tree in _sources():
        for node in ast.walk(tree):
            target = None
            if isinstance(node, ast.Subscript):
                target = node.value
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("get", "items", "keys", "values")
            ):
                target = node.func.value
            if isinstance(target, ast.Attribute) and target.attr in ("config", "spec", "settings"):
                owner = ast.unparse(target.value)
                if owner.endswith(("group", "job", "record", "launch", "j")) or owner.startswith("frame"):
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {ast.unparse(node)}")
    assert found == []


def test_only_paths_builds_derived_paths() -> None:
    """File names under the state directory are spelled in ``metta_exp.paths`` alone."""
    names = ("run.json", "metrics.jsonl", "runner.log", ".pid", ".exit")
    found = []
    for path, tree in _sources():
        if path.name == "paths.py":
            continue
        for node in ast.walk(tree):
            parts: list[str] = []
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                parts = [node.value]
            elif isinstance(node, ast.JoinedStr):
                parts = [
                    v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)
                ]
            elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):  # state_dir / "runs" / ...
                parts = [ast.unparse(node.right).strip("'\"") + "/"]
            for text in parts:
                if text in names or text.startswith("attempt-") or text == "runs/":
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {text!r}")
    assert found == []
