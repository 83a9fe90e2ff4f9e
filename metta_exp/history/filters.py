"""The filters of the history commands, parsed from what a user types: statuses, times, name globs and
``--where`` conditions. Pure functions (the current time is an argument); bad input is a ``UsageError``
that says what was expected.

    parse_statuses(["failed,cancelled"])           # (JobStatus.FAILED, JobStatus.CANCELLED)
    parse_time("7d", "--since", now)               # now - 7 days
    parse_time("2026-12-01", "--until", now, end_of_day=True)   # the next local midnight
    parse_condition("trainer.learning_rate>=0.01")  # Condition("trainer.learning_rate", ">=", "0.01")
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from metta_exp.errors import UsageError, closest
from metta_exp.status import ALL_STATUSES, JobStatus

__all__ = [
    "OPERATORS",
    "Condition",
    "as_number",
    "is_glob",
    "override_key",
    "parse_condition",
    "parse_statuses",
    "parse_time",
    "typed",
]

STATUS_NAMES = tuple(s.value for s in ALL_STATUSES)
_AGE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
TIME_HELP = "give an age (30m, 12h, 7d, 2w), a date (2026-12-01) or a time (2026-12-01T14:30)"


def parse_statuses(values: Iterable[str]) -> tuple[JobStatus, ...]:
    """The statuses named in ``values`` (each may hold several, comma-separated), in order, once each."""
    out: list[JobStatus] = []
    for value in values:
        for name in value.split(","):
            name = name.strip().lower()
            if not name:
                continue
            if name not in STATUS_NAMES:
                near = closest(name, STATUS_NAMES, n=1)
                hint = f" (did you mean '{near[0]}'?)" if near else ""
                raise UsageError(f"unknown status '{name}'{hint}; the statuses: {', '.join(STATUS_NAMES)}")
            status = JobStatus(name)
            if status not in out:
                out.append(status)
    return tuple(out)


def parse_time(text: str, option: str, now: float, end_of_day: bool = False) -> float:
    """The unix time ``text`` names: an age before ``now`` (``30m``, ``12h``, ``7d``, ``2w``), ``today``,
    ``yesterday``, a date (``2026-12-01``: local midnight) or a time (``2026-12-01T14:30``, local unless
    it carries an offset). ``end_of_day``: a day (a date, ``today``, ``yesterday``) means its end, the
    next midnight, so ``--until 2026-12-01`` includes that day. ``option`` names the flag in the error."""
    word = text.strip().lower()
    age = _AGE.fullmatch(word)
    if age:
        return now - float(age[1]) * _UNIT_S[age[2]]
    day: dt.date | None = None
    if word in ("today", "yesterday"):
        day = dt.datetime.fromtimestamp(now).date() - dt.timedelta(days=word == "yesterday")
    elif re.fullmatch(r"\d{4}-\d{2}-\d{2}", word):
        try:
            day = dt.date.fromisoformat(word)
        except ValueError:
            day = None
    if day is not None:
        day += dt.timedelta(days=end_of_day)
        return dt.datetime.combine(day, dt.time()).timestamp()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}[t ]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?(z|[+-]\d{2}:?\d{2})?", word):
        try:
            return dt.datetime.fromisoformat(text.strip().upper().replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    raise UsageError(f"{option} '{text}' is not a time: {TIME_HELP}")


def is_glob(text: str) -> bool:
    """Whether ``text`` has a wildcard (``*``, ``?``, ``[``): else it names one thing exactly."""
    return any(ch in text for ch in "*?[")


def override_key(arg: str) -> str | None:
    """The key an override argument sets (``+trainer.lr=0.1``: ``trainer.lr``), None for an argument
    that is not ``key=value``."""
    if "=" not in arg or arg.startswith("-"):
        return None
    key = arg.split("=", 1)[0].lstrip("+~")
    return key or None


def as_number(value: Any) -> float | None:
    """``value`` as a number when it is one (an int, a float, or text that reads as one), else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        number = float(str(value))
    except ValueError:
        return None
    return number if number == number else None  # NaN compares with nothing


def typed(value: str) -> Any:
    """An override's value as a script wants it: ``0.01`` a float, ``3`` an int, ``true``/``false`` a
    bool, ``null`` None, anything else the text as written."""
    low = value.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("null", "none", "~"):
        return None
    if re.fullmatch(r"[+-]?\d+", low):
        return int(low)
    number = as_number(value)
    return number if number is not None and not low.startswith(("0x", "inf", "+inf", "-inf")) else value


OPERATORS = (">=", "<=", "!=", "==", "=", ">", "<", "~")
_CONDITION = re.compile(r"\s*([^<>=!~\s]+)\s*(>=|<=|!=|==|=|>|<|~)(.*)", re.S)
CONDITION_HELP = "KEY=VALUE, KEY!=VALUE, KEY>=N, KEY<=N, KEY>N, KEY<N or KEY~GLOB"


@dataclass(frozen=True)
class Condition:
    """``--where KEY OP VALUE``: ``=``/``==`` and ``!=`` compare numbers as numbers (``1e-2`` is
    ``0.01``) and anything else as text; ``<``, ``<=``, ``>``, ``>=`` need a number; ``~`` matches a glob
    (``run~high_*``). A run without the key matches no condition on it."""

    key: str
    op: str
    value: str
    number: float | None = field(default=None, compare=False)

    def matches(self, value: Any) -> bool:
        if value is None:
            return False
        if self.op == "~":
            return fnmatchcase(str(value), self.value)
        mine = as_number(value)
        if self.op in ("=", "==", "!="):
            same = (
                mine == self.number
                if mine is not None and self.number is not None
                else str(value) == self.value
            )
            return same != (self.op == "!=")
        if mine is None or self.number is None:
            return False
        return {">=": mine >= self.number, "<=": mine <= self.number, ">": mine > self.number}.get(
            self.op, mine < self.number
        )

    def __str__(self) -> str:
        return f"{self.key}{self.op}{self.value}"


def parse_condition(text: str) -> Condition:
    """A ``--where`` expression: ``KEY OP VALUE`` with an operator of :data:`OPERATORS`."""
    found = _CONDITION.fullmatch(text)
    value = found[3].strip() if found else ""
    if found is None or value[:1] in ("<", ">", "=", "!", "~"):
        raise UsageError(f"--where '{text}': no operator it knows; write {CONDITION_HELP}")
    key, op = found[1].lstrip("+~"), found[2]
    number = as_number(value)
    if op in ("<", "<=", ">", ">=") and number is None:
        raise UsageError(f"--where '{text}': '{op}' compares numbers, and '{value}' is not one")
    if not key:
        raise UsageError(f"--where '{text}': no key before '{op}'; write {CONDITION_HELP}")
    return Condition(key, op, value, number)
