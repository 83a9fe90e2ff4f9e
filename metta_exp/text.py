"""Wording rules shared by every message metta-exp prints. Pure functions, the standard library only."""

from __future__ import annotations


def plural(n: int, noun: str) -> str:
    """``1 job``, ``2 jobs``, ``0 runs``: the count, then the noun, with an ``s`` unless the count is 1."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def fmt_duration(seconds: float | None) -> str:
    """``0:42``, ``12:05``, ``1h02m``, ``3d04h``; ``-`` when unknown."""
    if seconds is None or seconds < 0:
        return "-"
    m, s = divmod(int(seconds), 60)
    if m < 60:
        return f"{m}:{s:02d}"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h}h{m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d{h:02d}h"


def fmt_gpu_hours(hours: float | None) -> str:
    """``0``, ``<0.01``, ``0.04``, ``2.50``, ``37.5``, ``1,234``; ``-`` when unknown."""
    if hours is None:
        return "-"
    if hours <= 0:
        return "0"
    if hours < 0.01:
        return "<0.01"
    if hours < 10:
        return f"{hours:.2f}"
    if hours < 100:
        return f"{hours:.1f}"
    return f"{hours:,.0f}"
