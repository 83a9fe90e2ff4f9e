"""``metta-exp -m ...``: compose once, expand the sweep, launch one group whose runs are the points."""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from metta_exp.compose import compose, source_label
from metta_exp.config import CONFIG_KEYS, Experiment
from metta_exp.errors import ConfigError, closest, did_you_mean
from metta_exp.sweep.grammar import Entry, ParsedOverride, parse_overrides, parse_with_sources
from metta_exp.sweep.points import (
    Point,
    check_limit,
    expand,
    named_keys,
    per_point_specs,
    sweep_experiment,
    sweep_limit,
    sweep_record,
)
from metta_exp.sweep.space import is_search
from metta_exp.text import plural

if TYPE_CHECKING:
    from metta_exp.compose import CommandLine

PER_POINT_KEYS = ("gpus",)


# --- the command ------------------------------------------------------------------------------------


Composed = tuple[str, Path | None, dict[str, Any], dict[str, Any]]


def launch_sweep(cl: CommandLine, composed: Composed | None = None) -> int:
    """``metta-exp -m ...`` (or an experiment with ``hydra.sweeper.params``): one group, a run per point.

    Returns the interface's exit code. ``composed`` is what ``compose.compose`` returned when the caller
    already composed: an in-file sweep launched without ``-m``, whose command-line overrides are then
    passed through as written (not swept), a key given there replacing the file's sweep of it.
    """
    limit = sweep_limit()
    cli_settings: list[ParsedOverride] = []
    if composed is None:
        composed, cli_settings = _compose_once(cl)
    name, source, data, hydra_node = composed
    label = source_label(cl, source) if source is not None else f"experiment '{name}'"
    base = Experiment.from_mapping(data, source=label)
    training, literals, setting_overrides = _parse(cl, hydra_node, cli_settings)
    if is_search(training):
        from metta_exp.sweep.search import launch_search

        return launch_search(cl, name, base, training, literals, setting_overrides)
    entries, settings = _entries(training, literals, setting_overrides, len(base.runs), limit)
    for entry in settings:
        _check_setting(base, entry)
    points = expand(base.runs, entries, settings)
    warn_swept_per_run(base, entries, len({p.index for p in points}))
    exp = sweep_experiment(base, points)
    keys = named_keys(entries, settings)
    record = sweep_record(points, keys)
    if cl.show_config:
        import json

        print(json.dumps(exp.to_dict() | {"extra_args": [], "sweep": record.to_dict()}, indent=2))
        return 0
    if exp.dry_run:
        print_points(points, keys)
    from metta_exp.submit import launch_experiment

    hook = per_point_specs(points)
    return launch_experiment(exp, name=name, specs_hook=hook, sweep=record)


def _compose_once(cl: CommandLine) -> tuple[Composed, list[ParsedOverride]]:
    """Compose what every point shares; sweeps of metta-exp keys (``gpus=4,8``) are kept out of it."""
    kept: list[str] = []
    swept: list[ParsedOverride] = []
    for line in cl.hydra_overrides:
        parsed = _try_parse(line)
        if parsed is not None and parsed.is_sweep:
            _check_key(parsed)
            swept.append(parsed)
        else:
            kept.append(line)
    return compose(dataclasses.replace(cl, hydra_overrides=kept)), swept


def _parse(
    cl: CommandLine, hydra_node: dict[str, Any], cli_settings: list[ParsedOverride]
) -> tuple[list[ParsedOverride], list[str], list[ParsedOverride]]:
    """The training overrides (argv order: the file's sweep first, then the command line), the plain
    overrides given without ``-m`` (passed as written) and the metta-exp keys set per point."""
    literals = [] if cl.multirun else list(cl.training_overrides)
    given = {line.split("=", 1)[0].lstrip("+~") for line in literals}
    params = (hydra_node.get("sweeper") or {}).get("params") or {}
    lines = [f"{k}={v}" for k, v in params.items() if str(k).lstrip("+~") not in given]
    parsed_all = parse_overrides(lines + (list(cl.training_overrides) if cl.multirun else []))
    for parsed in parsed_all:
        _check_key(parsed)
    settings = {p.name: p for p in parsed_all if _is_setting(p.name)} | {p.name: p for p in cli_settings}
    training = [p for p in parsed_all if not _is_setting(p.name)]
    return training, literals, list(settings.values())


def _entries(
    training: list[ParsedOverride], literals: list[str], settings: list[ParsedOverride], runs: int, limit: int
) -> tuple[list[Entry], list[Entry]]:
    """The training entries and the per-point metta-exp keys; ``UsageError`` past the limit, before any
    value is enumerated."""
    check_limit([p.count() for p in (*training, *settings)], runs, limit)
    entries = [p.entry() for p in training] + [Entry.passthrough(line) for line in literals]
    return entries, [p.entry() for p in settings]


def _try_parse(line: str) -> ParsedOverride | None:
    from hydra.errors import HydraException

    try:
        return parse_with_sources(line)
    except HydraException:
        return None  # composition reports it, naming the experiment file


def _is_setting(name: str) -> bool:
    return re.split(r"[./]", name, maxsplit=1)[0] in CONFIG_KEYS


def _check_key(parsed: ParsedOverride) -> None:
    """Refuse sweeps of keys one group cannot vary, and metta-exp keys misspelt as training overrides."""
    name = parsed.name
    top = re.split(r"[./]", name, maxsplit=1)[0]
    if top in ("experiment", "hydra"):
        if parsed.is_sweep:
            raise ConfigError(
                f"cannot sweep '{name}' ('{parsed.line}'): a sweep launches one experiment as "
                f"one group; sweep the experiment's overrides instead"
            )
        if top == "hydra":
            raise ConfigError(f"'{parsed.line}': hydra.* keys cannot be set in a sweep's parameters")
        return
    if top in CONFIG_KEYS:
        if name not in PER_POINT_KEYS:
            raise ConfigError(
                f"cannot sweep '{name}' ('{parsed.line}'): it applies to the whole group and one group "
                f"cannot have two values of it; metta-exp keys that can vary per run: "
                f"{', '.join(PER_POINT_KEYS)}"
            )
        return
    if "." not in name and "/" not in name and closest(name, CONFIG_KEYS, n=1, cutoff=0.75):
        raise ConfigError(
            f"unknown key '{name}'{did_you_mean(name, CONFIG_KEYS, cutoff=0.75)} in '{parsed.line}': it "
            f"looks like a metta-exp key; to sweep a training override of that name, write +{name}=..."
        )


def _check_setting(base: Experiment, entry: Entry) -> None:
    """Each value of a swept metta-exp key must be valid for the experiment (``gpus=-1`` is not)."""
    checked: list[Any] = []
    for value in entry.values:
        if value in checked:
            continue
        checked.append(value)
        try:
            dataclasses.replace(base, **{entry.name: value})
        except ConfigError as exc:
            reason = str(exc).split(": ", 1)[-1]
            raise ConfigError(f"sweep '{entry.key}={','.join(entry.texts)}': {reason}") from None


def warn_swept_per_run(
    base: Experiment, entries: Sequence[Entry], count: int, out: TextIO | None = None
) -> None:
    """Warn (stderr) when a swept key is also set in ``args_per_run``: the point's value wins, so runs
    that differ only in that key run the same arguments at every point."""
    swept = {e.name for e in entries if e.swept}

    def key(arg: str) -> str:
        return arg.split("=", 1)[0].lstrip("+~")

    setters = [r for r in base.runs if any(key(a) in swept for a in base.args_per_run.get(r, ()))]
    if not setters or len(base.runs) == 1:  # one run: the point's value simply is the run's
        return
    out = out or sys.stderr
    keys = ", ".join(sorted({key(a) for r in setters for a in base.args_per_run[r] if key(a) in swept}))
    rest = {r: tuple(a for a in base.args_per_run.get(r, ()) if key(a) not in swept) for r in base.runs}
    same = [r for r in base.runs if sum(rest[o] == rest[r] for o in base.runs) > 1]
    if not same:
        names = ", ".join(setters)
        print(f"Warning: the sweep's {keys} replaces what args_per_run sets for {names}.", file=out)
        return
    distinct = len(set(rest.values()))
    print(
        f"Warning: the sweep sets {keys}, which args_per_run also sets for {', '.join(setters)}; the "
        f"sweep's value wins, so runs {', '.join(same)} get the same arguments at every point "
        f"({plural(count * len(base.runs), 'run')}, {count * distinct} different). To run each point "
        f"once, pick one run: 'runs=[{same[0]}]'.",
        file=out,
    )


def print_points(points: Sequence[Point], keys: Sequence[str], out: TextIO | None = None) -> None:
    """The points of a sweep and their runs (for ``dry_run``)."""
    out = out or sys.stdout
    count = len({p.index for p in points})
    over = ", ".join(keys) or "no swept keys"
    print(f"Sweep: {plural(count, 'point')}, {plural(len(points), 'run')}, over {over}", file=out)
    width = max(len(p.run) for p in points)
    for p in points:
        print(f"  {p.run:<{width}}  {' '.join(f'{k}={_show(p.values[k])}' for k in keys)}".rstrip(), file=out)


def _show(value: Any) -> str:
    import json

    return value if isinstance(value, str) and value and " " not in value else json.dumps(value)
