"""fetch_metrics against the real ``wandb.Api`` talking to a fake W&B server on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_wandb import FakeWandb  # tests/ is on sys.path (pytest's rootdir-relative import mode)

from metta_exp.metrics import fetch_metrics
from metta_exp.records import JobRecord, JobSpec
from metta_exp.status import JobStatus

ENTITY, PROJECT = "team", "metta"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeWandb]:
    home = tmp_path_factory.mktemp("wandb-home")
    with pytest.MonkeyPatch.context() as mp, FakeWandb() as fake:
        for key, value in {
            "WANDB_BASE_URL": fake.url,
            "WANDB_API_KEY": "0123456789abcdef0123456789abcdef01234567",
            "HOME": str(home),
            "WANDB_DIR": str(home / "wandb"),
            "WANDB_CONFIG_DIR": str(home / "config"),
            "WANDB_CACHE_DIR": str(home / "cache"),
            "WANDB_DATA_DIR": str(home / "data"),
            "NETRC": str(home / "netrc"),
        }.items():
            mp.setenv(key, value)
        for key in ("WANDB_ENTITY", "WANDB_PROJECT", "WANDB_MODE"):
            mp.delenv(key, raising=False)
        yield fake


def history(n: int, every: int = 1, t0: float = 5.0) -> list[dict[str, Any]]:
    """W&B-like rows: _step, _runtime, _timestamp on every row; reward on every ``every``-th row."""
    rows = []
    for i in range(n):
        row: dict[str, Any] = {"_step": i * 100, "_runtime": t0 + i * 2.0, "_timestamp": 1.7e9 + i * 2.0}
        row["overview/sps"] = 1000.0 + i
        if i % every == 0:
            row["overview/reward"] = i / 10
        rows.append(row)
    return rows


def job(tmp_path: Path, run: str, run_id: str, mode: str = "online") -> JobRecord:
    """A remote-like job: its run dir exists but holds no metrics file."""
    run_dir = tmp_path / run
    run_dir.mkdir()
    spec = {
        "group": "g",
        "run": run,
        "args": [],
        "env": {"WANDB_ENTITY": ENTITY, "WANDB_PROJECT": PROJECT, "WANDB_MODE": mode, "WANDB_RUN_ID": run_id},
        "run_dir": str(run_dir),
        "wandb_run_id": run_id,
    }
    return JobRecord(
        group="g",
        run=run,
        position=0,
        status=JobStatus.SUCCEEDED,
        stored_spec=JobSpec.from_dict(spec),
        attempts=1,
        exit_code=0,
        run_dir=str(run_dir),
    )


def points(df: Any, run: str, metric: str) -> list[tuple[int, float, float]]:
    sub = df[(df["run"] == run) & (df["metric"] == metric)]
    return list(zip(sub["step"].tolist(), sub["value"].tolist(), sub["time"].tolist(), strict=True))


def test_history_one_key_per_request_and_final_value_from_summary(server: FakeWandb, tmp_path: Path) -> None:
    rows = history(50)
    # the summary holds a later point than the sampled history returns
    server.add_run(
        ENTITY,
        PROJECT,
        "full01",
        history=rows,
        summary={"overview/reward": 9.5, "overview/sps": 2000.0, "_step": 5000, "_runtime": 105.0},
    )
    df = fetch_metrics([job(tmp_path, "full", "full01")], samples=10, progress=False)

    reward = points(df, "full", "overview/reward")
    sampled = [rows[i * 50 // 10] for i in range(10)]
    assert reward[:-1] == [(r["_step"], r["overview/reward"], r["_runtime"] - 5.0) for r in sampled]
    assert reward[-1] == (5000, 9.5, 100.0)  # the last value, from run.summary
    assert points(df, "full", "overview/sps")[-1] == (5000, 2000.0, 100.0)
    specs = [r.variables["specs"] for r in server.history_requests("full01")]
    assert sorted(specs) == sorted(
        [
            ['{"keys": ["_step", "overview/reward", "_runtime"], "samples": 10}'],
            ['{"keys": ["_step", "overview/sps", "_runtime"], "samples": 10}'],
        ]
    )
    assert df.attrs["sources"] == {"full": f"wandb {ENTITY}/{PROJECT}/full01"}
    assert df.attrs["errors"] == {}


def test_sparse_key_is_not_dropped_by_other_keys(server: FakeWandb, tmp_path: Path) -> None:
    server.add_run(ENTITY, PROJECT, "sparse01", history=history(30, every=3), summary={"_step": 2900})
    df = fetch_metrics([job(tmp_path, "sparse", "sparse01")], samples=1000, progress=False)
    assert [p[0] for p in points(df, "sparse", "overview/reward")] == [i * 100 for i in range(0, 30, 3)]
    assert len(points(df, "sparse", "overview/sps")) == 30


def test_time_axis(server: FakeWandb, tmp_path: Path) -> None:
    server.add_run(ENTITY, PROJECT, "time01", history=history(5), summary={})
    df = fetch_metrics([job(tmp_path, "timed", "time01")], samples=100, x_axis="time", progress=False)
    assert points(df, "timed", "overview/reward") == [(i * 100, i / 10, i * 2.0) for i in range(5)]
    specs = [r.variables["specs"][0] for r in server.history_requests("time01")]
    assert all('"keys": ["_runtime",' in s and '"_step"]' in s for s in specs)


def test_missing_run_missing_key_and_empty_history_are_reported(
    server: FakeWandb, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.add_run(ENTITY, PROJECT, "ok01", history=history(4), summary={})
    server.add_run(
        ENTITY,
        PROJECT,
        "nokey01",
        history=[{k: v for k, v in r.items() if k != "overview/reward"} for r in history(4)],
        summary={},
    )
    server.add_run(ENTITY, PROJECT, "empty01", history=[], summary={})
    jobs = [
        job(tmp_path, "gone", "nosuchrun"),
        job(tmp_path, "nokey", "nokey01"),
        job(tmp_path, "empty", "empty01"),
        job(tmp_path, "ok", "ok01"),
    ]
    df = fetch_metrics(jobs, samples=100, progress=False)

    assert list(df["run"].cat.categories) == ["gone", "nokey", "empty", "ok"]
    assert len(points(df, "ok", "overview/reward")) == 4
    assert len(points(df, "nokey", "overview/sps")) == 4 and points(df, "nokey", "overview/reward") == []
    assert df[df["run"].isin(["gone", "empty"])].empty
    assert "gone" in df.attrs["errors"] and "nosuchrun" in df.attrs["errors"]["gone"]
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("fetch_metrics:")]
    assert any("'gone' not fetched" in line and "nosuchrun" in line for line in lines)
    assert any("'nokey': no data for overview/reward" in line for line in lines)
    assert any(
        "'empty': no data for overview/sps, overview/reward" in line for line in lines
    )  # default order
    assert not any("'ok'" in line for line in lines)


def test_rate_limit_answer_is_retried(server: FakeWandb, tmp_path: Path) -> None:
    server.add_run(ENTITY, PROJECT, "limited01", history=history(6), summary={})
    server.rate_limit(1)
    df = fetch_metrics([job(tmp_path, "limited", "limited01")], samples=100, progress=False)
    assert [p[1] for p in points(df, "limited", "overview/reward")] == [i / 10 for i in range(6)]
    statuses = [r.status for r in server.history_requests("limited01")]
    assert statuses.count(429) == 1 and statuses.count(200) == 2
    assert df.attrs["errors"] == {}


def test_local_file_is_preferred_and_offline_runs_are_not_fetched(server: FakeWandb, tmp_path: Path) -> None:
    server.add_run(ENTITY, PROJECT, "both01", history=history(3), summary={})
    local = job(tmp_path, "both", "both01")
    Path(local.run_dir, "metrics.jsonl").write_text(
        '{"_step": 7, "_time": 10.0, "_attempt": 1, "overview/reward": 1.5, "overview/sps": 3.0}\n'
    )
    offline = job(tmp_path, "off", "off01", mode="offline")
    df = fetch_metrics([local, offline], samples=100, progress=False)
    assert points(df, "both", "overview/reward") == [(7, 1.5, 0.0)]
    assert server.history_requests("both01") == [] and server.history_requests("off01") == []
    assert "offline" in df.attrs["errors"]["off"]
    assert not math.isnan(df["value"].sum())


@pytest.mark.slow
def test_no_credentials_is_one_reason_per_run(server: FakeWandb, tmp_path: Path) -> None:
    # In a fresh process: wandb keeps the credentials of an earlier Api for the whole process.
    jobs = [job(tmp_path, "a", "nokey-a"), job(tmp_path, "b", "nokey-b")]
    code = (
        "import json, sys\n"
        "from metta_exp.metrics import fetch_metrics\n"
        "df = fetch_metrics([json.loads(a) for a in sys.argv[1:]], samples=10, workers=2, progress=False)\n"
        "print(json.dumps(df.attrs['errors']))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "WANDB_API_KEY"}
    argv = [json.dumps({"run": j.run, "run_dir": j.run_dir, "spec": j.spec.to_dict()}) for j in jobs]
    done = subprocess.run(
        [sys.executable, "-c", code, *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    errors = json.loads(done.stdout.splitlines()[-1])
    assert set(errors) == {"a", "b"}
    assert all("UsageError" in reason and "log" in reason for reason in errors.values()), errors
    assert [r for r in server.requests if r.variables.get("name") in ("nokey-a", "nokey-b")] == []


def test_a_job_is_fetched_from_the_wandb_host_it_used(server: FakeWandb, tmp_path: Path) -> None:
    """The job ran against another W&B server (its recorded WANDB_BASE_URL) than the one this shell
    names: its data is there, on that host, never on the default one."""
    with FakeWandb() as other:
        other.add_run(ENTITY, PROJECT, "elsewhere1", history=history(5), summary={})
        record = job(tmp_path, "away", "elsewhere1")
        env = {**record.spec.env, "WANDB_BASE_URL": other.url}
        record = dataclasses.replace(record, stored_spec=dataclasses.replace(record.spec, env=env))
        df = fetch_metrics([record], ["overview/sps"], progress=False)
    assert df.attrs["errors"] == {}
    assert [v for _, v, _ in points(df, "away", "overview/sps")] == [1000.0, 1001.0, 1002.0, 1003.0, 1004.0]
    assert other.history_requests("elsewhere1") and not server.history_requests("elsewhere1")


def test_without_a_recorded_url_the_latest_attempts_run_is_fetched(server: FakeWandb, tmp_path: Path) -> None:
    """Each attempt is its own W&B run (``<id>-a<N>`` from the second on): the notebook shows the last."""
    server.add_run(ENTITY, PROJECT, "retried1", history=history(3), summary={})
    server.add_run(ENTITY, PROJECT, "retried1-a2", history=history(2, t0=1.0), summary={})
    record = job(tmp_path, "again", "retried1")
    record = dataclasses.replace(record, attempts=2)
    df = fetch_metrics([record], ["overview/sps"], progress=False)
    assert df.attrs["sources"] == {"again": f"wandb {ENTITY}/{PROJECT}/retried1-a2"}
    assert len(points(df, "again", "overview/sps")) == 2


def test_a_search_trial_without_a_metrics_file_is_told_its_wandb_value(
    server: FakeWandb, tmp_path: Path
) -> None:
    """A remote trial's metrics are in W&B, not here: its value is reduced from its W&B history, not from
    the progress lines of its (partial) log tail; offline runs fall back to the progress lines."""
    from metta_exp.search.curve import CurveReader, final_curve, reduce_curve

    server.add_run(ENTITY, PROJECT, "trial01", history=history(20), summary={})
    log = tmp_path / "tail.log"
    log.write_text("[metta-exp] progress step=1900 total=2000 sps=5 overview/reward=0.25\n")
    values, source = final_curve(
        job(tmp_path, "t001", "trial01"), "overview/reward", CurveReader(str(log), "overview/reward")
    )
    assert source == "wandb" and reduce_curve(values, "max") == pytest.approx(1.9)
    values, source = final_curve(
        job(tmp_path, "t002", "trial02", mode="offline"),
        "overview/reward",
        CurveReader(str(log), "overview/reward"),
    )
    assert (values, source) == ([0.25], "progress lines")
