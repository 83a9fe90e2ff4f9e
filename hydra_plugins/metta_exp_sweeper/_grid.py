"""Which points of a grid sweep ``hydra/sweeper=metta_exp_grid`` composes before launching.

Hydra's BasicSweeper composes every point in the app's process before its launcher gets any (0.1-0.2 s
each: ten seconds and more for 100 points), so that a point that cannot be composed fails the sweep
before anything runs. The points of a grid differ only in their swept values, and a value fails
composition in two ways: the keys (an unknown key, a missing mandatory value: the same for every point),
or a config group option (a missing option, an option file that does not compose: one per option).
Composing the first point, and once each other option of every swept config group (the first point with
that option), finds both. What is left to the job is a value the schema refuses for one point only
(``lr=0.1,abc`` for a float ``lr``): that job fails with Hydra's message as its ``JobReturn``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any


def points_to_compose(batch: Sequence[Sequence[str]], config_loader: Any) -> list[Sequence[str]]:
    """The first point of ``batch``, then for each swept config group each other option's first point
    with only that option changed (in the batch's order; Hydra's points list their keys in one order)."""
    if not batch:
        return []
    first = list(batch[0])
    chosen: list[Sequence[str]] = [first]
    groups: dict[str, list[str]] = {}

    def is_group(override: str) -> bool:
        key = override.split("=", 1)[0].lstrip("+~").split("@", 1)[0]
        parent, _, name = key.rpartition("/")
        if parent not in groups:
            with warnings.catch_warnings():  # Hydra's about .yml files: listing is not loading them
                warnings.simplefilter("ignore")
                groups[parent] = list(config_loader.list_groups(parent))
        return name in groups[parent]

    for point in batch[1:]:
        for i, override in enumerate(point):
            if i >= len(first) or override == first[i] or not is_group(override):
                continue
            changed = [*first[:i], override, *first[i + 1 :]]
            if changed not in chosen:
                chosen.append(changed)
    return chosen
