"""Atomic file replacement: a reader sees the old file or the new one, whole, never a half-written one."""

from __future__ import annotations

import os
import threading
from pathlib import Path


def write_atomic(path: str | os.PathLike[str], text: str, *, parents: bool = False) -> Path:
    """Write ``text`` to ``path`` through a temporary file beside it and ``os.replace``.

    The temporary name is unique per process and thread, so concurrent writers never share one; it is
    removed when the write fails (a full disk leaves no stray file). ``parents`` creates the directory.
    Returns ``path`` as a ``Path``.
    """
    target = Path(path)
    if parents:
        target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target
