"""fetch_metrics and summary_table on real metrics files in tmp_path."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests

from metta_exp import metrics
from metta_exp.metrics import (
    RunSource,
    fetch_metrics,
    read_metrics_file,
    run_source,
    style_summary,
    summary_table,
)
from metta_exp.metrics.local import pick
from metta_exp.metrics.wandb import rate_limit_wait, with_backoff
from metta_exp.records import JobRecord, JobSpec
from metta_exp.runs.wandb import wandb_run_id
from metta_exp.status import JobStatus

T0 = 1764250000.0


def line(step: int, attempt: int = 1, t: float | None = None, **metrics: Any) -> str:
    record = {"_step": step, "_time": T0 + step / 100 if t is None else t, "_attempt": attempt}
    record.update({k.replace("__", "/"): v for k, v in metrics.items()})
    return json.dumps(record) + "\n"


def write_run(directory: Path, lines: list[str] | str, run_json: dict[str, Any] | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "metrics.jsonl").write_text("".join(lines))
    if run_json is not None:
        (directory / "run.json").write_text(json.dumps(run_json))
    return directory


def points(df: pd.DataFrame, run: str, metric: str) -> list[tuple[int, float, float]]:
    sub = df[(df["run"] == run) & (df["metric"] == metric)]
    return list(zip(sub["step"].tolist(), sub["value"].tolist(), sub["time"].tolist(), strict=True))


def job(
    run: str,
    run_dir: Path,
    status: JobStatus = JobStatus.SUCCEEDED,
    env: dict[str, str] | None = None,
    wandb_url: str | None = None,
    position: int = 0,
) -> JobRecord:
    spec = {
        "group": "g",
        "run": run,
        "args": [],
        "env": env or {},
        "run_dir": str(run_dir),
        "wandb_run_id": wandb_run_id("g", run),
    }
    return JobRecord(
        group="g",
        run=run,
        position=position,
        status=status,
        stored_spec=JobSpec.from_dict(spec),
        attempts=1,
        run_dir=str(run_dir),
        wandb_url=wandb_url,
    )


# --- reading files ------------------------------------------------------------------------------


def test_exact_values_columns_and_order(tmp_path: Path) -> None:
    b = write_run(
        tmp_path / "b",
        [
            line(0, overview__reward=1.25, overview__sps=100.0),
            line(64, overview__reward=None, overview__sps=200.5),
            line(128, overview__reward=-3.0, overview__sps=300.0),
        ],
    )
    a = write_run(tmp_path / "a", [line(10, overview__reward=7.0)])
    df = fetch_metrics([b, a], progress=False)  # b first: the given order, not alphabetical

    assert list(df.columns) == ["run", "step", "metric", "value", "time"]
    assert df["run"].cat.ordered and list(df["run"].cat.categories) == ["b", "a"]
    assert list(df["metric"].cat.categories) == ["overview/sps", "overview/reward"]  # metrics_to_track's
    assert str(df["step"].dtype) == "int64" and str(df["value"].dtype) == "float64"
    reward = points(df, "b", "overview/reward")
    assert [(s, v) for s, v, _ in reward if not math.isnan(v)] == [(0, 1.25), (128, -3.0)]
    assert math.isnan(reward[1][1]) and reward[1][0] == 64  # null is NaN, kept at its step
    assert [t for _, _, t in reward] == pytest.approx([0.0, 0.64, 1.28])  # seconds since the first point
    assert points(df, "b", "overview/sps") == [
        (0, 100.0, 0.0),
        (64, 200.5, pytest.approx(0.64)),
        (128, 300.0, pytest.approx(1.28)),
    ]
    assert points(df, "a", "overview/reward") == [(10, 7.0, 0.0)]
    assert df["run"].tolist()[:6] == ["b"] * 6  # rows grouped by run, in run order
    assert df.attrs["sources"]["a"] == f"local {a / 'metrics.jsonl'}"


def test_downsampling_keeps_first_and_last_exactly(tmp_path: Path) -> None:
    lines = [line(i * 10, overview__reward=i * 0.5, overview__sps=float(i)) for i in range(2500)]
    write_run(tmp_path / "r", lines)
    df = fetch_metrics([tmp_path / "r"], samples=100, progress=False)
    reward = points(df, "r", "overview/reward")
    assert len(reward) == 100
    assert reward[0][:2] == (0, 0.0) and reward[-1][:2] == (24990, 2499 * 0.5)
    indices = [s // 10 for s, _, _ in reward]
    assert indices == sorted(set(indices))
    assert all(v == i * 0.5 for (s, v, _), i in zip(reward, indices, strict=True))
    gaps = {b - a for a, b in zip(indices, indices[1:], strict=False)}
    assert gaps <= {25, 26}  # evenly spaced
    assert len(points(df, "r", "overview/sps")) == 100


def test_samples_none_reads_everything(tmp_path: Path) -> None:
    write_run(tmp_path / "r", [line(i, overview__reward=float(i)) for i in range(1500)])
    df = fetch_metrics([tmp_path / "r"], ["overview/reward"], samples=None, progress=False)
    assert df["value"].tolist() == [float(i) for i in range(1500)]


def test_sparse_metric_is_sampled_among_the_lines_holding_it(tmp_path: Path) -> None:
    lines = [
        line(i, overview__sps=1.0, **({"eval__score": i * 2.0} if i % 7 == 0 else {}))  # type: ignore[arg-type]
        for i in range(3000)
    ]
    lines.append(line(3000, overview__sps=1.0))  # the last line does not hold it
    write_run(tmp_path / "r", lines)
    df = fetch_metrics([tmp_path / "r"], ["eval/score", "overview/sps"], samples=50, progress=False)
    score = points(df, "r", "eval/score")
    holding = [i for i in range(3000) if i % 7 == 0]
    assert len(score) == 50
    assert score[0][:2] == (0, 0.0) and score[-1][:2] == (holding[-1], holding[-1] * 2.0)
    assert all(s % 7 == 0 and v == s * 2.0 for s, v, _ in score)
    assert points(df, "r", "overview/sps")[-1][0] == 3000


def test_retried_run_uses_the_latest_attempt(tmp_path: Path) -> None:
    first = [line(i * 10, attempt=1, t=T0 + i, overview__reward=-1.0) for i in range(40)]
    second = [line(i * 10, attempt=2, t=T0 + 1000 + i, overview__reward=float(i)) for i in range(25)]
    third_started = [line(0, attempt=3, t=T0 + 5000, overview__reward=99.0)]
    write_run(tmp_path / "two", first + second)
    write_run(tmp_path / "three", first + second + third_started)
    df = fetch_metrics([tmp_path / "two", tmp_path / "three"], ["overview/reward"], progress=False)
    assert points(df, "two", "overview/reward") == [(i * 10, float(i), float(i)) for i in range(25)]
    assert points(df, "three", "overview/reward") == [(0, 99.0, 0.0)]


def test_torn_last_line_and_garbage_are_skipped(tmp_path: Path) -> None:
    text = (
        line(0, overview__reward=1.0) + "not json\n\n" + line(1, overview__reward=2.0) + '{"_step": 2, "_ti'
    )
    write_run(tmp_path / "r", text)
    df = fetch_metrics([tmp_path / "r"], ["overview/reward"], progress=False)
    assert [(s, v) for s, v, _ in points(df, "r", "overview/reward")] == [(0, 1.0), (1, 2.0)]


def test_odd_metric_names(tmp_path: Path) -> None:
    keys = ['quote"d/key', "uni/é", "back\\slash"]
    write_run(
        tmp_path / "r",
        [json.dumps({"_step": 1, "_time": T0, "_attempt": 1, **{k: 2.0 for k in keys}}) + "\n"],
    )
    df = fetch_metrics([tmp_path / "r"], keys, progress=False)
    assert sorted(df["metric"].astype(str)) == sorted(keys)


def test_read_metrics_file_without_attempts(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"_step": 3, "_time": 5.0, "x": 1}\n{"_step": 4, "_time": 7.5, "x": 2.5}\n')
    series = read_metrics_file(path, ["x", "y"], samples=1000)
    assert set(series) == {"x"}
    assert (series["x"].steps, series["x"].values, series["x"].times) == ([3, 4], [1.0, 2.5], [0.0, 2.5])


def test_pick() -> None:
    assert list(pick(5, 10)) == [0, 1, 2, 3, 4]
    assert pick(10, 4) == [0, 3, 6, 9]
    assert pick(10, 1) == [9]
    assert list(pick(0, 3)) == []
    for n, s in ((1001, 1000), (100_000, 1000), (7, 2)):
        chosen = pick(n, s)
        assert len(set(chosen)) == s and chosen[0] == 0 and chosen[-1] == n - 1


# --- naming runs, failures ----------------------------------------------------------------------


def test_failed_fetches_are_reported_and_the_rest_carry_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write_run(tmp_path / "good", [line(1, overview__reward=1.0, overview__sps=2.0)])
    nothing = tmp_path / "nothing"
    nothing.mkdir()
    offline = tmp_path / "off"
    offline.mkdir()
    (offline / "run.json").write_text(
        json.dumps({"run": "off", "wandb_mode": "offline", "wandb_dir": "/x/wandb/offline-run-1"})
    )
    partial = write_run(tmp_path / "partial", [line(1, overview__sps=2.0)])
    df = fetch_metrics([job("nothing", nothing), good, job("off", offline), partial], progress=False)

    assert list(df["run"].cat.categories) == ["nothing", "good", "off", "partial"]
    assert set(df["run"].astype(str)) == {"good", "partial"}
    assert (
        "no metrics file" in df.attrs["errors"]["nothing"] and "no W&B run" in df.attrs["errors"]["nothing"]
    )
    assert "wandb sync /x/wandb/offline-run-1" in df.attrs["errors"]["off"]
    err = [x for x in capsys.readouterr().err.splitlines() if x.startswith("fetch_metrics:")]
    assert err == [
        f"fetch_metrics: run 'nothing' not fetched: {df.attrs['errors']['nothing']}",
        f"fetch_metrics: run 'off' not fetched: {df.attrs['errors']['off']}",
        f"fetch_metrics: run 'partial': no data for overview/reward in local {partial / 'metrics.jsonl'}",
    ]


def test_run_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    d = write_run(
        state / "runs" / "g1" / "alpha", [line(1, overview__reward=1.0)], {"run": "alpha-from-json"}
    )
    write_run(state / "runs" / "g1" / "beta", [line(1, overview__reward=1.0)])
    write_run(state / "runs" / "g2" / "beta", [line(1, overview__reward=1.0)])

    assert run_source(d) == RunSource("alpha-from-json", run_dir=d)
    assert run_source(str(d)).run_dir == d
    assert run_source("alpha", state_dir=state) == RunSource("alpha", run_dir=d)
    assert run_source("beta", group="g2", state_dir=state).run_dir == state / "runs" / "g2" / "beta"
    assert "several groups (g1, g2)" in (run_source("beta", state_dir=state).problem or "")
    assert "no run named 'zeta'" in (run_source("zeta", state_dir=state).problem or "")
    monkeypatch.setenv("METTA_EXP_STATE_DIR", str(state))
    assert run_source("alpha").run_dir == d
    assert run_source("ent/proj/abc") == RunSource("abc", wandb_path="ent/proj/abc")
    assert run_source("https://wandb.ai/ent/proj/runs/abc?x=1").wandb_path == "ent/proj/abc"
    env = {"WANDB_ENTITY": "e", "WANDB_PROJECT": "p", "WANDB_MODE": "online"}
    src = run_source(job("r", d, env=env))
    assert (src.name, src.run_dir, src.wandb_path) == ("r", d, f"e/p/{wandb_run_id('g', 'r')}")
    assert run_source(job("r", d, wandb_url="https://x.example/a/b/runs/c")).wandb_path == "a/b/c"
    assert run_source({"run": "r", "run_dir": str(d), "wandb_path": None}) == RunSource("r", run_dir=d)
    with pytest.raises(TypeError):
        run_source(42)


def test_runs_by_name_through_fetch_metrics(tmp_path: Path) -> None:
    state = tmp_path / "state"
    write_run(state / "runs" / "g1" / "alpha", [line(5, overview__reward=3.0)])
    df = fetch_metrics(["alpha", "missing"], ["overview/reward"], state_dir=state, progress=False)
    assert points(df, "alpha", "overview/reward") == [(5, 3.0, 0.0)]
    assert "no run named 'missing'" in df.attrs["errors"]["missing"]


def test_bad_arguments(tmp_path: Path) -> None:
    d = write_run(tmp_path / "r", [line(1, overview__reward=1.0)])
    with pytest.raises(ValueError, match="same name"):
        fetch_metrics([d, {"run": "r"}], progress=False)
    with pytest.raises(ValueError, match="x_axis"):
        fetch_metrics([d], x_axis="wall", progress=False)
    with pytest.raises(ValueError, match="samples"):
        fetch_metrics([d], samples=0, progress=False)
    empty = fetch_metrics([], progress=False)
    assert empty.empty and list(empty.columns) == ["run", "step", "metric", "value", "time"]


def test_progress_bar_goes_to_stderr_when_fetching_takes_a_while(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    d = write_run(tmp_path / "r", [line(1, overview__reward=1.0, overview__sps=1.0)])
    # done before the delay (however slow this machine is): no bar to freeze in a notebook's saved outputs
    monkeypatch.setattr(metrics, "PROGRESS_DELAY_S", 3600.0)
    fetch_metrics([d], progress=True)
    assert capsys.readouterr() == ("", "")
    monkeypatch.setattr(metrics, "PROGRESS_DELAY_S", 0.0)
    fetch_metrics([d], progress=True)
    captured = capsys.readouterr()
    assert captured.out == "" and "fetching metrics" in captured.err


# --- W&B back-off (the server side is in test_metrics_wandb.py) ---------------------------------


def http_error(status: int, retry_after: str | None = None) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    if retry_after is not None:
        response.headers["Retry-After"] = retry_after
    return requests.HTTPError(f"{status} error", response=response)


def test_backoff_on_429_only() -> None:
    sleeps: list[float] = []
    calls: Iterator[Exception | str] = iter([http_error(429), http_error(429, "7"), "done"])

    def call() -> str:
        item = next(calls)
        if isinstance(item, Exception):
            raise item
        return item

    assert with_backoff(call, sleep=sleeps.append, base=1.5) == "done"
    assert sleeps == [1.5, 7.0]

    def wrapped() -> None:  # wandb wraps HTTP errors (CommError.exc, or as the cause)
        try:
            raise http_error(429)
        except requests.HTTPError as exc:
            raise RuntimeError("Could not fetch") from exc

    sleeps.clear()
    with pytest.raises(RuntimeError):
        with_backoff(wrapped, tries=3, sleep=sleeps.append)
    assert sleeps == [2.0, 4.0]
    with pytest.raises(requests.HTTPError):
        with_backoff(lambda: (_ for _ in ()).throw(http_error(500)), sleep=sleeps.append)
    assert len(sleeps) == 2
    assert rate_limit_wait(ValueError("x")) is None


# --- the summary table --------------------------------------------------------------------------


def test_summary_table(tmp_path: Path) -> None:
    a = write_run(
        tmp_path / "a",
        [
            line(0, overview__reward=1.0, overview__sps=100.0),
            line(10, overview__reward=5.0, overview__sps=300.0),
            line(20, overview__reward=3.0, overview__sps=None),
            line(30, overview__reward=None, overview__sps=200.0),
        ],
    )
    b = write_run(tmp_path / "b", [line(0, overview__reward=2.0, overview__sps=50.0)])
    nothing = tmp_path / "c"
    nothing.mkdir()
    df = fetch_metrics([a, b, nothing], progress=False)
    table = summary_table(df, statuses={"a": JobStatus.SUCCEEDED, "b": "failed", "c": "cancelled"})

    assert list(table.index) == ["a", "b", "c"]
    assert list(table.columns) == [
        "status",
        "final_reward",
        "max_reward",
        "mean_reward",
        "avg_sps",
        "steps",
        "failed",
        "note",
    ]
    assert table.loc["a"].to_dict() == {
        "status": "succeeded",
        "final_reward": 3.0,
        "max_reward": 5.0,
        "mean_reward": 3.0,
        "avg_sps": 200.0,
        "steps": 30,
        "failed": False,
        "note": "",
    }
    assert table.loc["b", "failed"] and table.loc["b", "final_reward"] == 2.0
    assert table.loc["c", "failed"] and "no metrics file" in table.loc["c", "note"]
    assert math.isnan(table.loc["c", "final_reward"]) and pd.isna(table.loc["c", "steps"])
    assert str(table["steps"].dtype) == "Int64"

    no_status = summary_table(df)
    assert pd.isna(no_status.loc["a", "status"])
    assert list(no_status["failed"]) == [False, False, True]

    html = style_summary(table).to_html()
    css = html.split("</style>")[0]
    marked = {(int(r), int(c)) for r, c in re.findall(r"_row(\d+)_col(\d+)", css)}
    assert "background-color: #f8d7da" in css
    shown = [c for c, name in enumerate(table.columns) if name != "failed"]  # the status says it
    assert marked == {(r, c) for r in (1, 2) for c in shown}  # rows b and c, every cell shown
    assert "5.000" in html


def test_importing_metrics_and_notebook_is_light() -> None:
    code = (
        "import sys, metta_exp.metrics, metta_exp.notebook.cells\n"
        "heavy = ('pandas', 'numpy', 'wandb', 'jinja2', 'nbformat', 'matplotlib')\n"
        "heavy = [m for m in heavy if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
