"""Reading job logs: tails, what a failure says, and following a log as it grows.

Pure functions turn log text into what the monitor and ``metta-exp job show|logs`` display (the progress
reached, the last lines worth reading, the lines that explain a failure); the few I/O helpers read the
end of a file without loading the whole of it. The standard library only: ``job`` commands import this.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from metta_exp.logs.lines import (
    PROGRESS_PREFIX,
    Progress,
    WandbRef,
    last_checkpoint,
    last_progress,
    last_wandb,
)
from metta_exp.paths import RunDir
from metta_exp.status import ACTIVE, JobStatus

if TYPE_CHECKING:
    from metta_exp.records import JobRecord

TAIL_BYTES = 16384
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_CARETS = re.compile(r"\s*[\^~]+\s*\Z")
_ERROR = re.compile(
    r"(?i)(error|exception|fatal|traceback|killed|out of memory|\boom\b|segmentation fault|core dumped"
    r"|panic|abort|assert)"
)


@dataclass(frozen=True)
class JobLog:
    """What a job's log (and its ``run.json``) tell the monitor, read at one moment."""

    progress: Progress | None = None
    tail: tuple[str, ...] = ()
    """The last lines worth showing (clean text, progress lines left out: the progress bar shows them)."""
    explanation: tuple[str, ...] = ()
    """The lines that explain a failure: the end of the last traceback, else the last error lines."""
    checkpoint: str | None = None


def clean_line(line: str) -> str:
    """A log line as plain text: no ANSI escapes, only what follows the last carriage return, tabs
    expanded, other control characters dropped, trailing blanks stripped."""
    line = _ANSI.sub("", line)
    if "\r" in line:
        line = line.rstrip("\r")
        line = line[line.rfind("\r") + 1 :]
    return _CONTROL.sub("", line.expandtabs(4)).rstrip()


def clean_lines(text: str) -> list[str]:
    """``text`` split into clean lines (see :func:`clean_line`)."""
    return [clean_line(line) for line in text.split("\n")]


NOTICE = "[metta-exp] "
"""What starts metta-exp's own lines in a job's log (progress, checkpoint, W&B notices)."""


def tail_lines(text: str, n: int) -> list[str]:
    """The last ``n`` non-blank lines of ``text`` that the job itself printed: metta-exp's own lines
    (progress, checkpoint, W&B notices) are left out, so each job shows its latest real output."""
    if n <= 0:
        return []
    out: list[str] = []
    for raw in reversed(text.split("\n")):  # clean only the lines it looks at
        line = clean_line(raw)
        if line.strip() and NOTICE not in line:
            out.append(line)
            if len(out) == n:
                break
    return out[::-1]


def explain_failure(text: str, limit: int = 6) -> list[str]:
    """The lines of a log that explain why the job failed, at most ``limit``, in log order.

    The end of the last Python traceback when there is one (its last frames and the exception line,
    Python's ``^^^^`` markers dropped; the exception line is always kept); else the last lines that
    look like errors; else the last lines of the log.
    """
    if limit <= 0:
        return []
    lines = [line for line in clean_lines(text) if line.strip() and PROGRESS_PREFIX not in line]
    start = next(
        (i for i in range(len(lines) - 1, -1, -1) if "Traceback (most recent call last)" in lines[i]), None
    )
    if start is not None:
        block = _traceback_block(lines, start)
        if block:
            shown = block[-limit:]
            while len(shown) > 1 and len(shown) < len(block) and 'File "' not in shown[0]:
                shown = shown[1:]  # start at a frame, not in the middle of one
            return shown
    errors = [line for line in lines if _ERROR.search(line)]
    return (errors or lines)[-limit:]


def _traceback_block(lines: list[str], start: int) -> list[str]:
    """The frames and exception line of the traceback starting at ``lines[start]``."""
    prefix = lines[start][: lines[start].find("Traceback")]  # a remote log may prefix every line
    block: list[str] = []
    for line in lines[start + 1 :]:
        body = line[len(prefix) :] if prefix and line.startswith(prefix) else line
        if _CARETS.fullmatch(body) or body.lstrip().startswith('File "<frozen '):
            continue  # Python's ^^^ markers; the interpreter's own frames (runpy for python -m)
        block.append(line)
        if body[:1] not in (" ", "\t"):
            break  # the exception line ends the traceback
    return block


def read_tail(path: str | os.PathLike[str] | None, nbytes: int = TAIL_BYTES) -> str:
    """The last ``nbytes`` of a file as text ('' when it does not exist yet); a first partial line is
    dropped when the file is longer than ``nbytes``."""
    if not path:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - nbytes))
            data = f.read()
    except OSError:
        return ""
    if size > nbytes:
        data = data[data.find(b"\n") + 1 :]
    return data.decode("utf-8", "replace")


def read_backwards(f: BinaryIO, enough: Callable[[bytes], bool], block: int = 65536) -> tuple[int, bytes]:
    """The end of the open file ``f``, read backwards by blocks until ``enough(data)`` says so (or the
    start is reached): the offset ``data`` starts at, and ``data``. Never the whole of a large file."""
    pos = f.seek(0, os.SEEK_END)
    data = b""
    while pos > 0:
        step = min(block, pos)
        pos -= step
        f.seek(pos)
        data = f.read(step) + data
        if enough(data):
            break
    return pos, data


def tail_offset(path: str | os.PathLike[str], n: int, block: int = 65536) -> int:
    """The byte offset where the last ``n`` lines of a file start (read backwards by blocks, never the
    whole file); a last line without its newline counts as a line."""

    def body(data: bytes) -> bytes:
        return data[:-1] if data.endswith(b"\n") else data

    with open(path, "rb") as f:
        if n <= 0:
            return f.seek(0, os.SEEK_END)
        pos, data = read_backwards(f, lambda d: body(d).count(b"\n") >= n, block)
    if body(data).count(b"\n") >= n:
        return pos + _nth_newline_from_end(body(data), n) + 1
    return 0


def _nth_newline_from_end(data: bytes, n: int) -> int:
    at = len(data)
    for _ in range(n):
        at = data.rindex(b"\n", 0, at)
    return at


def read_progress(path: str | os.PathLike[str] | None) -> Progress | None:
    """The last progress line of a log: looked for in its last 4 KiB, then in its last 64 KiB."""
    if not path:
        return None
    try:
        with open(path, "rb") as f:  # one open for both reads: ``job show`` reads thousands of logs
            size = f.seek(0, os.SEEK_END)
            found = last_progress(_tail_of(f, size, 4096))
            if found is None and size > 4096:
                found = last_progress(_tail_of(f, size, 65536))
    except OSError:
        return None
    return found


def final_progress(path: str | os.PathLike[str] | None) -> float:
    """What the store keeps of an ended attempt's progress: its last fraction, -1.0 when it has none."""
    fraction = _fraction(read_progress(path))
    return -1.0 if fraction is None else fraction


def final_metrics(
    log_path: str | os.PathLike[str] | None, run_dir: str, metrics: Sequence[str], attempt: int | None = None
) -> dict[str, float]:
    """What the store keeps of an attempt's metrics (``job runs`` reads it, not the files): the last value
    of each of ``metrics`` and ``_step`` (the step reached), from the run's ``metrics.jsonl`` (exact, the
    lines of ``attempt``), else from the last progress line of its log (a remote job's: its metrics file
    stays on the remote machine)."""
    from metta_exp.metrics.local import last_values  # the runner's: job show must not load fetch_metrics

    values = last_values(RunDir.at(run_dir).metrics, metrics, attempt)
    if values:
        return values
    found = read_progress(log_path)
    if found is None:
        return {}
    return {"_step": float(found.step)} | {k: v for k, v in found.metrics.items() if k in metrics}


def progress_fraction(job: JobRecord) -> float | None:
    """A job's progress for ``job show``: none while pending (its log is an earlier attempt's), the one
    recorded at its end when there is one, else read from its log."""
    return _fraction(read_progress(job.log_path)) if job.progress_needs_log else job.progress_at_end


def _fraction(found: Progress | None) -> float | None:
    return round(found.fraction, 4) if found is not None and found.fraction is not None else None


def _tail_of(f: BinaryIO, size: int, nbytes: int) -> str:
    """``read_tail`` of an open file of ``size`` bytes."""
    f.seek(max(0, size - nbytes))
    data = f.read()
    if size > nbytes:
        data = data[data.find(b"\n") + 1 :]
    return data.decode("utf-8", "replace")


LogMark = tuple[int, int]
"""Where :func:`scan_wandb_ref` stopped in a log: (the file's inode, the bytes looked through)."""


def scan_wandb_ref(
    path: str | os.PathLike[str] | None, mark: LogMark = (0, 0), nbytes: int = 262144
) -> tuple[WandbRef | None, LogMark]:
    """The W&B run a log reports (its last ``[metta-exp] wandb ...`` line) in what was written since
    ``mark`` (what this returned last time), and the mark to pass next time.

    Reads at most the log's first ``nbytes`` (where ``tracking`` prints the line once W&B is up) and its
    last ``nbytes`` (it prints it again when it finishes), never a whole large log, and nothing when the
    log did not change. A log replaced by another file (a remote log tail copied over it) or cut shorter
    is read again from its start.
    """
    try:
        stat = os.stat(path) if path else None
    except OSError:
        return None, mark
    if stat is None:
        return None, mark
    size = stat.st_size
    offset = mark[1] if mark[0] == stat.st_ino and mark[1] <= size else 0
    if size == offset:
        return None, (stat.st_ino, size)
    chunks = []
    first = max(offset - 4096, 0)  # overlap: a line half written at the last look
    with open(path, "rb") as f:  # type: ignore[arg-type]
        if first < nbytes < size:  # the head, until it has been looked through
            f.seek(first)
            chunks.append(f.read(nbytes - first))
        start = max(first, size - nbytes)
        f.seek(start)
        chunks.append(f.read(size - start))
    found = next((ref for c in reversed(chunks) if (ref := last_wandb(c.decode("utf-8", "replace")))), None)
    return found, (stat.st_ino, size)


def read_checkpoint(run_dir: str | os.PathLike[str], log_text: str, attempt: int | None = None) -> str | None:
    """The run's latest checkpoint: ``run.json``'s ``checkpoint`` when attempt ``attempt`` wrote it (None:
    whichever did), else the last checkpoint line of the attempt's log (``log_text``)."""
    from metta_exp.runs.state import read_run_state  # the monitor's: job show must not load it

    state = read_run_state(run_dir, attempt)
    return (state.checkpoint if state is not None else None) or last_checkpoint(log_text)


def job_log(text: str, checkpoint: str | None = None, tail: int = 3, explain: int = 6) -> JobLog:
    """A :class:`JobLog` from the tail of a log (pure)."""
    return JobLog(
        progress=last_progress(text),
        tail=tuple(tail_lines(text, tail)),
        explanation=tuple(explain_failure(text, explain)),
        checkpoint=checkpoint,
    )


class LogReader:
    """Reads ``JobLog`` s for the monitor, re-reading a log only when its size or mtime changed, and
    only what the job's status calls for: the explanation of a failure, the checkpoint of a success."""

    def __init__(self, nbytes: int = TAIL_BYTES, active_bytes: int = 4096) -> None:
        self.nbytes = nbytes
        self.active_bytes = active_bytes
        self._cache: dict[tuple[str, str], tuple[tuple[object, ...], JobLog]] = {}

    def read(
        self,
        log_path: str | None,
        run_dir: str,
        status: JobStatus = JobStatus.RUNNING,
        attempt: int | None = None,
    ) -> JobLog:
        """What the log at ``log_path`` (of attempt ``attempt`` of the job in ``run_dir``) tells now."""
        if not log_path:
            return JobLog()
        key = (log_path, run_dir)
        run_json = _stamp(str(RunDir.at(run_dir).run_json)) if status == JobStatus.SUCCEEDED else None
        signature = (status, attempt, _stamp(log_path), run_json)
        cached = self._cache.get(key)
        if cached is not None and cached[0] == signature:
            return cached[1]
        failed = status == JobStatus.FAILED
        text = read_tail(log_path, self.nbytes if failed else self.active_bytes)
        checkpoint = read_checkpoint(run_dir, text, attempt) if status == JobStatus.SUCCEEDED else None
        result = job_log(text, checkpoint, tail=3 if status in ACTIVE else 0, explain=6 if failed else 0)
        self._cache[key] = (signature, result)
        return result


def _stamp(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return (-1, -1)
    return (st.st_size, st.st_mtime_ns)
