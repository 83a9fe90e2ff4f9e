"""The HTML report: written beside the notebook when a real demo group ends, rewritten by ``metta-exp job
report``, and read in a real headless Chromium (Debian's, driven by Playwright): no console errors, no
outside request, plots are images of non-zero size, the summary table has a row per run."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
RUNS = ["lr_low", "lr_mid", "lr_high"]


def chromium_or_skip() -> str:
    """Chromium's path. Without it a test skips on a developer machine but fails in CI (``CI=true``),
    which installs it (``.ci/run``)."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"chromium is not installed ({CHROMIUM}); .ci/run installs it with apt-get")
    pytest.skip("chromium is not installed: apt-get install chromium (CI=true makes this a failure)")


def read_in_browser(path: Path, screenshot: Path | None = None) -> dict[str, Any]:
    """Load ``path`` in headless Chromium; what a reader sees and what went wrong on the way."""
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium_or_skip(),
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.on(
                "console",
                lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None,
            )
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on(
                "request",
                lambda r: (
                    None if r.url.startswith(("file:", "data:")) else problems.append(f"fetched {r.url}")
                ),
            )
            page.goto(path.as_uri(), wait_until="load")
            seen = page.evaluate(
                """() => ({
                    title: document.title,
                    images: [...document.images].map(i => [i.naturalWidth, i.naturalHeight,
                        i.getBoundingClientRect().width, i.getBoundingClientRect().height, i.src.slice(0, 22)]),
                    summary: [...document.querySelectorAll('.jp-Cell')].at(-1)
                        .querySelectorAll('table tbody tr').length,
                    summaryText: [...document.querySelectorAll('.jp-Cell')].at(-1).innerText,
                    errors: document.querySelectorAll('[data-mime-type="application/vnd.jupyter.stderr"]').length,
                })"""
            )
            if screenshot is not None:
                page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return {**seen, "problems": problems}


def test_a_demo_group_gets_a_report_anyone_can_open(state_dir: Path, tmp_path: Path) -> None:
    result = run_cli("+experiment=demo", "group=report-demo", "trainer.total_timesteps=4000")
    assert result.returncode == 0, result.stdout + result.stderr
    notebook = Path("experiments/notebooks/report-demo.ipynb").absolute()
    report = notebook.with_suffix(".html")
    assert f"Notebook: {notebook}\n" in result.stdout
    assert f"Report: {report}  (HTML, plots included: any browser opens it)\n" in result.stdout
    assert "metta-exp job report report-demo --open\n" in result.stdout
    assert f"--with jupyter jupyter lab {shlex.quote(str(notebook))}\n" in result.stdout

    seen = read_in_browser(report)
    assert seen["problems"] == []
    assert seen["title"] == "report-demo"
    assert seen["images"], "the plots must be images"
    for width, height, shown_w, shown_h, src in seen["images"]:
        assert width > 0 and height > 0 and shown_w > 0 and shown_h > 0
        assert src.startswith("data:image/png;base64")  # embedded: the page stands alone
    assert seen["summary"] == len(RUNS)
    for run in RUNS:
        assert run in seen["summaryText"]
    assert seen["errors"] == 0  # no stderr block (a frozen progress bar, a warning) in the report

    # moved elsewhere, it still opens: nothing refers to files beside it
    moved = tmp_path / "sent by mail.html"
    shutil.copy(report, moved)
    assert read_in_browser(moved)["problems"] == []


def test_job_report_rewrites_it_where_asked_and_opens_it(state_dir: Path, tmp_path: Path) -> None:
    result = run_cli(
        "+experiment=demo", "group=rep", "trainer.total_timesteps=4000", "generate_notebook=false"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Report:" not in result.stdout and not Path("experiments").exists()

    opened = tmp_path / "opened.txt"
    browser = tmp_path / "fake browser"
    browser.write_text(f"#!{sys.executable}\nimport sys\nopen({str(opened)!r}, 'w').write(sys.argv[1])\n")
    browser.chmod(browser.stat().st_mode | stat.S_IEXEC)
    target = tmp_path / "out dir" / "rep's report.html"
    result = run_cli("job", "report", "rep", "-o", str(target), "--open", env={"BROWSER": str(browser)})
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"Report: {target}\n"
    assert opened.read_text() == target.as_uri()
    seen = read_in_browser(target)
    assert seen["problems"] == [] and seen["summary"] == len(RUNS)

    result = run_cli("job", "report", "nope")
    assert result.returncode == 2 and result.stderr.startswith("Error: no group 'nope'")


FLAKY = """
import os, sys
from metta_exp import tracking
run_name = os.environ["METTA_EXP_RUN"]
if run_name == "broken":
    sys.exit("diverged before logging anything")
with tracking.init(total_steps=3) as run:
    for step in (1, 2, 3):
        run.log({"overview/reward": step * 1.5, "overview/sps": 100.0 + step}, step=step)
"""


def test_a_group_with_a_failed_run_still_gets_a_clean_report(state_dir: Path) -> None:
    conf = state_dir.parent / "conf"
    (conf / "experiment").mkdir(parents=True)
    (conf / "experiment" / "flaky.yaml").write_text(
        "# @package _global_\n"
        f"command: [{json.dumps(sys.executable)}, -c, {json.dumps(FLAKY)}]\n"
        "runs: [good, broken]\ngpus: 0\nremote: false\n"
    )
    result = run_cli("--config-dir", str(conf), "+experiment=flaky", "group=flaky")
    assert result.returncode == 1, result.stdout + result.stderr
    report = Path("experiments/notebooks/flaky.html").absolute()
    assert f"Report: {report}" in result.stdout
    seen = read_in_browser(report)
    assert seen["problems"] == [] and seen["summary"] == 2
    assert "failed" in seen["summaryText"] and seen["images"]


LEAK_PROBE = """
import json, os, sys
from pathlib import Path
from metta_exp.backends.procs import read_stat
from metta_exp.notebook.report import write_report

notebook = json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
    {"cell_type": "code", "id": "c1", "metadata": {}, "execution_count": None, "outputs": [],
     "source": "print('ran in', __import__('os').getpid())"}]})
write_report(notebook, Path(sys.argv[1]))
stats = [read_stat(int(p)) for p in os.listdir("/proc") if p.isdigit()]
print(json.dumps([s.pid for s in stats if s is not None and s.ppid == os.getpid()]))
"""


def test_a_report_leaves_no_kernel_behind(tmp_path: Path) -> None:
    """Executing a report's notebook starts a kernel (a process and a connection file): it is shut down
    and its file removed before ``write_report`` returns, in a command that ends at once (``job report``)
    as in a runner that writes many reports."""
    temp = tmp_path / "temp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    target = tmp_path / "report.html"
    result = subprocess.run(
        [sys.executable, "-c", LEAK_PROBE, str(target)], env=env, capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [], "the kernel still runs after the report was written"
    assert "ran in" in target.read_text()
    assert sorted(p.name for p in temp.iterdir()) == [], "the kernel's connection file is left behind"
    runtime = tmp_path / "runtime"
    assert not runtime.exists() or list(runtime.iterdir()) == []


def test_a_reports_kernel_listens_on_sockets_of_its_own_not_tcp_ports(tmp_path: Path) -> None:
    """Five TCP ports picked by the client and bound by the kernel a moment later could be taken in
    between by any other process (it happened: "Address already in use", then "Kernel didn't respond in
    60 seconds"). The kernel listens on Unix sockets in a private directory, removed afterwards."""
    import nbformat

    from metta_exp.notebook.report import execute_notebook

    probe = "from ipykernel.kernelapp import IPKernelApp\napp = IPKernelApp.instance()\nprint(app.transport, app.ip)"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(probe)])
    execute_notebook(nb, tmp_path)
    transport, where = "".join(o.text for o in nb.cells[0].outputs if o.output_type == "stream").split()
    assert transport == "ipc"
    assert Path(where).name == "k" and not Path(where).parent.exists(), "its socket directory is removed"
