"""Render the search cells of a search group's notebook to a PNG (the README's docs/search-notebook.png).

    .venv/bin/python bench/render_search_notebook.py [-o docs/search-notebook.png] [--trials 16] [--quick]

Builds a made-up study in a temporary store as the runner records one (the test suite's
``tests/search_records.py``: 16 trials, some pruned a third of the way, one failed, one running, each
run's reward curve in its metrics file), writes the group's notebook with
:func:`metta_exp.notebook.cells.write_group_notebook`, converts it to HTML with ``jupyter nbconvert --execute
--no-input`` and takes a screenshot of it with headless Chromium (``/usr/bin/chromium``), cut from the
"Search" heading to the end.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from search_records import make_search_group, synthetic_study, write_curve  # noqa: E402

from metta_exp.notebook.cells import write_group_notebook  # noqa: E402
from metta_exp.store import JobStore  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-o", "--output", default=str(ROOT / "docs" / "search-notebook.png"))
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--width", type=int, default=1100)
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 4 trials, the PNG into a temporary file"
    )
    args = parser.parse_args()

    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.quick:
            args.trials, args.output = 4, str(work / "search-notebook.png")
        study, curves = synthetic_study(args.trials)
        with JobStore.open(work / "state") as store:
            make_search_group(store, trials=study)
            jobs = store.jobs("search")
            for job in jobs:
                write_curve(Path(job.run_dir), curves[int(job.run[1:4])])
            notebook = write_group_notebook(
                store.group("search"), jobs, work / "search.ipynb", store.trials("search")
            )
        html = search_cells_html(notebook)
        shot = work / "page.png"
        subprocess.run(
            [
                "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--screenshot={shot}",
                f"--window-size={args.width},4000",
                str(html),
            ],
            check=True,
            capture_output=True,
        )
        page = Image.open(shot).convert("RGB")
        inked = [
            y for y in range(page.height) if page.crop((0, y, page.width, y + 1)).getextrema()[0][0] < 250
        ]
        cut = page.crop((0, max(0, inked[0] - 20), args.width, inked[-1] + 20))
        cut.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(args.output, optimize=True)
    print(f"{args.output}: {cut.size[0]}x{cut.size[1]}")
    return 0


def search_cells_html(notebook: Path) -> Path:
    """Execute the notebook with nbclient (MPLBACKEND=Agg, as the tests do: the notebook picks the inline
    backend itself), keep only the search cells' outputs and write them as HTML beside it."""
    import nbformat
    from nbconvert import HTMLExporter

    from metta_exp.notebook.report import execute_notebook

    os.environ["MPLBACKEND"] = "Agg"
    nb = nbformat.read(notebook, as_version=4)
    execute_notebook(nb, notebook.parent)  # the reports' own kernel (on sockets of its own)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    if errors:
        raise RuntimeError(f"the notebook failed: {errors[0].ename}: {errors[0].evalue}")
    nb.cells = [c for c in nb.cells if c.get("id", "").startswith("search")]
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nb)
    target = notebook.with_suffix(".html")
    target.write_text(body)
    return target


if __name__ == "__main__":
    raise SystemExit(main())
