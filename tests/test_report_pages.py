"""The report as a reader sees it, in a real headless Chromium with no emoji font: runs of 20k and 2M
steps both readable (a log x axis), status badges the page draws itself, one left margin for text,
tables and plots, and the fetch told in a sentence instead of an unexplained table."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import nbformat
import pytest
from test_notebook import group, job
from test_report import chromium_or_skip

from metta_exp.notebook.cells import render_notebook, run_info
from metta_exp.notebook.report import execute_notebook, html_of
from metta_exp.status import JobStatus

pytestmark = pytest.mark.slow

# (run, steps, status): four short runs and one 100x longer, as a newcomer's group may hold
RUNS = [
    ("short_a", 20_000, JobStatus.SUCCEEDED),
    ("short_b", 20_000, JobStatus.SUCCEEDED),
    ("short_c", 20_000, JobStatus.FAILED),
    ("short_d", 20_000, JobStatus.PRUNED),
    ("long", 2_000_000, JobStatus.SUCCEEDED),
]
PRUNED = "pruned at step 10000: value 12.5 below the median (40.1) of 3 trials"


def write_run(run_dir: Path, steps: int, seed: int) -> None:
    """A rising reward curve of 50 points over ``steps``, as metta_exp.tracking writes it."""
    rnd = random.Random(seed)
    run_dir.mkdir(parents=True)
    lines = []
    for i in range(1, 51):
        step = steps * i // 50
        reward = 100 * (1 - math.exp(-3 * i / 50)) + rnd.gauss(0, 2)
        lines.append(
            json.dumps({"_step": step, "_time": 1e9 + i, "overview/reward": reward, "overview/sps": 900.0})
        )
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    (run_dir / "run.json").write_text(json.dumps({"attempt": 1, "wandb_mode": "disabled"}))


def probe(nb: Any, source: str) -> str:
    """Run ``source`` after the notebook's cells (it was executed with it) and return what it printed."""
    cell = nb.cells[-1]
    assert cell.source == source
    nb.cells.pop()
    return "".join(o.get("text", "") for o in cell.outputs)


def test_a_report_of_mixed_lengths_reads_well_in_a_browser_without_an_emoji_font(tmp_path: Path) -> None:
    jobs = []
    for i, (run, steps, status) in enumerate(RUNS):
        write_run(tmp_path / "runs" / run, steps, seed=i)
        reason = (
            PRUNED if status == JobStatus.PRUNED else "exit code 1" if status == JobStatus.FAILED else None
        )
        jobs.append(job(run, tmp_path / "runs" / run, i, status=status, reason=reason, exit_code=None))
    text = render_notebook(group(), [run_info(j) for j in jobs])
    nb = nbformat.reads(text, as_version=4)
    asked = "print([(ax.get_title(), ax.get_xscale()) for ax in fig.axes if ax.get_visible()])"
    nb.cells.append(nbformat.v4.new_code_cell(asked))
    execute_notebook(nb, tmp_path)
    assert probe(nb, asked).strip() == "[('overview/reward', 'log'), ('overview/sps', 'log')]"
    report = tmp_path / "report.html"
    report.write_text(html_of(nb, "mixed"))

    seen = read(report)
    assert seen["errors"] == 0
    # badges: drawn by the page (a coloured box around the word), no symbol that needs an emoji font
    assert [b["text"] for b in seen["badges"]] == ["succeeded", "succeeded", "failed", "pruned", "succeeded"]
    for badge in seen["badges"]:
        assert badge["background"] not in ("rgba(0, 0, 0, 0)", "transparent") and badge["width"] > 20
    assert not [ch for ch in seen["text"] if ord(ch) >= 0x2190 and ch not in "–…"], "symbols a font may lack"
    assert "pruned (pruned" not in seen["text"] and "pruned at step 10000: value 12.5" in seen["text"]
    # the fetch, in words: how many points of what, and no table of counts before the plots
    assert "Fetched 500 points of overview/sps and overview/reward for 5 runs" in seen["fetch"]
    assert seen["fetch_tables"] == 0
    # one left margin: the title's text, the runs' table, the plots and the summary table line up
    lefts = {round(x) for x in seen["lefts"]}
    assert len(lefts) == 1, seen["lefts"]


def read(path: Path) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium_or_skip(),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(path.as_uri(), wait_until="load")
            return page.evaluate(
                """() => {
                    const cells = [...document.querySelectorAll('.jp-Cell')];
                    const title = cells[0];
                    const fetch = cells.find(c => c.innerText.includes('Fetched'));
                    const left = e => e.getBoundingClientRect().left;
                    return {
                        text: document.body.innerText,
                        badges: [...title.querySelectorAll('td span')].map(s => ({
                            text: s.innerText,
                            background: getComputedStyle(s).backgroundColor,
                            width: s.getBoundingClientRect().width,
                        })),
                        fetch: fetch ? fetch.innerText : '',
                        fetch_tables: fetch ? fetch.querySelectorAll('table').length : -1,
                        lefts: [title.querySelector('p'), title.querySelector('table'),
                                document.querySelector('img'), cells.at(-1).querySelector('table')].map(left),
                        errors: document.querySelectorAll('.jp-RenderedText[data-mime-type*="error"]').length,
                    };
                }"""
            )
        finally:
            browser.close()
