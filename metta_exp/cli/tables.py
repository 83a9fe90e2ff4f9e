"""The plain-text tables of ``metta-exp job list`` and ``job show``: pure functions from records.

Plain text on purpose (no rich): ``job list`` must start fast and its output must read well in a pipe.
Times are shown in local time; the ``--json`` output has ISO 8601 times with their UTC offset.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

from metta_exp.history.listing import fmt_gpu_hours
from metta_exp.records import GroupRecord, GroupSummary, JobRecord
from metta_exp.search.text import search_line
from metta_exp.status import ALL_STATUSES, TERMINAL, JobStatus
from metta_exp.text import fmt_duration, plural
from metta_exp.trials import TrialRecord

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
        from metta_exp.supervise import owner_alive

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
    :func:`search_line`), then one row per job. ``gpu_hours`` by run: the group's total on the first
    line and a GPU-H column, when a run used a GPU."""
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
    if group.search_space is not None:
        head += "\n" + search_line(group, trials)
    return head + "\n" + table(headers, rows, right=(2, 3, 5, 6, 7) if hours else (2, 3, 5, 6))


def links_table(jobs: Sequence[JobRecord]) -> str:
    """``job show``'s second table: where each job's log and W&B run are."""
    rows = [[j.run, j.log_path or "-", j.wandb_url or "-"] for j in jobs]
    return table(["RUN", "LOG", "W&B"], rows)
