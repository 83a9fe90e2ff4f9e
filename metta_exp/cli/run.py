"""``metta-exp run RECIPE [key=value ...]``: launch what a Python recipe function returns.

Thin: the look-up, binding and overrides are ``metta_exp.recipes``; launching is the same path as
``metta-exp +experiment=NAME``. Hydra is not imported: a recipe needs no composition.
"""

from __future__ import annotations

import json
import sys
import tempfile
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from metta_exp.errors import RecipeError, UsageError

USAGE = """\
Usage:
  metta-exp run RECIPE [key=value ...]     call a recipe function, launch the experiment(s) it returns
  metta-exp run RECIPE --help              the recipe's docstring and parameters
  metta-exp run --list [PACKAGE]           the recipes under experiments.recipes (or PACKAGE)

RECIPE is module.function (importable from the current directory; a short path such as
arena.experiment is also looked up as experiments.recipes.arena.experiment) or path/to/file.py:function.
key=value binds a parameter of the function, else overrides an experiment key of what it returns
(remote=false, max_parallel=2, dry_run=true, skypilot.use_spot=true, ...). Lists and dicts take JSON
(runs='["a","b"]') or Hydra's syntax (runs=[a,b], lrs={a:0.1,b:0.3}).

Flags: --verbose prints the traceback of a recipe that raised (otherwise it goes to a log file);
--cfg prints the experiment(s) as JSON instead of launching.

Examples:
  metta-exp run metta_exp.examples.recipes.demo                      the demo, from Python
  metta-exp run arena.experiment runs='["baseline","high_lr"]' gpus=8 dry_run=true
  metta-exp run ./my_recipes.py:sweep 'lrs=[0.01,0.03]' remote=false
"""


@dataclass
class RunArgs:
    recipe: str | None = None
    pairs: list[tuple[str, str]] = field(default_factory=list)
    help: bool = False
    verbose: bool = False
    show_config: bool = False
    list: bool = False


def parse_args(argv: Sequence[str]) -> RunArgs:
    args = RunArgs()
    for arg in argv:
        if arg in ("-h", "--help"):
            args.help = True
        elif arg in ("-v", "--verbose"):
            args.verbose = True
        elif arg in ("--cfg", "-c"):
            args.show_config = True
        elif arg == "--list":
            args.list = True
        elif arg.startswith("-"):
            raise UsageError(f"unknown flag '{arg}'; metta-exp run takes --help, --list, --verbose, --cfg")
        elif args.recipe is None:
            args.recipe = arg
        elif "=" not in arg:
            raise UsageError(f"'{arg}' is not an argument: write key=value (e.g. gpus=4 or runs=[a,b])")
        else:
            key, _, value = arg.partition("=")
            args.pairs.append((key, value))
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    try:
        return _run(args)
    except RecipeError as exc:
        raise UsageError(f"{exc}{_traceback(exc.cause, args.verbose)}") from None


def _run(args: RunArgs) -> int:
    from metta_exp import recipes

    if args.list:
        return _list(args)
    if args.recipe is None:
        if args.help:
            print(USAGE, end="")
            return 0
        raise UsageError(
            "name a recipe: metta-exp run MODULE.FUNCTION [key=value ...] (see metta-exp run --help)"
        )
    recipe = recipes.find_recipe(args.recipe)
    if args.help:
        print(recipes.recipe_help(recipe))
        return 0
    kwargs, overrides = recipes.bind(recipe, args.pairs)
    exps = recipes.call(recipe, kwargs)
    exps = recipes.apply_overrides(exps, overrides, f"recipe {recipe.name}")
    if args.show_config:
        shown = [e.to_dict() for e in exps]
        print(json.dumps(shown[0] if len(shown) == 1 else shown, indent=2))
        return 0
    from metta_exp.submit import submit_experiments

    return submit_experiments(exps, name=recipe.name)[1]


def _list(args: RunArgs) -> int:
    from metta_exp.recipes import list_recipes

    if args.pairs:
        raise UsageError("metta-exp run --list takes at most one PACKAGE")
    found, failed = list_recipes(args.recipe)
    for note in failed:
        print(f"warning: skipped {note}", file=sys.stderr)
    if not found:
        print(f"no recipes in {args.recipe or 'experiments.recipes'} (functions annotated -> Experiment)")
        return 0
    width = max(len(name) for name, _ in found)
    for name, summary in found:
        print(f"{name:<{width}}  {summary}".rstrip())
    return 0


def _traceback(cause: BaseException, verbose: bool) -> str:
    """Print the recipe's traceback (``--verbose``) or keep it in a log file; the hint that says where."""
    lines = traceback.TracebackException.from_exception(cause)
    lines.stack = traceback.StackSummary.from_list([f for f in lines.stack if _is_users(f.filename)])
    text = "".join(lines.format())
    if verbose:
        print(text, end="", file=sys.stderr)
        return ""
    try:
        with tempfile.NamedTemporaryFile("w", prefix="metta-exp-recipe-", suffix=".log", delete=False) as log:
            log.write(text)
    except OSError:
        return " (--verbose prints the traceback)"
    return f" (traceback in {log.name}, or add --verbose)"


def _is_users(filename: str) -> bool:
    """Frames of the recipe, not of metta-exp's look-up or of importlib."""
    from metta_exp import recipes

    ours = {Path(recipes.__file__).resolve(), Path(__file__).resolve()}
    return not filename.startswith("<frozen ") and Path(filename).resolve() not in ours
