"""``fetch_metrics``: a group's metrics as one long pandas DataFrame, from local metrics files or W&B.

    from metta_exp.metrics import fetch_metrics, summary_table

    df = fetch_metrics(jobs, ["overview/reward", "overview/sps"], samples=1000)
    summary_table(df, statuses={job.run: job.status for job in jobs})

The frame has one row per (run, metric, point) (and for several groups, a ``group`` column first:
:mod:`metta_exp.metrics.groups`): ``run`` (an ordered Categorical in the order the runs
were given, failed fetches included), ``step`` (int), ``metric`` (an ordered Categorical in the order
asked for), ``value`` (float, NaN where the run logged NaN), ``time`` (float: wall-clock seconds since
the run's first point of its latest attempt; for W&B, since the first point fetched, from ``_runtime``).
``df.attrs`` holds ``errors`` ({run: why it could not be fetched}), ``sources`` ({run: "local PATH" or
"wandb PATH"}) and ``x_axis``.

Where each run's data comes from:

- its local metrics file ``<run_dir>/metrics.jsonl`` (written by :mod:`metta_exp.tracking`) when it
  exists: read exactly, only the latest attempt's lines, downsampled to ``samples`` points per metric
  (evenly spaced, first and last kept). Lines are located by one newline scan and only the chosen
  ones are parsed, so 100 runs of 100,000 lines load in about two seconds
  (:mod:`metta_exp.metrics.local`).
- otherwise W&B, when the run was logged online: ``wandb.Api(timeout=...)``, one
  ``run.history(keys=[KEY, <other axis>])`` request per metric (a multi-key request drops rows missing
  any key; ``_runtime``/``_step`` are in every row), the last value taken from ``run.summary``, with a
  back-off on HTTP 429 (:mod:`metta_exp.metrics.wandb`).

Runs are fetched in parallel threads with a progress bar. A run that cannot be fetched is reported in
one line on stderr (``fetch_metrics: run 'NAME' not fetched: WHY``) and left out of the rows; the
others carry on.

This module imports only the standard library at import time; pandas, numpy and wandb are imported
inside the functions that need them.
"""

from __future__ import annotations

import functools
import os
import re
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metta_exp.config import DEFAULT_METRICS, REWARD, SPS
from metta_exp.metrics.local import Points, read_metrics_file
from metta_exp.metrics.logged import by_machine, from_log
from metta_exp.metrics.show import fetched_text, status_badge
from metta_exp.metrics.source import RunSource
from metta_exp.metrics.wandb import X_AXES, WandbApis, fetch_wandb_run
from metta_exp.paths import RUNS_DIR, RunDir
from metta_exp.records import GroupRecord, JobRecord
from metta_exp.runs.state import read_run_state
from metta_exp.runs.wandb import attempt_mode, job_wandb, run_wandb_path, wandb_mode, wandb_path_from_url

if TYPE_CHECKING:
    import pandas as pd
    from pandas.io.formats.style import Styler

__all__ = [
    "DEFAULT_METRICS",
    "RunSource",
    "fetch_metrics",
    "fetched_text",
    "read_metrics_file",
    "run_source",
    "run_wandb_path",
    "status_badge",
    "style_summary",
    "summary_table",
    "tracked_metrics",
    "wandb_path_from_url",
]

FAILED_STATUSES = frozenset({"failed", "cancelled", "skipped"})


def tracked_metrics(group: GroupRecord) -> list[str]:
    """The metrics ``group`` tracks: its ``metrics_to_track`` (default: reward and SPS), then a search's
    objective when it is not one of them."""
    metrics = [str(m) for m in group.exp.metrics_to_track or DEFAULT_METRICS]
    if group.search_space is not None and group.exp.search.objective not in metrics:
        metrics.append(group.exp.search.objective)
    return metrics


# ---------------------------------------------------------------------------------------------------
# Naming runs


def run_source(
    item: Any, *, group: str | None = None, state_dir: str | os.PathLike[str] | None = None
) -> RunSource:
    """Where the metrics of ``item`` are. ``item`` is one of:

    - a :class:`~metta_exp.records.JobRecord` (``run``, ``run_dir``, ``spec`` and
      ``wandb_url``): its run directory, and its W&B run from ``wandb_url`` (what the job reported) or
      from the spec's ``WANDB_ENTITY``/``WANDB_PROJECT`` and its latest attempt's run id (unless
      ``WANDB_MODE`` is offline/disabled), on the W&B server of the spec's ``WANDB_BASE_URL``;
    - a mapping with ``run`` (or ``name``) and optional ``run_dir``, ``wandb_path``, ``wandb_url``,
      ``wandb_base_url``, ``attempts``, ``spec`` (a JobRecord as a dict, or the literal the notebook
      passes);
    - a path (``Path`` or a string naming an existing directory): a run directory; the name is
      ``run.json``'s ``run`` or the directory's name;
    - a W&B URL (``https://wandb.ai/ENTITY/PROJECT/runs/ID``) or run path ``ENTITY/PROJECT/ID``;
    - a plain run name: the directory ``<state_dir>/runs/<group>/<name>`` (``state_dir`` defaults to
      the store metta-exp finds: ``$METTA_EXP_STATE_DIR``, else the nearest ``job_state``); without
      ``group``, the one group holding that run.
    """
    if isinstance(item, Mapping):
        return _from_mapping(item)
    if isinstance(item, JobRecord):
        return _from_job(item)
    if isinstance(item, os.PathLike) or (isinstance(item, str) and Path(item).is_dir()):
        directory = Path(os.fspath(item)).absolute()
        state = read_run_state(directory, None)
        return RunSource(name=(state.run if state else None) or directory.name, run_dir=directory)
    if not isinstance(item, str) or not item:
        raise TypeError(f"a run must be a JobRecord, a mapping, a path or a name, got {item!r}")
    wandb_path = wandb_path_from_url(item) if "://" in item else None
    if wandb_path is None and item.count("/") == 2 and "://" not in item:
        wandb_path = item
    if wandb_path is not None:
        return RunSource(name=wandb_path.rsplit("/", 1)[-1], wandb_path=wandb_path)
    if "://" in item or "/" in item:
        return RunSource(name=item, problem=f"no run directory {item} and not a W&B run path")
    return _by_name(item, group, state_dir)


def _from_mapping(data: Mapping[str, Any]) -> RunSource:
    name = data.get("run", data.get("name"))
    if not isinstance(name, str) or not name:
        raise TypeError(f"a run mapping needs a 'run' name, got {dict(data)!r:.200}")
    spec = data.get("spec") or {}
    env = spec.get("env") or {}
    run_dir = data.get("run_dir") or spec.get("run_dir")
    mode = (data.get("wandb_mode") or "").lower() or (wandb_mode(env) if env else None)
    if "wandb_path" in data:
        wandb_path = data["wandb_path"] or None
    else:
        wandb_path = run_wandb_path(
            data.get("wandb_url"), env, spec.get("wandb_run_id"), data.get("attempts")
        )
    return RunSource(
        name=name,
        run_dir=Path(run_dir).absolute() if run_dir else None,
        wandb_path=wandb_path,
        wandb_mode=mode,
        wandb_base_url=data.get("wandb_base_url") or env.get("WANDB_BASE_URL") or None,
    )


def _from_job(job: JobRecord) -> RunSource:
    wandb = job_wandb(job)
    run_dir = job.run_dir or job.spec.run_dir
    return RunSource(
        log=Path(job.log_path) if job.log_path else None,
        name=job.run,
        run_dir=Path(run_dir).absolute() if run_dir else None,
        wandb_path=wandb.path,
        wandb_mode=wandb.mode,
        wandb_base_url=wandb.base_url,
        attempt=job.attempts,
    )


def _by_name(name: str, group: str | None, state_dir: str | os.PathLike[str] | None) -> RunSource:
    from metta_exp.paths import default_state_dir

    root = Path(state_dir).absolute() if state_dir else default_state_dir()
    if group is not None:
        return RunSource(name=name, run_dir=RunDir.of(root, group, name).path)
    found = sorted(p for p in (root / RUNS_DIR).glob(f"*/{glob_escape(name)}") if p.is_dir())
    if len(found) == 1:
        return RunSource(name=name, run_dir=found[0])
    if not found:
        return RunSource(name=name, problem=f"no run named {name!r} under {root / RUNS_DIR}")
    groups = ", ".join(p.parent.name for p in found)
    return RunSource(name=name, problem=f"run {name!r} is in several groups ({groups}): pass group=")


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


# ---------------------------------------------------------------------------------------------------
# fetch_metrics


def fetch_metrics(
    runs: Iterable[Any] | None = None,
    metrics: str | Sequence[str] = DEFAULT_METRICS,
    samples: int | None = 1000,
    x_axis: str = "step",
    *,
    group: str | Sequence[str] | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    workers: int = 8,
    progress: bool = True,
    wandb_timeout: float = 10.0,
) -> pd.DataFrame:
    """The metrics of ``runs`` as one long DataFrame (see the module docstring for columns and sources).

    ``runs``: JobRecords, mappings, run directories, W&B paths or run names (see :func:`run_source`;
    ``group`` and ``state_dir`` are for names); None: every run of ``group``, from the store.
    ``group``: a group's name, or several (a list): runs of several groups (also JobRecords or mappings
    with a ``group`` of several) give a frame with a ``group`` column (:mod:`metta_exp.metrics.groups`).
    ``samples``: points per run per metric (None: all). ``x_axis``: ``"step"`` or ``"time"``, the axis
    W&B samples along; both columns are always returned. Raises ValueError for bad arguments or two runs
    of a group with the same name; a run that cannot be fetched is reported on stderr and recorded in
    ``df.attrs["errors"]``, never raised.
    """
    from metta_exp.metrics.groups import combine, runs_by_group

    fetch = functools.partial(
        _fetch,
        metrics=metrics,
        samples=samples,
        x_axis=x_axis,
        state_dir=state_dir,
        workers=workers,
        progress=progress,
        wandb_timeout=wandb_timeout,
    )
    parts = runs_by_group(runs, group, state_dir)
    if parts is None:
        return fetch(list(runs or ()), group=group if isinstance(group, str) else None)
    if len(parts) == 1 and (group is None or isinstance(group, str)):
        return fetch(parts[0][1], group=parts[0][0])
    return combine(parts, lambda items, name: fetch(items, group=name))


def _fetch(
    runs: Iterable[Any],
    metrics: str | Sequence[str],
    samples: int | None,
    x_axis: str,
    *,
    group: str | None,
    state_dir: str | os.PathLike[str] | None,
    workers: int,
    progress: bool,
    wandb_timeout: float,
) -> pd.DataFrame:
    """:func:`fetch_metrics` of one group's runs (or runs of no group)."""
    if x_axis not in X_AXES:
        raise ValueError(f"x_axis must be 'step' or 'time', got {x_axis!r}")
    if samples is not None and (isinstance(samples, bool) or not isinstance(samples, int) or samples < 1):
        raise ValueError(f"samples must be a positive int or None, got {samples!r}")
    keys = [metrics] if isinstance(metrics, str) else list(dict.fromkeys(metrics))
    if not keys or not all(isinstance(k, str) and k for k in keys):
        raise ValueError(f"metrics must be metric names, got {metrics!r}")
    sources = [run_source(item, group=group, state_dir=state_dir) for item in runs]
    sources = [part for s in sources for part in by_machine(s)]  # a recovered remote run: one per machine
    names = [s.name for s in sources]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"runs with the same name: {', '.join(duplicates)}")

    apis = WandbApis(wandb_timeout)
    results: dict[str, dict[str, Points]] = {}
    errors: dict[str, str] = {}
    origin: dict[str, str] = {}
    bar = _progress_bar(len(sources), progress)
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(sources)))) as pool:
        futures = {pool.submit(_fetch_one, s, keys, samples, x_axis, apis): s for s in sources}
        for future in as_completed(futures):
            source = futures[future]
            try:
                origin[source.name], results[source.name] = future.result()
            except Exception as exc:
                errors[source.name] = _reason(exc)
            bar.update(1)
    bar.close()

    for name in names:
        if name in errors:
            _report(f"run {name!r} not fetched: {errors[name]}")
        elif missing := [k for k in keys if k not in results[name]]:
            _report(f"run {name!r}: no data for {', '.join(missing)} in {origin[name]}")
    frame = _frame(names, keys, results)
    frame.attrs.update(errors=errors, sources=origin, x_axis=x_axis)
    return frame


def _fetch_one(
    source: RunSource, keys: list[str], samples: int | None, x_axis: str, apis: WandbApis
) -> tuple[str, dict[str, Points]]:
    if source.problem:
        raise LookupError(source.problem)
    local = RunDir(source.run_dir).metrics if source.run_dir else None
    if local is not None and local.is_file() and source.recovery is None:
        return f"local {local}", read_metrics_file(local, keys, samples)
    state = read_run_state(source.run_dir, source.attempt)
    path = source.wandb_path or wandb_path_from_url(state.wandb_url if state is not None else None)
    mode = attempt_mode(state, source.wandb_mode or "online")
    where = f"no metrics file {local}" if local else "no run directory"
    if mode == "offline":
        sync = f": run `wandb sync {state.wandb_dir}`" if state is not None and state.wandb_dir else ""
        raise LookupError(f"{where}, and its W&B run was logged offline{sync}")
    if (path is None or mode == "disabled") and (logged := from_log(source, keys, samples)):
        return logged  # a remote run without W&B: the progress lines its log kept
    if path is None or mode == "disabled":
        raise LookupError(f"{where}, and no W&B run")
    return f"wandb {path}", fetch_wandb_run(apis.get(source.wandb_base_url), path, keys, samples, x_axis)


def _frame(names: list[str], keys: list[str], results: Mapping[str, Mapping[str, Points]]) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    run_codes, metric_codes, steps, values, times = [], [], [], [], []
    for r, name in enumerate(names):
        for m, key in enumerate(keys):
            series = results.get(name, {}).get(key)
            if series is None:
                continue
            n = len(series.steps)
            run_codes.append(np.full(n, r, dtype=np.int32))
            metric_codes.append(np.full(n, m, dtype=np.int32))
            steps.append(np.asarray(series.steps, dtype=np.int64))
            values.append(np.asarray(series.values, dtype=np.float64))
            times.append(np.asarray(series.times, dtype=np.float64))

    def cat(parts: list[Any], dtype: Any) -> Any:
        return np.concatenate(parts) if parts else np.array([], dtype=dtype)

    return pd.DataFrame(
        {
            "run": pd.Categorical.from_codes(cat(run_codes, np.int32), categories=names, ordered=True),
            "step": cat(steps, np.int64),
            "metric": pd.Categorical.from_codes(cat(metric_codes, np.int32), categories=keys, ordered=True),
            "value": cat(values, np.float64),
            "time": cat(times, np.float64),
        }
    )


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, LookupError | FileNotFoundError) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _report(message: str) -> None:
    # stderr rather than warnings: a warning shows once per call site, and a notebook cell run again
    # must report its failed runs again.
    print(f"fetch_metrics: {message}", file=sys.stderr, flush=True)


PROGRESS_DELAY_S = 2.0
"""The progress bar of ``fetch_metrics`` appears only after this long."""


class _PlainBar:
    """A progress line on stderr, for when tqdm is not installed (or not wanted: ``enabled=False``);
    like the tqdm bar, it appears only after :data:`PROGRESS_DELAY_S`."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.done, self.enabled, self.shown = total, 0, enabled, False
        self.start = time.monotonic()

    def update(self, n: int) -> None:
        self.done += n
        if self.enabled and time.monotonic() - self.start >= PROGRESS_DELAY_S:
            self.shown = True
            print(f"\rfetching metrics: {self.done}/{self.total} runs", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.shown:
            print(file=sys.stderr, flush=True)


def _progress_bar(total: int, enabled: bool) -> Any:
    if not enabled or total == 0:
        return _PlainBar(total, False)
    try:
        import importlib.util

        if importlib.util.find_spec("ipywidgets") is not None:
            from tqdm.auto import tqdm
        else:  # tqdm.auto without ipywidgets warns in a notebook; the text bar works everywhere
            from tqdm import tqdm
    except ImportError:
        return _PlainBar(total, True)
    # shown only when fetching takes a while (W&B): a fast local fetch leaves no frozen bar in the
    # notebook's saved outputs or its HTML report
    return tqdm(
        total=total, desc="fetching metrics", unit="run", file=sys.stderr, leave=False, delay=PROGRESS_DELAY_S
    )


# ---------------------------------------------------------------------------------------------------
# The summary table


def summary_table(
    df: pd.DataFrame,
    statuses: Mapping[str, Any] | None = None,
    *,
    reward: str = REWARD,
    sps: str = SPS,
    gpu_hours: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """One row per run (in the frame's run order, runs with no data included), indexed by run.

    Columns: ``status`` (from ``statuses``, run -> status; NA when not given), ``final_reward`` (the
    last non-NaN ``reward`` point), ``max_reward``, ``mean_reward`` and ``avg_sps`` (over the points
    fetched: all of them when a run logged at most ``samples``), ``steps`` (the highest step of any
    metric), ``gpu_hours`` (with ``gpu_hours``, run -> its GPU-hours), ``failed`` (status failed,
    cancelled or skipped; without a status: its data could not be fetched) and ``note`` (why a run could
    not be fetched, from ``df.attrs["errors"]``, or "no data").
    """
    import numpy as np
    import pandas as pd

    statuses = {str(k): str(v) for k, v in (statuses or {}).items()}
    errors = dict(df.attrs.get("errors", {}))
    if isinstance(df["run"].dtype, pd.CategoricalDtype):
        names = [str(n) for n in df["run"].cat.categories]
    else:
        names = [str(n) for n in dict.fromkeys(df["run"])]
    names += [n for n in statuses if n not in names]
    groups = {str(k): g for k, g in df.groupby("run", observed=True, sort=False)}
    rows = []
    for name in names:
        sub = groups.get(name, df.iloc[0:0])
        rew = sub.loc[sub["metric"] == reward].sort_values("step", kind="stable")["value"].to_numpy(float)
        speed = sub.loc[sub["metric"] == sps, "value"].to_numpy(float)
        finite = rew[~np.isnan(rew)]
        status = statuses.get(name)
        rows.append(
            {
                "run": name,
                "status": status if status is not None else pd.NA,
                "final_reward": finite[-1] if finite.size else np.nan,
                "max_reward": finite.max() if finite.size else np.nan,
                "mean_reward": finite.mean() if finite.size else np.nan,
                "avg_sps": np.nanmean(speed) if np.isfinite(speed).any() else np.nan,
                "steps": int(sub["step"].max()) if len(sub) else pd.NA,
                **({"gpu_hours": float(gpu_hours.get(name, 0.0))} if gpu_hours is not None else {}),
                "failed": status in FAILED_STATUSES if status is not None else name in errors,
                "note": errors.get(name, "" if len(sub) else "no data"),
            }
        )
    table = pd.DataFrame(rows).set_index("run")
    table["steps"] = table["steps"].astype("Int64")
    return table


def style_summary(summary: pd.DataFrame) -> Styler:
    """``summary`` for display: failed runs in red, each status a badge (:func:`status_badge`), every
    number in one format (:func:`fmt_number`; the values stay exact), without the ``failed`` column (the
    status says it) nor an empty ``note``."""

    def mark(row: pd.Series) -> list[str]:
        style = "background-color: #f8d7da; color: #842029" if bool(row.get("failed")) else ""
        return [style] * len(row)

    numbers = [
        c
        for c in ("final_reward", "max_reward", "mean_reward", "avg_sps", "steps", "gpu_hours")
        if c in summary
    ]
    hidden = [c for c in ("failed",) if c in summary and "status" in summary]
    if "note" in summary and not summary["note"].fillna("").astype(str).str.strip().any():
        hidden.append("note")
    formats: dict[str, Any] = dict.fromkeys(numbers, fmt_number)
    if "status" in summary:
        formats["status"] = status_badge
    styler = summary.style.apply(mark, axis=1).format(formats, na_rep="–")
    return styler.hide(hidden, axis="columns") if hidden else styler


def fmt_number(value: float) -> str:
    """One format for every number of a table: four significant digits, thousands separated, never
    exponents (``0.1235``, ``37.75``, ``12,346``, ``150,000``)."""
    import math

    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    magnitude = math.floor(math.log10(abs(value))) if value else 0
    return f"{value:,.{max(0, 3 - magnitude)}f}"
