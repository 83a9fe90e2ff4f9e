"""``job compare``: one notebook, and its executed HTML report, with several groups side by side.

The cells (templates in ``templates/compare/``, rendered through the notebook's Jinja environment, so
every value goes through its escaping filters): a title with each group (experiment, when, runs by
status, GPU-hours, command) and every run's arguments; the setup; each group's links (W&B, or where its
local metrics are); one ``fetch_metrics`` of every run of every group (a frame with a ``group`` column);
the curves, coloured by group (each run thin, its last point marked, so shorter runs stay visible; the
group's median over its runs thick), one legend entry per group; the summary by group; the summary by
group and run. Rendering is pure (:func:`render_compare`); the same inputs give the same bytes.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metta_exp.config import REWARD, SPS
from metta_exp.records import GroupRecord, JobRecord, iso

__all__ = [
    "COMPARE_CELLS",
    "CompareGroup",
    "compare_context",
    "compare_paths",
    "render_compare",
    "write_compare",
]

COMPARE_CELLS = ("title", "setup", "links", "fetch", "plots", "groups", "runs")
"""The cell templates, in notebook order: ``compare/<kind>.md.j2`` (markdown) or ``.py.j2`` (code)."""


@dataclass(frozen=True)
class CompareGroup:
    """One group of a comparison: its record, its jobs, and each run's GPU-hours."""

    group: GroupRecord
    jobs: Sequence[JobRecord]
    gpu_hours: Mapping[str, float]


def compare_paths(names: Sequence[str], output: str | os.PathLike[str] | None = None) -> tuple[Path, Path]:
    """The notebook and report paths: ``output`` (``X.ipynb``, ``X.html`` or ``X``: both, ``X.ipynb`` and
    ``X.html``), else ``experiments/notebooks/compare-<first>-vs-<second>[-and-N-more].ipynb`` here."""
    if output is not None:
        base = Path(output).absolute()
        if base.suffix in (".ipynb", ".html"):
            base = base.with_suffix("")
        return base.with_name(base.name + ".ipynb"), base.with_name(base.name + ".html")
    more = f"-and-{len(names) - 2}-more" if len(names) > 2 else ""
    stem = f"compare-{names[0]}-vs-{names[1]}{more}"
    base = Path.cwd() / "experiments" / "notebooks" / stem
    return base.with_name(stem + ".ipynb"), base.with_name(stem + ".html")


def write_compare(
    groups: Sequence[CompareGroup], notebook: Path, report: Path | None
) -> tuple[Path, Path | None]:
    """Write the comparison's notebook (atomically) and, unless ``report`` is None, run it in a kernel and
    write its HTML report; the paths written."""
    from metta_exp.atomic import write_atomic
    from metta_exp.notebook.cells import run_info

    text = render_compare([(g.group, [run_info(j) for j in g.jobs], g.gpu_hours) for g in groups])
    write_atomic(notebook, text, parents=True)
    if report is None:
        return notebook, None
    from metta_exp.notebook.report import write_report

    title = "compare " + ", ".join(g.group.name for g in groups)
    return notebook, write_report(text, report, notebook.parent, title=title)


def render_compare(
    groups: Sequence[tuple[GroupRecord, Sequence[Any], Mapping[str, float]]], package_root: str | None = None
) -> str:
    """The notebook's text (nbformat 4, validated) for ``groups``: each a record, its runs
    (``RunInfo``s, from :func:`~metta_exp.notebook.cells.run_info`) and each run's GPU-hours."""
    import nbformat
    from nbformat import v4

    from metta_exp.notebook.cells import _environment, templates_dir

    root = package_root or str(Path(__file__).resolve().parents[2])
    context = compare_context(groups, root)
    env = _environment(str(templates_dir()))
    key = "\0".join(g.name for g, _, _ in groups)
    cells = []
    for kind in COMPARE_CELLS:
        markdown = (templates_dir() / "compare" / f"{kind}.md.j2").is_file()
        source = (
            env.get_template(f"compare/{kind}.{'md' if markdown else 'py'}.j2").render(**context).strip("\n")
        )
        make = v4.new_markdown_cell if markdown else v4.new_code_cell
        cells.append(make(source, id=f"{kind}-{hashlib.sha256((key + kind).encode()).hexdigest()[:12]}"))
    nb = v4.new_notebook(
        cells=cells,
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
            "metta_exp": {"compare": [g.name for g, _, _ in groups]},
        },
    )
    nbformat.validate(nb)
    return nbformat.writes(nb) + "\n"


def compare_context(
    groups: Sequence[tuple[GroupRecord, Sequence[Any], Mapping[str, float]]], package_root: str
) -> dict[str, Any]:
    """Everything the templates see, as plain data: each group as the group notebook sees it, and what
    the cells over all of them need (their runs tagged with their group, metrics, statuses, GPU-hours)."""
    from metta_exp.notebook.cells import notebook_context

    each = []
    for record, runs, hours in groups:
        context = notebook_context(record, runs, package_root, (), hours)
        counts = Counter(r["status"] for r in context["runs"])
        each.append(
            context
            | {
                "created": iso(record.created_at) or "?",
                "tally": ", ".join(f"{n} {s}" for s, n in counts.most_common()) or "no runs",
                "total_gpu_hours": f"{sum(hours.values()):.2f}",
            }
        )
    metrics = list(dict.fromkeys(m for c in each for m in c["metrics"]))
    reward = REWARD if REWARD in metrics else next((m for m in metrics if "reward" in m), REWARD)
    sps = SPS if SPS in metrics else next((m for m in metrics if "sps" in m.lower()), SPS)
    first = [m for m in (reward, sps) if m in metrics]
    return {
        "names": [c["group"] for c in each],
        "groups": each,
        "fetch_runs": [{"group": c["group"]} | run for c in each for run in c["fetch_runs"]],
        "statuses": {c["group"]: c["statuses"] for c in each},
        # every run's, zeros included: side by side, a group that held no GPU reads 0, not blank (the
        # group notebook leaves GPU-hours out when no run held one)
        "gpu_hours": {
            record.name: {r.run: float(hours.get(r.run, 0.0)) for r in runs} for record, runs, hours in groups
        },
        "metrics": metrics,
        "plot_metrics": first + [m for m in metrics if m not in first],
        "reward": reward,
        "sps": sps,
        "samples": each[0]["samples"] if each else 1000,
        "package_root": package_root,
        "any_wandb": any(c["any_wandb"] for c in each),
    }
