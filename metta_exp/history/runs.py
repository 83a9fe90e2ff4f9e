"""``job runs``: every run across groups as one row (its status, times, GPU-hours, final metric values
and overrides), filtered (``--where``), sorted (``--sort``) and windowed (``-n``), as JSON, CSV or a
pandas DataFrame (the text table is :func:`metta_exp.cli.tables.runs_table`).

The store gives the rows (:meth:`~metta_exp.store.JobStore.run_records`): each run's final metric values
were kept when its attempt ended, so a query over thousands of runs opens no file (only runs whose values
were not kept, running ones and those of an older store, are read from their files). Without a
``--where`` or a ``--sort`` the store also does the window; with one, every run the other filters select
is looked at, parsing only what the condition needs.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from metta_exp.errors import UsageError, closest
from metta_exp.history.filters import (
    Condition,
    as_number,
    override_key,
    parse_condition,
    parse_statuses,
    typed,
)
from metta_exp.history.listing import check_patterns, group_query
from metta_exp.records import iso
from metta_exp.status import TERMINAL, JobStatus
from metta_exp.store import GroupQuery, JobStore, RunRecord

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["COLUMNS", "RunRow", "Runs", "RunsQuery", "find_runs", "runs_csv", "runs_frame", "runs_json"]

#: The columns ``--where`` and ``--sort`` know besides metrics and overrides.
COLUMNS = ("group", "run", "status", "attempts", "started", "duration", "gpus", "gpu_hours", "steps")
_TERMINAL = frozenset(s.value for s in TERMINAL)
_NOT_STARTED = frozenset({JobStatus.PENDING.value, JobStatus.LAUNCHING.value})  # no metrics yet


class RunRow(NamedTuple):
    """One run: ``duration_s`` is its current attempt's running time (a running one: until now; None when
    it is not running and has not ended); ``gpus`` the GPUs it holds, ``gpu_hours`` those times the time
    every attempt ran (queueing excluded); ``steps`` the step its current attempt reached; ``metrics`` the
    final value of each tracked metric; ``overrides`` each override key's value as written (the last given
    wins: a command-line override of the experiment's); ``args`` the override arguments as given;
    ``params`` a search trial's values (None for other runs)."""

    group: str
    run: str
    status: str
    attempts: int
    started_at: float | None
    ended_at: float | None
    duration_s: float | None
    gpus: int
    gpu_hours: float
    steps: int | None
    metrics: dict[str, float]
    overrides: dict[str, str]
    args: tuple[str, ...]
    params: dict[str, Any] | None


@dataclass(frozen=True)
class RunsQuery:
    """What ``job runs`` was asked: the groups (names or globs, created since/until), the runs' statuses,
    ``--where`` conditions (all must hold), the ``--sort`` key (numbers largest first, text A to Z;
    ``reverse`` flips it) and how many rows (None: all)."""

    groups: GroupQuery = field(default_factory=GroupQuery)
    statuses: tuple[JobStatus, ...] = ()
    where: tuple[Condition, ...] = ()
    sort: str | None = None
    reverse: bool = False
    limit: int | None = None

    @classmethod
    def parse(
        cls,
        patterns: Sequence[str] = (),
        status: Sequence[str] = (),
        since: str | float | None = None,
        until: str | float | None = None,
        where: Sequence[str] = (),
        sort: str | None = None,
        reverse: bool = False,
        limit: int | None = None,
        now: float | None = None,
    ) -> RunsQuery:
        """The query for what a user typed; bad input is a ``UsageError``."""
        if limit is not None and limit < 1:
            raise UsageError(f"-n must be 1 or more, got {limit}")
        return cls(
            group_query(patterns, (), since, until, now),
            parse_statuses(status),
            tuple(parse_condition(w) for w in where),
            sort,
            reverse,
            limit,
        )


@dataclass(frozen=True)
class Runs:
    """The rows of ``job runs`` and how many runs the filters select in all (``matched``); ``metrics``
    are the metric names the rows hold, in the order first seen."""

    rows: list[RunRow]
    matched: int
    metrics: list[str]

    @property
    def hidden(self) -> int:
        return self.matched - len(self.rows)


def find_runs(store: JobStore | None, query: RunsQuery, now: float | None = None) -> Runs:
    """The runs ``query`` selects, as rows (see :class:`RunsQuery`). A name or glob that matches no group,
    or a ``--where``/``--sort`` key no selected run has, is a ``UsageError`` naming the closest keys."""
    if store is None:
        check_patterns(None, query.groups.patterns)
        return Runs([], 0, [])
    check_patterns(store, query.groups.patterns)
    stamp = time.time() if now is None else now
    reader = _Reader(store)
    if not query.where and query.sort is None:
        records, matched = store.run_records(query.groups, query.statuses, query.limit, stamp)
    else:
        records, _ = store.run_records(query.groups, query.statuses, None, stamp)
        keys = _Keys(records, reader, stamp)
        for condition in query.where:
            value = keys.getter(condition.key, f"--where '{condition}'")
            records = [r for r in records if condition.matches(value(r))]
        if query.sort is not None:
            records = _sorted(records, keys.getter(query.sort, f"--sort {query.sort}"), query.reverse)
        matched = len(records)
        records = records[: query.limit] if query.limit is not None else records
    rows = [reader.row(r, stamp) for r in records]
    return Runs(rows, matched, reward_first(dict.fromkeys(k for r in rows for k in r.metrics)))


def reward_first(metrics: Iterable[str]) -> list[str]:
    """Metric names in order, rewards first, then speeds (what a reader looks at first)."""
    names = list(metrics)
    return sorted(names, key=lambda m: 0 if "reward" in m.lower() else 1 if "sps" in m.lower() else 2)


class _Reader:
    """Parses what a record holds as JSON text, each text once, and reads the final values of runs whose
    values the store did not keep from their files."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self._overrides: dict[str, dict[str, str]] = {}
        self._metrics: dict[tuple[str, str], dict[str, float]] = {}
        self._tracked: dict[str, list[str]] = {}

    def overrides(self, record: RunRecord) -> dict[str, str]:
        found = self._overrides.get(record.args)
        if found is None:
            found = self._overrides[record.args] = overrides_of(json.loads(record.args))
        return found

    def metrics(self, record: RunRecord) -> dict[str, float]:
        """The final (for a running run: latest) value of each tracked metric, with ``_step``."""
        key = (record.group, record.run)
        found = self._metrics.get(key)
        if found is not None:
            return found
        if record.final_metrics is not None:
            found = json.loads(record.final_metrics)
        elif record.attempts and record.status not in _NOT_STARTED:
            from metta_exp.logs.tail import final_metrics

            found = final_metrics(
                record.log_path, record.run_dir, self.tracked(record.group), record.attempts
            )
        else:
            found = {}
        self._metrics[key] = found
        return found

    def tracked(self, group: str) -> list[str]:
        if group not in self._tracked:
            from metta_exp.metrics import tracked_metrics

            self._tracked[group] = tracked_metrics(self.store.group(group))
        return self._tracked[group]

    def row(self, r: RunRecord, now: float) -> RunRow:
        metrics = dict(self.metrics(r))
        step = metrics.pop("_step", None)
        return RunRow(
            r.group,
            r.run,
            r.status,
            r.attempts,
            r.started_at,
            r.ended_at if r.status in _TERMINAL else None,
            duration(r, now),
            int(r.gpus or 0),
            r.gpu_seconds / 3600,
            int(step) if step is not None else None,
            metrics,
            self.overrides(r),
            tuple(json.loads(r.args)),
            json.loads(r.params) if r.params else None,
        )


def duration(r: RunRecord, now: float) -> float | None:
    """The current attempt's running time: until it ended, or until ``now`` while it runs; None for a run
    waiting to be launched (again)."""
    if r.started_at is None or r.status == JobStatus.PENDING.value:
        return None
    end = r.ended_at if r.status in _TERMINAL and r.ended_at is not None else now
    return max(0.0, end - r.started_at)


def overrides_of(args: Sequence[str]) -> dict[str, str]:
    """Each override key's value as the trainer sees it: a key given again later (a command-line override
    of the experiment's ``args``) keeps its first place and takes its last value."""
    out: dict[str, str] = {}
    for arg in args:
        key = override_key(arg)
        if key is not None:
            out[key] = arg.split("=", 1)[1]
    return out


_COLUMN_OF: dict[str, Callable[[RunRecord], Any]] = {
    "group": lambda r: r.group,
    "run": lambda r: r.run,
    "status": lambda r: r.status,
    "attempts": lambda r: r.attempts,
    "started": lambda r: r.started_at,
    "gpus": lambda r: r.gpus,
    "gpu_hours": lambda r: r.gpu_seconds / 3600,
}


class _Keys:
    """What a ``--where`` or ``--sort`` key names: a column, an override, or a metric (by its name or, when
    no other metric shares it, its last part: ``reward`` for ``overview/reward``)."""

    def __init__(self, records: Sequence[RunRecord], reader: _Reader, now: float) -> None:
        self.records, self.reader, self.now = records, reader, now
        self._overrides: set[str] | None = None
        self._metrics: set[str] | None = None

    def getter(self, key: str, what: str) -> Callable[[RunRecord], Any]:
        reader = self.reader
        if key in _COLUMN_OF:
            return _COLUMN_OF[key]
        if key == "duration":
            return lambda r: duration(r, self.now)
        if key == "steps":
            return lambda r: reader.metrics(r).get("_step")
        if key in self.override_keys():
            return lambda r: _typed_or_none(reader.overrides(r).get(key))
        metric = self.metric(key)
        if metric is not None:
            return lambda r: reader.metrics(r).get(metric)
        full = self.override(key)
        if full is not None:
            return lambda r: _typed_or_none(reader.overrides(r).get(full))
        if not self.records:
            return lambda r: None  # no run selected: nothing to match, nothing to say
        metrics = sorted(self.metric_keys())
        shorts = [metric_label(m, metrics) for m in metrics]
        full_of = {short: full for full, short in short_keys(sorted(self.override_keys())).items()}
        known = list(dict.fromkeys([*COLUMNS, *full_of.values(), *full_of, *metrics, *shorts]))
        near = closest(key, known)
        near = [k for k in near if full_of.get(k, k) == k or full_of[k] not in near]  # one name per key
        hint = f"; closest: {', '.join(near)}" if near else f"; keys: {', '.join(known[:20])}"
        raise UsageError(f"{what}: no selected run has '{key}'{hint}")

    def override_keys(self) -> set[str]:
        if self._overrides is None:
            self._overrides = {k for r in self.records for k in self.reader.overrides(r)}
        return self._overrides

    def metric_keys(self) -> set[str]:
        if self._metrics is None:
            self._metrics = {k for r in self.records for k in self.reader.metrics(r) if k != "_step"}
        return self._metrics

    def override(self, key: str) -> str | None:
        """The override key whose last dotted part(s) ``key`` is, when no other key ends so."""
        found = [k for k in self.override_keys() if k.endswith("." + key)]
        return found[0] if len(found) == 1 else None

    def metric(self, key: str) -> str | None:
        names = self.metric_keys()
        if key in names:
            return key
        short = [m for m in names if m.rsplit("/", 1)[-1] == key]
        return short[0] if len(short) == 1 else None


def short_keys(keys: Sequence[str]) -> dict[str, str]:
    """Each override key's shortest ending, in whole dotted parts, that no other of ``keys`` ends with (is
    or ends with ``.`` and it): ``trainer.learning_rate`` -> ``learning_rate`` beside ``trainer.total``; the
    key itself when none is. What a terminal's table shows, and ``--where``/``--sort`` take."""
    out = {}
    for key in keys:
        parts = key.split(".")
        endings = (".".join(parts[-n:]) for n in range(1, len(parts)))
        unique = (e for e in endings if not any(o != key and (o == e or o.endswith("." + e)) for o in keys))
        out[key] = next(unique, key)
    return out


def _typed_or_none(value: str | None) -> Any:
    return None if value is None else typed(value)


def _sorted(records: list[RunRecord], value: Callable[[RunRecord], Any], reverse: bool) -> list[RunRecord]:
    """Numbers largest first, then text A to Z (``reverse``: the other way round); runs without the key
    last, in their order."""
    keyed = [(value(r), r) for r in records]
    present = [(v, r) for v, r in keyed if v is not None]
    missing = [r for v, r in keyed if v is None]

    def order(item: tuple[Any, RunRecord]) -> tuple[int, float, str]:
        number = as_number(item[0])
        return (0, -number, "") if number is not None else (1, 0.0, str(item[0]))

    present.sort(key=order)
    if reverse:
        present.reverse()
    return [r for _, r in present] + missing


# --- output ------------------------------------------------------------------------------------------


def runs_json(runs: Runs) -> list[dict[str, Any]]:
    """``job runs --json``: one object per row (times ISO 8601 with their UTC offset; override values
    typed: ``0.01`` a number, ``adam`` a string)."""
    return [
        {
            "group": r.group,
            "run": r.run,
            "status": r.status,
            "attempts": r.attempts,
            "started_at": iso(r.started_at),
            "ended_at": iso(r.ended_at),
            "duration_s": r.duration_s,
            "gpus": r.gpus,
            "gpu_hours": r.gpu_hours,
            "steps": r.steps,
            "metrics": r.metrics,
            "overrides": {k: typed(v) for k, v in r.overrides.items()},
            "args": list(r.args),
            "params": r.params,
        }
        for r in runs.rows
    ]


FLAT = (
    "group",
    "run",
    "status",
    "attempts",
    "started_at",
    "ended_at",
    "duration_s",
    "gpus",
    "gpu_hours",
    "steps",
)


def flat_columns(runs: Runs) -> tuple[list[str], list[str], list[str]]:
    """The columns of ``--csv`` and of the DataFrame: :data:`FLAT`, each metric, each override key (one a
    metric or a column shares is prefixed ``arg:``); and the metric and override names they come from."""
    keys = list(dict.fromkeys(k for r in runs.rows for k in r.overrides))
    taken = {*FLAT, *runs.metrics}
    names = [*FLAT, *runs.metrics, *(f"arg:{k}" if k in taken else k for k in keys)]
    return names, runs.metrics, keys


def _flat(runs: Runs, value: Callable[[str], Any], when: Callable[[float | None], Any]) -> list[list[Any]]:
    _, metrics, keys = flat_columns(runs)
    out = []
    for r in runs.rows:
        out.append(
            [r.group, r.run, r.status, r.attempts, when(r.started_at), when(r.ended_at), r.duration_s, r.gpus]
            + [r.gpu_hours, r.steps]
            + [r.metrics.get(m) for m in metrics]
            + [None if r.overrides.get(k) is None else value(r.overrides[k]) for k in keys]
        )
    return out


def runs_csv(runs: Runs) -> str:
    """``job runs --csv``: a header, then one line per row; override values as written, times ISO 8601."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(flat_columns(runs)[0])
    writer.writerows(["" if v is None else v for v in row] for row in _flat(runs, str, iso))
    return out.getvalue()


def runs_frame(runs: Runs) -> pd.DataFrame:
    """The rows as a DataFrame with the columns of :func:`runs_csv`: times as UTC timestamps, metrics as
    floats, override values typed (numbers as numbers)."""
    import pandas as pd

    frame = pd.DataFrame(_flat(runs, typed, lambda t: t), columns=flat_columns(runs)[0])
    for column in ("started_at", "ended_at"):
        frame[column] = pd.to_datetime(frame[column], unit="s", utc=True)
    for column in ("duration_s", "gpu_hours", *runs.metrics):
        frame[column] = frame[column].astype(float)
    frame["steps"] = frame["steps"].astype("Int64")
    return frame


def metric_label(metric: str, metrics: Mapping[str, Any] | Sequence[str]) -> str:
    """A metric's column title: its last part (``reward``) unless another metric shares it."""
    short = metric.rsplit("/", 1)[-1]
    return short if sum(m.rsplit("/", 1)[-1] == short for m in metrics) == 1 else metric
