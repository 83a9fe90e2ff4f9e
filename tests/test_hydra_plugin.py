"""The Hydra launcher plugin: discovery, a light import, and a user's own @hydra.main app whose sweeps
become one metta-exp group (``python app.py -m hydra/launcher=metta_exp ...``), run for real."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import PY, wait_group_end

from metta_exp.status import JobStatus
from metta_exp.store import JobStore

# A user's training app: records what it was given; with REC_BARRIER=N it does not end before N jobs of
# its group have started (a launcher that ran them one by one could never finish it).
APP = """\
import json, os, pathlib, sys, time
import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf


@hydra.main(version_base=None, config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    rd = pathlib.Path(os.environ["METTA_EXP_RUN_DIR"])
    (rd / "started").write_text("")
    want, start = int(os.environ.get("REC_BARRIER", "0")), time.time()
    started = lambda: len(list(rd.parent.glob("*/started")))
    while want and started() < want and time.time() < start + 120:
        time.sleep(0.02)
    hc = HydraConfig.get()
    (rd / "job.json").write_text(json.dumps({
        "cfg": OmegaConf.to_container(cfg), "output_dir": hc.runtime.output_dir, "cwd": os.getcwd(),
        "num": hc.job.num, "id": hc.job.id, "job_name": hc.job.name, "together": started() >= want,
        "run": os.environ["METTA_EXP_RUN"], "overrides": list(hc.overrides.task),
    }))
    if cfg.fail or started() < want:
        sys.exit(3)
    return cfg.lr * 2


if __name__ == "__main__":
    main()
"""


def write_app(where: Path, package: str | None = None) -> Path:
    """The app (in ``where/package/`` when a package name is given) and its conf/ beside it."""
    home = where / package if package else where
    (home / "conf").mkdir(parents=True, exist_ok=True)
    if package:
        (home / "__init__.py").write_text("")
    (home / "conf" / "train.yaml").write_text("lr: 0.1\nname: base\nfail: false\n")
    (home / "conf" / "alt.yaml").write_text("lr: 0.5\nname: alt\nfail: false\nextra: 1\n")
    app = home / ("train.py" if package else "my_train.py")
    app.write_text(APP)
    return app


def run_app(
    argv: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, *argv], cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=240
    )


def groups(state_dir: Path) -> list[str]:
    with JobStore.open(state_dir) as store:
        return [g.name for g in store.list_groups()]


def job_records(state_dir: Path, group: str) -> dict[str, dict[str, Any]]:
    out = {}
    for path in (state_dir / "runs" / group).glob("*/job.json"):
        data = json.loads(path.read_text())
        out[data["run"]] = data
    return out


NO_NOTEBOOK = "hydra.launcher.generate_notebook=false"


# --- discovery and import ---------------------------------------------------------------------------


def test_hydra_discovers_the_launcher_and_its_config() -> None:
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins
    from hydra.plugins.launcher import Launcher

    names = [f"{c.__module__}.{c.__name__}" for c in Plugins.instance().discover(Launcher)]
    assert "hydra_plugins.metta_exp_launcher.metta_exp_launcher.MettaExpLauncher" in names
    node = ConfigStore.instance().load("hydra/launcher/metta_exp.yaml").node
    assert node._target_ == "hydra_plugins.metta_exp_launcher.metta_exp_launcher.MettaExpLauncher"
    assert (node.remote, node.wait, node.gpus, node.group, node.sweep_limit) == (False, True, 0, None, None)


def test_importing_the_plugin_imports_nothing_heavy() -> None:
    code = textwrap.dedent("""\
        import json, sys
        from hydra.core.plugins import Plugins
        from hydra.plugins.launcher import Launcher
        Plugins.instance().discover(Launcher)
        import hydra_plugins.metta_exp_launcher.config, hydra_plugins.metta_exp_launcher.metta_exp_launcher
        tops = lambda: sorted({m.split(".")[0] for m in sys.modules})
        discovered = tops()
        import hydra_plugins.metta_exp_launcher._core
        print(json.dumps({"discovered": discovered, "core": tops()}))
        """)
    result = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    loaded = json.loads(result.stdout)
    heavy = {"sky", "wandb", "pandas", "matplotlib"}
    assert not heavy & set(loaded["discovered"])
    assert "metta_exp" not in loaded["discovered"], "discovery must not import metta-exp itself"
    assert not heavy & set(loaded["core"]), "launching must not import them either"
    assert "metta_exp" in loaded["core"]


def test_hydra_quote_round_trips_through_hydras_parser() -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from metta_exp.values import hydra_quote

    parser = OverridesParser.create()
    for path in ["/tmp/plain/0", "/tmp/work dir 'quoted' \"double\"/multirun/1", "/a\\b/c\\", "/x,y=z/${q}"]:
        (override,) = parser.parse_overrides([f"hydra.run.dir={hydra_quote(path)}"])
        assert override.value() == path


# --- a user's app -----------------------------------------------------------------------------------


def test_user_app_sweep_is_one_group_running_the_task_per_point(state_dir: Path) -> None:
    from hydra_plugins.metta_exp_launcher._task import JOB_MODULE

    work = state_dir.parent  # its path has spaces and quotes
    app = write_app(work)
    result = run_app(
        [str(app), "-m", "hydra/launcher=metta_exp", "lr=1e-3,1e-4", "name='a b',c/d", NO_NOTEBOOK],
        cwd=work,
        env={"REC_BARRIER": "4"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (group,) = groups(state_dir)
    assert group.startswith("my_train-")
    jobs = wait_group_end(state_dir, group)
    assert [j.run for j in jobs] == [
        "lr1e-3-name_a_b",
        "lr1e-3-name_c_d",
        "lr1e-4-name_a_b",
        "lr1e-4-name_c_d",
    ]
    assert all(j.status == JobStatus.SUCCEEDED for j in jobs)
    assert jobs[0].spec.module == JOB_MODULE  # the task function shipped, not the script run again
    records = job_records(state_dir, group)
    first = records["lr1e-3-name_a_b"]
    sweep_dir = Path(first["output_dir"]).parent
    assert sweep_dir.parent.parent == work / "multirun"  # Hydra's own layout: <sweep dir>/<job number>
    for number, job in enumerate(jobs):
        record = records[job.run]
        assert record["together"], "the jobs ran at the same time"
        assert record["output_dir"] == str(sweep_dir / str(number))
        assert (record["num"], record["id"]) == (number, f"{group}/{job.run}")
        assert record["cwd"] == str(work)  # hydra.job.chdir is false (version_base=None): the launch dir
        assert (sweep_dir / str(number) / ".hydra" / "config.yaml").is_file()
    assert first["overrides"] == ["lr=0.001", "name='a b'"]
    assert first["cfg"] == {"lr": 0.001, "name": "a b", "fail": False}
    assert records["lr1e-4-name_c_d"]["cfg"] == {"lr": 0.0001, "name": "c/d", "fail": False}
    with JobStore.open(state_dir) as store:
        sweep = store.group(group).sweep
    assert sweep is not None
    assert sweep.keys == ("lr", "name")
    assert sweep.points["lr1e-4-name_a_b"] == {"lr": 0.0001, "name": "a b"}


def test_a_failing_point_fails_the_multirun_with_one_message(state_dir: Path) -> None:
    from hydra.core.utils import JobStatus as HydraJobStatus

    from hydra_plugins.metta_exp_launcher._core import JobFailed, job_returns

    work = state_dir.parent
    app = write_app(work)
    result = run_app([str(app), "-m", "hydra/launcher=metta_exp", "fail=false,true", NO_NOTEBOOK], cwd=work)
    assert result.returncode == 1, result.stdout + result.stderr
    (group,) = groups(state_dir)
    assert f"run 'fail_true' of metta-exp group '{group}' failed: exit code 3" in result.stderr
    assert f"1 of 2 jobs did not succeed: metta-exp job show {group}" in result.stderr
    assert "Traceback" not in result.stderr
    jobs = wait_group_end(state_dir, group)
    assert {j.run: j.status for j in jobs} == {
        "fail_false": JobStatus.SUCCEEDED,
        "fail_true": JobStatus.FAILED,
    }
    # the JobReturns Hydra got, read again: the first job handed its own back, the second died first
    (task_file,) = (work / "multirun").glob("*/*/.metta_exp/task-0.pkl")
    returns = job_returns(
        [["fail=false"], ["fail=true"]],
        ["fail_false", "fail_true"],
        [0, 1],
        task_file,
        "my_train",
        group,
        {j.run: j for j in jobs},
    )
    assert [r.status for r in returns] == [HydraJobStatus.COMPLETED, HydraJobStatus.FAILED]
    assert returns[0].return_value == 0.2 and returns[0].cfg == {"lr": 0.1, "name": "base", "fail": False}
    with pytest.raises(JobFailed, match="exit code 3"):
        _ = returns[1].return_value


def test_wait_false_returns_once_submitted_under_the_given_group(state_dir: Path) -> None:
    work = state_dir.parent
    app = write_app(work)
    argv = [
        str(app),
        "-m",
        "hydra/launcher=metta_exp",
        "lr=1,2,3",
        "hydra.launcher.wait=false",
        "hydra.launcher.group=mine",
        NO_NOTEBOOK,
    ]
    result = run_app(argv, cwd=work)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Submitted. Watch: metta-exp job monitor mine" in result.stdout
    assert [j.status for j in wait_group_end(state_dir, "mine")] == [JobStatus.SUCCEEDED] * 3
    again = run_app(argv, cwd=work)
    assert again.returncode == 2, again.stderr
    (line,) = [line for line in again.stderr.splitlines() if line.strip()]
    assert line.startswith("Error: metta-exp: group 'mine' already exists")


def test_config_flags_and_hydra_overrides_reach_the_jobs(state_dir: Path) -> None:
    work = state_dir.parent
    app = write_app(work)
    result = run_app(
        [
            str(app),
            "--config-name",
            "alt",
            "-m",
            "hydra/launcher=metta_exp",
            "hydra.job.name=custom",
            "extra=5,6",
            NO_NOTEBOOK,
        ],
        cwd=work,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (group,) = groups(state_dir)
    assert group.startswith("custom-")
    records = job_records(state_dir, group)
    assert set(records) == {"extra5", "extra6"}
    job = records["extra6"]
    assert job["overrides"] == ["extra=6"]
    assert job["cfg"] == {"lr": 0.5, "name": "alt", "fail": False, "extra": 6}
    assert job["job_name"] == "custom"


def test_an_app_started_with_python_m_runs_as_a_module(state_dir: Path) -> None:
    work = state_dir.parent
    write_app(work, package="pkg")
    result = run_app(
        ["-m", "pkg.train", "-m", "hydra/launcher=metta_exp", "lr=0.25,0.5", NO_NOTEBOOK], cwd=work
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (group,) = groups(state_dir)
    jobs = wait_group_end(state_dir, group)
    assert [(j.run, j.status) for j in jobs] == [
        ("lr0.25", JobStatus.SUCCEEDED),
        ("lr0.5", JobStatus.SUCCEEDED),
    ]
    assert job_records(state_dir, group)["lr0.5"]["cfg"]["lr"] == 0.5


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def test_bad_launcher_settings_are_one_line_exit_2_and_submit_nothing(state_dir: Path) -> None:
    """Bad input is one ``Error:`` line and exit code 2, as for the metta-exp command (not Hydra's exit
    code 1 and its HYDRA_FULL_ERROR hint); with HYDRA_FULL_ERROR=1, Hydra's full stack trace."""
    work = state_dir.parent
    app = write_app(work)
    argv = [str(app), "-m", "hydra/launcher=metta_exp", "lr=1,2", "hydra.launcher.gpus=-1"]
    result = run_app(argv, cwd=work)
    assert result.returncode == 2, result.stderr
    assert error_lines(result) == [
        "Error: metta-exp: hydra.launcher (metta_exp): 'gpus' must be at least 0, got -1"
    ]
    assert not state_dir.exists()
    limited = run_app(
        [str(app), "-m", "hydra/launcher=metta_exp", "lr=1,2,3"], cwd=work, env={"METTA_EXP_SWEEP_LIMIT": "2"}
    )
    assert limited.returncode == 2, limited.stderr
    (line,) = error_lines(limited)
    assert (
        line.startswith("Error: metta-exp: ") and "the sweep has 3 points, more than the limit of 2" in line
    )
    assert not state_dir.exists()
    full = run_app(argv, cwd=work, env={"HYDRA_FULL_ERROR": "1"})
    assert full.returncode == 1 and "Traceback" in full.stderr
    assert "'gpus' must be at least 0, got -1" in full.stderr
    assert not state_dir.exists()
