"""``fetch_metrics`` over several groups: which runs each group's are, and one frame with a ``group`` column.

    df = fetch_metrics(group=["baseline-0412", "variant-0413"])      # every run of both, from the store
    df = fetch_metrics(["lr_low"], group=["baseline", "variant"])     # lr_low of each
    df.groupby(["group", "run"], observed=True)

A run is then named by its group and its name: two groups may each have an ``lr_low``. The frame's
``group`` is an ordered Categorical in the order the groups were given, ``run`` one of the run names in
the order first seen; ``df.attrs["errors"]`` and ``["sources"]`` are keyed ``"group/run"`` and
``df.attrs["groups"]`` lists the groups. Part of :mod:`metta_exp.metrics`; pandas is imported inside.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metta_exp.records import JobRecord

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["combine", "runs_by_group"]


def runs_by_group(
    runs: Iterable[Any] | None, group: str | Sequence[str] | None, state_dir: str | os.PathLike[str] | None
) -> list[tuple[str | None, list[Any]]] | None:
    """``runs`` split by group, in order: ``[(group, items)]`` when they span several groups (or
    ``group`` names several), ``[(group, its JobRecords)]`` for ``runs`` None and one group, else None:
    one group's runs, fetched as given."""
    several = group is not None and not isinstance(group, str)
    if runs is None:
        if group is None:
            raise ValueError("fetch_metrics needs runs, or group= (a group's name, or a list of them)")
        names = [group] if isinstance(group, str) else list(group)
        jobs = _jobs(names, state_dir)
        return [(name, list(jobs[name])) for name in names] if several else [(names[0], list(jobs[names[0]]))]
    items = list(runs)
    if several:
        names = list(group or ())
        jobs = _jobs(names, state_dir)
        wanted = [_name(item) for item in items]
        nowhere = [w for w in wanted if not any(j.run == w for n in names for j in jobs[n])]
        if nowhere:
            raise ValueError(
                f"no run {', '.join(map(repr, nowhere))} in any of the groups {', '.join(names)}"
            )
        return [(name, [j for w in wanted for j in jobs[name] if j.run == w]) for name in names]
    tagged = [_group_of(item) for item in items]
    groups = list(dict.fromkeys(g for g in tagged if g is not None))
    if len(groups) < 2:
        return None
    return [(g, [item for item, t in zip(items, tagged, strict=True) if t == g]) for g in groups] + (
        [(None, [item for item, t in zip(items, tagged, strict=True) if t is None])] if None in tagged else []
    )


def _group_of(item: Any) -> str | None:
    if isinstance(item, JobRecord):
        return item.group
    if isinstance(item, Mapping) and isinstance(item.get("group"), str):
        return str(item["group"])
    return None


def _name(item: Any) -> str:
    if isinstance(item, JobRecord):
        return item.run
    if isinstance(item, Mapping):
        return str(item.get("run", item.get("name")))
    return str(item)


def _jobs(names: Sequence[str], state_dir: str | os.PathLike[str] | None) -> dict[str, list[JobRecord]]:
    """Each group's jobs in run order, from the store (read-only); an unknown group is a ``NotFoundError``
    naming the closest."""
    from metta_exp.errors import NotFoundError
    from metta_exp.paths import DB_NAME, default_state_dir
    from metta_exp.store import JobStore

    root = Path(state_dir).absolute() if state_dir else default_state_dir()
    if not (root / DB_NAME).exists():
        raise NotFoundError(f"no groups: no job store in {root}")
    with JobStore.open(root, create=False, readonly=True) as store:
        for name in names:
            store.group(name)
        return {name: store.jobs(name) for name in names}


def combine(
    parts: Sequence[tuple[str | None, list[Any]]], fetch: Callable[[list[Any], str | None], pd.DataFrame]
) -> pd.DataFrame:
    """One frame of each group's (``fetch(items, group)``: one group's frame), with a ``group`` column."""
    import pandas as pd

    frames = [(name, fetch(items, name)) for name, items in parts]
    labels = [name or "" for name, _ in frames]
    runs = list(dict.fromkeys(str(r) for _, f in frames for r in f["run"].cat.categories))
    metrics = list(frames[0][1]["metric"].cat.categories) if frames else []
    pieces = []
    for label, (_, frame) in zip(labels, frames, strict=True):
        piece = frame.assign(group=label)
        piece["run"] = piece["run"].cat.set_categories(runs)
        pieces.append(piece)
    out = pd.concat(pieces, ignore_index=True) if pieces else pd.DataFrame(columns=["run", "step", "metric"])
    out["group"] = pd.Categorical(out["group"], categories=list(dict.fromkeys(labels)), ordered=True)
    out["run"] = pd.Categorical(out["run"], categories=runs, ordered=True)
    out["metric"] = pd.Categorical(out["metric"], categories=metrics, ordered=True)
    out = out[["group", "run", "step", "metric", "value", "time"]]
    keyed = list(zip(labels, (f for _, f in frames), strict=True))
    out.attrs.update(
        errors={f"{g}/{r}": why for g, f in keyed for r, why in f.attrs["errors"].items()},
        sources={f"{g}/{r}": where for g, f in keyed for r, where in f.attrs["sources"].items()},
        x_axis=frames[0][1].attrs["x_axis"] if frames else "step",
        groups=list(dict.fromkeys(labels)),
    )
    return out
