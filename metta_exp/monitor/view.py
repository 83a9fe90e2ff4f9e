"""The monitor's view: a pure function from records, log tails, the time and the terminal size to the
lines the monitor shows (``render_monitor``). No I/O: the loop in ``monitor.py`` gathers a ``Frame``.

The view has a header (counts, elapsed time, who drives the group), then four sections in this order:
failed jobs (reason and the log lines that explain it), active jobs (progress bar, steps, speed, ETA,
log tail), completed jobs (artifacts; a search's best trials first, its pruned jobs with their reason)
and pending jobs (what each waits for). A search's header says its best trial so far. Every line is
exactly one terminal line (cut with an ellipsis); when the sections do not fit the height, details
shrink first, then sections fold to counts, failed and active jobs keeping the most room.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from metta_exp.logs.tail import JobLog
from metta_exp.monitor.layout import Item, Section, layout
from metta_exp.records import GroupRecord, JobRecord
from metta_exp.search.text import search_header, search_size, trial_rank
from metta_exp.status import ACTIVE, ALL_STATUSES, JobStatus, waits_for
from metta_exp.text import fmt_duration, plural
from metta_exp.trials import TrialRecord

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.text import Text

    from metta_exp.logs.lines import Progress

ICON = {
    JobStatus.PENDING: "·",
    JobStatus.LAUNCHING: "◌",
    JobStatus.RUNNING: "▶",
    JobStatus.SUCCEEDED: "✓",
    JobStatus.FAILED: "✗",
    JobStatus.CANCELLED: "⊘",
    JobStatus.SKIPPED: "↷",
    JobStatus.PRUNED: "✂",
}
STYLE = {
    JobStatus.PENDING: "dim",
    JobStatus.LAUNCHING: "cyan",
    JobStatus.RUNNING: "blue",
    JobStatus.SUCCEEDED: "green",
    JobStatus.FAILED: "bold red",
    JobStatus.CANCELLED: "yellow",
    JobStatus.SKIPPED: "yellow",
    JobStatus.PRUNED: "yellow",
}
QUOTA = {"failed": 0.4, "active": 0.35, "completed": 0.15, "pending": 0.1}
"""The share of the height each section keeps for itself when all of them compete for it."""
INDENT = "      "


@dataclass(frozen=True)
class Gpus:
    """This machine's GPUs and those held by active jobs of any group (local groups only)."""

    devices: tuple[int, ...]
    busy: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Frame:
    """Everything one redraw shows, read at one moment (``trials``: a search group's)."""

    group: GroupRecord
    jobs: Sequence[JobRecord]
    logs: Mapping[str, JobLog] = field(default_factory=dict)
    now: float = 0.0
    runner_alive: bool = True
    gpus: Gpus | None = None
    trials: Sequence[TrialRecord] = ()
    held: str | None = None  # why no runner is started until you act (its backend refuses every call)

    @cached_property
    def by_run(self) -> dict[str, JobRecord]:
        return {job.run: job for job in self.jobs}

    @cached_property
    def active(self) -> int:
        """How many jobs are launching or running."""
        return sum(1 for job in self.jobs if job.status in ACTIVE)


# --- formatting ---------------------------------------------------------------------------------------


def fmt_count(n: float) -> str:
    """``987``, ``13.5k``, ``30k``, ``152k``, ``1.2M``: at most 4 characters and a unit."""
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            value = n / scale
            text = f"{value:.0f}" if abs(value) >= 100 else f"{value:.1f}".rstrip("0").rstrip(".")
            return text + unit
    return f"{n:.0f}" if float(n).is_integer() else f"{n:.3g}"


def fmt_metric(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1e4 else fmt_count(value)


def counts(jobs: Sequence[JobRecord]) -> dict[JobStatus, int]:
    out = dict.fromkeys(ALL_STATUSES, 0)
    for job in jobs:
        out[job.status] += 1
    return out


def summary_line(group: GroupRecord, jobs: Sequence[JobRecord], now: float) -> str:
    """``g1: 3 jobs, 2 succeeded, 1 failed · 0:42 elapsed``."""
    c = counts(jobs)
    parts = [f"{c[s]} {s.value}" for s in ALL_STATUSES if c[s]]
    elapsed = fmt_duration((group.ended_at or now) - group.created_at)
    size = f"{search_size(group)} · " if group.search_space is not None else ""
    return f"{group.name}: {size}{plural(len(jobs), 'job')}, " + ", ".join(parts) + f" · {elapsed} elapsed"


def _line(*parts: str | tuple[str, str]) -> Text:
    from rich.text import Text

    text = Text(no_wrap=True, overflow="ellipsis")
    for part in parts:
        if isinstance(part, tuple):
            text.append(part[0], style=part[1])
        else:
            text.append(part)
    return text


def _bar(fraction: float, width: int) -> tuple[tuple[str, str], tuple[str, str]]:
    done = round(fraction * width)
    return ("━" * done, "green" if fraction >= 1 else "magenta"), ("─" * (width - done), "grey37")


def _metrics(progress: Progress | None, tracked: Sequence[str]) -> str:
    if progress is None:
        return ""
    shown = [
        f"{key.rsplit('/', 1)[-1]} {fmt_metric(progress.metrics[key])}"
        for key in tracked
        if key in progress.metrics and key != "overview/sps"
    ]
    return "  ".join(shown)


def _row(job: JobRecord, name_w: int, icon_style: str, *parts: str | tuple[str, str]) -> Text:
    """A job's first line: icon, name, then ``parts``."""
    return _line("  ", (ICON[job.status], icon_style), " ", (job.run.ljust(name_w), "bold"), "  ", *parts)


def _elapsed(job: JobRecord, now: float) -> float | None:
    if job.started_at is None:
        return None
    return (job.ended_at if job.status.is_terminal() and job.ended_at else now) - job.started_at


# --- sections -------------------------------------------------------------------------------------------


def _failed_item(job: JobRecord, log: JobLog, frame: Frame, name_w: int) -> Item:
    n = len(log.explanation)

    def build(level: int) -> list[Text]:
        p = log.progress
        where = (
            f" · {p.fraction:.0%} ({fmt_count(p.step)}/{fmt_count(p.total or 0)})" if p and p.total else ""
        )
        ran = fmt_duration(_elapsed(job, frame.now))
        row = _row(
            job,
            name_w,
            "bold red",
            (job.reason or "failed", "red"),
            f" · attempt {job.attempts} · ran {ran}{where}",
        )
        lines = [
            _line(INDENT, (text, "bold red" if i == n - 1 else "red"))
            for i, text in enumerate(log.explanation)
        ]
        log_line = _line(INDENT, ("log: ", "dim"), (job.log_path or "-", "dim"))
        return [[row, *lines, log_line], [row, *lines[-3:]], [row, *lines[-1:]], [row]][level]

    return Item(job, [n + 2, min(n, 3) + 1, min(n, 1) + 1, 1], build)


ACTIVE_FIXED = 50
"""Cells of an active job's row besides its name, bar and metrics (icon, percent, steps, speed, ETA, time)
when each field fits its usual width; wider fields (``77.6k/150k``, ``1h02m``) take them from the bar."""
ROW_HEAD = 6
"""Cells of a row before the job's name: indent, icon, space; and the two spaces after it."""


def progress_tail(job: JobRecord, p: Progress, now: float) -> str:
    """``   50%    15k/30k   2.5k/s  ETA  0:06   1:10``: what follows an active job's bar."""
    steps = f"{fmt_count(p.step)}/{fmt_count(p.total or 0)}"
    sps = f"{fmt_count(p.sps)}/s" if p.sps else "-"
    eta = fmt_duration((p.total - p.step) / p.sps) if p.sps and p.total else "-"
    took = fmt_duration(_elapsed(job, now))
    return f"  {p.fraction or 0:>4.0%}  {steps:>9}  {sps:>7}  ETA {eta:>5}  {took:>5}"


def bar_width(width: int, name_w: int, metrics_w: int, tail_w: int = 0) -> tuple[int, bool]:
    """The progress bars' width (the same for every active job, so they line up) and whether the
    tracked metrics still fit on the rows; ``tail_w``: the widest :func:`progress_tail`."""
    room = width - max(ACTIVE_FIXED, ROW_HEAD + tail_w) - name_w
    show = metrics_w > 0 and room - metrics_w - 2 >= 16
    return max(8, min(40, room - (metrics_w + 2 if show else 0))), show


def _active_item(
    job: JobRecord, log: JobLog, frame: Frame, name_w: int, bar: tuple[int, bool], show_logs: bool
) -> Item:
    n = len(log.tail) if show_logs else 0
    sizes = [n + 1, min(n, 1) + 1, 1]
    return Item(job, sizes, lambda level: _active_lines(job, log, frame, name_w, bar, level if n else 2))


def _active_lines(
    job: JobRecord, log: JobLog, frame: Frame, name_w: int, bar: tuple[int, bool], level: int
) -> list[Text]:
    style = STYLE[job.status]
    p = log.progress
    metrics = _metrics(p, frame.group.exp.metrics_to_track or ()) if bar[1] else ""
    # where a remote job stands (``SkyPilot PENDING``, ``... (recovered 1x)``), as its runner records it
    note = job.reason if frame.group.backend == "skypilot" else None
    if job.status == JobStatus.LAUNCHING:
        row = _row(job, name_w, style, ("launching…", "cyan"), f"  attempt {job.attempts}")
    elif p is None or p.fraction is None:
        steps = f"step {fmt_count(p.step)}  " if p else ""
        sps = f"{fmt_count(p.sps)}/s  " if p and p.sps else ""
        waiting = (note or "waiting for progress…") if p is None else steps + sps
        row = _row(job, name_w, style, (waiting, "dim"), f"  {fmt_duration(_elapsed(job, frame.now))}")
    else:
        row = _row(job, name_w, style, *_bar(p.fraction, bar[0]), progress_tail(job, p, frame.now))
    if metrics:
        row.append(f"  {metrics}", style="cyan")
    if job.attempts > 1:
        row.append(f"  attempt {job.attempts}", style="yellow")
    if note and p is not None:
        row.append(f"  {note}", style="yellow")
    tails = log.tail[-(3, 1)[level] :] if level < 2 else ()
    return [row, *(_line(INDENT, ("│ " + text, "dim")) for text in tails)]


def _completed_item(job: JobRecord, log: JobLog, frame: Frame, name_w: int) -> Item:
    sizes = [2, 1] if job.status == JobStatus.SUCCEEDED else [1]
    return Item(job, sizes, lambda level: _completed_lines(job, log, frame, name_w, level))


def _completed_lines(job: JobRecord, log: JobLog, frame: Frame, name_w: int, level: int) -> list[Text]:
    style = STYLE[job.status]
    took = fmt_duration(_elapsed(job, frame.now))
    row = _row(job, name_w, style, (job.status.value.ljust(9), style), f"  {took:>5}")
    if job.status != JobStatus.SUCCEEDED:
        row.append(f"  {job.reason or ''}", style=style)
        return [row]
    metrics = _metrics(log.progress, frame.group.exp.metrics_to_track or ())
    if metrics:
        row.append(f"  {metrics}", style="cyan")
    artifacts: list[str | tuple[str, str]] = []
    if job.wandb_url:
        artifacts += [("W&B ", "dim"), (job.wandb_url, "underline"), "  "]
    if log.checkpoint:
        ckpt = log.checkpoint
        inside = ckpt.startswith(job.run_dir.rstrip("/") + "/")
        artifacts += [("ckpt ", "dim"), ckpt[len(job.run_dir.rstrip("/")) + 1 :] if inside else ckpt, "  "]
    artifacts += [("dir ", "dim"), job.run_dir]
    if level == 0:
        return [row, _line(INDENT, *artifacts)]
    row.append("  ")
    row.append_text(_line(*artifacts))
    return [row]


def pending_reason(job: JobRecord, frame: Frame) -> tuple[str, str]:
    """Why a pending job is not running yet: ``(kind, text)``, kind being what fold lines count
    (``dependency``, ``max_parallel``, ``gpu``, ``runner``, ``ready``, ``cancel``)."""
    by_run = frame.by_run
    retry = f"retry {job.attempts + 1} queued ({job.reason}); " if job.attempts and job.reason else ""
    if frame.group.cancel_requested:
        return "cancel", "the group is being killed"
    cap = frame.group.exp.max_parallel
    gpus = job.spec.gpus
    free = None if frame.gpus is None else len([d for d in frame.gpus.devices if d not in frame.gpus.busy])
    status = {run: j.status for run, j in by_run.items()}
    wait = waits_for(job.depends_on, status, frame.active, cap, gpus, free)
    if wait == "dependency":
        blocking = [
            by_run[d] for d in job.depends_on if d in by_run and by_run[d].status != JobStatus.SUCCEEDED
        ]
        bad = [d for d in blocking if d.status in (JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.SKIPPED)]
        if bad:
            return "dependency", f"{retry}dependency {bad[0].run} {bad[0].status.value}: will be skipped"
        names = ", ".join(f"{d.run} ({d.status.value})" for d in blocking)
        return "dependency", f"{retry}waits for {names}"
    if wait == "max_parallel":
        return "max_parallel", f"{retry}waits for a slot: max_parallel={cap}, {frame.active} active"
    if wait == "gpu" and frame.gpus is not None:
        return "gpu", f"{retry}waits for {plural(gpus, 'GPU')}: {free} of {len(frame.gpus.devices)} free"
    if not frame.runner_alive:
        return "runner", f"{retry}waits for a runner (none alive: one is being started)"
    return "ready", f"{retry}ready: the runner launches it next"


def _pending_item(job: JobRecord, frame: Frame, name_w: int) -> Item:
    kind, text = pending_reason(job, frame)
    return Item(job, [1], lambda level: [_row(job, name_w, "dim", (text, "dim"))], kind)


def _fold_pending(items: list[Item]) -> str:
    kinds = Counter(item.kind for item in items)
    words = {
        "dependency": "a dependency",
        "max_parallel": "max_parallel",
        "gpu": "a GPU",
        "runner": "a runner",
        "ready": "ready",
        "cancel": "being killed",
    }
    parts = [
        f"{n} {words.get(kind, kind)}" if kind == "ready" else f"{n} wait for {words.get(kind, kind)}"
        for kind, n in kinds.most_common()
    ]
    return ", ".join(parts)


def _fold_by_status(items: list[Item]) -> str:
    by = Counter(item.job.status.value for item in items)
    return ", ".join(f"{n} {status}" for status, n in by.most_common())


def _fold_runs(items: list[Item]) -> str:
    return ", ".join(item.job.run for item in items)


def _title(label: str, detail: str, style: str, width: int) -> Text:
    text = _line(("── ", "grey37"), (label, style), (f" {detail} " if detail else " ", style))
    text.append("─" * max(0, width - text.cell_len), style="grey37")
    return text


def _sections(frame: Frame, width: int, show_logs: bool) -> list[Section]:
    def log(job: JobRecord) -> JobLog:
        return frame.logs.get(job.run, JobLog())

    jobs = list(frame.jobs)
    failed = sorted((j for j in jobs if j.status == JobStatus.FAILED), key=lambda j: -(j.ended_at or 0))
    active = [j for j in jobs if j.status in ACTIVE]
    rank = trial_rank(frame.trials, frame.group.exp.search.direction)
    done = sorted(
        (j for j in jobs if j.status.is_terminal() and j.status != JobStatus.FAILED),
        key=lambda j: (j.status != JobStatus.SUCCEEDED, rank.get(j.run, 0), -(j.ended_at or 0), j.position),
    )
    pending = [j for j in jobs if j.status == JobStatus.PENDING]
    name_w = min(max(24, width // 3), max((len(j.run) for j in jobs), default=4))
    tracked = frame.group.exp.metrics_to_track or ()
    tails = [
        progress_tail(j, p, frame.now) for j in active if (p := log(j).progress) and p.fraction is not None
    ]
    metrics_w = max((len(_metrics(log(j).progress, tracked)) for j in active), default=0)
    bar = bar_width(width, name_w, metrics_w, max(map(len, tails), default=0))
    c = counts(jobs)
    running = f"{c[JobStatus.RUNNING]} running" + (
        f", {c[JobStatus.LAUNCHING]} launching" if c[JobStatus.LAUNCHING] else ""
    )
    done_detail = ", ".join(
        f"{c[s]} {s.value}"
        for s in (JobStatus.SUCCEEDED, JobStatus.PRUNED, JobStatus.CANCELLED, JobStatus.SKIPPED)
        if c[s]
    )
    return [
        Section(
            "failed",
            _title("Failed", str(len(failed)), "bold red", width),
            [_failed_item(j, log(j), frame, name_w) for j in failed],
            _fold_runs,
        ),
        Section(
            "active",
            _title("Active", running, "bold blue", width),
            [_active_item(j, log(j), frame, name_w, bar, show_logs) for j in active],
            _fold_runs,
        ),
        Section(
            "completed",
            _title("Completed", done_detail, "bold green", width),
            [_completed_item(j, log(j), frame, name_w) for j in done],
            _fold_by_status,
        ),
        Section(
            "pending",
            _title("Pending", str(len(pending)), "bold", width),
            [_pending_item(j, frame, name_w) for j in pending],
            _fold_pending,
        ),
    ]


# --- the whole view --------------------------------------------------------------------------------------


def _header(frame: Frame, width: int) -> list[Text]:
    group, jobs, c = frame.group, frame.jobs, counts(frame.jobs)
    elapsed = fmt_duration((group.ended_at or frame.now) - group.created_at)
    if group.ended_at:
        driver = ("ended", "bold")
    elif frame.runner_alive:
        driver = (f"runner pid {group.runner_pid}" if group.runner_pid else "runner alive", "green")
    elif frame.held:
        driver = (f"no runner: {frame.held}; then: metta-exp job resume {group.name}", "bold red")
    else:
        driver = ("no runner: starting one", "bold yellow")
    search = group.search_space is not None  # its size is its study's: its jobs are the trials asked so far
    size = search_size(group) if search else plural(len(jobs), "job")
    first = _line(
        (group.name, "bold"),
        f" · {group.experiment} on {group.backend} · {size} · {elapsed} elapsed · ",
        driver,
    )
    if group.cancel_requested and not group.ended_at:
        first.append(" · killing", style="bold yellow")
    ended = sum(c[s] for s in ALL_STATUSES if s.is_terminal())
    total = max(group.exp.search.n_trials, len(jobs)) if search else len(jobs)
    fraction = ended / total if total else 1.0
    second = _line(*_bar(fraction, max(10, min(30, width // 8))), f" {ended}/{total} done  ")
    for status in (
        JobStatus.FAILED,
        JobStatus.RUNNING,
        JobStatus.LAUNCHING,
        JobStatus.SUCCEEDED,
        JobStatus.PENDING,
        JobStatus.PRUNED,
        JobStatus.CANCELLED,
        JobStatus.SKIPPED,
    ):
        if c[status]:
            second.append(f"{ICON[status]} {c[status]} {status.value}  ", style=STYLE[status])
    if group.search_space is None:
        return [first, second]
    return [first, second, _line((search_header(group, frame.trials), "cyan"))]


def _footer(frame: Frame) -> Text:
    name = frame.group.name
    if frame.group.ended_at:
        return _line(("group ended", "dim"))
    return _line((f"Ctrl+C stops watching; the jobs go on · stop them: metta-exp job kill {name}", "dim"))


def monitor_lines(frame: Frame, width: int, height: int, show_logs: bool = True) -> list[Text]:
    """The monitor's lines for a terminal of ``width`` x ``height``: at most ``height`` lines, each at
    most ``width`` cells. Pure: the same frame and size give the same lines."""
    sections = [s for s in _sections(frame, width, show_logs) if s.items]
    header = _header(frame, width)
    avail = height - len(header) - 1 - len(sections)
    body = layout(sections, max(0, avail), QUOTA)
    lines = list(header)
    for section in sections:
        lines.append(section.title)
        lines += body[section.name]
    lines.append(_footer(frame))
    for line in lines:
        line.rstrip()
        line.truncate(width, overflow="ellipsis")
    return lines[:height]


def render_monitor(frame: Frame, width: int, height: int, show_logs: bool = True) -> RenderableType:
    """The monitor as one rich renderable (see :func:`monitor_lines`)."""
    from rich.console import Group

    return Group(*monitor_lines(frame, width, height, show_logs))
