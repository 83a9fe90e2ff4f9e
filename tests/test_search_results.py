"""A search's ``search.results_file``: the best trial, written by the group's runner when the study ends
(``hydra/sweeper=metta_exp`` points it at ``optimization_results.yaml`` in the sweep directory), on a
real store's search group."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from search_records import make_search_group

from metta_exp.config import Experiment
from metta_exp.errors import ConfigError
from metta_exp.search.results import write_results_file
from metta_exp.store import JobStore


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    with JobStore.open(tmp_path / "state") as s:
        yield s


def test_the_best_trial_is_written_with_its_keys_as_given(store: JobStore, tmp_path: Path) -> None:
    target = tmp_path / "sweep dir" / "optimization_results.yaml"
    make_search_group(store, results_file=str(target))
    write_results_file(store, store.group("search"))
    assert yaml.safe_load(target.read_text()) == {
        "name": "optuna",
        "best_params": {
            "trainer.learning_rate": 0.00231,
            "trainer.entropy_coef": 0.0123,
            "trainer.batch_size": 512,
        },
        "best_value": 0.873,
        "group": "search",
    }
    assert [e.detail for e in store.events("search", kind="results")] == [str(target)]


def test_a_relative_file_is_the_launch_directorys_and_a_minimised_study_takes_its_lowest(
    store: JobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the launch directory of a group recorded without one
    make_search_group(store, results_file="out/best.yaml", direction="minimize")
    write_results_file(store, store.group("search"))
    results = yaml.safe_load((tmp_path / "out" / "best.yaml").read_text())
    assert results["best_value"] == 0.61 and results["best_params"]["trainer.batch_size"] == 512


def test_no_completed_trial_writes_nothing_and_a_bad_path_is_an_event(
    store: JobStore, tmp_path: Path
) -> None:
    make_search_group(store, "none", trials=[], results_file=str(tmp_path / "none.yaml"))
    write_results_file(store, store.group("none"))
    assert not (tmp_path / "none.yaml").exists() and not store.events("none", kind="results")
    (tmp_path / "taken").mkdir()
    make_search_group(store, "bad", results_file=str(tmp_path / "taken"))
    write_results_file(store, store.group("bad"))  # a directory where the file goes: said, not raised
    (event,) = store.events("bad", kind="results_failed")
    assert event.detail is not None and "IsADirectoryError" in event.detail


def test_a_key_written_with_a_plus_keeps_it(store: JobStore, tmp_path: Path) -> None:
    from metta_exp.search.results import study_results

    make_search_group(store)
    space = store.group("search").search_space
    assert space is not None
    plus = dataclasses.replace(space, dims=(dataclasses.replace(space.dims[0], key="+trainer.learning_rate"),
                                            *space.dims[1:]))  # fmt: skip
    results = study_results(plus, store.trials("search"), "maximize", "search")
    assert results is not None and results["best_params"]["+trainer.learning_rate"] == 0.00231


def test_results_file_must_be_a_path() -> None:
    with pytest.raises(ConfigError, match="'search.results_file' must be a file path, got 3"):
        Experiment.from_mapping({"module": "m", "runs": ["a"], "search": {"results_file": 3}}, source="x")
