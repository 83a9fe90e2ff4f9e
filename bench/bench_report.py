"""How long after its last job ends the demo group's HTML report is there, and how big it is.

    uv run python bench/bench_report.py [--timesteps 150000] [--screenshot docs/demo-report.png] [--quick]

Runs the quickstart's demo group for real (``metta-exp +experiment=demo``, three CartPole runs) in a
temporary directory, then reads the store: the seconds from the last job's end (its status event) to
the ``report`` event (the notebook executed in a fresh kernel and exported), and the report's size.
With ``--screenshot``, it also loads the report in headless Chromium (``/usr/bin/chromium``, driven by
Playwright) and saves a PNG of its top part, as shown in the README.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from metta_exp.store import JobStore


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--timesteps", type=int, default=150000, help="trainer.total_timesteps (the demo's)")
    parser.add_argument("--screenshot", type=Path, help="save a PNG of the report here")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: tiny sizes, once (the test suite runs it)"
    )
    args = parser.parse_args()
    if args.quick:
        args.timesteps = 1000
    with tempfile.TemporaryDirectory(prefix="bench report ") as tmp:
        work = Path(tmp)
        env = dict(os.environ, METTA_EXP_STATE_DIR=str(work / "job_state"), WANDB_MODE="disabled")
        cmd = [sys.executable, "-m", "metta_exp", "+experiment=demo", "group=demo-report"]
        cmd.append(f"trainer.total_timesteps={args.timesteps}")
        done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"the demo group failed:\n{done.stdout}{done.stderr}")
        with JobStore.open(work / "job_state") as store:
            events = store.events("demo-report")
        last_job_end = max(e.at for e in events if e.kind == "status" and e.new_status == "succeeded")
        report = next(e for e in events if e.kind == "report")
        notebook_event = next(e for e in events if e.kind == "notebook")
        path = Path(report.detail or "")
        size = path.stat().st_size
        print(f"last job ended -> notebook written: {notebook_event.at - last_job_end:.2f} s")
        print(f"last job ended -> HTML report written: {report.at - last_job_end:.2f} s")
        print(f"report size: {size / 1024:.0f} KiB ({size} bytes), {path.name}")
        if args.screenshot:
            screenshot(path, args.screenshot)
            print(f"screenshot: {args.screenshot} ({args.screenshot.stat().st_size / 1024:.0f} KiB)")


def screenshot(report: Path, target: Path) -> None:
    from playwright.sync_api import sync_playwright

    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    flags += ["--disable-component-update", "--no-first-run"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=flags)
        page = browser.new_page(viewport={"width": 1000, "height": 1200}, device_scale_factor=1)
        page.goto(report.as_uri(), wait_until="load")
        target.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(target), full_page=False)
        browser.close()
    from PIL import Image  # full colour: a palette of 128 gave two runs' lines one colour

    Image.open(target).convert("RGB").save(target, optimize=True)


if __name__ == "__main__":
    main()
