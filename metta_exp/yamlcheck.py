"""Check an experiment's YAML file before Hydra composes it.

Hydra reads a config file with PyYAML and lets every PyYAML error (a tab in the indentation, a
duplicate key, a ``!!python/...`` tag, a NUL byte) escape as a traceback, and it expands aliases while
composing, so a "billion laughs" file of a few hundred bytes costs minutes of CPU. ``check_yaml_file``
reads the file the way Hydra will (OmegaConf's loader) after a streaming pass over its events that
bounds nesting depth and the size aliases expand to, and turns every problem into one ``ConfigError``
naming the file, the line and the fix.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from metta_exp.errors import ConfigError

MAX_DEPTH = 100  # nested lists and mappings: PyYAML's composer recurses per level
MAX_NODES = 100_000  # values once every alias is expanded; real experiment files have a few hundred

_HINTS = (
    ("'\\t'", "indent with spaces, not tabs"),
    ("duplicate key", "keep one of the two entries"),
    (
        "could not determine a constructor",
        "metta-exp reads plain YAML: remove the tag and write a plain value",
    ),
    ("unacceptable character", "remove the character (is the file binary or damaged?)"),
    ("undefined alias", "define the anchor (&name) before the alias (*name), or write the value"),
    ("mapping values are not allowed", "quote the value, or put a space after each ':' of a key"),
)


def check_yaml_file(path: Path, label: str | None = None) -> None:
    """Raise ``ConfigError`` unless ``path`` is a YAML file Hydra can read safely."""
    import yaml

    name = label or str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read it ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{name}, line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8"
        ) from None
    try:
        _bound_events(yaml.parse(text, Loader=yaml.SafeLoader), name)
        from omegaconf._utils import get_yaml_loader

        yaml.load(text, Loader=get_yaml_loader())
    except yaml.YAMLError as exc:
        raise ConfigError(yaml_error_message(exc, name, text)) from None
    except RecursionError:
        raise ConfigError(f"{name}: nested too deeply to read; flatten its lists and mappings") from None


@contextmanager
def bounded_hydra_loads() -> Iterator[None]:
    """While Hydra composes, bound every YAML file it loads as ``check_yaml_file`` does.

    The experiment file is checked before composing, but its defaults list may pull in other files.
    ``OmegaConf.load`` (which Hydra's file config source calls) looks up ``omegaconf._utils.
    get_yaml_loader`` each time it runs (omegaconf/omegaconf.py, ``load``), so a loader that walks the
    events first is put there for the duration.
    """
    import yaml
    from omegaconf import _utils

    original = _utils.get_yaml_loader
    base = original()

    class BoundedLoader(base):  # type: ignore[misc,valid-type]
        def __init__(self, stream: Any) -> None:
            text = stream.read() if hasattr(stream, "read") else stream
            name = str(getattr(stream, "name", "a config"))
            try:
                _bound_events(yaml.parse(text, Loader=yaml.SafeLoader), name)
            except yaml.YAMLError as exc:
                raise ConfigError(yaml_error_message(exc, name, text)) from None
            super().__init__(text)
            self.name = name  # for the marks of PyYAML's errors

    _utils.get_yaml_loader = lambda: BoundedLoader
    try:
        yield
    finally:
        _utils.get_yaml_loader = original


def yaml_error_message(exc: Any, name: str, text: str | None = None) -> str:
    """One line for a PyYAML error: the file, the line, what is wrong, the fix."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f"{name}, line {mark.line + 1}" if mark is not None else name
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    if type(exc).__name__ == "ReaderError":  # a bad character: its mark is a position, not a line
        where, problem = name, str(exc).splitlines()[0]
        position = getattr(exc, "position", None)
        if position is not None and text is not None:
            where = f"{name}, line {text[:position].count(chr(10)) + 1}"
    what = f"{context}: {problem}" if context and "constructor" not in problem else problem
    hint = next(
        (fix for key, fix in _HINTS if key in f"{context} {problem} {exc}"), "fix the YAML syntax there"
    )
    return f"{where}: invalid YAML ({' '.join(str(what).split())}); {hint}"


def _bound_events(events: Any, name: str) -> None:
    """Walk the parse events once: refuse nesting past ``MAX_DEPTH`` and alias expansion past
    ``MAX_NODES`` before anything builds the expanded tree."""
    import yaml

    sizes: dict[str, int] = {}  # anchor -> number of values it expands to
    stack: list[list[Any]] = [[None, 0]]  # [anchor, values so far] of each open collection
    for event in events:
        if isinstance(event, yaml.CollectionStartEvent):
            stack.append([event.anchor, 1])
            if len(stack) > MAX_DEPTH:
                line = event.start_mark.line + 1
                raise ConfigError(
                    f"{name}, line {line}: lists and mappings nested more than {MAX_DEPTH} deep; flatten them"
                )
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            anchor, size = stack.pop()
        elif isinstance(event, yaml.ScalarEvent):
            anchor, size = event.anchor, 1
        elif isinstance(event, yaml.AliasEvent):
            anchor, size = None, sizes.get(event.anchor, 1)
        else:
            continue
        if anchor is not None:
            sizes[anchor] = size
        stack[-1][1] += size
        if stack[-1][1] > MAX_NODES:
            line = event.start_mark.line + 1
            raise ConfigError(
                f"{name}, line {line}: its aliases expand to more than {MAX_NODES:,} values "
                "(nested aliases, as in a 'billion laughs' file); write the values out or use fewer "
                "nested aliases"
            )
