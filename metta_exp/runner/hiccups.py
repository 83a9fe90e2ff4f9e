"""How the runner lives through its own troubles: a full disk (it waits for space, as its jobs do), and a log
it cannot write (no reason to die)."""

from __future__ import annotations

import contextlib
import errno
import time

__all__ = ["disk_full", "log_line"]


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` comes from a full disk (an OSError, or SQLite's "database or disk is full")."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return "disk is full" in str(exc) or "No space left" in str(exc)


def log_line(text: str) -> None:
    """One line in the runner's log; a log that cannot be written (a full disk) is no reason to die."""
    with contextlib.suppress(Exception):
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}", flush=True)
