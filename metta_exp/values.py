"""Command-line values: parsed as JSON or Hydra's override syntax, converted by a type annotation.

``parse_value`` reads the text after ``key=``: lists and dicts in JSON (``'["a","b"]'``, the reference's
form) or in Hydra's syntax (``[a,b]``, ``{a:1,b:[x,y]}``), quoted strings, and anything else as it was
written. Unquoted text comes back as ``Bare`` (a ``str``), so its type is decided by what it is converted
to: ``convert`` by a parameter's annotation, ``infer`` by Hydra's own rules (``false`` is a bool, ``2`` an
int, ``1e-3`` a float, ``null`` None) for experiment keys and unannotated parameters.

A small parser of its own rather than Hydra's (``hydra.core.override_parser`` alone costs 0.25 s to
import): ``metta-exp run`` must start faster than a composed launch. The tests check it against Hydra's
parser value by value.
"""

from __future__ import annotations

import json
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Union

from metta_exp.errors import UsageError

_INT = re.compile(r"[+-]?(0|[1-9](_?\d)*)\Z")
_DIGITS = r"\d(_?\d)*"
_POINT = rf"({_DIGITS})?\.{_DIGITS}|{_DIGITS}\."
_FLOAT = re.compile(rf"[+-]?({_POINT}|(({_POINT})|{_DIGITS})[eE][+-]?{_DIGITS}|inf|nan)\Z", re.IGNORECASE)
_NONE_WORDS = ("null", "none")


class Bare(str):
    """Unquoted text from the command line: its type is decided where it is used."""

    __slots__ = ()


def parse_value(text: str) -> Any:
    """The value of a ``key=value`` argument: JSON or Hydra-syntax containers, quoted or bare strings."""
    stripped = text.strip()
    if stripped[:1] in ("[", "{"):
        try:
            return json.loads(stripped)
        except ValueError:
            pass
    parser = _Parser(text)
    value = parser.element(top=True)
    parser.end()
    return value


class _Parser:
    """Hydra's element grammar (primitive, quoted string, ``[...]``, ``{key: ...}``), a little lenient."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0

    def fail(self, what: str) -> UsageError:
        return UsageError(f"cannot read {self.text!r}: {what} at position {self.i + 1}")

    def peek(self) -> str:
        self.skip_ws()
        return self.text[self.i] if self.i < len(self.text) else ""

    def skip_ws(self) -> None:
        while self.i < len(self.text) and self.text[self.i] in " \t":
            self.i += 1

    def end(self) -> None:
        if self.peek():
            raise self.fail(f"unexpected {self.text[self.i]!r}")

    def element(self, top: bool = False) -> Any:
        char = self.peek()
        if char == "[":
            return self.sequence()
        if char == "{":
            return self.mapping()
        if char in ("'", '"'):
            start = self.i
            value = self.quoted()
            if not top or not self.peek():
                return value
            self.i = start  # a quote that does not span the whole value: all of it is one string
        return self.bare("" if top else ",]}")

    def sequence(self) -> list[Any]:
        self.i += 1
        items: list[Any] = []
        if self.peek() == "]":
            self.i += 1
            return items
        while True:
            items.append(self.element())
            char = self.peek()
            self.i += 1
            if char == "]":
                return items
            if char != ",":
                raise self.fail("expected ',' or ']'" if char else "missing ']'")

    def mapping(self) -> dict[str, Any]:
        self.i += 1
        out: dict[str, Any] = {}
        if self.peek() == "}":
            self.i += 1
            return out
        while True:
            key = self.quoted() if self.peek() in ("'", '"') else self.bare(":,]}")
            if not key or self.peek() != ":":
                raise self.fail("expected 'key: value'")
            self.i += 1
            out[str(key)] = self.element()
            char = self.peek()
            self.i += 1
            if char == "}":
                return out
            if char != ",":
                raise self.fail("expected ',' or '}'" if char else "missing '}'")

    def quoted(self) -> str:
        quote = self.text[self.i]
        self.i += 1
        chars: list[str] = []
        while self.i < len(self.text):
            char = self.text[self.i]
            if char == "\\" and self.i + 1 < len(self.text) and self.text[self.i + 1] in (quote, "\\"):
                chars.append(self.text[self.i + 1])
                self.i += 2
                continue
            self.i += 1
            if char == quote:
                return "".join(chars)
            chars.append(char)
        raise self.fail(f"missing closing {quote}")

    def bare(self, stops: str) -> Bare:
        start = self.i
        while self.i < len(self.text) and self.text[self.i] not in stops:
            if stops and self.text[self.i] in "[{":
                raise self.fail(f"unexpected {self.text[self.i]!r}")
            self.i += 1
        value = self.text[start : self.i].strip()
        if stops and not value:
            raise self.fail("missing value")
        return Bare(value)


def infer(value: Any) -> Any:
    """Bare text typed as Hydra types it; containers recursively; anything else as it is."""
    if isinstance(value, Bare):
        lower = value.lower()
        if lower == "null":
            return None
        if lower in ("true", "false"):
            return lower == "true"
        if _INT.match(value):
            return int(value)
        if _FLOAT.match(value):
            return float(value)
        return str(value)
    if isinstance(value, list):
        return [infer(v) for v in value]
    if isinstance(value, dict):
        return {str(k): infer(v) for k, v in value.items()}
    return value


def convert(value: Any, annotation: Any, where: str) -> Any:
    """``value`` (from ``parse_value``) as ``annotation`` says, else ``UsageError`` naming ``where`` (a key)."""
    if annotation in (Any, object, None):
        return infer(value)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (Union, types.UnionType):
        return _convert_union(value, args, annotation, where)
    if origin is Literal:
        for choice in args:
            try:
                if convert(value, type(choice), where) == choice:
                    return choice
            except UsageError:
                continue
        raise _wrong(value, annotation, where)
    if annotation in (str, int, float, bool, Path):
        return _scalar(value, annotation, where)
    if annotation in (list, tuple, dict) or origin in (list, tuple, dict, Sequence, Mapping):
        return _container(value, origin or annotation, args, annotation, where)
    raise UsageError(
        f"'{where}' has the type {type_name(annotation)}, which metta-exp cannot build from text"
    )


def _convert_union(value: Any, members: tuple[Any, ...], annotation: Any, where: str) -> Any:
    if type(None) in members and (value is None or (isinstance(value, str) and value.lower() in _NONE_WORDS)):
        return None
    for member in members:
        if member is not type(None):
            try:
                return convert(value, member, where)
            except UsageError:
                continue
    raise _wrong(value, annotation, where)


def _scalar(value: Any, kind: type, where: str) -> Any:
    if isinstance(value, str) and kind in (str, Path):
        return kind(value)
    if kind is str and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d(_?\d)*\s*", value):
            return int(value)
    elif kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and (_INT.match(value.strip()) or _FLOAT.match(value.strip())):
            return float(value)
    raise _wrong(value, kind, where)


def _container(value: Any, kind: Any, args: tuple[Any, ...], annotation: Any, where: str) -> Any:
    if kind in (dict, Mapping):
        if not isinstance(value, dict):
            raise _wrong(value, annotation, where)
        key_type, value_type = args if len(args) == 2 else (Any, Any)
        return {
            convert(Bare(k), key_type, f"{where} key {k}"): convert(v, value_type, f"{where}.{k}")
            for k, v in value.items()
        }
    if not isinstance(value, list):
        raise _wrong(value, annotation, where)
    if kind is tuple and args and args[-1] is not Ellipsis:
        if len(args) != len(value):
            raise UsageError(
                f"'{where}' must have {len(args)} items ({type_name(annotation)}), got {len(value)}"
            )
        return tuple(convert(v, t, f"{where}[{i}]") for i, (v, t) in enumerate(zip(value, args, strict=True)))
    item_type = args[0] if args else Any
    items = [convert(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
    return tuple(items) if kind is tuple else items


_WORDS = {str: "a string", int: "an integer", float: "a number", bool: "true or false", Path: "a path"}


def _wrong(value: Any, annotation: Any, where: str) -> UsageError:
    want = _WORDS.get(annotation) or type_name(annotation)
    origin = typing.get_origin(annotation)
    hint = ""
    if origin in (list, tuple, Sequence) or annotation in (list, tuple):
        hint = ', e.g. [a,b] or \'["a","b"]\''
    elif origin in (dict, Mapping) or annotation is dict:
        hint = ", e.g. {a:1,b:2} or '{\"a\": 1}'"
    return UsageError(f"'{where}' must be {want}{hint}, got {_show(value)}")


def _show(value: Any) -> str:
    if isinstance(value, Bare):
        return repr(str(value))
    return json.dumps(value) if isinstance(value, list | dict | bool) or value is None else repr(value)


def type_name(annotation: Any) -> str:
    """An annotation as a reader writes it: ``list[str] | None``, ``Path``, ``dict[str, float]``."""
    if annotation is type(None) or annotation is None:
        return "None"
    if annotation is Ellipsis:
        return "..."
    if annotation is Any:
        return "Any"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is Literal:
        return f"Literal[{', '.join(repr(a) for a in args)}]"
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(type_name(a) for a in args)}]" if args else name
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


_PLAIN_PATH = re.compile(r"[A-Za-z0-9_./:+-]+")


def hydra_quote(path: str) -> str:
    """A path (or ``file://`` URL) as the value of a Hydra override: bare when Hydra reads it back as
    written (``/tmp/out/0``), else single-quoted with Hydra's escapes (``'/tmp/my dir/0'``)."""
    if _PLAIN_PATH.fullmatch(path):
        return path
    from hydra.core.override_parser.types import Quote, QuotedString  # only when quoting: a slow import

    return QuotedString(text=path, quote=Quote.single).with_quotes()
