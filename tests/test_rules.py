"""The rules metta-exp applies in more than one place, each one pure function, pinned by exact output."""

from __future__ import annotations

from metta_exp.words import plural


def test_plural_counts_then_the_noun() -> None:
    assert [plural(n, "job") for n in (0, 1, 2)] == ["0 jobs", "1 job", "2 jobs"]
    assert plural(1, "running job") == "1 running job"
    assert plural(12, "point") == "12 points"
