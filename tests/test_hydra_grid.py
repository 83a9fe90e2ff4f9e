"""``hydra/sweeper=metta_exp_grid``: Hydra's basic sweeper whose points are composed by their jobs.

The app's process composes only the points that can fail differently (the first, and once each option
of a swept config group), so a 100-point sweep is submitted in a second; the jobs get the same points,
numbers, outputs and return values as under Hydra's basic sweeper, a bad option still fails before
anything is submitted, and a value bad for one point only fails that job with Hydra's message. Hydra's
launcher and batched-sweeper suites also run through it (``test_hydra_suites.py``)."""

from __future__ import annotations

import os
import pickle
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PY, wait_group_end

from metta_exp.status import JobStatus
from metta_exp.store import JobStore

APP = """\
from dataclasses import dataclass
from typing import Any

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig


@dataclass
class Train:
    lr: float = 0.1
    opt: Any = None


ConfigStore.instance().store(name="train_schema", node=Train)


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg):
    return [cfg.lr, cfg.opt.name, HydraConfig.get().job.num]


if __name__ == "__main__":
    main()
"""

GRID = [
    "-m",
    "hydra/launcher=metta_exp",
    "hydra/sweeper=metta_exp_grid",
    "hydra.launcher.generate_notebook=false",
]


@pytest.fixture
def app(state_dir: Path) -> Path:
    """The app (a float ``lr`` in its schema, a config group ``opt``) in the test's working directory."""
    work = state_dir.parent
    conf = work / "conf"
    (conf / "opt").mkdir(parents=True)
    (conf / "config.yaml").write_text("defaults:\n  - train_schema\n  - opt: sgd\n  - _self_\n")
    (conf / "opt" / "sgd.yaml").write_text("name: sgd\n")
    (conf / "opt" / "adam.yaml").write_text("name: adam\n")
    (work / "app.py").write_text(APP)
    return work / "app.py"


def run_app(app: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, str(app), *GRID, *overrides],
        cwd=app.parent,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.fixture
def loader(tmp_path: Path, hydra_restore_singletons: None) -> Iterator[object]:
    """Hydra's own config loader over a conf directory with a config group ``opt`` (sgd, adam); Hydra's
    singletons (its version base among them) restored after, for the in-process suites that follow."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    (tmp_path / "opt").mkdir()
    (tmp_path / "opt" / "sgd.yaml").write_text("name: sgd\n")
    (tmp_path / "opt" / "adam.yaml").write_text("name: adam\n")
    with initialize_config_dir(version_base=None, config_dir=str(tmp_path)):
        yield GlobalHydra.instance().config_loader()


def test_the_points_composed_up_front_are_the_first_and_one_per_group_option(loader: object) -> None:
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from hydra_plugins.metta_exp_sweeper._grid import points_to_compose

    def points(*lines: str) -> list[list[str]]:
        (batch,) = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(list(lines)), None)
        return batch

    assert points_to_compose(points("+x=range(0,100)"), loader) == [["+x=0"]]
    assert points_to_compose(points("lr=0.1,0.2,0.3", "opt=sgd,adam", "+seed=1,2"), loader) == [
        ["lr=0.1", "opt=sgd", "+seed=1"],
        ["lr=0.1", "opt=adam", "+seed=1"],
    ]
    assert points_to_compose(points("hydra/job_logging=default,disabled", "a=1,2"), loader) == [
        ["hydra/job_logging=default", "a=1"],
        ["hydra/job_logging=disabled", "a=1"],
    ]
    assert points_to_compose([], loader) == []


def only_group(state_dir: Path) -> str:
    with JobStore.open(state_dir) as store:
        (group,) = [g.name for g in store.list_groups()]
    return group


def test_a_grid_runs_the_basic_sweepers_points_and_returns_their_values(state_dir: Path, app: Path) -> None:
    result = run_app(app, "opt=sgd,adam", "lr=0.1,0.2")
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = wait_group_end(state_dir, only_group(state_dir))
    assert [(j.run, j.status) for j in jobs] == [
        ("opt_sgd-lr0.1", JobStatus.SUCCEEDED),
        ("opt_sgd-lr0.2", JobStatus.SUCCEEDED),
        ("opt_adam-lr0.1", JobStatus.SUCCEEDED),
        ("opt_adam-lr0.2", JobStatus.SUCCEEDED),
    ]
    (sweep_dir,) = (app.parent / "multirun").glob("*/*")
    expected = [(0.1, "sgd"), (0.2, "sgd"), (0.1, "adam"), (0.2, "adam")]
    for num, (lr, opt) in enumerate(expected):  # Hydra's order, numbers, job directories, return values
        overrides = (sweep_dir / str(num) / ".hydra" / "overrides.yaml").read_text()
        assert overrides == f"- opt={opt}\n- lr={lr}\n"
        ret = pickle.loads((sweep_dir / ".metta_exp" / f"return-{num}.pkl").read_bytes())
        assert ret.return_value == [lr, opt, num]


def test_a_bad_option_fails_before_anything_is_submitted(state_dir: Path, app: Path) -> None:
    result = run_app(app, "opt=sgd,adamw", "lr=0.1,0.2")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Could not find 'opt/adamw'" in result.stderr and "Traceback" not in result.stderr
    assert not state_dir.exists(), "nothing was submitted"


def test_a_value_bad_for_one_point_fails_its_job_with_hydras_message(state_dir: Path, app: Path) -> None:
    result = run_app(app, "lr=0.1,fast")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Error executing job with overrides: ['lr=fast']\nError merging override lr=fast" in result.stderr
    jobs = wait_group_end(state_dir, only_group(state_dir))
    assert [(j.run, j.status) for j in jobs] == [
        ("lr0.1", JobStatus.SUCCEEDED),
        ("lr_fast", JobStatus.FAILED),
    ]
