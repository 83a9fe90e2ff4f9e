"""Sweep syntax: Hydra's override grammar, parsed once per override, keeping each value's source text.

Hydra's own sweepers hand a job its values re-formatted (``1e-3`` becomes ``0.001``); here each listed
value keeps the text the user wrote, so a job gets ``lr=1e-3``. Values Hydra computes (``range``, casts
such as ``float(1,2)``) use Hydra's formatting. Hydra is imported only when something is parsed.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from metta_exp.errors import ConfigError


@dataclass(frozen=True)
class Entry:
    """One override of a sweep, with every value it takes.

    ``texts`` are the values as they go into a job's argv; ``values`` the same values parsed (plain
    JSON types). A plain override (``literal``) has one value and goes into the argv verbatim.
    """

    key: str  # as written before '=', prefixes included: '+trainer.x', 'gpus'
    texts: tuple[str, ...]
    values: tuple[Any, ...]
    hydra_texts: tuple[str, ...] = ()  # the values as Hydra's own sweepers format them
    literal: str | None = None

    @property
    def name(self) -> str:
        """The config key: without '+', '++' or '~'."""
        return self.key.lstrip("+~")

    @property
    def swept(self) -> bool:
        return self.literal is None

    @classmethod
    def passthrough(cls, line: str) -> Entry:
        """An override passed to every job exactly as written, not parsed."""
        return cls(line.split("=", 1)[0], (line,), (line,), literal=line)

    def arg(self, index: int) -> str:
        return self.literal if self.literal is not None else f"{self.key}={self.texts[index]}"


# --- parsing: Hydra's grammar, keeping each value's source text --------------------------------------


@dataclass(frozen=True)
class ParsedOverride:
    """An override parsed by Hydra's grammar, with the source text of each listed value in it."""

    line: str
    override: Any  # hydra's Override; None for a plain override Hydra cannot parse (passed on as written)
    sources: tuple[tuple[Any, str], ...] = ()

    @property
    def key(self) -> str:
        if self.override is None:
            return self.line.split("=", 1)[0]
        return str(self.override.get_key_element())

    @property
    def name(self) -> str:
        return self.key.lstrip("+~")

    @property
    def is_sweep(self) -> bool:
        return self.override is not None and bool(self.override.is_sweep_override())

    def count(self) -> int:
        return 1 if self.override is None else count_values(self.override)

    def entry(self) -> Entry:
        if self.override is None:
            return Entry.passthrough(self.line)
        return _entry(self.line, self.override, list(self.sources))


def parse_overrides(lines: Sequence[str]) -> list[ParsedOverride]:
    """Parse with Hydra's grammar; a key given twice keeps its first position and its last value.

    Nothing is enumerated yet (``count()`` says how many values each takes). A ``key=value`` that Hydra
    cannot parse but that cannot be a sweep either (no ``,``, ``(`` or ``[`` in its value, e.g.
    ``path=/data/été``) is passed on as written; any other is a ``ConfigError``.
    """
    parsed: dict[str, ParsedOverride] = {}
    for line in lines:
        item = parse_override(line)
        parsed[item.key] = item
    return list(parsed.values())


def parse_override(line: str) -> ParsedOverride:
    """``line`` parsed; ``ConfigError`` worded by Hydra's own parser when it is not an override."""
    from hydra.errors import HydraException

    try:
        return parse_with_sources(line)
    except HydraException:
        key, eq, value = line.partition("=")
        if eq and key and re.fullmatch(r"[+~]{0,2}[\w.@/-]+", key) and not re.search(r"[,(\[]", value):
            return ParsedOverride(line, None)
        from hydra.core.override_parser.overrides_parser import OverridesParser

        try:  # Hydra's own parser words the error
            OverridesParser.create().parse_overrides([line])
        except HydraException as exc:
            first = [x.strip() for x in str(exc).strip().splitlines() if x.strip()]
            raise ConfigError(f"bad override '{line}': {first[0] if first else type(exc).__name__}") from None
        raise


def parse_with_sources(line: str) -> ParsedOverride:
    from antlr4 import CommonTokenStream, InputStream
    from hydra.core.override_parser.overrides_visitor import HydraErrorListener
    from hydra.grammar.gen.OverrideLexer import OverrideLexer
    from hydra.grammar.gen.OverrideParser import OverrideParser

    listener = HydraErrorListener()
    lexer = OverrideLexer(InputStream(line))
    lexer.removeErrorListeners()
    lexer.addErrorListener(listener)
    parser = OverrideParser(CommonTokenStream(lexer))
    parser.removeErrorListeners()
    parser.addErrorListener(listener)
    visitor = _source_visitor()(line)
    override = visitor.visit(parser.override())
    override.input_line = line
    return ParsedOverride(line, override, tuple(visitor.sources))


@functools.cache
def _source_visitor() -> Any:
    from hydra.core.override_parser.overrides_parser import create_functions
    from hydra.core.override_parser.overrides_visitor import HydraOverrideVisitor
    from hydra.grammar.gen.OverrideParser import OverrideParser

    functions = create_functions()
    listed = (OverrideParser.SimpleChoiceSweepContext, OverrideParser.FunctionContext)

    class SourceVisitor(HydraOverrideVisitor):  # type: ignore[misc]
        """Hydra's visitor, also recording the source text of each listed literal value."""

        def __init__(self, line: str) -> None:
            super().__init__(functions)
            self.line = line
            self.sources: list[tuple[Any, str]] = []

        def visitElement(self, ctx: Any) -> Any:  # noqa: N802 (antlr's name)
            value = super().visitElement(ctx)
            if ctx.function() is None and isinstance(ctx.parentCtx, listed):
                self.sources.append((value, self.line[ctx.start.start : ctx.stop.stop + 1].strip()))
            return value

    return SourceVisitor


def count_values(override: Any) -> int:
    """How many values a parsed override takes, without enumerating them (1 for a plain override)."""
    from hydra.core.override_parser.types import ChoiceSweep, RangeSweep

    if not override.is_sweep_override():
        return 1
    value = override.value()
    if isinstance(value, ChoiceSweep):
        return len(value.list)
    if isinstance(value, RangeSweep):
        rng = value.range()
        if isinstance(rng, range):
            return len(rng)
        start, stop, step = Decimal(rng.start), Decimal(rng.stop), Decimal(rng.step)
        if step == 0:
            raise ConfigError(f"bad override '{override.input_line}': a range needs a step other than 0")
        return max(0, math.ceil((stop - start) / step))
    kind = "interval(...) is continuous" if override.is_interval_sweep() else "glob(...) is not supported"
    raise ConfigError(
        f"cannot sweep '{override.input_line}': {kind}; "
        "list the values (a,b,c), or use choice(...) or range(...)"
    )


def _entry(line: str, override: Any, sources: list[tuple[Any, str]]) -> Entry:
    from hydra.core.override_parser.types import Override

    key = override.get_key_element()
    if not override.is_sweep_override():
        return Entry(
            key, (override.get_value_string(),), (Override._convert_value(override.value()),), literal=line
        )
    items = list(override.sweep_iterator())
    if not items:
        raise ConfigError(f"bad override '{line}': the sweep has no values")
    texts, hydra_texts = [], []
    unused = list(sources) if override.is_choice_sweep() else []
    for item in items:
        hydra_text = Override._get_value_element_as_str(item)
        hydra_texts.append(hydra_text)
        match = next((i for i, (v, _) in enumerate(unused) if type(v) is type(item) and v == item), None)
        texts.append(unused.pop(match)[1] if match is not None else hydra_text)
    values = tuple(Override._convert_value(item) for item in items)
    return Entry(key, tuple(texts), values, tuple(hydra_texts))
