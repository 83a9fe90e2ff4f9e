"""What the simulated ``jobs.tail_logs(follow=False)`` answers (``sky/jobs/utils.py``: ``stream_logs_by_id``).

- RUNNING or CANCELLING: the tail of the log of the machine that runs the job now (after a recovery, the
  new machine's log only: the preempted machine's is gone).
- Ended, after its controller downloaded the log: that log, then ``✓ Job finished (status: S).``. The
  controller downloads it after it set SUCCEEDED or CANCELLED (``sky/jobs/controller.py``: "Set the job to
  SUCCEEDED first before start downloading and streaming the logs"): ``log_download_s`` later here; for a
  job whose program failed it downloads first and sets FAILED after.
- Ended before that, or ended without ever running (no cluster had it): one line, ``Job N is already in
  terminal state S. For more details, run: sky jobs logs --controller N`` (and ``Failure reason: ...``).
- Any status before RUNNING: nothing yet; the caller waits (``stream_logs_by_id`` waits for the task to
  start, even without ``follow``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["downloaded_at", "tail_answer"]

_DOWNLOADED_FIRST = frozenset({"FAILED", "FAILED_SETUP"})  # logs downloaded before the status is set


def downloaded_at(job: Mapping[str, Any], download_s: float) -> float | None:
    """When an ended job's log is downloaded (None: never, it did not run)."""
    if job.get("start_at") is None or job.get("end_at") is None:
        return None
    return float(job["end_at"]) + (0.0 if job["status"] in _DOWNLOADED_FIRST else download_s)


def tail_answer(
    job: Mapping[str, Any], job_dir: Path, lines: int | None, now: float, download_s: float
) -> str:
    """The text a non-following tail of ``lines`` lines (None: all) answers for ``job`` at ``now``."""
    status = str(job["status"])
    if status in ("RUNNING", "CANCELLING"):
        return _tail(job_dir / "log", lines)
    ready = downloaded_at(job, download_s)
    if ready is not None and now >= ready:
        return _tail(job_dir / "log", lines) + f"✓ Job finished (status: {status}).\n"
    text = (
        f"Job {job['job_id']} is already in terminal state {status}. For more details, run: sky jobs logs "
        f"--controller {job['job_id']}\n"
    )
    if status.startswith("FAILED"):
        text += f"Failure reason: {job.get('failure_reason')}\n"
    return text


def _tail(path: Path, lines: int | None) -> str:
    """The log's last ``lines`` lines as they are in the file (``sky/skylet/log_lib.py``: ``tail_logs``
    prints each line with ``end=''``): a last line the job is still writing comes without its newline."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    all_lines = text.splitlines(keepends=True)
    return "".join(all_lines if lines is None else all_lines[-lines:] if lines > 0 else [])
