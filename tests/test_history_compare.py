"""``job compare`` and ``fetch_metrics`` over several groups: one frame with a ``group`` column, summaries by
group and by run with GPU-hours, the comparison notebook (pure rendering, nbformat-valid) and, for real,
its execution into an HTML report read in a headless browser; GPU-hours in a group report's summary."""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from conftest import run_cli
from history_store import DAY, add_group
from test_report import read_in_browser

from metta_exp import groups
from metta_exp.errors import NotFoundError, UsageError
from metta_exp.history.compare import compare_paths, render_compare
from metta_exp.metrics import fetch_metrics
from metta_exp.metrics.compare import group_summary, run_summary
from metta_exp.metrics.show import status_badge
from metta_exp.notebook.cells import run_info
from metta_exp.status import JobStatus
from metta_exp.store import JobStore

NOW = time.time()


def write_metrics(state_dir: Path, group: str, run: str, steps: int, slope: float) -> None:
    """A run's metrics file as tracking writes it: reward rising by ``slope`` a step, sps steady."""
    run_dir = state_dir / "runs" / group / run
    run_dir.mkdir(parents=True, exist_ok=True)
    lines = [
        {
            "_step": s,
            "_time": NOW + s / 100,
            "_attempt": 1,
            "overview/reward": s * slope,
            "overview/sps": 100.0,
        }
        for s in range(0, steps + 1, 100)
    ]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


@pytest.fixture
def two_groups(state_dir: Path) -> Path:
    """``baseline`` (3 runs, 1,000 steps, one failed) and ``variant`` (2 runs of the same names, 400 steps,
    on 2 GPUs): groups of different sizes and lengths."""
    with JobStore.open(state_dir) as store:
        add_group(store, "baseline", ["lr_low", "lr_mid", "lr_high"], created_at=NOW - 2 * DAY,
                  status={"lr_high": JobStatus.FAILED})  # fmt: skip
        add_group(store, "variant", ["lr_mid", "lr_high"], created_at=NOW - DAY, gpus=2)
    for run, slope in (("lr_low", 0.01), ("lr_mid", 0.02), ("lr_high", 0.03)):
        write_metrics(state_dir, "baseline", run, 1000, slope)
    for run, slope in (("lr_mid", 0.05), ("lr_high", 0.1)):
        write_metrics(state_dir, "variant", run, 400, slope)
    return state_dir


def test_fetch_metrics_of_several_groups_has_a_group_column(two_groups: Path) -> None:
    df = fetch_metrics(group=["variant", "baseline"], progress=False)
    assert list(df.columns) == ["group", "run", "step", "metric", "value", "time"]
    assert list(df["group"].cat.categories) == ["variant", "baseline"]
    assert list(df["run"].cat.categories) == ["lr_mid", "lr_high", "lr_low"]
    last = df[df["metric"] == "overview/reward"].groupby(["group", "run"], observed=True)["step"].max()
    assert last.to_dict() == {
        ("variant", "lr_mid"): 400,
        ("variant", "lr_high"): 400,
        ("baseline", "lr_mid"): 1000,
        ("baseline", "lr_high"): 1000,
        ("baseline", "lr_low"): 1000,
    }
    assert df.attrs["groups"] == ["variant", "baseline"]
    assert sorted(df.attrs["sources"]) == [
        "baseline/lr_high", "baseline/lr_low", "baseline/lr_mid", "variant/lr_high", "variant/lr_mid",
    ]  # fmt: skip
    mid = fetch_metrics(["lr_mid"], group=["baseline", "variant"], progress=False)  # a run of each
    assert sorted(set(zip(mid["group"], mid["run"], strict=True))) == [
        ("baseline", "lr_mid"),
        ("variant", "lr_mid"),
    ]
    one = fetch_metrics(group="variant", progress=False)  # every run of one group: as before, no group column
    assert list(one.columns) == ["run", "step", "metric", "value", "time"]
    with JobStore.open(two_groups, readonly=True) as store:  # JobRecords of two groups: a group column too
        jobs = store.jobs("baseline")[:1] + store.jobs("variant")[:1]
    assert sorted(set(fetch_metrics(jobs, progress=False)["group"])) == ["baseline", "variant"]


def test_bad_group_arguments_are_errors(two_groups: Path) -> None:
    with pytest.raises(NotFoundError, match="^no group 'basline'; closest: baseline"):
        fetch_metrics(group=["basline", "variant"])
    with pytest.raises(ValueError, match="^no run 'lr_x' in any of the groups baseline, variant$"):
        fetch_metrics(["lr_x"], group=["baseline", "variant"])
    with pytest.raises(ValueError, match="needs runs, or group="):
        fetch_metrics()


def test_summaries_by_group_and_by_run(two_groups: Path) -> None:
    df = fetch_metrics(group=["baseline", "variant"], progress=False)
    statuses = {
        "baseline": {"lr_low": "succeeded", "lr_mid": "succeeded", "lr_high": "failed"},
        "variant": {"lr_mid": "succeeded", "lr_high": "succeeded", "lr_gone": "skipped"},
    }
    hours = {"baseline": {"lr_low": 0.0}, "variant": {"lr_mid": 1.5, "lr_high": 0.5}}
    runs = run_summary(df, statuses, hours)
    assert list(runs.index) == [
        ("baseline", "lr_low"), ("baseline", "lr_mid"), ("baseline", "lr_high"),
        ("variant", "lr_mid"), ("variant", "lr_high"), ("variant", "lr_gone"),
    ]  # fmt: skip
    assert runs["final_reward"].round(6).tolist()[:5] == [10.0, 20.0, 30.0, 20.0, 40.0]
    assert math.isnan(runs["final_reward"].iloc[5]) and runs["note"].iloc[5] == "no data"
    assert runs["gpu_hours"].tolist() == [0.0, 0.0, 0.0, 1.5, 0.5, 0.0]
    assert runs["failed"].tolist() == [False, False, True, False, False, True]
    by_group = group_summary(df, statuses, hours)
    assert by_group.loc["baseline"].to_dict() | {"avg_sps": 0} == {
        "runs": 3, "succeeded": 2, "failed": 1, "best_run": "lr_high", "best_final_reward": 30.0,
        "mean_final_reward": 20.0, "mean_max_reward": 20.0, "avg_sps": 0, "steps": 1000, "gpu_hours": 0.0,
    }  # fmt: skip
    assert by_group.loc["variant", ["runs", "failed", "best_run", "steps", "gpu_hours"]].tolist() == [
        3, 1, "lr_high", 400, 2.0,
    ]  # fmt: skip


def test_the_notebook_is_valid_and_every_value_a_literal(two_groups: Path) -> None:
    with JobStore.open(two_groups, readonly=True) as store:
        parts = [
            (store.group(g), [run_info(j) for j in store.jobs(g)], store.gpu_hours(g))
            for g in ("baseline", "variant")
        ]
    text = render_compare(parts, package_root="/src")
    assert render_compare(parts, package_root="/src") == text  # pure
    nb = nbformat.reads(text, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["metta_exp"] == {"compare": ["baseline", "variant"]}
    kinds = [c.id.split("-")[0] for c in nb.cells]
    assert kinds == ["title", "setup", "links", "fetch", "plots", "groups", "runs"]
    title, fetch = nb.cells[0].source, nb.cells[3].source
    assert title.splitlines()[0] == "# Comparing baseline and variant"
    assert r"| variant | exp | " in title and r"| 2 succeeded | 0\.07 |" in title  # 2 GPUs x 2 runs x 60 s
    badge = status_badge("failed")
    assert f"| baseline | lr\\_high | {badge} exit 1 |" in title
    namespace: dict = {}
    exec(fetch.split("\ndf = ")[0], namespace)  # noqa: S102 - the cell's literals, evaluated as the kernel would
    assert namespace["GROUPS"] == ["baseline", "variant"]
    assert [(r["group"], r["run"]) for r in namespace["RUNS"]] == [
        ("baseline", "lr_low"), ("baseline", "lr_mid"), ("baseline", "lr_high"),
        ("variant", "lr_mid"), ("variant", "lr_high"),
    ]  # fmt: skip
    assert namespace["STATUSES"]["baseline"]["lr_high"] == "failed"
    assert namespace["GPU_HOURS"] == {"baseline": {"lr_low": 0.0, "lr_mid": 0.0, "lr_high": 0.0},
                                      "variant": {"lr_mid": 2 * 60 / 3600, "lr_high": 2 * 60 / 3600}}  # fmt: skip
    assert "### baseline" in nb.cells[2].source and "### variant" in nb.cells[2].source


def test_paths_by_default_and_as_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    nb, html = compare_paths(["a", "b"])
    assert (nb, html) == (
        tmp_path / "experiments/notebooks/compare-a-vs-b.ipynb",
        tmp_path / "experiments/notebooks/compare-a-vs-b.html",
    )
    assert compare_paths(["a", "b", "c", "d"])[0].name == "compare-a-vs-b-and-2-more.ipynb"
    assert compare_paths(["a", "b"], "out/x.html") == (tmp_path / "out/x.ipynb", tmp_path / "out/x.html")
    assert compare_paths(["a", "b"], "out/x.ipynb") == (tmp_path / "out/x.ipynb", tmp_path / "out/x.html")
    assert compare_paths(["a", "b"], "out/x") == (tmp_path / "out/x.ipynb", tmp_path / "out/x.html")


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["baseline"], "job compare needs two groups or more, got baseline (for one group: metta-exp job report "
         "baseline)"),
        (["baseline", "baseline"], "job compare needs two groups or more, got baseline (for one group: metta-exp "
         "job report baseline)"),
        (["baseline", "variantt"], "no group 'variantt'; closest: variant (see 'metta-exp job list')"),
        (["base*", "x*"], "no group matches 'x*'; newest: variant, baseline (see 'metta-exp job list')"),
    ],
)  # fmt: skip
def test_bad_compare_input_is_one_error_line_and_exit_2(
    two_groups: Path, args: list[str], error: str
) -> None:
    result = run_cli("job", "compare", *args)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"Error: {error}\n", "one line: no 'Running the comparison' before it"
    assert not Path("experiments").exists()


@pytest.mark.slow
def test_compare_writes_a_notebook_and_its_executed_report(two_groups: Path, tmp_path: Path) -> None:
    browser = tmp_path / "browser"
    browser.write_text(f'#!/bin/sh\necho "$1" > {tmp_path / "opened"}\n')
    browser.chmod(0o755)
    result = run_cli(
        "job", "compare", "base*", "variant", "--open", env={"BROWSER": str(browser)}, timeout=600
    )
    assert result.returncode == 0, result.stderr
    notebook = Path("experiments/notebooks/compare-baseline-vs-variant.ipynb").absolute()
    report = notebook.with_suffix(".html")
    assert result.stdout.splitlines()[0] == f"Notebook: {notebook}"
    assert result.stdout.splitlines()[2] == f"Report: {report}  (HTML, plots included: any browser opens it)"
    assert (tmp_path / "opened").read_text().strip() == report.as_uri()
    assert "<title>compare baseline, variant</title>" in report.read_text()
    seen = read_in_browser(report)  # read as a browser shows it
    assert seen["problems"] == [] and seen["errors"] == 0  # nothing fetched from outside, nothing on stderr
    assert [image[4] for image in seen["images"]] == ["data:image/png;base64,"]  # the curves, embedded
    assert seen["summary"] == 5  # the summary by group and run: a row per run
    text = seen["summaryText"]
    assert "By group and run" in text and "gpu_hours" in text
    assert re.search(r"variant\s+lr_mid\s+succeeded\s+20\.00", text), text


def test_a_group_reports_summary_has_each_runs_gpu_hours(two_groups: Path) -> None:
    path = groups.notebook("variant", "v.ipynb")
    summary = [c for c in nbformat.read(path, as_version=4).cells if c.id.startswith("summary")][0].source
    assert "GPU_HOURS = {'lr_mid': 0.03333333333333333, 'lr_high': 0.03333333333333333}" in summary
    assert "gpu_hours=GPU_HOURS)" in summary
    frame = pd.DataFrame()  # and summary_table puts them in a column (checked without a kernel)
    from metta_exp.metrics import summary_table

    frame = fetch_metrics(group="variant", progress=False)
    table = summary_table(
        frame, statuses={"lr_mid": "succeeded", "lr_high": "succeeded"}, gpu_hours={"lr_mid": 0.5}
    )
    assert table["gpu_hours"].tolist() == [0.5, 0.0]
    with pytest.raises(UsageError):
        groups.compare(["variant"])
