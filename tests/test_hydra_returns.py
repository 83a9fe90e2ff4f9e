"""Return values come back through ``hydra/launcher=metta_exp``, from local and remote (simulated
SkyPilot) jobs: every ``JobReturn`` carries what the task returned, and the exception it raised re-raises
in the launching process as Hydra's own launchers do. Task functions here are closures of the test, not
scripts: they reach the jobs by cloudpickle."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import kill_everything
from hydra.test_utils.test_utils import TSweepRunner

NO_NOTEBOOK = "hydra.launcher.generate_notebook=false"


class OddError(ValueError):
    pass


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    state = tmp_path / "job_state"
    monkeypatch.setenv("METTA_EXP_STATE_DIR", str(state))
    try:
        yield state
    finally:
        kill_everything(state)


def sweep(runner: TSweepRunner, tmp_path: Path, task: Any, overrides: list[str]) -> Any:
    return runner(
        calling_file=None,
        calling_module="hydra.test_utils.a_module",
        task_function=task,
        config_path="configs",
        config_name="compose",
        overrides=["hydra/launcher=metta_exp", NO_NOTEBOOK, *overrides],
        temp_dir=tmp_path / "sweep",
    )


@pytest.mark.slow
@pytest.mark.usefixtures("hydra_restore_singletons")
def test_local_jobs_return_values_and_reraise_exceptions(
    hydra_sweep_runner: TSweepRunner, tmp_path: Path, store: Path
) -> None:
    def task(cfg: Any) -> Any:
        if cfg.a == 3:
            raise OddError(f"a={cfg.a} is odd")
        return {"a": cfg.a, "double": cfg.a * 2, "path": Path("x")}

    with sweep(hydra_sweep_runner, tmp_path, task, ["+a=0,1,2"]) as done:
        values = [r.return_value for r in done.returns[0]]
    assert values == [{"a": a, "double": 2 * a, "path": Path("x")} for a in range(3)]
    with pytest.raises(OddError, match="a=3 is odd"), sweep(hydra_sweep_runner, tmp_path, task, ["+a=2,3"]):
        pass


@pytest.mark.slow
@pytest.mark.usefixtures("hydra_restore_singletons")
def test_remote_jobs_return_values_through_their_logs(
    hydra_sweep_runner: TSweepRunner, tmp_path: Path, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On (simulated) SkyPilot the job reaches the task file through a file mount, and its JobReturn
    comes back in its log tail: the job's own return file stays on the remote machine."""
    monkeypatch.setenv("METTA_EXP_FAKE_SKY_DIR", str(tmp_path / "sky"))
    monkeypatch.setenv("METTA_EXP_SKY_POLL_S", "0.2")
    monkeypatch.setenv("METTA_EXP_SKY_LOG_S", "0.2")

    def task(cfg: Any) -> Any:
        if cfg.a == 1:
            raise OddError("one is odd")
        return cfg.a + 0.5

    overrides = ["+a=0,2", "hydra.launcher.remote=true"]
    with sweep(hydra_sweep_runner, tmp_path, task, overrides) as done:
        returns = done.returns[0]
        shipped = tmp_path / "sweep" / ".metta_exp"
        assert (shipped / "task-0.pkl").is_file()
        assert not list(shipped.glob("return-*.pkl")), "the return files were written on the remote side"
    assert [r.return_value for r in returns] == [0.5, 2.5]
    assert [r.cfg.a for r in returns] == [0, 2]
    with (
        pytest.raises(OddError, match="one is odd"),
        sweep(hydra_sweep_runner, tmp_path, task, ["+a=1", overrides[1]]),
    ):
        pass
