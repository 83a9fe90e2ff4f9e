"""Which groups a history command means: name globs, statuses and times checked and turned into one
query, and ``job list``'s window of the newest groups with their GPU-hours."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from metta_exp.errors import NotFoundError, closest
from metta_exp.history import DEFAULT_LIMIT
from metta_exp.history.filters import is_glob, parse_statuses, parse_time
from metta_exp.records import GroupRecord, GroupSummary
from metta_exp.store import GroupQuery, JobStore
from metta_exp.text import fmt_gpu_hours

__all__ = [
    "DEFAULT_LIMIT",
    "Listing",
    "check_patterns",
    "expand_patterns",
    "fmt_gpu_hours",
    "group_query",
    "list_window",
]


def group_query(
    patterns: Sequence[str] = (),
    statuses: Sequence[str] = (),
    since: str | float | None = None,
    until: str | float | None = None,
    now: float | None = None,
) -> GroupQuery:
    """The store's query for what a user typed: name globs, statuses (``failed`` or ``failed,cancelled``),
    and times (``7d``, ``2026-12-01``, or a unix time); a bad status or time is a ``UsageError``."""
    stamp = time.time() if now is None else now
    return GroupQuery(
        patterns=tuple(patterns),
        statuses=parse_statuses(statuses),
        since=since
        if isinstance(since, float | int) or since is None
        else parse_time(since, "--since", stamp),
        until=(
            until
            if isinstance(until, float | int) or until is None
            else parse_time(until, "--until", stamp, end_of_day=True)
        ),
    )


def check_patterns(store: JobStore | None, patterns: Sequence[str]) -> None:
    """Every name or glob in ``patterns`` must match a group: else ``NotFoundError`` with the closest
    names (exit code 2)."""
    for pattern in patterns:
        if store is not None and store.matches_any(pattern):
            continue
        if store is not None and not is_glob(pattern):
            store.group(pattern)  # raises: no group 'x'; closest: ...
        names = store.group_names() if store is not None else []
        near = closest(re.sub(r"[*?\[\]!^]", "", pattern), names)
        if near:
            hint = f"; closest: {', '.join(near)}"
        else:
            hint = f"; newest: {', '.join(names[:5])}" if names else "; no groups yet"
        raise NotFoundError(f"no group matches '{pattern}'{hint} (see 'metta-exp job list')")


def expand_patterns(store: JobStore | None, patterns: Sequence[str]) -> list[str]:
    """The groups ``patterns`` name, in the order given (a glob's newest first), each once; a name or
    glob that matches nothing is a ``NotFoundError`` with the closest names."""
    check_patterns(store, patterns)
    assert store is not None or not patterns
    out: list[str] = []
    for pattern in patterns:
        found = [g.name for g in store.find_groups(GroupQuery((pattern,)))[0]] if store is not None else []
        out += [name for name in found if name not in out]
    return out


@dataclass(frozen=True)
class Listing:
    """``job list``: the groups shown (newest first), how many the filters select in all, and the
    GPU-hours of each group shown; every group that has not ended, by name, and those of them no runner
    drives (``groups.listing`` adds these, read from the same store)."""

    groups: list[GroupSummary]
    matched: int
    gpu_hours: dict[str, float] = field(default_factory=dict)
    open_groups: dict[str, GroupRecord] = field(default_factory=dict)
    orphans: list[str] = field(default_factory=list)

    @property
    def hidden(self) -> int:
        """Selected groups older than the ones shown."""
        return self.matched - len(self.groups)


def list_window(
    store: JobStore | None, query: GroupQuery, limit: int | None = DEFAULT_LIMIT, gpu_hours: bool = True
) -> Listing:
    """The newest ``limit`` groups ``query`` selects (None: all) and, with ``gpu_hours``, theirs."""
    check_patterns(store, query.patterns)  # also with no store yet: a name still matches nothing
    if store is None:
        return Listing([], 0)
    shown, matched = store.find_groups(query, limit)
    hours = {}
    if gpu_hours:
        seconds = store.gpu_seconds_by_group([g.name for g in shown])
        hours = {name: s / 3600 for name, s in seconds.items()}
    return Listing(shown, matched, hours)
