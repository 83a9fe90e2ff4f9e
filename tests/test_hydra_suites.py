"""Hydra's own conformance suites, run against the metta-exp plugins as a plugin author runs them
(``hydra.test_utils.launcher_common_tests``, as in Hydra's joblib, submitit, ray and rq plugins): a test
class per suite, unmodified, parametrised with the plugin's name and its overrides; the launcher and
batched-sweeper suites run again through ``hydra/sweeper=metta_exp_grid``. Every job runs in a
real metta-exp group on this machine (a detached runner, real job processes, a real store)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import kill_everything
from hydra.test_utils.launcher_common_tests import (
    BatchedSweeperTestSuite,
    IntegrationTestSuite,
    LauncherTestSuite,
)

NO_NOTEBOOK = "hydra.launcher.generate_notebook=false"


@pytest.fixture(autouse=True)
def _own_store(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test's groups in a store of its own, and nothing left running after it."""
    state = tmp_path_factory.mktemp("store") / "job_state"
    monkeypatch.setenv("METTA_EXP_STATE_DIR", str(state))
    try:
        yield
    finally:
        kill_everything(state)


@pytest.mark.parametrize("launcher_name, overrides", [("metta_exp", [NO_NOTEBOOK])])
class TestMettaExpLauncher(LauncherTestSuite):
    """Hydra's launcher suite: task functions that are not scripts, return values, job directories."""


@pytest.mark.parametrize(
    "task_launcher_cfg, extra_flags",
    [({}, ["-m", "hydra/job_logging=disabled", "hydra/launcher=metta_exp", NO_NOTEBOOK])],
)
class TestMettaExpLauncherIntegration(IntegrationTestSuite):
    """Hydra's integration suite: a real app file, started as a user starts it."""


@pytest.mark.parametrize(
    "launcher_name, overrides", [("metta_exp", [NO_NOTEBOOK, "hydra.sweeper.max_batch_size=2"])]
)
class TestMettaExpLauncherBatched(BatchedSweeperTestSuite):
    """Hydra's batched-sweeper suite: a sweeper that launches in batches gets a group per batch."""


GRID = "hydra/sweeper=metta_exp_grid"


@pytest.mark.parametrize("launcher_name, overrides", [("metta_exp", [NO_NOTEBOOK, GRID])])
class TestMettaExpGridSweeper(LauncherTestSuite):
    """Hydra's launcher suite through ``hydra/sweeper=metta_exp_grid``: the same points, job numbers,
    configs, outputs and early failures as with Hydra's basic sweeper, though only some points are
    composed up front. (The integration suite tests the launcher's job directories, the same code
    under either sweeper: it runs once, above.)"""


@pytest.mark.parametrize(
    "launcher_name, overrides", [("metta_exp", [NO_NOTEBOOK, GRID, "hydra.sweeper.max_batch_size=2"])]
)
class TestMettaExpGridSweeperBatched(BatchedSweeperTestSuite):
    """Hydra's batched-sweeper suite through ``hydra/sweeper=metta_exp_grid``: a batch per group."""
