"""A search's space from Hydra's override grammar, read as Hydra's Optuna sweeper reads it:

- ``interval(a, b)``: a float between a and b (an int when both are ints); ``tag(log, interval(a, b))``
  samples it on a log scale;
- ``choice(a, b, c)`` and plain lists ``a,b,c``: one of the values, each passed to the job as written;
- ``range(a, b[, step])``: an int (or float) from a, by step, *stopping before b* as it does in a grid
  sweep (Hydra's Optuna sweeper includes b; here one grammar means one thing); ``shuffle(range(...))``
  is a choice among its values.

Anything else is refused here, before anything is written: one ``ConfigError`` line naming the override.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from metta_exp.errors import ConfigError
from metta_exp.sweep.grammar import ParsedOverride
from metta_exp.trials.space import Dimension


def is_search(parsed: Sequence[ParsedOverride]) -> bool:
    """Whether these overrides make a search: at least one ``interval(...)``."""
    return any(p.override is not None and p.is_sweep and p.override.is_interval_sweep() for p in parsed)


def dimension(parsed: ParsedOverride, range_includes_stop: bool = False) -> Dimension:
    """The searched dimension of one sweep override (``is_sweep``). ``range_includes_stop``: read
    ``range(a, b, step)`` as Hydra's Optuna sweeper does, from a to b included (``hydra/sweeper=metta_exp``,
    a drop-in for it); else b is excluded, as in a grid sweep."""
    from hydra.core.override_parser.types import IntervalSweep, RangeSweep

    override = parsed.override
    line = parsed.line
    if type(override.value()).__name__ == "Glob":
        raise ConfigError(
            f"bad search '{line}': glob(...) is not supported; search with interval(...), tag(log, "
            "interval(...)), choice(...), range(...) or a list a,b,c"
        )
    value = override.value()
    if override.is_interval_sweep():
        assert isinstance(value, IntervalSweep)
        low, high = value.start, value.end
        log = "log" in value.tags
        unknown = sorted(set(value.tags) - {"log"})
        if unknown:
            raise ConfigError(
                f"bad search '{line}': unknown tag {', '.join(unknown)}; a search reads only log"
            )
        if not (isinstance(low, int | float) and isinstance(high, int | float)) or not low < high:
            raise ConfigError(
                f"bad search '{line}': an interval needs two numbers, the first below the second"
            )
        if log and low <= 0:
            raise ConfigError(f"bad search '{line}': a log interval needs a positive lower bound, got {low}")
        kind = "int" if isinstance(low, int) and isinstance(high, int) else "float"
        return Dimension(parsed.key, kind, low, high, log)
    if (
        override.is_range_sweep()
        and isinstance(value, RangeSweep)
        and not value.shuffle
        and range_includes_stop
    ):
        start, stop, step = value.start, value.stop, value.step or 1
        if start is None or stop is None or step <= 0 or not start < stop:
            raise ConfigError(
                f"bad search '{line}': a range needs numbers, a positive step and its start below its stop"
            )
        kind = "int" if all(isinstance(v, int) for v in (start, stop, step)) else "float"
        return Dimension(parsed.key, kind, start, stop, step=step)
    if override.is_range_sweep() and isinstance(value, RangeSweep) and not value.shuffle:
        entry = parsed.entry()
        values = list(entry.values)
        if len(values) < 2:
            raise ConfigError(
                f"bad search '{line}': the range has {len(values)} value(s); a search needs two or more"
            )
        step = abs(values[1] - values[0])
        kind = "int" if all(isinstance(v, int) for v in values) else "float"
        return Dimension(parsed.key, kind, min(values), max(values), step=step)
    if override.is_choice_sweep() or override.is_range_sweep():
        entry = parsed.entry()
        for v in entry.values:
            if v is not None and not isinstance(v, str | int | float | bool):
                raise ConfigError(
                    f"bad search '{line}': a choice must be a number, a string, true/false or null, got {v!r}"
                )
            if isinstance(v, float) and math.isnan(v):
                raise ConfigError(f"bad search '{line}': nan is not a choice")
        if len(entry.values) < 2:
            raise ConfigError(f"bad search '{line}': a choice needs two or more values")
        return Dimension(parsed.key, "categorical", choices=tuple(entry.values), texts=tuple(entry.texts))
    raise ConfigError(
        f"bad search '{line}': glob(...) is not supported; search with interval(...), tag(log, interval(...)), "
        "choice(...), range(...) or a list a,b,c"
    )


def search_dims(
    parsed: Sequence[ParsedOverride], range_includes_stop: bool = False
) -> tuple[list[Dimension], list[str]]:
    """The dimensions (the sweep overrides) and the fixed overrides (the others, passed as written)."""
    dims: list[Dimension] = []
    fixed: list[str] = []
    for p in parsed:
        if p.is_sweep:
            dims.append(dimension(p, range_includes_stop))
        else:
            fixed.append(p.line)
    return dims, fixed
