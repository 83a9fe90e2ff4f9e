"""Retake ``docs/compare-report.png``: two demo groups (the demo, and a shorter one with two of its runs)
run for real in a temporary directory, ``metta-exp job compare`` of them, and the report's page as a
headless Chromium shows it (the whole page).

    uv run python bench/render_compare_report.py [--out docs/compare-report.png] [--keep DIR] [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GROUPS = {
    "demo-baseline": [],
    "demo-short": ["trainer.total_timesteps=60000", "runs=[lr_mid,lr_high]"],
}


def cli(*args: str, cwd: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "metta_exp", *args], cwd=cwd, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"metta-exp {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def screenshot(page_path: Path, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(page_path.as_uri(), wait_until="load")
            page.screenshot(path=str(out), full_page=True)
        finally:
            browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "compare-report.png")
    parser.add_argument("--keep", type=Path, help="run in this directory and keep it")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: tiny groups, the picture into a temporary file"
    )
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="compare-report-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.quick:
        args.out = work / "compare-report.png"
    os.environ.pop("METTA_EXP_STATE_DIR", None)
    start = time.monotonic()
    try:
        for group, overrides in GROUPS.items():
            tiny = ["trainer.total_timesteps=2000"] if args.quick else []
            cli("+experiment=demo", f"group={group}", "generate_notebook=false", *overrides, *tiny, cwd=work)
        printed = cli("job", "compare", *GROUPS, cwd=work)
        report = Path(printed.splitlines()[2].split()[1])
        screenshot(report, args.out.absolute())
        print(printed, end="")
        print(f"Screenshot: {args.out} ({time.monotonic() - start:.0f} s)")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
