"""The objective curve of a trial: checkpoints read from a growing (or replaced) log, and reductions."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from metta_exp.search.curve import CHECKPOINTS, CurveReader, reduce_curve


def line(step: int, total: int | None, value: float | None) -> str:
    parts = [f"step={step}"] + ([f"total={total}"] if total else []) + ["sps=10"]
    return "[metta-exp] progress " + " ".join(
        parts + ([f"overview/reward={value}"] if value is not None else [])
    )


def test_checkpoints_are_the_first_value_at_or_past_each_twentieth(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    reader = CurveReader(str(log), "overview/reward")
    assert not reader.read(), "no log yet"
    # steps at irregular times; 1000 total: checkpoints every 50 steps
    log.write_text("noise\n" + line(30, 1000, 0.1) + "\n" + line(55, 1000, 0.2) + "\n" + line(70, 1000, 0.3))
    assert reader.read()
    assert reader.points == {50: 0.2}, "the torn last line waits for its newline"
    with log.open("a") as f:
        f.write("\n" + line(260, 1000, 0.9) + "\n" + line(1000, 1000, 1.0) + "\n")
    assert reader.read()
    assert reader.points == {50: 0.2, 250: 0.9, 1000: 1.0}
    assert reader.raw == [(30, 0.1), (55, 0.2), (70, 0.3), (260, 0.9), (1000, 1.0)]
    assert reader.fraction == 1.0 and CHECKPOINTS == 20


def test_a_replaced_tail_is_read_again_and_nothing_is_counted_twice(tmp_path: Path) -> None:
    """A remote job's log is its tail, copied over the file: a new file is read from its start."""
    log = tmp_path / "remote.log"
    log.write_text(line(100, 400, 1.0) + "\n" + line(200, 400, 2.0) + "\n")
    reader = CurveReader(str(log), "overview/reward")
    reader.read()
    tmp = tmp_path / "tail.tmp"
    tmp.write_text(line(200, 400, 2.0) + "\n" + line(300, 400, 3.0) + "\n" + line(50, None, math.nan) + "\n")
    os.replace(tmp, log)
    assert reader.read()
    assert reader.points == {100: 1.0, 200: 2.0, 300: 3.0}
    assert reader.raw == [(100, 1.0), (200, 2.0), (300, 3.0)]


def test_without_a_total_the_steps_themselves_are_the_checkpoints(tmp_path: Path) -> None:
    log = tmp_path / "b.log"
    log.write_text(line(7, None, 0.5) + "\n" + line(9, None, None) + "\n")
    reader = CurveReader(str(log), "overview/reward")
    reader.read()
    assert reader.points == {7: 0.5} and reader.fraction == 0.0


@pytest.mark.parametrize(
    ("how", "values", "expected"),
    [
        ("last", [1.0, 3.0, 2.0], 2.0),
        ("max", [1.0, 3.0, 2.0], 3.0),
        ("mean_last_10pct", [float(i) for i in range(1, 21)], 19.5),
        ("mean_last_10pct", [4.0, 8.0], 8.0),
        ("last", [1.0, math.nan], 1.0),
        ("last", [], None),
        ("max", [math.nan], None),
    ],
)
def test_reduce_curve(how: str, values: list[float], expected: float | None) -> None:
    assert reduce_curve(values, how) == expected
