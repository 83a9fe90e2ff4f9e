"""Python recipes: functions that return an ``Experiment`` (or a list of them), found and called by name.

``metta-exp run RECIPE key=value ...`` goes through here in four steps, each usable on its own:

- ``find_recipe``: ``module.function`` imported with the current directory on ``sys.path``, a short path
  that does not import as given also looked for under ``experiments.recipes.`` (``arena.experiment`` is
  ``experiments/recipes/arena.py``), or ``path/to/file.py:function``;
- ``bind``: each ``key=value`` becomes an argument of the function (converted by its annotation, see
  ``metta_exp.values``) or, when the function has no such parameter, an override of an experiment key;
  anything else is a ``UsageError`` naming the closest parameter or key, before the recipe runs;
- ``call``: the recipe runs; whatever it raises becomes one ``RecipeError`` naming the recipe;
- ``apply_overrides``: the experiment-key overrides set on every experiment returned, validated by the
  schema exactly as a YAML file's keys are.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.util
import inspect
import os
import pkgutil
import re
import sys
import typing
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from metta_exp.config import CONFIG_KEYS, Experiment, SkyPilotSettings, WandbSettings
from metta_exp.errors import MettaExpError, RecipeError, UsageError, did_you_mean
from metta_exp.values import convert, infer, parse_value, type_name

DEFAULT_PACKAGE = "experiments.recipes"
_SETTINGS: dict[str, type] = {"wandb": WandbSettings, "skypilot": SkyPilotSettings}
_OPEN = ("args_per_run", "depends_on", "skypilot.envs", "skypilot.file_mounts")


@dataclass(frozen=True)
class Param:
    """A parameter of a recipe: its type (``Any`` when unknown) and default (``REQUIRED`` if none)."""

    name: str
    annotation: Any
    shown: str
    default: Any


REQUIRED = inspect.Parameter.empty


@dataclass(frozen=True)
class Recipe:
    """A recipe function; ``name`` (``arena.experiment``) names its groups."""

    name: str
    func: Callable[..., Any]
    file: str

    def params(self) -> list[Param]:
        return parameters(self.func)

    def takes_any_key(self) -> bool:
        return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(self.func).parameters.values())


# --- look-up -----------------------------------------------------------------------------------------


def find_recipe(spec: str) -> Recipe:
    """The recipe ``spec`` names; ``UsageError`` with the closest names when there is none."""
    _cwd_on_path()
    location, colon, attr = spec.rpartition(":")
    modules: Iterable[ModuleType]
    if colon and (location.endswith(".py") or os.sep in location or "/" in location):
        modules = [_import_file(Path(location), spec)]
    else:
        if not colon:
            location, _, attr = spec.rpartition(".")
        if not location or not attr:
            raise UsageError(
                f"'{spec}' is not a recipe: write MODULE.FUNCTION (e.g. arena.experiment, found in "
                "experiments/recipes/arena.py) or path/to/file.py:FUNCTION"
            )
        modules = _import_modules(location, spec)
    # the first module that has it: `arena.experiment` beside a training package `arena/` (the design's
    # layout, where `arena.train` trains) is experiments/recipes/arena.py's
    tried: list[ModuleType] = []
    for candidate in modules:
        tried.append(candidate)
        if _is_recipe(getattr(candidate, attr, None)):
            break
    else:
        raise UsageError(_no_recipe(tried, attr))
    module = tried[-1]
    obj = getattr(module, attr)
    func = obj if callable(obj) else (lambda: obj)
    short = module.__name__.removeprefix(f"{DEFAULT_PACKAGE}.").removeprefix("_metta_exp_recipe_")
    return Recipe(name=f"{short}.{attr}", func=func, file=_display(module.__file__))


def _cwd_on_path() -> None:
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def _is_recipe(obj: object) -> bool:
    return obj is not None and (callable(obj) or isinstance(obj, Experiment))


def _no_recipe(modules: Sequence[ModuleType], attr: str) -> str:
    """The error for a function that none of ``modules`` has: each module tried, with its file, and the
    recipes of the last one (the recipe module, when a package of the same name came first)."""
    tried = [f"{m.__name__} ({_display(m.__file__)})" for m in modules]
    last = modules[-1]
    names = [n for n, _ in _recipe_functions(last)] or _public_functions(last)
    listed = ", ".join(names) or "none"
    if len(tried) == 1:
        return f"{tried[0]} has no recipe function '{attr}'{did_you_mean(attr, names)}; its recipes: {listed}"
    return (
        f"no recipe function '{attr}' in {' nor in '.join(tried)}{did_you_mean(attr, names)}; "
        f"{last.__name__}'s recipes: {listed}"
    )


def _import_modules(name: str, spec: str) -> Iterator[ModuleType]:
    """``name``, then ``experiments.recipes.<name>``: those of them that exist, imported one at a time as
    the caller asks for the next (at least one, else a UsageError)."""
    candidates = [name] if name.startswith(f"{DEFAULT_PACKAGE}.") else [name, f"{DEFAULT_PACKAGE}.{name}"]
    found = False
    for candidate in candidates:
        try:
            module = importlib.import_module(candidate)
        except ModuleNotFoundError as exc:
            missing = exc.name or ""
            if missing and (candidate == missing or candidate.startswith(f"{missing}.")):
                continue  # the module itself is not there; anything else missing is the recipe's problem
            raise RecipeError(f"recipe {spec}: importing {candidate} failed: {_one_line(exc)}", exc) from exc
        except Exception as exc:
            raise RecipeError(f"recipe {spec}: importing {candidate} failed: {_one_line(exc)}", exc) from exc
        found = True
        yield module
    if found:
        return
    known = [m.name for m in _submodules(DEFAULT_PACKAGE)]
    raise UsageError(
        f"no recipe module '{name}'{did_you_mean(name.split('.')[0], known)} (looked for "
        f"{' and '.join(candidates)} from {os.getcwd()}); 'metta-exp run --list' lists the recipes"
    )


def _import_file(path: Path, spec: str) -> ModuleType:
    if not path.is_file():
        raise UsageError(f"recipe {spec}: no such file {path}")
    name = "_metta_exp_recipe_" + re.sub(r"\W", "_", path.stem)
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise UsageError(f"recipe {spec}: {path} is not a Python file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    sys.path.insert(0, str(path.resolve().parent))  # as when running the file: its siblings import
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        raise RecipeError(f"recipe {spec}: importing {path} failed: {_one_line(exc)}", exc) from exc
    return module


def _submodules(package: str) -> list[pkgutil.ModuleInfo]:
    try:
        pkg = importlib.import_module(package)
    except Exception:
        return []
    return list(pkgutil.iter_modules(getattr(pkg, "__path__", [])))


def _public_functions(module: ModuleType) -> list[str]:
    return [
        n
        for n, f in vars(module).items()
        if inspect.isfunction(f) and f.__module__ == module.__name__ and not n.startswith("_")
    ]


def _recipe_functions(module: ModuleType) -> list[tuple[str, Callable[..., Any]]]:
    """Functions defined in ``module`` whose return annotation is ``Experiment`` (or a list of them)."""
    return [
        (n, f)
        for n, f in vars(module).items()
        if inspect.isfunction(f)
        and f.__module__ == module.__name__
        and not n.startswith("_")
        and _returns_experiment(f)
    ]


def _returns_experiment(func: Callable[..., Any]) -> bool:
    annotation = inspect.signature(func).return_annotation
    if isinstance(annotation, str):
        return re.search(r"\b(Experiment|ExperimentTool)\b", annotation) is not None
    return annotation is Experiment or Experiment in typing.get_args(annotation)


def list_recipes(package: str | None = None) -> tuple[list[tuple[str, str]], list[str]]:
    """(name, first docstring line) of every recipe under ``package``, and the modules that failed."""
    _cwd_on_path()
    name = package or DEFAULT_PACKAGE
    try:
        root = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        raise UsageError(
            f"no recipe package '{name}' importable from {os.getcwd()} ({_one_line(exc)}); "
            "recipes live in experiments/recipes/*.py, or name a package: metta-exp run --list PACKAGE"
        ) from None
    except Exception as exc:
        raise RecipeError(f"importing {name} failed: {_one_line(exc)}", exc) from exc
    modules: list[ModuleType] = [root]
    failed: list[object] = []
    paths = getattr(root, "__path__", None)
    for info in pkgutil.walk_packages(paths, prefix=f"{name}.", onerror=failed.append) if paths else []:
        try:
            modules.append(importlib.import_module(info.name))
        except Exception as exc:
            failed.append(f"{info.name}: {_one_line(exc)}")
    found = []
    for module in modules:
        shown = module.__name__.removeprefix(f"{DEFAULT_PACKAGE}.") if package is None else module.__name__
        for attr, func in _recipe_functions(module):
            found.append((f"{shown}.{attr}", _summary(func)))
    return sorted(found), [str(f) for f in failed]


# --- binding -----------------------------------------------------------------------------------------


def parameters(func: Callable[..., Any]) -> list[Param]:
    """The keyword-bindable parameters of ``func`` with their resolved annotations."""
    hints = _type_hints(func)
    out = []
    for p in inspect.signature(func).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        annotation: Any = Any
        shown = ""
        if p.name in hints:
            annotation = hints[p.name]
            shown = type_name(annotation)
        elif isinstance(p.annotation, str):
            shown = p.annotation
        elif p.annotation is not p.empty:
            annotation = p.annotation
            shown = type_name(annotation)
        elif isinstance(p.default, Path):
            annotation = Path
        elif type(p.default) in (str, int, float, bool, list, dict, tuple):
            annotation = type(p.default)  # `gpus=4` takes an int
        out.append(Param(p.name, annotation, shown, p.default))
    return out


def _type_hints(func: Callable[..., Any]) -> dict[str, Any]:
    """Resolved annotations; one that cannot be evaluated here (a name imported only for type checkers)
    is left out, so that value is converted as Hydra would type it."""
    try:
        return typing.get_type_hints(func)
    except Exception:
        pass
    hints = {}
    for name, annotation in getattr(func, "__annotations__", {}).items():
        try:
            hints[name] = typing.get_type_hints(
                _Annotated(name, annotation), getattr(func, "__globals__", {})
            )[name]
        except Exception:
            continue
    return hints


class _Annotated:
    """One annotation alone, for ``typing.get_type_hints``."""

    def __init__(self, name: str, annotation: Any) -> None:
        self.__annotations__ = {name: annotation}


Override = tuple[tuple[str, ...], Any, str]  # (key path, value, 'key=value' as written)


def bind(recipe: Recipe, pairs: Sequence[tuple[str, str]]) -> tuple[dict[str, Any], list[Override]]:
    """Split ``key=value`` pairs into the recipe's arguments (converted) and experiment-key overrides."""
    params = {p.name: p for p in recipe.params()}
    kwargs: dict[str, Any] = {}
    overrides: list[Override] = []
    for key, text in pairs:
        if key in params:
            value = _parse(recipe, key, text)
            try:
                kwargs[key] = convert(value, params[key].annotation, key)
            except UsageError as exc:
                raise UsageError(f"recipe {recipe.name}: argument {exc}") from None
        elif key.lstrip("+").split(".")[0] in CONFIG_KEYS:
            path = experiment_key(key.lstrip("+"))
            overrides.append((path, infer(_parse(recipe, key, text)), f"{key}={text}"))
        elif recipe.takes_any_key() and key.isidentifier():
            kwargs[key] = infer(_parse(recipe, key, text))
        else:
            raise UsageError(_unknown(recipe, key, list(params)))
    missing = [p.name for p in params.values() if p.default is REQUIRED and p.name not in kwargs]
    if missing:
        shown = " ".join(f"{m}=..." for m in missing)
        raise UsageError(f"recipe {recipe.name} needs {', '.join(repr(m) for m in missing)}: add {shown}")
    return kwargs, overrides


def _parse(recipe: Recipe, key: str, text: str) -> Any:
    try:
        return parse_value(text)
    except UsageError as exc:
        raise UsageError(f"recipe {recipe.name}: {key}={text}: {exc}") from None


def experiment_key(key: str) -> tuple[str, ...]:
    """``skypilot.use_spot`` as a path into an experiment's keys; ``UsageError`` if it is not one."""
    top, *rest = key.split(".")
    if not rest:
        return (top,)
    if top in ("args_per_run", "depends_on"):
        return (top, ".".join(rest))  # run names may hold dots
    settings = _SETTINGS.get(top)
    if settings is None:
        raise UsageError(f"'{top}' has no sub-keys: write {top}=VALUE")
    names = [f.name for f in dataclasses.fields(settings)]
    if rest[0] not in names:
        raise UsageError(
            f"unknown key '{top}.{rest[0]}'{did_you_mean(rest[0], names)}; {top} keys are: {', '.join(names)}"
        )
    if len(rest) == 1:
        return (top, rest[0])
    if f"{top}.{rest[0]}" in _OPEN:
        return (top, rest[0], ".".join(rest[1:]))
    raise UsageError(f"'{top}.{rest[0]}' has no sub-keys: write {top}.{rest[0]}=VALUE")


def _unknown(recipe: Recipe, key: str, params: list[str]) -> str:
    hint = did_you_mean(key, params + list(CONFIG_KEYS))
    where = f"parameters: {', '.join(params)}" if params else "it takes no parameters"
    text = (
        f"unknown argument '{key}'{hint}: recipe {recipe.name} has no such parameter and it is no "
        f"experiment key ({where}; experiment keys: gpus, remote, max_parallel, dry_run, skypilot.use_spot, ...)"
    )
    if "." in key and not hint:  # a training override: the recipe's own args carry those
        text += f"; a training override goes in the experiment's args (\"args=['{key}=...']\" replaces them)"
    return text


# --- calling and overriding ------------------------------------------------------------------------------


def call(recipe: Recipe, kwargs: dict[str, Any]) -> list[Experiment]:
    """Run the recipe; one ``RecipeError`` for anything it raises or returns that is not an experiment."""
    try:
        result = recipe.func(**kwargs)
    except MettaExpError as exc:  # e.g. Experiment(...) rejecting a key
        raise RecipeError(f"recipe {recipe.name}: {exc}", exc) from exc
    except Exception as exc:
        raise RecipeError(f"recipe {recipe.name} raised {_one_line(exc)}", exc) from exc
    if isinstance(result, Experiment):
        return [result]
    if isinstance(result, list | tuple) and result and all(isinstance(e, Experiment) for e in result):
        return list(result)
    raise UsageError(
        f"recipe {recipe.name} returned {_describe(result)}: a recipe returns an Experiment "
        "(ExperimentTool) or a non-empty list of them"
    )


def apply_overrides(exps: list[Experiment], overrides: list[Override], label: str) -> list[Experiment]:
    """Each experiment with the overrides set, validated by the schema (``ConfigError`` naming ``label``)."""
    if not overrides:
        return exps
    from metta_exp.compose import narrow_to_runs

    source = f"{label} with overrides {' '.join(text for _, _, text in overrides)}"
    out = []
    for exp in exps:
        data = exp.to_dict()
        for path, value, _ in overrides:
            node = data
            for part in path[:-1]:
                if not isinstance(node.get(part), dict):
                    node[part] = {}
                node = node[part]
            node[path[-1]] = value
        if any(path == ("runs",) for path, _, _ in overrides):
            data = narrow_to_runs(data, exp.runs)
        out.append(Experiment.from_mapping(data, source=source))
    return out


# --- help --------------------------------------------------------------------------------------------


def recipe_help(recipe: Recipe) -> str:
    """The recipe's docstring and parameters with their types and defaults."""
    lines = [f"metta-exp run {recipe.name}   ({recipe.file})", ""]
    doc = inspect.getdoc(recipe.func)
    if doc:
        lines += [doc, ""]
    params = recipe.params()
    lines.append("Parameters:" if params else "Parameters: none")
    for p in params:
        typed = f": {p.shown}" if p.shown else ""
        default = " (required)" if p.default is REQUIRED else f" = {p.default!r}"
        lines.append(f"  {p.name}{typed}{default}")
    lines += [
        "",
        "Any experiment key overrides the experiment it returns: remote=false, max_parallel=2, dry_run=true,",
        'skypilot.use_spot=true, ... Lists and dicts: runs=[a,b] or runs=\'["a","b"]\', lrs={a:0.1,b:0.3}.',
    ]
    return "\n".join(lines)


def _summary(func: Callable[..., Any]) -> str:
    doc = inspect.getdoc(func) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _describe(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, list | tuple):
        kinds = sorted({type(v).__name__ for v in value})
        return (
            f"a {type(value).__name__} of {', '.join(kinds)}" if value else f"an empty {type(value).__name__}"
        )
    return f"a {type(value).__name__}"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _display(path: str | None) -> str:
    if not path:
        return "?"
    with contextlib.suppress(ValueError):
        return str(Path(path).relative_to(Path.cwd()))
    return path
