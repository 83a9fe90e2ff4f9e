"""Watching a group until it ends: the live view on a terminal, one line per change elsewhere.

``watch`` is what ``metta-exp job monitor`` and a launch with ``wait=true`` run. On a terminal it redraws
``monitor_view.render_monitor`` in place (an alternate screen, like ``top``); when stdout is not a
terminal (CI, a pipe) it prints one line per state change from the store's events. Either way it exits by
itself when the group ends, printing the final summary; Ctrl+C stops only the watching (exit code 130).
It also heals through the ``heal`` callable it is given: when the group's runner is gone, the caller's
healer starts a new one (the store's lease decides who drives). Watching only reads the store; a runner
the healer starts does the writing.
"""

from __future__ import annotations

import contextlib
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TextIO

from metta_exp.logs.tail import LogReader, explain_failure, read_progress, read_tail
from metta_exp.monitor.view import Frame, Gpus, fmt_count, render_monitor, summary_line
from metta_exp.search.text import search_line, search_size
from metta_exp.status import JobStatus
from metta_exp.supervise.drive import exit_code
from metta_exp.supervise.lease import held, owner_alive
from metta_exp.text import fmt_duration, plural

if TYPE_CHECKING:
    from metta_exp.records import EventRecord, GroupRecord, JobRecord
    from metta_exp.store import JobStore

__all__ = ["event_line", "print_summary", "read_frame", "watch"]

DEFAULT_REFRESH = 1.0


def read_frame(
    store: JobStore, group_name: str, reader: LogReader, gpus: tuple[int, ...] | None = None
) -> Frame:
    """The store's records and the jobs' log tails, now (``gpus``: this machine's, for a local group)."""
    group = store.group(group_name)
    jobs = store.jobs(group_name)
    trials = store.trials(group_name) if group.search_space is not None else ()
    logs = {
        j.run: reader.read(j.log_path, j.run_dir, j.status, j.attempts)
        for j in jobs
        if j.status != JobStatus.PENDING
    }
    gpu_state = None
    if gpus is not None and any(j.spec.gpus > 0 for j in jobs if j.status == JobStatus.PENDING):
        gpu_state = Gpus(gpus, frozenset(store.busy_gpu_ids()))
    alive = owner_alive(group)
    stopped = None if alive or group.ended_at else held(store, group_name)
    return Frame(group, jobs, logs, time.time(), alive, gpu_state, trials, stopped)


def local_gpus(backend: str) -> tuple[int, ...] | None:
    """The GPUs a local group's jobs are packed onto (None for remote groups)."""
    if backend != "local":
        return None
    from metta_exp.backends.local import LocalBackend

    try:
        return tuple(LocalBackend().devices())
    except Exception:  # a bad METTA_EXP_LOCAL_GPUS is the runner's to report, not the viewer's
        return None


def watch(
    store: JobStore,
    group_name: str,
    out: TextIO | None = None,
    refresh: float = DEFAULT_REFRESH,
    show_logs: bool = True,
    *,
    heal: Callable[[], None],
    also: Sequence[str] = (),
    since: int = 0,
) -> int:
    """Show the group until it ends; returns 0 when every job succeeded, 1 otherwise, 130 on Ctrl+C.

    ``heal`` is called on every refresh: "heal this group" (``supervise.Healer`` starts a runner when
    nobody drives it; pass ``lambda: None`` to only watch). On Ctrl+C the line names what goes on: this
    group, and the groups ``also`` submitted with it. Off a terminal, the lines start after event
    ``since`` (0: the group's whole history)."""
    out = out or sys.stdout
    if store.group(group_name).ended_at is not None:  # nothing will change: the summary says it all
        return print_summary(store, group_name, out)
    try:
        if out.isatty():
            _watch_live(store, group_name, out, refresh, show_logs, heal)
        else:
            _watch_lines(store, group_name, out, refresh, heal, since)
    except KeyboardInterrupt:
        with contextlib.suppress(OSError):  # a terminal that hung up cannot be written to
            print("\nStopped watching. " + going_on_text(store, [group_name, *also]), file=out, flush=True)
        return 130
    return print_summary(store, group_name, out)


def watch_and_heal(
    store: JobStore,
    group_name: str,
    out: TextIO | None = None,
    refresh: float = DEFAULT_REFRESH,
    show_logs: bool = True,
    also: Sequence[str] = (),
    since: int = 0,
) -> int:
    """:func:`watch`, healing the group (a ``supervise.Healer`` starts a runner when nobody drives it):
    how every command that waits for a group watches it."""
    from metta_exp.supervise.drive import Healer

    with Healer(store, group_name) as heal:
        return watch(store, group_name, out, refresh, show_logs, heal=heal, also=also, since=since)


def going_on_text(store: JobStore, groups: Sequence[str]) -> str:
    """What goes on after Ctrl+C, one group after another: how many jobs were submitted and how many go
    on, then the commands that watch and stop them, as printed (``uv run `` in front where needed)."""
    import shlex

    from metta_exp.paths import command_prefix

    lines = []
    for name in groups:
        group, jobs = store.group(name), store.jobs(name)
        going = sum(1 for j in jobs if not j.status.is_terminal())
        quoted, prefix = shlex.quote(name), command_prefix()
        lines += [
            f"Group {name}: {submitted_text(group, len(jobs), going)}.",
            f"  Watch again: {prefix}metta-exp job monitor {quoted}",
        ]
        if group.ended_at is None:
            lines.append(f"  Stop them:   {prefix}metta-exp job kill {quoted}")
    return "\n".join(lines)


def submitted_text(group: GroupRecord, total: int, going: int) -> str:
    """``3 jobs submitted; they go on``, ``3 jobs submitted; 1 goes on, 2 ended``; for a search, its size
    and the trials asked so far (``14 trials, 2 at once; 2 submitted so far, they go on``)."""
    if group.search_space is not None:
        return f"{search_size(group)}; {plural(total, 'trial')} asked so far, {going} going on"
    if going == total:
        return f"{plural(total, 'job')} submitted; {'it goes' if total == 1 else 'they go'} on"
    if going == 0:
        return f"{plural(total, 'job')} submitted, all ended" + (
            "" if group.ended_at else "; its runner finishes"
        )
    return f"{plural(total, 'job')} submitted; {going} {'goes' if going == 1 else 'go'} on, {total - going} ended"


def _watch_live(
    store: JobStore, group_name: str, out: TextIO, refresh: float, show_logs: bool, heal: Callable[[], None]
) -> None:
    from rich.console import Console
    from rich.live import Live

    console = Console(file=out)
    reader = LogReader()
    gpus = local_gpus(store.group(group_name).backend)
    with Live(
        console=console, screen=True, auto_refresh=False, redirect_stdout=False, redirect_stderr=False
    ) as live:
        while True:
            heal()
            frame = read_frame(store, group_name, reader, gpus)
            width, height = console.size
            live.update(render_monitor(frame, width, height, show_logs), refresh=True)
            if frame.group.ended_at:
                return
            time.sleep(refresh)


def _watch_lines(
    store: JobStore, group_name: str, out: TextIO, refresh: float, heal: Callable[[], None], since: int = 0
) -> None:
    group = store.group(group_name)
    jobs = store.jobs(group_name)
    print(f"Watching {summary_line(group, jobs, time.time())}", file=out, flush=True)
    last_id, last_runner = since, None
    while True:
        for event in store.events(group_name, last_id):
            last_id = event.id
            line = event_line(event)
            if event.kind == "runner":  # the first driver goes without saying; a new one is news
                took_over = last_runner is not None and event.detail != last_runner
                line = "a new runner drives the group (the previous one stopped)" if took_over else None
                last_runner = event.detail
            if line is None:
                continue
            if event.new_status == JobStatus.FAILED.value and event.run:
                job = store.job(group_name, event.run)
                why = explain_failure(read_tail(job.log_path), 1) if job.status == JobStatus.FAILED else []
                line += f": {why[0]}" if why else ""
            stamp = time.strftime("%H:%M:%S", time.localtime(event.at))
            print(f"{stamp} {line}", file=out, flush=True)
        if store.group(group_name).ended_at:
            return
        time.sleep(refresh)
        heal()


_GROUP_EVENTS = {
    "runner": "runner",
    "killed": "kill requested",
    "retry": "retry requested",
    "ended": "group ended",
    "notebook": "notebook written",
    "notebook_failed": "notebook failed",
    "report": "report written",
    "report_failed": "report failed",
}


def event_line(event: EventRecord) -> str | None:
    """One line for one store event, without its time (None for events a watcher need not see)."""
    detail = f" ({event.detail})" if event.detail else ""
    if event.kind in ("timed_out", "leftovers") and event.run:
        return f"{event.run}: {event.detail}"
    if event.kind == "status":
        local = re.fullmatch(r"(\d+):\d+", event.detail or "")  # a local handle: pid:start time
        detail = f" (pid {local[1]})" if local else detail
        return f"{event.run}: {event.old_status} -> {event.new_status}{detail}"
    if event.kind == "recovered":
        return f"{event.run}: recovered{detail}"
    if event.kind == "runner_stopped":  # its detail says it all, with the command that resumes
        return event.detail or "runner stopped"
    label = _GROUP_EVENTS.get(event.kind)
    return None if label is None else label + detail


def result_text(job: JobRecord) -> str:
    """``succeeded · 150k steps · reward 281.2 · 0:15`` from the job's record and its last progress line."""
    parts = [job.status.value]
    progress = read_progress(job.log_path)
    if progress is not None:
        parts.append(f"{fmt_count(progress.step)} steps")
        reward = progress.metrics.get("overview/reward")
        if reward is not None:
            parts.append(f"reward {reward:.4g}")
    if job.started_at and job.ended_at:
        parts.append(fmt_duration(job.ended_at - job.started_at))
    return " · ".join(parts)


def print_summary(store: JobStore, group_name: str, out: TextIO, max_failed: int = 20) -> int:
    """The final summary: counts; each failed job with its reason, the log lines that explain it and
    its log path; cancelled and skipped jobs by reason; the notebook. Returns the group's exit code."""
    group = store.group(group_name)
    jobs = store.jobs(group_name)
    print(summary_line(group, jobs, time.time()), file=out)
    # a search's trials only: a reader's store written before trials existed has no table for them
    trials = store.trials(group_name) if group.search_space is not None else []
    if group.search_space is not None:
        print(search_line(group, trials), file=out)
    succeeded = [j for j in jobs if j.status == JobStatus.SUCCEEDED]
    if len(succeeded) <= max_failed:  # small groups: each run's result at a glance
        width = max((len(j.run) for j in succeeded), default=0)
        for job in succeeded:
            print(f"  {job.run:<{width}}  {result_text(job)}", file=out)
    failed = [j for j in jobs if j.status == JobStatus.FAILED]
    for job in failed[:max_failed]:
        print(f"  {job.run} failed: {job.reason or 'no reason recorded'}", file=out)
        for line in explain_failure(read_tail(job.log_path), 3):
            print(f"      {line}", file=out)
        if job.log_path:
            print(f"      log: {job.log_path}", file=out)
    if len(failed) > max_failed:
        print(f"  … {len(failed) - max_failed} more failed: metta-exp job show {group_name}", file=out)
    others: dict[tuple[str, str], list[str]] = {}
    for job in jobs:
        if job.status in (JobStatus.CANCELLED, JobStatus.SKIPPED):
            others.setdefault((job.status.value, job.reason or "no reason recorded"), []).append(job.run)
    pruned = [j.run for j in jobs if j.status == JobStatus.PRUNED]
    if pruned:  # each has its own reason (its value): one line for all, reasons in 'job show'
        others[("pruned", "behind the other trials; reasons: metta-exp job show " + group_name)] = pruned
    for (status, reason), runs in others.items():
        print(f"  {len(runs)} {status} ({reason}): {_listed(runs)}", file=out)
    print_outputs(store, group_name, out)
    out.flush()
    return exit_code(jobs, trials)


def _listed(runs: list[str], limit: int = 8) -> str:
    return ", ".join(runs[:limit]) + (f", … ({len(runs) - limit} more)" if len(runs) > limit else "")


def print_outputs(store: JobStore, group_name: str, out: TextIO) -> None:
    """Where the group's notebook and HTML report are, with commands that open them as printed."""
    import shlex
    from pathlib import Path

    from metta_exp.paths import command_prefix, jupyter_command

    events = store.events(group_name)
    last = {kind: next((e for e in reversed(events) if e.kind.startswith(kind)), None) for kind in OUTPUTS}
    notebook, report = last["notebook"], last["report"]
    if notebook is not None and notebook.kind == "notebook" and notebook.detail:
        print(f"Notebook: {notebook.detail}", file=out)
        print(f"  in Jupyter: {jupyter_command(Path(notebook.detail))}", file=out)
    elif notebook is not None:
        print(f"Notebook not written: {notebook.detail}", file=out)
    if report is not None and report.kind == "report":
        print(f"Report: {report.detail}  (HTML, plots included: any browser opens it)", file=out)
        print(f"  open it: {command_prefix()}metta-exp job report {shlex.quote(group_name)} --open", file=out)
    elif report is not None:
        print(f"Report not written: {report.detail}", file=out)


OUTPUTS = ("notebook", "report")
