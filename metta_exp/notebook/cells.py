"""The analysis notebook of a group: Jinja2 templates (``templates/notebook/``) -> an nbformat notebook.

    write_group_notebook(group, jobs, Path("experiments/notebooks") / f"{group.name}.ipynb")

The cells, in order: title (markdown), setup, W&B links (markdown), fetch, plots, summary; a search
group's notebook then adds its study (:data:`SEARCH_CELLS`, from :mod:`metta_exp.notebook.search`): an
overview (markdown), the best trials, the objective by trial, the objective against each parameter, and
the runs' objective curves with the pruned ones marked. Values reach the cells only through the
template filters: ``py`` (a Python literal, checked by parsing it back; ``py_rows``: a table's rows, one a
line) in code cells, ``md`` / ``md_code`` / ``md_url`` (escaped text, a code span, a link target) and
``badge`` (a status, escaped, in an HTML badge the page draws itself: no emoji font needed) in markdown
cells. The environment refuses to print a value that did not go through one of them, so no run name,
argument or path, however odd, can break a cell or inject into it.

Rendering is pure (:func:`render_notebook`: same group and runs, same bytes: cell ids derive from the
group and the cell kind); :func:`run_info` reads each run's ``run.json`` and :func:`write_group_notebook`
writes the file atomically. jinja2 and nbformat are imported inside the functions.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import math
import os
import re
import shlex
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

from metta_exp.atomic import write_atomic
from metta_exp.config import DEFAULT_METRICS, REWARD, SPS, Experiment
from metta_exp.metrics.show import status_badge
from metta_exp.notebook.search import SEARCH_CELLS, search_context
from metta_exp.paths import RunDir, make_output_dir
from metta_exp.records import GroupRecord, JobRecord, SweepRecord, iso
from metta_exp.runs.wandb import job_wandb, wandb_link
from metta_exp.trials import TrialRecord

__all__ = [
    "CELLS",
    "SEARCH_CELLS",
    "RunInfo",
    "md_code",
    "md_escape",
    "md_url",
    "py_literal",
    "py_rows",
    "render_notebook",
    "run_info",
    "templates_dir",
    "write_group_notebook",
]

CELLS = ("title", "setup", "wandb", "fetch", "plots", "summary")
"""The cell templates, in notebook order: ``<kind>.md.j2`` is a markdown cell, ``<kind>.py.j2`` code."""
SAMPLES = 1000


@dataclass(frozen=True)
class RunInfo:
    """What the notebook shows of one run: its record plus what its ``run.json`` says about W&B."""

    run: str
    position: int
    status: str
    args: tuple[str, ...]
    exit_code: int | None
    reason: str | None
    run_dir: str  # absolute
    wandb_url: str | None
    wandb_mode: str | None  # "online", "offline", "disabled" or None (unknown)
    wandb_dir: str | None  # the offline run directory, for `wandb sync`
    wandb_path: str | None  # entity/project/id, for fetch_metrics when the local file is missing
    wandb_base_url: str | None = None  # the W&B server the job used (its WANDB_BASE_URL), if not the default


# ---------------------------------------------------------------------------------------------------
# Entry points


def write_group_notebook(
    group: GroupRecord,
    jobs: Sequence[JobRecord],
    path: str | os.PathLike[str],
    trials: Sequence[TrialRecord] = (),
    gpu_hours: Mapping[str, float] | None = None,
) -> Path:
    """Render the notebook of ``group`` and write it to ``path`` atomically (parents created).
    ``trials``: a search group's (``JobStore.trials``), for its study's cells; ``gpu_hours``: each run's
    (``JobStore.gpu_seconds`` / 3600), for the summary.

    Relative run directories are taken relative to the current directory. Returns ``path``.
    """
    text = render_notebook(group, [run_info(job) for job in jobs], trials=trials, gpu_hours=gpu_hours)
    make_output_dir(Path(path))  # experiments/notebooks, made here, stays out of git
    return write_atomic(path, text, parents=True)


def run_info(job: JobRecord) -> RunInfo:
    """A job's record plus its ``run.json`` (W&B URL, mode, offline dir). Reads one small file."""
    spec = job.spec
    wandb = job_wandb(job)  # of the current attempt: each attempt is its own W&B run
    return RunInfo(
        run=job.run,
        position=job.position,
        status=str(job.status),
        args=tuple(str(a) for a in spec.args),
        exit_code=job.exit_code,
        reason=job.reason,
        run_dir=os.path.abspath(job.run_dir or spec.run_dir or "."),
        wandb_url=wandb.url,
        wandb_mode=wandb.mode,
        wandb_dir=wandb.sync_dir,
        wandb_path=wandb.path,
        wandb_base_url=wandb.base_url,
    )


def _fetch_run(r: RunInfo) -> dict[str, str | None]:
    """What ``fetch_metrics`` needs of a run, as the fetch cell's literal."""
    out = {"run": r.run, "run_dir": r.run_dir, "wandb_path": r.wandb_path}
    if r.wandb_base_url and r.wandb_path:
        out["wandb_base_url"] = r.wandb_base_url
    return out


def render_notebook(
    group: GroupRecord,
    runs: Sequence[RunInfo],
    package_root: str | None = None,
    trials: Sequence[TrialRecord] = (),
    gpu_hours: Mapping[str, float] | None = None,
) -> str:
    """The notebook file's text (nbformat 4, validated). Pure: the same inputs give the same bytes."""
    import nbformat
    from nbformat import v4

    root = package_root or str(Path(__file__).resolve().parents[2])
    context = notebook_context(group, runs, root, trials, gpu_hours)
    cells = []
    for kind, cell_type, source in render_cells(context):
        make = v4.new_markdown_cell if cell_type == "markdown" else v4.new_code_cell
        cells.append(make(source, id=cell_id(group.name, kind)))
    nb = v4.new_notebook(
        cells=cells,
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
            "metta_exp": {"group": group.name, "experiment": group.experiment},
        },
    )
    nbformat.validate(nb)
    return nbformat.writes(nb) + "\n"


# ---------------------------------------------------------------------------------------------------
# Context and cells (pure)


def notebook_context(
    group: GroupRecord,
    runs: Sequence[RunInfo],
    package_root: str,
    trials: Sequence[TrialRecord] = (),
    gpu_hours: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Everything the templates see, as plain data (``search``: a search group's study, else None;
    ``gpu_hours``: each run's, None when not known or when no run held a GPU)."""
    runs = sorted(runs, key=lambda r: (r.position, r.run))
    exp = group.exp
    search = search_context(group, trials)
    metrics = [str(m) for m in exp.metrics_to_track or DEFAULT_METRICS]
    if search is not None and search["objective"] not in metrics:  # its curves are fetched too
        metrics.append(search["objective"])
    reward = REWARD if REWARD in metrics else next((m for m in metrics if "reward" in m), REWARD)
    sps = SPS if SPS in metrics else next((m for m in metrics if "sps" in m.lower()), SPS)
    first = [m for m in (reward, sps) if m in metrics]
    counts = Counter(r.status for r in runs)
    labels = run_labels(group.sweep, [r.run for r in runs])
    return {
        "experiment": group.experiment,
        "group": group.name,
        "overview": _overview(group, runs, counts),
        "command": _command(exp),
        "runs": [_run_context(r) | {"label": labels[r.run]} for r in runs],
        "labels": labels,
        "swept": group.sweep is not None,
        "fetch_runs": [_fetch_run(r) for r in runs],
        "statuses": {r.run: r.status for r in runs},
        "metrics": metrics,
        "plot_metrics": first + [m for m in metrics if m not in first],
        "reward": reward,
        "sps": sps,
        "samples": SAMPLES,
        "package_root": package_root,
        "any_wandb": any(r.wandb_url or r.wandb_mode == "offline" for r in runs),
        "search": search,
        # a column of zeros says nothing: GPU-hours only when some run held a GPU
        "gpu_hours": {r.run: float(gpu_hours.get(r.run, 0.0)) for r in runs}
        if gpu_hours and any(gpu_hours.values())
        else None,
    }


def run_labels(sweep: SweepRecord | None, runs: Sequence[str]) -> dict[str, str]:
    """Each run's label: a sweep point's swept values (``lr=0.001, ent=0.01``), else the run name.

    ``sweep`` is the group's sweep record (None for a group that is not a sweep).
    """
    if sweep is None or not sweep.keys:
        return {run: run for run in runs}
    several = len(set(sweep.base_runs.values())) > 1
    out = {}
    for run in runs:
        values = sweep.points.get(run)
        if values is None:
            out[run] = run
            continue
        text = ", ".join(f"{sweep.labels.get(k, k)}={values[k]}" for k in sweep.keys if k in values)
        base = sweep.base_runs.get(run)
        out[run] = f"{base}: {text}" if several and base is not None else (text or run)
    return out


def _overview(group: GroupRecord, runs: Sequence[RunInfo], counts: Counter[str]) -> str:
    tally = ", ".join(f"{n} {status}" for status, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    created = iso(group.created_at) or "?"
    return f"{len(runs)} runs on the {group.backend} backend, created {created}: {tally or 'none'}."


def _command(exp: Experiment) -> str:
    if exp.module:
        return f"python -m {exp.module}"
    return shell_join(exp.command or [])


def status_detail(r: RunInfo) -> str:
    """What follows a run's status badge: why it failed (``exit 1; RuntimeError: diverged``) or was
    pruned (its reason, which starts by saying "pruned": the badge says it once)."""
    if r.status == "pruned" and r.reason:
        return r.reason.removeprefix("pruned ")
    if r.status == "failed":
        exit_code = f"exit {r.exit_code}" if r.exit_code is not None else ""
        return "; ".join(x for x in (exit_code, r.reason or "") if x)
    return ""


def _run_context(r: RunInfo) -> dict[str, Any]:
    link = wandb_link(r.wandb_url, r.wandb_mode)
    sync_dir = r.wandb_dir
    sync = (
        shell_join(["wandb", "sync", sync_dir])
        if sync_dir
        else (
            shell_join(["wandb", "sync"])
            + " "
            + shell_quote(os.path.join(r.run_dir, "wandb"))
            + "/offline-run-*"
        )
    )
    return {
        **asdict(r),
        "status_detail": status_detail(r),
        "args_text": shell_join(effective_args(r.args)) if r.args else "–",
        "link": link,
        "offline": r.wandb_mode == "offline",
        "sync_command": sync,
        "metrics_path": str(RunDir.at(r.run_dir).metrics),
    }


def effective_args(args: Sequence[str]) -> list[str]:
    """``args`` as the trainer sees them: an override given again later (a command-line override of the
    experiment's ``args``) shown once, where it first appeared, with its last value."""
    out: list[str] = []
    where: dict[str, int] = {}
    for arg in args:
        key = arg.split("=", 1)[0].lstrip("+~") if "=" in arg and not arg.startswith("-") else None
        if key is not None and key in where:
            out[where[key]] = arg
            continue
        if key is not None:
            where[key] = len(out)
        out.append(arg)
    return out


def render_cells(context: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(kind, "markdown" or "code", source) of every cell, in :data:`CELLS` order, then a search's
    :data:`SEARCH_CELLS`."""
    env = _environment(str(templates_dir()))
    cells = []
    for kind in CELLS + (SEARCH_CELLS if context.get("search") else ()):
        for suffix, cell_type in ((".md.j2", "markdown"), (".py.j2", "code")):
            name = f"notebook/{kind}{suffix}"
            if (templates_dir() / name).is_file():
                source = env.get_template(name).render(**context)
                cells.append((kind, cell_type, source.strip("\n")))
                break
        else:
            raise FileNotFoundError(f"no template notebook/{kind}.md.j2 or .py.j2 in {templates_dir()}")
    return cells


def cell_id(group: str, kind: str) -> str:
    """A stable nbformat cell id: the kind and a hash of the group (ids allow ``[A-Za-z0-9_-]{1,64}``)."""
    digest = hashlib.sha256(group.encode("utf-8", "surrogatepass") + b"\0" + kind.encode()).hexdigest()
    return f"{kind}-{digest[:12]}"


def templates_dir() -> Path:
    """``metta_exp/templates`` in an installed wheel, else ``templates/`` at the root of a checkout."""
    here = Path(__file__).resolve().parents[1]  # metta_exp/
    for candidate in (here / "templates", here.parent / "templates"):
        if (candidate / "notebook").is_dir():
            return candidate
    raise FileNotFoundError(
        f"metta-exp templates not found in {here / 'templates'} or {here.parent / 'templates'}"
    )


# ---------------------------------------------------------------------------------------------------
# Jinja environment and filters


class Rendered(str):
    """Text a filter produced: the only kind of value the environment lets into a cell."""


def _finalize(value: Any) -> Any:
    if isinstance(value, Rendered):
        return value
    raise TypeError(
        f"template printed {value!r:.60} without a filter: use | py, | md, | md_code, | md_url or | badge"
    )


@functools.lru_cache(maxsize=4)
def _environment(directory: str) -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        finalize=_finalize,
    )
    env.filters.update(
        py=lambda v: Rendered(py_literal(v)),
        py_rows=lambda v: Rendered(py_rows(v)),
        md=lambda v: Rendered(md_escape(v)),
        md_code=lambda v: Rendered(md_code(v)),
        md_url=lambda v: Rendered(md_url(v)),
        badge=lambda v: Rendered(status_badge(v)),
    )
    return env


def py_literal(value: Any, indent: int = 0, width: int = 100) -> str:
    """``value`` (None, bool, int, finite float, str, list/tuple, dict with str keys) as Python source
    that evaluates to it: one line if it fits in ``width``, else one item per line. Checked by parsing
    it back with ``ast.literal_eval``; anything else is a TypeError or ValueError."""
    text = _literal(value, indent, width)
    if ast.literal_eval(text) != tuples_as_lists(value):
        raise ValueError(f"cannot write {value!r:.80} as a Python literal")
    return text


def py_rows(rows: Sequence[Any]) -> str:
    """A list as a Python literal with one item per line, however long (a table's rows), checked as
    :func:`py_literal` is."""
    text = "[\n" + "".join(f"    {_flat(row)},\n" for row in rows) + "]" if rows else "[]"
    if ast.literal_eval(text) != tuples_as_lists(list(rows)):
        raise ValueError(f"cannot write {rows!r:.80} as a Python literal")
    return text


def _literal(value: Any, indent: int, width: int) -> str:
    flat = _flat(value)
    if len(flat) + indent <= width or not isinstance(value, list | tuple | dict) or not value:
        return flat
    pad = " " * (indent + 4)
    if isinstance(value, dict):
        items = [f"{pad}{_flat(k)}: {_literal(v, indent + 4, width)}," for k, v in value.items()]
        return "{\n" + "\n".join(items) + "\n" + " " * indent + "}"
    items = [f"{pad}{_literal(v, indent + 4, width)}," for v in value]
    return "[\n" + "\n".join(items) + "\n" + " " * indent + "]"


def _flat(value: Any) -> str:
    if value is None or isinstance(value, bool | int | str):
        return repr(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} has no Python literal")
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_flat(v) for v in value) + "]"
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"dict keys must be strings: {value!r:.80}")
        return "{" + ", ".join(f"{_flat(k)}: {_flat(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no Python literal for {type(value).__name__} {value!r:.80}")


def tuples_as_lists(value: Any) -> Any:
    """``value`` with every tuple a list, at any depth: what its Python literal evaluates back to."""
    if isinstance(value, list | tuple):
        return [tuples_as_lists(v) for v in value]
    if isinstance(value, dict):
        return {k: tuples_as_lists(v) for k, v in value.items()}
    return value


_MD_PUNCT = frozenset("!\"#$%'()*+,-./:;=?@[\\]^_`{|}~")
_MD_ENTITY = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def md_escape(value: Any) -> str:
    """``value`` as markdown text that renders as itself: ASCII punctuation backslash-escaped (no
    emphasis, links, headings, table cells or ``$`` math), ``& < >`` as entities (no HTML), and
    control characters (newlines included) shown as escapes like ``\\n``."""
    out = []
    for ch in str(value):
        if ch in _MD_ENTITY:
            out.append(_MD_ENTITY[ch])
        elif ch in _MD_PUNCT:
            out.append("\\" + ch)
        elif not ch.isprintable():
            out.append(_visible(ch).replace("\\", "\\\\"))
        else:
            out.append(ch)
    return "".join(out)


def md_code(value: Any) -> str:
    """``value`` as an inline code span (fenced by more backticks than it holds; control characters
    shown as escapes so the span stays on one line)."""
    text = "".join(ch if ch.isprintable() else _visible(ch) for ch in str(value))
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith(("`", " ")) or text.endswith(("`", " ")) else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_url(value: Any) -> str:
    """An http(s) URL as a markdown link target: characters that could end or bend the link
    (spaces, parentheses, quotes, ``<>``, backslashes, non-ASCII, a ``%`` not starting an escape)
    percent-encoded; existing ``%XX`` escapes kept; ``&`` as ``&amp;`` (markdown decodes entities in
    link targets, so a URL holding ``&amp;`` stays itself)."""
    url = str(value)
    if urlparse(url).scheme not in ("http", "https"):
        raise ValueError(f"not an http(s) URL: {url!r:.80}")
    encoded = quote(re.sub(r"%(?![0-9A-Fa-f]{2})", "%25", url), safe=":/?#@!$&*+,;=%-._~")
    return encoded.replace("&", "&amp;")


def _visible(ch: str) -> str:
    return ch.encode("unicode_escape").decode("ascii")


def shell_quote(text: str) -> str:
    """``text`` quoted for a POSIX shell; control characters as bash ``$'...'`` escapes."""
    if all(ch.isprintable() for ch in text):
        return shlex.quote(text)
    body = "".join(
        ch if ch.isprintable() and ch not in "'\\" else ("\\" + ch if ch in "'\\" else _visible(ch))
        for ch in text
    )
    return f"$'{body}'"


def shell_join(argv: Iterable[str]) -> str:
    return " ".join(shell_quote(str(a)) for a in argv)
