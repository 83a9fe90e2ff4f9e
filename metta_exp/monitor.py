"""Watching a group: a pure function from records to a renderable, and the loop around it.

``watch`` redraws in place on a terminal and prints one line per state change elsewhere (CI, pipes). It
also heals: when the group's runner is gone, it starts a new one (the store's lease decides who drives).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from metta_exp.records import GroupRecord, JobRecord
from metta_exp.status import ALL_STATUSES, JobStatus

if TYPE_CHECKING:
    from rich.console import RenderableType

    from metta_exp.store import JobStore
    from metta_exp.tracking import Progress

STATUS_STYLE = {
    JobStatus.PENDING: "dim",
    JobStatus.LAUNCHING: "cyan",
    JobStatus.RUNNING: "blue",
    JobStatus.SUCCEEDED: "green",
    JobStatus.FAILED: "bold red",
    JobStatus.CANCELLED: "yellow",
    JobStatus.SKIPPED: "yellow",
}
TAIL_BYTES = 16384


def read_tail(path: str | Path | None, nbytes: int = TAIL_BYTES) -> str:
    """The last ``nbytes`` of a file as text ('' when it does not exist yet)."""
    if not path:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - nbytes))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def job_progress(job: JobRecord) -> Progress | None:
    from metta_exp.tracking import last_progress

    return last_progress(read_tail(job.log_path)) if job.status != JobStatus.PENDING else None


def counts(jobs: list[JobRecord]) -> dict[JobStatus, int]:
    out = dict.fromkeys(ALL_STATUSES, 0)
    for job in jobs:
        out[job.status] += 1
    return out


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "-"
    seconds = int(seconds)
    if seconds < 3600:
        return f"{seconds // 60}:{seconds % 60:02d}"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def summary_line(group: GroupRecord, jobs: list[JobRecord], now: float) -> str:
    c = counts(jobs)
    parts = [f"{c[s]} {s.value}" for s in ALL_STATUSES if c[s]]
    elapsed = fmt_duration((group.ended_at or now) - group.created_at)
    return f"{group.name}: {len(jobs)} jobs, " + ", ".join(parts) + f" · {elapsed} elapsed"


def render_group(
    group: GroupRecord, jobs: list[JobRecord], progress: Mapping[str, Progress | None], now: float
) -> RenderableType:
    """A compact table of the group: one row per job. Pure: same records, same output."""
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    table = Table(expand=False, box=None, pad_edge=False, header_style="bold")
    for column in ("run", "status", "progress", "steps", "sps", "reward", "time", "note"):
        table.add_column(column, no_wrap=column != "note", overflow="ellipsis")
    for job in jobs:
        p = progress.get(job.run)
        fraction = p.fraction if p else None
        bar: RenderableType = ProgressBar(total=1.0, completed=fraction, width=16) if fraction is not None else "-"
        if job.status == JobStatus.SUCCEEDED:
            bar = ProgressBar(total=1.0, completed=1.0, width=16)
        reward = p.metrics.get("overview/reward") if p else None
        end = job.ended_at if job.status.is_terminal() else now
        note = job.reason or ""
        if job.status == JobStatus.PENDING and job.depends_on and not note:
            note = f"waits for {', '.join(job.depends_on)}"
        table.add_row(
            job.run,
            Text(job.status.value, style=STATUS_STYLE[job.status]),
            bar,
            f"{p.step}/{p.total}" if p and p.total else (str(p.step) if p else "-"),
            f"{p.sps:,.0f}" if p and p.sps is not None else "-",
            f"{reward:.1f}" if reward is not None else "-",
            fmt_duration(end - job.started_at) if job.started_at and end else "-",
            note,
        )
    return Group(Text(summary_line(group, jobs, now), style="bold"), table)


def watch(store: JobStore, group_name: str, out: TextIO | None = None, refresh: float = 0.5) -> int:
    """Show the group until it ends; returns 0/1 by the jobs' outcome, 130 on Ctrl+C."""
    out = out or sys.stdout
    try:
        if out.isatty():
            _watch_live(store, group_name, out, refresh)
        else:
            _watch_lines(store, group_name, out, refresh)
    except KeyboardInterrupt:
        print(f"\nStopped watching; the jobs go on. Watch again: metta-exp job monitor {group_name}", file=out)
        return 130
    return print_summary(store, group_name, out)


def _heal(store: JobStore, group_name: str, last: list[float]) -> None:
    from metta_exp.runner import ensure_driver

    if time.time() - last[0] > 2.0:
        last[0] = time.time()
        ensure_driver(store, group_name)


def _watch_live(store: JobStore, group_name: str, out: TextIO, refresh: float) -> None:
    from rich.console import Console
    from rich.live import Live

    console = Console(file=out)
    healed = [time.time()]

    def frame() -> tuple[RenderableType, bool]:
        group = store.group(group_name)
        jobs = store.jobs(group_name)
        return render_group(group, jobs, {j.run: job_progress(j) for j in jobs}, time.time()), bool(group.ended_at)

    renderable, ended = frame()
    with Live(renderable, console=console, auto_refresh=False, transient=False) as live:
        while not ended:
            time.sleep(refresh)
            _heal(store, group_name, healed)
            renderable, ended = frame()
            live.update(renderable, refresh=True)


def _watch_lines(store: JobStore, group_name: str, out: TextIO, refresh: float) -> None:
    last_id = 0
    healed = [time.time()]
    while True:
        for event in store.events(group_name, last_id):
            last_id = event.id
            stamp = time.strftime("%H:%M:%S", time.localtime(event.at))
            if event.kind == "status":
                detail = f" ({event.detail})" if event.detail else ""
                print(f"{stamp} {event.run}: {event.old_status} -> {event.new_status}{detail}", file=out, flush=True)
        if store.group(group_name).ended_at:
            return
        time.sleep(refresh)
        _heal(store, group_name, healed)


def print_summary(store: JobStore, group_name: str, out: TextIO) -> int:
    from metta_exp.runner import exit_code

    group = store.group(group_name)
    jobs = store.jobs(group_name)
    print(summary_line(group, jobs, time.time()), file=out)
    for job in jobs:
        if job.status != JobStatus.SUCCEEDED:
            reason = f": {job.reason}" if job.reason else ""
            print(f"  {job.run} {job.status.value}{reason}  (log: {job.log_path or '-'})", file=out)
    for event in store.events(group_name):
        if event.kind == "notebook":
            print(f"Notebook: {event.detail}  (open with: jupyter notebook {event.detail})", file=out)
        elif event.kind == "notebook_failed":
            print(f"Notebook not written: {event.detail}", file=out)
    return exit_code(jobs)
