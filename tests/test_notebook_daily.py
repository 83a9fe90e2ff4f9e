"""The notebook's small flaws, fixed: the summary as displayed (one number format, no column that says
nothing), an argument overridden on the command line shown once, and a notebook that passes the
project's own ``ruff check`` when written inside the repository."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
from conftest import ROOT

from metta_exp.metrics import style_summary, summary_table
from metta_exp.notebook.cells import RunInfo, render_notebook
from metta_exp.records import GroupRecord


def frame() -> pd.DataFrame:
    rows = []
    for run, scale in (("a", 1.0), ("b", 1000.0)):
        for step in (1000, 150000):
            rows.append(
                {"run": run, "step": step, "metric": "overview/reward", "value": 0.5 * scale * step / 1000}
            )
            rows.append({"run": run, "step": step, "metric": "overview/sps", "value": 12345.678 / scale})
    df = pd.DataFrame(rows)
    df["run"] = pd.Categorical(df["run"], categories=["a", "b"])
    df["time"] = 0.0
    return df


def displayed(styler: object) -> tuple[list[str], list[list[str]]]:
    """The header and the cells of a Styler's table, as a reader sees them."""
    html = styler.to_html()  # type: ignore[attr-defined]
    heads = re.findall(r'<th [^>]*class="col_heading[^"]*"[^>]*>(.*?)</th>', html)
    body = re.findall(r"<tr>\s*(.*?)</tr>", html, re.S)[1:]
    cells = [re.findall(r'<td [^>]*class="data[^"]*"[^>]*>(.*?)</td>', row) for row in body]
    text = [[re.sub(r"<[^>]+>", "", cell) for cell in row] for row in cells]  # a badge reads as its word
    return heads, [c for c in text if c]


def test_the_summary_shows_one_number_format_and_no_empty_or_repeated_column() -> None:
    summary = summary_table(frame(), statuses={"a": "succeeded", "b": "failed"})
    assert {"failed", "note"} <= set(summary.columns)  # the data keeps them
    heads, cells = displayed(style_summary(summary))
    assert heads == ["status", "final_reward", "max_reward", "mean_reward", "avg_sps", "steps"]
    assert cells == [
        ["succeeded", "75.00", "75.00", "37.75", "12,346", "150,000"],
        ["failed", "75,000", "75,000", "37,750", "12.35", "150,000"],
    ]

    df = frame()
    df.attrs["errors"] = {"b": "W&B said no"}
    heads, _ = displayed(style_summary(summary_table(df, statuses={"a": "succeeded", "b": "failed"})))
    assert heads[-1] == "note"  # a note that says something is shown


def group() -> GroupRecord:
    return GroupRecord(
        name="g",
        experiment="demo",
        backend="local",
        stored_config={
            "module": "m",
            "metrics_to_track": ["overview/sps", "overview/reward"],
            "extra_args": [],
        },
        created_at=1764250000.0,
        ended_at=1764253600.0,
        cancel_requested=False,
        lease_owner=None,
        lease_expires=None,
        runner_pid=None,
    )


def info(run: str, args: tuple[str, ...], position: int = 0) -> RunInfo:
    return RunInfo(
        run=run,
        position=position,
        status="succeeded",
        args=args,
        exit_code=0,
        reason=None,
        run_dir=f"/runs/{run}",
        wandb_url=None,
        wandb_mode=None,
        wandb_dir=None,
        wandb_path=None,
    )


def test_an_argument_overridden_on_the_command_line_is_shown_once_with_its_value() -> None:
    args = (
        "trainer.total_timesteps=150000",
        "trainer.learning_rate=0.01",
        "--verbose",
        "trainer.total_timesteps=4000",
    )
    nb = json.loads(render_notebook(group(), [info("lr_low", args)]))
    title = "".join(nb["cells"][0]["source"])
    row = next(line for line in title.splitlines() if "lr\\_low" in line)
    assert row.count("total\\_timesteps") == 1
    assert "total\\_timesteps\\=4000 trainer\\.learning\\_rate\\=0\\.01 \\-\\-verbose" in row


def test_the_notebook_passes_ruff_check_when_written_inside_the_repository() -> None:
    """Checked as a notebook in the repository (the project's ruff settings) without writing one there:
    ruff reads it from stdin under a name inside the repository."""
    runs = [info("lr_low", ("trainer.learning_rate=0.01",)), info("a-very-long-run-name-" + "x" * 40, (), 1)]
    target = ROOT / "notebook-lint.ipynb"  # not git-ignored, as a notebook a user keeps there would be
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "ruff"),
            "check",
            "--no-cache",
            "--stdin-filename",
            str(target),
            "-",
        ],
        cwd=ROOT,
        input=render_notebook(group(), runs),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == "All checks passed!\n"
