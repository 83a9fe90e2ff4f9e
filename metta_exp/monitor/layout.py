"""Fitting the monitor's sections into the terminal's height (pure).

A section is a list of items (one per job), each with its lines at several levels of detail, richest
first; only the lines of the items shown are built. Sections are given room in order of importance,
each leaving the later ones a quota; within its room a section shows every item at its poorest detail
and enriches the first items while room is left, or, when even that does not fit, shows the first
items and folds the rest into one '… N more' line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from metta_exp.records import JobRecord

if TYPE_CHECKING:
    from rich.text import Text


@dataclass
class Item:
    """One job in a section: how many lines it takes at each level of detail (richest first), and how
    to build those lines (only items that are shown get built)."""

    job: JobRecord
    sizes: list[int]
    build: Callable[[int], list[Text]]
    kind: str = ""  # what a fold line counts (for pending jobs: why they wait)

    def size(self, level: int) -> int:
        return self.sizes[min(level, len(self.sizes) - 1)]

    def at(self, level: int) -> list[Text]:
        return self.build(min(level, len(self.sizes) - 1))


@dataclass
class Section:
    name: str
    title: Text
    items: list[Item]
    fold: Callable[[list[Item]], str]
    """What the hidden items are, written after '… N more: ' (or '… N not shown: ')."""


def fit(section: Section, budget: int) -> list[Text]:
    """The section's lines within ``budget`` lines (its title not counted)."""
    from rich.text import Text

    items = section.items
    if not items or budget <= 0:
        return []
    poorest = max(len(item.sizes) for item in items) - 1
    used = sum(item.size(poorest) for item in items)
    if used > budget:
        shown, total = 0, 0
        for item in items:
            if total + item.size(poorest) + 1 > budget:  # keep a line for the fold
                break
            shown, total = shown + 1, total + item.size(poorest)
        hidden = items[shown:]
        more = f"… {len(hidden)} more: " if shown else f"… {len(hidden)} not shown: "
        fold = Text("  " + more + section.fold(hidden), style="dim", no_wrap=True, overflow="ellipsis")
        return [*(line for item in items[:shown] for line in item.at(poorest)), fold]
    level = [poorest] * len(items)
    for target in range(poorest - 1, -1, -1):  # every item one level richer before any gets two
        for i, item in enumerate(items):
            extra = item.size(target) - item.size(level[i])
            if used + extra <= budget:
                level[i], used = target, used + extra
    return [line for item, lv in zip(items, level, strict=True) for line in item.at(lv)]


def layout(sections: Sequence[Section], avail: int, quota: Mapping[str, float]) -> dict[str, list[Text]]:
    """Each section's lines within ``avail`` lines in all. In the given order (of importance) a section
    takes what it needs, leaving each later section its ``quota`` share of ``avail`` (at least one
    line, at most what it needs at its poorest detail)."""

    def floor_of(s: Section) -> int:
        need = sum(item.sizes[-1] for item in s.items)
        return min(need, max(1, int(quota.get(s.name, 0.0) * avail))) if s.items else 0

    out: dict[str, list[Text]] = {}
    left = avail
    for i, section in enumerate(sections):
        reserve = sum(floor_of(s) for s in sections[i + 1 :])
        out[section.name] = fit(section, max(0, left - reserve))
        left -= len(out[section.name])
    return out
