"""What ``metta-exp job ...`` prints, as pure functions from records: the plain-text tables of ``job list``,
``job show`` and ``job runs``, their ``--json`` rows, and the lines the other commands say.

Plain text on purpose (no rich): ``job list`` must start fast and its output must read well in a pipe.
Times are shown in local time; the ``--json`` output has ISO 8601 times with their UTC offset.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from metta_exp.paths import jupyter_command
from metta_exp.records import GroupRecord, GroupSummary, JobRecord, iso
from metta_exp.status import ALL_STATUSES, TERMINAL, JobStatus
from metta_exp.text import fmt_duration, fmt_gpu_hours, plural
from metta_exp.trials import TrialRecord

if TYPE_CHECKING:
    from metta_exp.groups import KillPlan
    from metta_exp.history.remove import RemovalPlan
    from metta_exp.history.runs import RunRow, Runs
    from metta_exp.logs.job import AttemptLog

__all__ = [
    "fmt_bytes", "fmt_gpu_hours", "group_json", "group_table", "hidden_line", "job_json", "jobs_table",
    "json_array", "jupyter_line", "kill_plan_text", "links_table", "log_missing_line", "notebook_lines",
    "rm_plan_text", "runs_csv", "runs_json", "runs_table", "store_line", "trial_json",
]  # fmt: skip

LIST_STATUSES = (
    JobStatus.PENDING,
    JobStatus.RUNNING,
    JobStatus.SUCCEEDED,
    JobStatus.FAILED,
    JobStatus.CANCELLED,
    JobStatus.SKIPPED,
)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
    """Columns two spaces apart, as wide as their widest cell; the columns in ``right`` right-aligned.
    Trailing spaces are stripped."""
    widths = [max(map(len, col)) for col in zip(headers, *rows, strict=True)]
    line = "  ".join(f"{{:{'>' if i in right else '<'}{w}}}" for i, w in enumerate(widths))
    return "\n".join(line.format(*row).rstrip() for row in (headers, *rows))


def fmt_age(seconds: float) -> str:
    """``12s``, ``5m``, ``3h``, ``2d``."""
    s = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


def fmt_time(ts: float | None, now: float, today: time.struct_time | None = None) -> str:
    """A local time: ``13:50:22`` today, ``11-26 13:50`` another day of this year, else the date.
    ``today`` is ``time.localtime(now)``, for a caller formatting thousands."""
    if ts is None:
        return "-"
    when, today = time.localtime(ts), today or time.localtime(now)
    if when[:3] == today[:3]:
        return time.strftime("%H:%M:%S", when)
    if when.tm_year == today.tm_year:
        return time.strftime("%m-%d %H:%M", when)
    return time.strftime("%Y-%m-%d", when)


def group_state(group: GroupRecord | None, alive: Callable[[GroupRecord], bool]) -> str:
    """``ended``, ``killing``, ``running`` (a runner drives it) or ``no runner`` (resume it)."""
    if group is None:
        return "ended"
    if group.cancel_requested:
        return "killing"
    return "running" if alive(group) else "no runner"


def group_table(
    summaries: Sequence[GroupSummary],
    open_groups: Mapping[str, GroupRecord],
    now: float,
    alive: Callable[[GroupRecord], bool] | None = None,
    gpu_hours: Mapping[str, float] | None = None,
) -> str:
    """``job list``: one row per group, newest first as given. ``open_groups`` are the groups that have
    not ended; ``alive`` tells whether a group's runner lives (default: ``supervise.owner_alive``);
    ``gpu_hours`` by group: a GPU-H column when a listed group used a GPU."""
    if alive is None and open_groups:
        from metta_exp.supervise.lease import owner_alive

        alive = owner_alive
    statuses = list_statuses(summaries)
    hours = gpu_hours if gpu_hours and any(gpu_hours.values()) else None
    headers = ["GROUP", "BACKEND", "TOTAL", *(s.value.upper() for s in statuses)]
    headers += ["GPU-H"] * bool(hours) + ["AGE", "STATE"]
    rows = []
    for s in summaries:
        running = s.counts[JobStatus.RUNNING.value] + s.counts[JobStatus.LAUNCHING.value]
        by_status = [running if st == JobStatus.RUNNING else s.counts.get(st.value, 0) for st in statuses]
        state = group_state(open_groups.get(s.name), alive or (lambda g: False))
        gpu = [fmt_gpu_hours(hours.get(s.name, 0.0))] if hours else []
        rows.append(
            [s.name, s.backend, str(s.total), *map(str, by_status), *gpu, fmt_age(now - s.created_at), state]
        )
    return table(headers, rows, right=tuple(range(2, 3 + len(statuses) + bool(hours))))


def list_statuses(summaries: Sequence[GroupSummary]) -> tuple[JobStatus, ...]:
    """The status columns of ``job list``: :data:`LIST_STATUSES`, and PRUNED when a listed group (a
    search) has pruned jobs."""
    if any(s.counts.get(JobStatus.PRUNED.value) for s in summaries):
        return (*LIST_STATUSES, JobStatus.PRUNED)
    return LIST_STATUSES


def jobs_table(
    group: GroupRecord,
    jobs: Sequence[JobRecord],
    progress: Mapping[str, float | None],
    now: float,
    trials: Sequence[TrialRecord] = (),
    gpu_hours: Mapping[str, float] | None = None,
) -> str:
    """``job show``: a line about the group (and, for a search, a line about its study: see
    :func:`~metta_exp.search.text.search_line`), then one row per job. ``gpu_hours`` by run: the group's
    total on the first line and a GPU-H column, when a run used a GPU."""
    counts = Counter(j.status for j in jobs)
    by = ", ".join(f"{counts[s]} {s.value}" for s in ALL_STATUSES if counts[s])
    when = f"created {fmt_time(group.created_at, now)}"
    if group.ended_at:
        when += f", ended {fmt_duration(group.ended_at - group.created_at)} later"
    elif group.cancel_requested:
        when += ", being killed"
    head = f"Group {group.name} · {group.experiment} on {group.backend} · {when} · {plural(len(jobs), 'job')}: {by}"
    hours = gpu_hours if gpu_hours and any(gpu_hours.values()) else None
    if hours:
        head += f" · {fmt_gpu_hours(sum(hours.values()))} GPU-hours"
    rows = []
    today = time.localtime(now)
    text = {s: s.value for s in JobStatus}  # Enum.value is a descriptor: slow over 10,000 rows
    for j in jobs:
        end = j.ended_at if j.status in TERMINAL else now
        took = fmt_duration(end - j.started_at) if j.started_at and end else "-"
        p = progress.get(j.run)
        rows.append(
            [
                j.run,
                text[j.status],
                str(j.attempts),
                "-" if j.exit_code is None else str(j.exit_code),
                fmt_time(j.started_at, now, today),
                took,
                "-" if p is None else f"{p:.0%}",
                *([fmt_gpu_hours(hours.get(j.run, 0.0))] if hours else []),
                ", ".join(j.depends_on) or "-",
                j.reason or "-",
            ]
        )
    headers = [
        "RUN",
        "STATUS",
        "ATTEMPTS",
        "EXIT",
        "STARTED",
        "TIME",
        "PROGRESS",
        "GPU-H",
        "DEPENDS ON",
        "REASON",
    ]
    if not hours:
        headers.remove("GPU-H")
    if group.is_search:
        from metta_exp.search.text import search_line  # a search's only

        head += "\n" + search_line(group, trials)
    return head + "\n" + table(headers, rows, right=(2, 3, 5, 6, 7) if hours else (2, 3, 5, 6))


def links_table(jobs: Sequence[JobRecord]) -> str:
    """``job show``'s second table: where each job's log and W&B run are."""
    rows = [[j.run, j.log_path or "-", j.wandb_url or "-"] for j in jobs]
    return table(["RUN", "LOG", "W&B"], rows)


def runs_json(runs: Runs) -> list[dict[str, object]]:
    """``job runs --json``'s rows (:func:`metta_exp.history.runs.runs_json`; imported by ``job runs`` only)."""
    from metta_exp.history import runs as history_runs

    return history_runs.runs_json(runs)


def runs_csv(runs: Runs) -> str:
    """``job runs --csv`` (:func:`metta_exp.history.runs.runs_csv`)."""
    from metta_exp.history import runs as history_runs

    return history_runs.runs_csv(runs)


def runs_table(runs: Runs, now: float, width: int | None = None) -> tuple[str, list[str]]:
    """``job runs``: one row per run (group, run, status, attempts, start, running time, GPUs and
    GPU-hours when a run used a GPU, each metric's final value, the overrides that differ between the
    rows); and the notes that go under it (the overrides every row shares, metric columns left out).

    ``width``: the terminal's; the table is fitted to it by shortening the overrides, then leaving out
    metric columns from the right, then shortening group and run names. None (a pipe): not fitted."""
    from metta_exp.history.runs import metric_label, short_keys
    from metta_exp.metrics import fmt_number

    rows = runs.rows
    gpus = any(r.gpus for r in rows)
    varying, common = split_overrides([r.overrides for r in rows])
    today = time.localtime(now)
    fixed = [
        ("GROUP", [r.group for r in rows], False),
        ("RUN", [r.run for r in rows], False),
        ("STATUS", [r.status for r in rows], False),
        ("ATTEMPTS", [str(r.attempts) for r in rows], True),
        ("STARTED", [fmt_time(r.started_at, now, today) for r in rows], False),
        ("TIME", [fmt_duration(r.duration_s) for r in rows], True),
    ]
    if gpus:
        fixed += [("GPUS", [str(r.gpus) for r in rows], True)]
        fixed += [("GPU-H", [fmt_gpu_hours(r.gpu_hours) for r in rows], True)]
    metric_columns = [
        (metric_label(m, runs.metrics), [_metric(r.metrics.get(m), fmt_number) for r in rows], True)
        for m in runs.metrics
    ]
    overrides = ("OVERRIDES", _overrides_cells(rows, varying, {k: k for k in varying}), False)
    columns = [*fixed, *metric_columns, overrides]
    notes = []
    if width is not None and _width(columns) > width:  # the keys that vary most first, by their endings
        order = sorted(varying, key=lambda k: -len({r.overrides.get(k) for r in rows}))
        columns[-1] = ("OVERRIDES", _overrides_cells(rows, order, short_keys(varying)), False)
        columns, left_out = fit_columns(columns, width, len(fixed), len(metric_columns))
        if left_out:
            notes.append(
                f"Not shown for want of width: {', '.join(left_out)} (--json or --csv has every column)."
            )
    if common and len(rows) > 1:
        notes.append("Every run shown has " + " ".join(f"{k}={v}" for k, v in common.items()) + ".")
    headers = [c[0] for c in columns]
    cells = [list(row) for row in zip(*(c[1] for c in columns), strict=True)] if rows else []
    right = tuple(i for i, c in enumerate(columns) if c[2])
    return table(headers, cells, right=right), notes


def _overrides_cells(rows: Sequence[RunRow], keys: Sequence[str], names: Mapping[str, str]) -> list[str]:
    return [" ".join(f"{names[k]}={r.overrides[k]}" for k in keys if k in r.overrides) or "-" for r in rows]


def _metric(value: float | None, fmt: Callable[[float], str]) -> str:
    return "-" if value is None else fmt(value)


def split_overrides(overrides: Sequence[Mapping[str, str]]) -> tuple[list[str], dict[str, str]]:
    """The override keys whose value differs between the runs (or that some run lacks), in the order
    first seen; and those every run has with one value."""
    keys = list(dict.fromkeys(k for o in overrides for k in o))
    common = {
        k: overrides[0][k]
        for k in keys
        if overrides and all(k in o and o[k] == overrides[0][k] for o in overrides)
    }
    return [k for k in keys if k not in common], common


Column = tuple[str, list[str], bool]  # header, cells, right-aligned


def fit_columns(
    columns: list[Column], width: int, fixed: int, metrics: int
) -> tuple[list[Column], list[str]]:
    """``columns`` (``fixed`` ones, then ``metrics`` metric ones, then the overrides) fitted into ``width``:
    the overrides shortened (to 12 characters at least), then metric columns left out from the right (their
    titles returned), then the group and run names shortened (to 12 at least), then the overrides again (to
    4). Cells cut are marked ``…``."""
    widths = _width
    cols = list(columns)
    left_out: list[str] = []
    over = cols[-1]
    room = width - widths(cols[:-1]) - 2
    if widths(cols) > width:
        cols[-1] = _cut(over, max(12, room))
    while widths(cols) > width and metrics:
        left_out.insert(0, cols.pop(fixed + metrics - 1)[0])
        metrics -= 1
        cols[-1] = _cut(over, max(12, width - widths(cols[:-1]) - 2))
    for index in (0, 1):  # group, run
        excess = widths(cols) - width
        if excess > 0:
            longest = max(map(len, cols[index][1]), default=0)
            cols[index] = _cut(cols[index], max(12, longest - excess))
    if widths(cols) > width:  # a very narrow terminal: what is left of the overrides
        cols[-1] = _cut(over, max(4, width - widths(cols[:-1]) - 2))
    return cols, left_out


def _width(columns: Sequence[Column]) -> int:
    """The width of a table of ``columns``: each as wide as its widest cell or title, two spaces apart."""
    return sum(max(len(c[0]), *map(len, c[1]), 0) for c in columns) + 2 * (len(columns) - 1)


def _cut(column: Column, size: int) -> Column:
    header, cells, right = column
    return header, [c if len(c) <= size else c[: size - 1] + "…" for c in cells], right


# --- --json rows ---------------------------------------------------------------------------------------


def json_array(rows: Sequence[Mapping[str, object]]) -> str:
    """One JSON array, one object per line (readable, and fast: the C encoder does the work)."""
    if not rows:
        return "[]"
    encode = json.JSONEncoder(check_circular=False).encode  # flat rows: no cycle to look for
    return "[\n" + ",\n".join(map(encode, rows)) + "\n]"


def group_json(s: GroupSummary, gpu_hours: float) -> dict[str, object]:
    """One group of ``job list --json``."""
    return {
        "group": s.name,
        "total": s.total,
        **{st.value: s.counts[st.value] for st in ALL_STATUSES},
        "created_at": iso(s.created_at),
        "ended_at": iso(s.ended_at),
        "experiment": s.experiment,
        "backend": s.backend,
        "gpu_hours": gpu_hours,
    }


def job_json(j: JobRecord, progress: float | None, trial: TrialRecord | None = None) -> dict[str, object]:
    """One job of ``job show --json``; ``trial``: the search trial the job runs (None: not a search's)."""
    return {
        "group": j.group,
        "run": j.run,
        "status": j.status.value,
        "attempts": j.attempts,
        "exit_code": j.exit_code,
        "started_at": iso(j.started_at),
        "ended_at": iso(j.ended_at),
        "progress": progress,
        "wandb_url": j.wandb_url,
        "log_path": j.log_path,
        "depends_on": list(j.depends_on),
        "reason": j.reason,
        "trial": None if trial is None else trial_json(trial),
    }


def trial_json(t: TrialRecord) -> dict[str, object]:
    """A search trial in ``job show --json``: its number, state (running, complete, pruned, failed),
    objective value (None unless complete), parameters by config key, and why it was pruned or failed."""
    return {
        "number": t.number,
        "state": t.state.value,
        "value": t.value,
        "params": dict(t.params),
        "reason": t.reason,
    }


# --- lines -----------------------------------------------------------------------------------------------


def store_line(path: Path) -> str:
    """``store: PATH`` (``(none yet)`` when there is none): which store a command read."""
    return f"store: {path}" + ("" if path.exists() else " (none yet)")


def hidden_line(hidden: int, noun: str, older: bool) -> str:
    """``9,950 older groups not shown: --all shows every one, -n N the newest N.`` (``older``: the rows
    are newest first, else ``more ... the first N``)."""
    what = f"{hidden:,} {'older' if older else 'more'} {noun}{'' if hidden == 1 else 's'}"
    return f"{what} not shown: --all shows every one, -n N the {'newest' if older else 'first'} N."


def _names(jobs: Sequence[JobRecord], limit: int = 8) -> str:
    runs = [j.run for j in jobs]
    more = f", … ({len(runs) - limit} more)" if len(runs) > limit else ""
    return ", ".join(runs[:limit]) + more


def kill_plan_text(plan: KillPlan) -> str:
    """``Kill GROUP: end 3 running jobs (a, b, c); cancel 1 pending job (d); ...``"""
    parts = []
    if plan.active:
        parts.append(f"end {plural(len(plan.active), 'running job')} ({_names(plan.active)})")
    if plan.pending:
        parts.append(f"cancel {plural(len(plan.pending), 'pending job')} ({_names(plan.pending)})")
    if plan.stray:
        what = plural(len(plan.stray), "ended job")
        parts.append(f"end the leftover processes of {what} ({_names(plan.stray)})")
    if plan.ended:
        parts.append(
            f"leave {plural(plan.ended, 'ended job')} as {'it is' if plan.ended == 1 else 'they are'}"
        )
    return f"Kill {plan.group}: " + "; ".join(parts) + "."


def log_missing_line(log: AttemptLog) -> str:
    """What ``job logs`` says of a job that has no log yet: ``a of g has not started yet (pending).``"""
    state = "has not started yet" if log.attempt == 0 else "has no log yet"
    return f"{log.run} of {log.group} {state} ({log.status.value})."


def jupyter_line(notebook: Path) -> str:
    """The command that opens ``notebook`` in Jupyter, as printed."""
    return jupyter_command(notebook.absolute())


def notebook_lines(written: Path) -> list[str]:
    """Where ``job notebook`` wrote the notebook, and the command that opens it in Jupyter."""
    return [f"Notebook: {written}", f"Open it in Jupyter: {jupyter_command(written.absolute())}"]


def fmt_bytes(size: int) -> str:
    """A size in bytes as ``job rm`` says it (its module is imported only by ``job rm``)."""
    from metta_exp.history.remove import fmt_bytes as fmt

    return fmt(size)


def rm_plan_text(removal: RemovalPlan, limit: int = 20) -> str:
    """What ``job rm`` removes: a line for the whole, a row per group (the first ``limit``), and what an
    interrupted ``job rm`` left."""
    gone = removal.removals
    jobs = sum(r.group.total for r in gone)
    head = f"Remove {plural(len(gone), 'group')} ({plural(jobs, 'job')}), freeing {fmt_bytes(removal.size)}:"
    now = time.time()
    rows = [
        [
            r.group.name,
            plural(r.group.total, "job"),
            ", ".join(f"{n} {s}" for s, n in r.group.counts.items() if n) or "-",
            f"created {fmt_age(now - r.group.created_at)} ago",
            fmt_bytes(r.size),
        ]
        for r in gone[:limit]
    ]
    lines = [
        head,
        *("  " + line for line in table(["GROUP", "JOBS", "STATUS", "AGE", "DISK"], rows).splitlines()[1:]),
    ]
    if len(gone) > limit:
        lines.append(f"  … and {len(gone) - limit} more")
    if removal.leftovers:
        where = removal.state_dir / ".removing"
        lines.append(f"Also what an interrupted job rm left in {where}: {fmt_bytes(removal.leftover_size)}.")
    return "\n".join(lines)
