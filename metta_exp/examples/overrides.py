"""What the example training programs share: ``key=value`` arguments parsed into their settings, checked
values, and a ``main`` that answers ``--help`` and turns a bad argument into one line and exit code 2."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from metta_exp.errors import UsageError, did_you_mean


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or math.isinf(value):
        raise ValueError("must be a finite number > 0")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0 or math.isinf(value):
        raise ValueError("must be a finite number >= 0")
    return value


def int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise ValueError(f"must be an integer >= {low}")
        return value

    return parse


def parse_key_values(
    args: Sequence[str], keys: Mapping[str, tuple[str, Callable[[str], Any]]], example: str, plus: bool = True
) -> dict[str, Any]:
    """``{setting: value}`` from ``key=value`` args (a key given again wins, as with Hydra overrides; a
    leading ``+`` is allowed with ``plus``); ``keys`` maps each key to its setting and parser. UsageError
    naming the first bad argument."""
    values: dict[str, Any] = {}
    for arg in args:
        key, sep, text = arg.partition("=")
        key = key.lstrip("+") if plus else key
        if not sep:
            raise UsageError(f"override {arg!r} is not key=value (e.g. {example})")
        if key not in keys:
            hint = did_you_mean(key, keys, cutoff=0.85)
            raise UsageError(f"unknown override key {key!r}{hint}; known: {', '.join(keys)}")
        name, parse = keys[key]
        try:
            values[name] = parse(text.strip())
        except ValueError as exc:
            detail = str(exc) if str(exc).startswith("must") else "not a valid number"
            raise UsageError(f"bad value for {key}: {text!r} ({detail})") from None
    return values


def example_main(
    argv: Sequence[str] | None, doc: str | None, prog: str, run: Callable[[list[str]], Any]
) -> int:
    """``--help`` prints ``doc``; ``run(args)`` otherwise, a ``UsageError`` from it one line and exit 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    if any(arg in ("-h", "--help") for arg in args):
        print(doc)
        return 0
    try:
        run(args)
    except UsageError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    return 0
