"""Typed records at the store boundary, and one owner of derived paths.

The store hands out a group's ``Experiment`` and a job's ``JobSpec`` (decoded on first use, so a reader
that never looks at them pays nothing); no module reads a stored config or spec by string key; a launch
carries typed settings; every path derived from the state directory is built in ``metta_exp.paths``.
"""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

from metta_exp import paths
from metta_exp.backends.base import LaunchSettings
from metta_exp.config import Experiment, SkyPilotSettings, WandbSettings
from metta_exp.records import GroupConfig, GroupRecord, JobRecord, JobSpec
from metta_exp.resolve import resolve
from metta_exp.status import JobStatus
from metta_exp.store import JobStore
from metta_exp.supervise.drive import launch_of

PACKAGE = Path(__file__).resolve().parent.parent / "metta_exp"


def make_group(store: JobStore, exp: Experiment, name: str = "g", specs: list[JobSpec] | None = None) -> None:
    specs = specs if specs is not None else resolve(exp, name, store.state_dir)
    store.create_group(name, "exp", "local", GroupConfig(exp, ("x=1",), "/somewhere", "abc123"), specs)


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
    assert group.config == GroupConfig(group.exp, ("x=1",), "/somewhere", "abc123")
    assert (group.sweep, group.search_space) == (None, None)
    assert paths.launch_dir(group) == Path("/somewhere")


def test_a_job_is_its_spec(tmp_path: Path) -> None:
    exp = Experiment(
        command=["python", "t.py"], runs=["a", "b"], depends_on={"b": ["a"]}, remote=False, gpus=0
    )
    specs = resolve(exp, "g", tmp_path)
    with JobStore.open(tmp_path) as store:
        make_group(store, exp, specs=specs)
        jobs = store.jobs("g")
    assert [j.spec for j in jobs] == specs
    assert jobs[1].depends_on == ("a",) and jobs[1].spec.depends_on == ("a",)
    assert JobSpec.from_dict(specs[0].to_dict()) == specs[0]


def test_a_spec_stored_with_the_old_labels_still_reads(tmp_path: Path) -> None:
    """``JobSpec.labels`` was never used and is gone; a store whose specs have it reads as before."""
    assert "labels" not in {f.name for f in dataclasses.fields(JobSpec)}
    spec = resolve(Experiment(module="pkg.train", runs=["a"], remote=False, gpus=0), "g", tmp_path)[0]
    assert "labels" not in spec.to_dict()
    old = json.dumps(spec.to_dict() | {"labels": {"team": "rl"}})
    with JobStore.open(tmp_path) as store:
        make_group(store, Experiment(module="pkg.train", runs=["a"], remote=False, gpus=0), specs=[spec])
        with store.atomic() as db:
            db.execute("UPDATE jobs SET spec = ?", (old,))
        job = store.job("g", "a")
    assert job.spec == spec


def test_specs_and_configs_are_decoded_on_first_use_only(tmp_path: Path) -> None:
    exp = Experiment(module="pkg.train", runs=[f"r{i}" for i in range(5)], remote=False, gpus=0)
    with JobStore.open(tmp_path) as store:
        make_group(store, exp)
        jobs = store.jobs("g")
        group = store.group("g")
    assert all("spec" not in vars(j) for j in jobs)  # a reader that never asks decodes nothing
    assert "config" not in vars(group)
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
    spec = JobSpec("g", "a", ("x=1",), {"K": "v"}, 0, "/r/a", "id", module="train")
    typed = JobRecord("g", "a", 0, JobStatus.PENDING, spec, "/r/a")
    stored = JobRecord("g", "a", 0, JobStatus.PENDING, json.dumps(spec.to_dict()), "/r/a")
    # built in code or read from the store's JSON text: the same spec, the same derived argv
    assert stored.spec == typed.spec
    assert typed.args == stored.args == ["x=1"]
    assert stored.spec.argv("py") == typed.spec.argv("py") == ["py", "-m", "train", "x=1"]
    group = GroupRecord(
        "g", "e", "local", {"runs": ["a"], "max_parallel": 2}, 0.0, None, False, None, None, None
    )
    assert group.exp.max_parallel == 2 and group.exp.runs == ["a"] and group.extra_args == ()


def test_derived_paths() -> None:
    state = Path("/s")
    run = paths.RunDir.of(state, "g", "r")
    assert run == paths.RunDir(Path("/s/runs/g/r")) == paths.RunDir.at("/s/runs/g/r")
    assert paths.runner_log(state, "g") == Path("/s/runs/g/runner.log")
    assert run.log(2) == Path("/s/runs/g/r/attempt-2.log")
    assert run.attempt(2) == paths.AttemptFiles(
        Path("/s/runs/g/r/attempt-2.log"),
        Path("/s/runs/g/r/attempt-2.pid"),
        Path("/s/runs/g/r/attempt-2.exit"),
    )
    assert paths.AttemptFiles.of("/s/runs/g/r/attempt-2.log") == run.attempt(2)
    assert run.run_json == Path("/s/runs/g/r/run.json")
    assert run.metrics == Path("/s/runs/g/r/metrics.jsonl")
    assert paths.report_path(Path("/n/g.ipynb")) == Path("/n/g.html")


def _sources() -> list[tuple[Path, ast.AST]]:
    return [(p, ast.parse(p.read_text())) for p in sorted(PACKAGE.rglob("*.py"))]


#: read by key nowhere but in ``metta_exp.records``, whatever owns them: a job's spec (``create_group``'s
#: and ``add_trial``'s input too), a sweep's record, a group's config (``create_group``'s input too)
KEYED_ANYWHERE = ("spec", "stored_spec", "sweep", "config", "stored_config")
#: ... and a launch's settings, as the attribute of a group, job, record or launch
KEYED_ON_RECORDS = ("settings",)
#: where such a name is another thing: SkyPilot's own task config (a dict in SkyPilot's format), and a
#: run handed to ``fetch_metrics`` as the user's own mapping (its ``spec`` a JobRecord as a dict)
NOT_OURS = {"backends/skypilot/task.py": "config", "backends/skypilot/backend.py": "config",
            "backends/skypilot/api.py": "config", "backends/skypilot/sim/api.py": "config",
            "metrics/__init__.py": "spec"}  # fmt: skip


def _read_by_key(tree: ast.AST, not_ours: str | None = None) -> list[ast.AST]:
    """``x[...]``, ``x.get(...)``, ``x.items()``, ``x.keys()``, ``x.values()`` of such a name ``x`` (or
    ``owner.x``)."""
    found = []
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
        name = target.id if isinstance(target, ast.Name) else getattr(target, "attr", None)
        if name == not_ours:
            continue
        if name in KEYED_ANYWHERE:
            found.append(node)
        elif name in KEYED_ON_RECORDS and isinstance(target, ast.Attribute):
            owner = ast.unparse(target.value)
            if owner.endswith(("group", "job", "record", "launch", "j")) or owner.startswith("frame"):
                found.append(node)
    return found


def test_no_module_reads_a_stored_config_spec_or_sweep_by_key() -> None:
    """``group.config[...]``, ``spec["run"]``, ``spec.get("depends_on")``, ``sweep.get("keys")``,
    ``launch.settings[...]``: nowhere but in ``metta_exp.records``, which encodes and decodes them."""
    found = [
        f"{path.relative_to(PACKAGE)}:{node.lineno}: {ast.unparse(node)}"
        for path, tree in _sources()
        if path != PACKAGE / "records.py"
        for node in _read_by_key(tree, NOT_OURS.get(str(path.relative_to(PACKAGE))))
    ]
    assert found == []


def test_the_key_reading_check_sees_every_form() -> None:
    code = (
        "spec['run']\nspec.get('depends_on', ())\ngroup.config['sweep']\nsweep.get('keys')\n"
        "config['extra_args']\njob.stored_spec.items()\nlaunch.settings.keys()\n"
        "record.sweep['points'].values()\nspec.run\nconfig.exp.runs\nsweep.points.get(run)\n"
        "specs[0]\nself.settings['x']\nother['x']\n"
    )
    assert [ast.unparse(n) for n in _read_by_key(ast.parse(code))] == [
        "spec['run']",
        "spec.get('depends_on', ())",
        "group.config['sweep']",
        "sweep.get('keys')",
        "config['extra_args']",
        "job.stored_spec.items()",
        "launch.settings.keys()",
        "record.sweep['points']",
    ]


def test_the_store_takes_typed_records() -> None:
    """``create_group`` takes a ``GroupConfig`` and ``JobSpec`` s, ``add_trial`` a ``JobSpec``: no dicts."""
    import typing
    from collections.abc import Sequence

    create = typing.get_type_hints(JobStore.create_group)
    assert (create["config"], create["specs"]) == (GroupConfig, Sequence[JobSpec])
    assert typing.get_type_hints(JobStore.add_trial)["spec"] is JobSpec


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
