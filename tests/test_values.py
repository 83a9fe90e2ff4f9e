"""Command-line values: the parser agrees with Hydra's on Hydra's syntax; conversion by annotation."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from metta_exp.errors import UsageError
from metta_exp.values import convert, infer, parse_value, type_name

HYDRA_SYNTAX = [
    "[a,b]", "[ a , b ]", "[]", "{}", "{a:1,b:[x,y]}", "[1,2.5,true,null,abc]", "1e-3", "1_000", "007", "-3",
    "+1", "inf", "NaN", "True", "NULL", "abc", "a b", "'quoted x'", '"dq"', '["a","b"]', "['a b','c']",
    "[[1,2],[3]]", "{lr:0.1, mid:0.03}", "http://x:8", "[a.b/c-d,e_f]", "1.", ".5", "1.5e3", "{a: [b, c]}", "",
    "0.0001", "[1e3]", "1__0", "0x1f", "[-1,+2]", "[true,False,NULL]",
]  # fmt: skip


@pytest.mark.parametrize("text", HYDRA_SYNTAX)
def test_values_are_read_as_hydra_reads_them(text: str) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import Override

    hydra = Override._convert_value(OverridesParser.create().parse_override(f"key={text}").value())
    ours = infer(parse_value(text))
    if isinstance(hydra, float) and math.isnan(hydra):
        assert isinstance(ours, float) and math.isnan(ours)
    else:
        assert (ours, _types(ours)) == (hydra, _types(hydra))


def _types(value: Any) -> Any:
    if isinstance(value, list):
        return [_types(v) for v in value]
    if isinstance(value, dict):
        return {k: _types(v) for k, v in value.items()}
    return type(value)


@pytest.mark.parametrize(
    ("text", "annotation", "expected"),
    [
        ("007", str, "007"),
        ("007", int, 7),
        ("2", float, 2.0),
        ("TRUE", bool, True),
        ("a/b.txt", Path, Path("a/b.txt")),
        ("[1,2]", list[str], ["1", "2"]),
        ('["1","2"]', list[int], [1, 2]),
        ("{a:[1]}", dict[str, list[float]], {"a": [1.0]}),
        ("none", list[str] | None, None),
        ("3", str | int, "3"),
        ("3", int | str, 3),
        ("x", int | str, "x"),
        ("[1,a]", tuple[int, str], (1, "a")),
        ("[1,2]", tuple[int, ...], (1, 2)),
        ("null", Any, None),
    ],
)
def test_values_are_converted_by_annotation(text: str, annotation: Any, expected: Any) -> None:
    got = convert(parse_value(text), annotation, "k")
    assert got == expected and type(got) is type(expected)


def test_unconvertible_types_are_named() -> None:
    with pytest.raises(UsageError, match="'k' has the type complex, which metta-exp cannot build from text"):
        convert(parse_value("1"), complex, "k")


@pytest.mark.parametrize(
    ("annotation", "shown"),
    [
        (int, "int"),
        (list[str] | None, "list[str] | None"),
        (dict[str, float], "dict[str, float]"),
        (Path, "Path"),
    ],
)
def test_type_names_read_as_written(annotation: Any, shown: str) -> None:
    assert type_name(annotation) == shown
