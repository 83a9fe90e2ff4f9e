"""Wording rules shared by every message metta-exp prints. Pure functions, the standard library only."""

from __future__ import annotations


def plural(n: int, noun: str) -> str:
    """``1 job``, ``2 jobs``, ``0 runs``: the count, then the noun, with an ``s`` unless the count is 1."""
    return f"{n} {noun}{'' if n == 1 else 's'}"
