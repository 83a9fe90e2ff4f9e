"""The rules metta-exp applies in more than one place, each one pure function, pinned by exact output."""

from __future__ import annotations

from pathlib import Path

import pytest

from metta_exp.config import Experiment
from metta_exp.errors import NotFoundError
from metta_exp.records import GroupConfig, JobSpec, SweepRecord
from metta_exp.store import GroupExistsError, JobStore
from metta_exp.submit import MAX_GROUP_SUFFIX, first_free_name, suffixed
from metta_exp.sweep import Point, sweep_record
from metta_exp.text import plural
from metta_exp.values import hydra_quote


def test_plural_counts_then_the_noun() -> None:
    assert [plural(n, "job") for n in (0, 1, 2)] == ["0 jobs", "1 job", "2 jobs"]
    assert plural(1, "running job") == "1 running job"
    assert plural(12, "point") == "12 points"


def test_hydra_quote_leaves_plain_paths_bare_and_quotes_the_rest() -> None:
    assert hydra_quote("/tmp/plain/0") == "/tmp/plain/0"
    assert hydra_quote("file:///home/me/conf-2.d") == "file:///home/me/conf-2.d"
    assert hydra_quote("/tmp/my dir/x'y") == "'/tmp/my dir/x\\'y'"
    assert hydra_quote("/a\\b/c\\") == "'/a\\b/c\\\\'"
    assert hydra_quote("/x,y=z/${q}") == "'/x,y=z/${q}'"


def test_taken_group_names_get_the_next_suffix_up_to_999() -> None:
    names = list(suffixed("train-20261202-115300"))
    assert names[:4] == [
        "train-20261202-115300",
        "train-20261202-115300-2",
        "train-20261202-115300-3",
        "train-20261202-115300-4",
    ]
    assert MAX_GROUP_SUFFIX == 999
    assert len(names) == 999
    assert names[-1] == "train-20261202-115300-999"


def test_one_loop_takes_the_first_free_group_name() -> None:
    """``metta-exp`` launches and the Hydra launcher both take a free name through ``first_free_name``."""
    import inspect

    from hydra_plugins.metta_exp_launcher import _core

    taken = {"g", "g-2", "g-3"}
    tried: list[str] = []

    def take(name: str) -> str:
        tried.append(name)
        if name in taken:
            raise GroupExistsError(name)
        return name

    assert first_free_name("g", take) == "g-4"
    assert tried == ["g", "g-2", "g-3", "g-4"]
    with pytest.raises(GroupExistsError) as raised:
        first_free_name("g", lambda name: take("g"), hint="choose one with group=NAME")
    assert str(raised.value) == "no free group name like 'g' (up to 'g-999'): choose one with group=NAME"
    assert len(tried) == 4 + 999
    assert "first_free_name(" in inspect.getsource(_core.launch_group)
    assert "suffixed(" not in inspect.getsource(_core)


def test_the_sweep_record_the_notebook_reads() -> None:
    points = [
        Point(0, "lr_0.001", "train", ("trainer.lr=1e-3",), {"trainer.lr": 0.001, "seed": 1}, {}),
        Point(1, "lr_0.01", "train", ("trainer.lr=1e-2",), {"trainer.lr": 0.01, "seed": 1}, {"gpus": 2}),
    ]
    record = sweep_record(points, ["trainer.lr", "seed"])
    assert record == SweepRecord(
        keys=("trainer.lr", "seed"),
        labels={"trainer.lr": "lr", "seed": "seed"},
        points={"lr_0.001": {"trainer.lr": 0.001, "seed": 1}, "lr_0.01": {"trainer.lr": 0.01, "seed": 1}},
        base_runs={"lr_0.001": "train", "lr_0.01": "train"},
    )
    assert SweepRecord.from_dict(record.to_dict()) == record
    assert record.to_dict() == {  # the stored form, as stores written before the record was typed hold it
        "keys": ["trainer.lr", "seed"],
        "labels": {"trainer.lr": "lr", "seed": "seed"},
        "points": {"lr_0.001": {"trainer.lr": 0.001, "seed": 1}, "lr_0.01": {"trainer.lr": 0.01, "seed": 1}},
        "base_runs": {"lr_0.001": "train", "lr_0.01": "train"},
    }


def test_the_hydra_plugin_records_its_sweep_with_the_same_rule() -> None:
    from hydra_plugins.metta_exp_launcher._core import name_points

    names, record = name_points(
        [[("lr=1e-3", 0.001), ("seed=1", 1)], [("lr=1e-2", 0.01), ("seed=1", 1)]], "my app"
    )
    assert names == ["lr1e-3", "lr1e-2"]
    assert record == SweepRecord(
        keys=("lr",),
        labels={"lr": "lr"},
        points={"lr1e-3": {"lr": 0.001}, "lr1e-2": {"lr": 0.01}},
        base_runs={"lr1e-3": "my_app", "lr1e-2": "my_app"},
    )


def test_one_default_for_the_tracked_metrics() -> None:
    import inspect

    from metta_exp.config import DEFAULT_METRICS, Experiment
    from metta_exp.metrics import fetch_metrics

    assert DEFAULT_METRICS == ("overview/sps", "overview/reward")  # README: metrics_to_track's default
    assert Experiment(runs=["a"], module="train").metrics_to_track == ["overview/sps", "overview/reward"]
    assert inspect.signature(fetch_metrics).parameters["metrics"].default == DEFAULT_METRICS


def test_the_wandb_path_of_a_run_from_its_url_else_its_configuration() -> None:
    from metta_exp.metrics import run_wandb_path

    env = {"WANDB_ENTITY": "team", "WANDB_PROJECT": "proj"}
    url = "https://wandb.example.com/other/place/runs/r1x2"
    assert run_wandb_path(url, env, "abc", 1) == "other/place/r1x2"  # what the job reported wins
    assert run_wandb_path(None, env, "abc", 1) == "team/proj/abc"
    assert run_wandb_path(None, env, "abc", 3) == "team/proj/abc-a3"  # each attempt is its own run
    assert run_wandb_path(None, {"WANDB_ENTITY": "team"}, "abc", 1) is None
    assert run_wandb_path("https://wandb.ai/team/proj", env, None, 1) is None


def test_why_a_pending_job_waits_the_runners_rule_and_the_monitors() -> None:
    from metta_exp.status import JobStatus, waits_for

    done = {"a": JobStatus.SUCCEEDED, "b": JobStatus.RUNNING}
    assert waits_for(["a"], done, 0, None, 0, None) is None
    assert waits_for(["a", "b"], done, 0, None, 0, None) == "dependency"
    assert waits_for(["missing"], done, 0, None, 0, None) == "dependency"
    assert waits_for(["b"], done, 9, 2, 4, 0) == "dependency"  # dependencies first
    assert waits_for([], done, 2, 2, 0, None) == "max_parallel"
    assert waits_for([], done, 1, 2, 0, None) is None
    assert waits_for([], done, 5, 0, 0, None) is None  # max_parallel 0 or None: no cap
    assert waits_for([], done, 2, 2, 4, 0) == "max_parallel"  # a slot before GPUs
    assert waits_for([], done, 0, None, 2, 1) == "gpu"
    assert waits_for([], done, 0, None, 2, 2) is None
    assert waits_for([], done, 0, None, 2, None) is None  # GPUs not counted (SkyPilot)


def test_the_two_plain_value_rules_have_names_that_say_what_they_do() -> None:
    from omegaconf import OmegaConf

    from hydra_plugins.metta_exp_launcher._core import as_containers
    from metta_exp.notebook.cells import tuples_as_lists

    assert tuples_as_lists({"a": (1, (2, 3)), "b": [("x",)], "c": "s"}) == {
        "a": [1, [2, 3]],
        "b": [["x"]],
        "c": "s",
    }
    settings = {"wandb": OmegaConf.create({"project": "p", "tags": ["a"]}), "gpus": 2, "group": None}
    plain = as_containers(settings)
    assert plain == {"wandb": {"project": "p", "tags": ["a"]}, "gpus": 2, "group": None}
    assert type(plain["wandb"]) is dict and type(plain["wandb"]["tags"]) is list


def test_the_attempt_lookup_is_named_apart_from_the_attempt_log_path(tmp_path: Path) -> None:
    from metta_exp.logs import job as logjob
    from metta_exp.logs import tail as logtail

    assert not hasattr(logtail, "attempt_log")  # the store lookup is logs.job.find_attempt
    assert not hasattr(logjob, "attempt_log")
    store = JobStore.open(tmp_path, create=True)
    spec = JobSpec("g", "a", (), {}, 0, str(tmp_path / "a"), "id", module="m")
    store.create_group("g", "exp", "local", GroupConfig(Experiment(module="m", runs=["a"])), [spec])
    with pytest.raises(
        NotFoundError, match=r"^run 'a' of group 'g' has no attempt 2 \(it has no attempt yet\)$"
    ):
        logjob.find_attempt(store, "g", "a", 2)
    job, number, path = logjob.find_attempt(store, "g", "a", None)
    assert (job.run, number, path) == ("a", 0, None)


@pytest.mark.parametrize("ts", [0.0, 1.999, 86399.5, 1e9 + 0.9999, 1796218430.49, 4102444800.0])
def test_iso_is_datetimes_isoformat_in_utc_to_the_second(ts: float) -> None:
    from datetime import UTC, datetime

    from metta_exp.records import iso

    assert iso(ts) == datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")
    assert iso(None) is None


def test_fmt_duration_exactly() -> None:
    from metta_exp.text import fmt_duration

    cases = {None: "-", -1.0: "-", 0.0: "0:00", 59.9: "0:59", 725.0: "12:05", 3599.0: "59:59", 3600.0: "1h00m",
             86399.0: "23h59m", 86400.0: "1d00h", 273600.0: "3d04h"}  # fmt: skip
    assert {k: fmt_duration(k) for k in cases} == cases
