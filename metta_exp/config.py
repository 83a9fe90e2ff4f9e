"""The experiment schema: one dataclass that YAML files, overrides and Python scripts all go through.

``Experiment.from_mapping`` turns what Hydra composed (or any mapping) into a validated ``Experiment``;
building an ``Experiment(...)`` in Python validates the same way. Every problem is a ``ConfigError``
naming the source and the key, with the fix where there is one.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from metta_exp.errors import ConfigError, did_you_mean

RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
GROUP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")
MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")
WANDB_MODES = ("online", "offline", "disabled")
SEARCH_DIRECTIONS = ("maximize", "minimize")
SEARCH_REDUCES = ("last", "max", "mean_last_10pct")
SEARCH_SAMPLERS = ("tpe", "random", "cmaes", "grid")
SEARCH_PRUNERS = ("median", "hyperband", "none")
RETURN_OBJECTIVE = "return value"  # a search's objective: what the task returned (hydra/sweeper=metta_exp)
REWARD = "overview/reward"
SPS = "overview/sps"
DEFAULT_METRICS = (SPS, REWARD)  # metrics_to_track's default; fetch_metrics' too


@dataclass
class WandbSettings:
    """W&B settings handed to every job (``WANDB_ENTITY``, ``WANDB_PROJECT``, ``WANDB_MODE``)."""

    entity: str | None = None
    project: str | None = None
    mode: str | None = None


@dataclass
class SkyPilotSettings:
    """SkyPilot task settings for remote groups."""

    accelerator: str | None = None
    cloud: str | None = None
    region: str | None = None
    use_spot: bool = False
    num_nodes: int = 1
    workdir: str | None = None
    setup: str | None = None
    envs: dict[str, str] = field(default_factory=dict)
    file_mounts: dict[str, str] = field(default_factory=dict)
    default_setup: bool = True  # install the launching metta-exp (and the workdir's project) before `setup`


@dataclass
class SearchSettings:
    """An adaptive sweep (a sweep with an ``interval(...)`` dimension): the Optuna study the group's runner
    drives. Ignored by groups that are not searches."""

    n_trials: int = 20
    parallel: int | None = None  # trials running at once: max_parallel, else 4
    objective: str = "overview/reward"
    direction: str = "maximize"
    reduce: str = "last"
    sampler: str = "tpe"
    pruner: str = "median"
    seed: int | None = None
    # a YAML file the runner writes the best trial to when the study ends, as Hydra's Optuna sweeper
    # writes optimization_results.yaml (relative: to the directory the group was launched from)
    results_file: str | None = None

    def trials_at_once(self, max_parallel: int | None) -> int:
        return self.parallel or max_parallel or 4


@dataclass
class Experiment:
    """A group of training runs: what each job runs, with which arguments, on what.

    Build it in Python and call ``launch()`` (or return it from a recipe function for ``metta-exp run``),
    or write the same keys in ``conf/experiment/NAME.yaml`` and run ``metta-exp +experiment=NAME``.

    Built in Python, ``args_per_run`` and ``depends_on`` are tables looked up by run: entries for names
    not in ``runs`` are left out, so a recipe can keep one table and take the runs to launch as a
    parameter (as the reference's recipes do). A YAML file's entries must all be runs (typos are errors).
    """

    runs: list[str] = field(default_factory=list)
    module: str | None = None
    command: list[str] | None = None
    args: list[str] = field(default_factory=list)
    args_per_run: dict[str, list[str]] = field(default_factory=dict)
    depends_on: dict[str, list[str]] = field(default_factory=dict)
    group: str | None = None
    gpus: int = 1
    remote: bool = True
    wait: bool = True
    generate_notebook: bool = True
    notebook_path: str | os.PathLike[str] | None = None  # a Path is kept as its string
    metrics_to_track: list[str] = field(default_factory=lambda: list(DEFAULT_METRICS))
    max_parallel: int | None = None
    max_retries: int = 0
    timeout_s: int | None = None
    dry_run: bool = False
    wandb: WandbSettings = field(default_factory=WandbSettings)
    skypilot: SkyPilotSettings = field(default_factory=SkyPilotSettings)
    search: SearchSettings = field(default_factory=SearchSettings)

    def __post_init__(self) -> None:
        if isinstance(self.wandb, Mapping):
            self.wandb = WandbSettings(**_known(self.wandb, WandbSettings, "wandb", "Experiment(...)"))
        if isinstance(self.skypilot, Mapping):
            self.skypilot = SkyPilotSettings(
                **_known(self.skypilot, SkyPilotSettings, "skypilot", "Experiment(...)")
            )
        if isinstance(self.search, Mapping):
            self.search = SearchSettings(**_known(self.search, SearchSettings, "search", "Experiment(...)"))
        self.args_per_run = _for_runs(self.args_per_run, self.runs)
        self.depends_on = _for_runs(self.depends_on, self.runs)
        validate(self, source="Experiment(...)")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "experiment") -> Experiment:
        """Validate a composed config (plain containers) against the schema."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: expected a mapping of experiment keys, got {type(data).__name__}")
        values = dict(_known(data, cls, None, source))
        subs: tuple[tuple[str, type], ...] = (
            ("wandb", WandbSettings),
            ("skypilot", SkyPilotSettings),
            ("search", SearchSettings),
        )
        for key, sub in subs:
            raw = values.get(key)
            if raw is None:
                values.pop(key, None)
                continue
            if not isinstance(raw, Mapping):
                raise ConfigError(f"{source}: '{key}' must be a mapping, got {raw!r}")
            values[key] = sub(**_known(raw, sub, key, source))
        try:
            return _construct(cls, values, source)
        except TypeError as exc:  # a required field missing
            raise ConfigError(f"{source}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> Experiment:
        data = self.to_dict()
        data.update(changes)
        return Experiment.from_mapping(data, source="Experiment.replace(...)")

    def launch(self, name: str | None = None, extra_args: Sequence[str] = ()) -> int:
        """Submit this experiment as one job group; returns the interface's exit code.

        With ``wait=True`` it shows the group until it ends. ``name`` names the experiment (it seeds the
        generated group name); by default it is taken from ``module`` or the command.
        """
        # The launch path sits above the schema, which imports nothing above it: the package's face (in
        # sys.modules before any module of the package) provides it, and loads it on this first use.
        launch: Callable[..., int] = sys.modules["metta_exp"]._launch
        return launch(self, name=name or default_name(self), extra_args=list(extra_args))


def default_name(exp: Experiment) -> str:
    if exp.module:
        parts = [p for p in exp.module.split(".") if p not in ("train", "main", "__main__")]
        return parts[-1] if parts else exp.module.split(".")[0]
    if exp.command:
        stem = re.sub(r"[^A-Za-z0-9._-]", "", exp.command[-1].rsplit("/", 1)[-1].split(".")[0])
        return stem or "experiment"
    return "experiment"


ExperimentTool = Experiment  # the reference's name for it

CONFIG_KEYS = tuple(f.name for f in dataclasses.fields(Experiment))


def _for_runs(table: Any, runs: Any) -> Any:
    """``table`` without the entries of names not in ``runs`` (anything malformed is left to validate)."""
    if not isinstance(table, Mapping) or isinstance(runs, str) or not isinstance(runs, Sequence):
        return table
    names = {str(r) for r in runs}
    return {k: v for k, v in table.items() if str(k) in names}


def _known(data: Mapping[str, Any], cls: type, prefix: str | None, source: str) -> dict[str, Any]:
    names = [f.name for f in dataclasses.fields(cls)]
    out: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(key, str) or key not in names:
            full = f"{prefix}.{key}" if prefix else str(key)
            hint = did_you_mean(str(key), names)
            if not hint:
                hint = f"; valid keys: {', '.join(names)}"
            raise ConfigError(f"{source}: unknown key '{full}'{hint}")
        out[key] = value
    return out


def _construct(cls: type[Experiment], values: dict[str, Any], source: str) -> Experiment:
    """An Experiment from checked keys, validated with ``source`` named in its errors."""
    obj = object.__new__(cls)
    for f in dataclasses.fields(cls):
        if f.name in values:
            setattr(obj, f.name, values[f.name])
        elif f.default is not dataclasses.MISSING:
            setattr(obj, f.name, f.default)
        else:
            setattr(obj, f.name, f.default_factory())  # type: ignore[misc,operator]
    validate(obj, source)
    return obj


# --- validation ---------------------------------------------------------------------------------


def validate(exp: Experiment, source: str) -> None:
    """Check every key; normalise values in place (numbers in name lists become strings)."""

    def fail(msg: str) -> None:
        raise ConfigError(f"{source}: {msg}")

    exp.runs = _str_list(exp.runs, "runs", fail)
    if not exp.runs:
        fail("'runs' is empty: list at least one run name, e.g. runs: [baseline]")
    seen: set[str] = set()
    for run in exp.runs:
        _check_name(run, "run", RUN_NAME, fail)
        if run in seen:
            fail(f"run '{run}' is listed twice in 'runs': run names must be unique")
        seen.add(run)

    if (exp.module is None) == (exp.command is None):
        fail("set exactly one of 'module' (python -m MODULE) or 'command' (an argv list)")
    if exp.module is not None:
        if not isinstance(exp.module, str) or not MODULE_NAME.match(exp.module):
            fail(f"'module' must be a dotted Python module name like 'pkg.train', got {exp.module!r}")
    else:
        exp.command = _str_list(exp.command, "command", fail)
        if not exp.command:
            fail("'command' is empty: give the argv each job runs, e.g. command: [python, train.py]")

    exp.args = _str_list(exp.args, "args", fail)
    exp.args_per_run = _run_map(exp.args_per_run, "args_per_run", seen, fail)
    exp.depends_on = _run_map(exp.depends_on, "depends_on", seen, fail)
    for run, deps in exp.depends_on.items():
        for dep in deps:
            if dep not in seen:
                fail(
                    f"depends_on.{run}: '{dep}' is not a run of this experiment{did_you_mean(dep, exp.runs)}"
                )
            if dep == run:
                fail(f"depends_on.{run}: a run cannot depend on itself")
    cycle = find_cycle(exp.depends_on)
    if cycle:
        fail(f"depends_on has a cycle: {' -> '.join(cycle)}")

    if exp.group is not None:
        if isinstance(exp.group, int | float) and not isinstance(exp.group, bool):
            exp.group = str(exp.group)
        _check_name(exp.group, "group", GROUP_NAME, fail)

    _int(exp, "gpus", fail, minimum=0)
    _int(exp, "max_retries", fail, minimum=0)
    _int(exp, "max_parallel", fail, minimum=1, optional=True)
    _int(exp, "timeout_s", fail, minimum=1, optional=True)
    for key in ("remote", "wait", "generate_notebook", "dry_run"):
        _bool(exp, key, fail)
    if isinstance(exp.notebook_path, os.PathLike):
        exp.notebook_path = os.fspath(exp.notebook_path)
    if exp.notebook_path is not None and (not isinstance(exp.notebook_path, str) or not exp.notebook_path):
        fail(f"'notebook_path' must be a file path, got {exp.notebook_path!r}")
    exp.metrics_to_track = _str_list(exp.metrics_to_track, "metrics_to_track", fail)
    if not exp.metrics_to_track:
        fail("'metrics_to_track' is empty: list at least one metric key, e.g. overview/reward")

    w = exp.wandb
    for key in ("entity", "project", "mode"):
        value = getattr(w, key)
        if value is not None and not isinstance(value, str):
            fail(f"'wandb.{key}' must be a string, got {value!r}")
    if w.mode is not None and w.mode not in WANDB_MODES:
        fail(f"'wandb.mode' must be one of {', '.join(WANDB_MODES)}, got {w.mode!r}")

    s = exp.skypilot
    for key in ("accelerator", "cloud", "region", "workdir", "setup"):
        value = getattr(s, key)
        if value is not None and not isinstance(value, str):
            fail(f"'skypilot.{key}' must be a string, got {value!r}")
    _bool(s, "use_spot", fail, prefix="skypilot.")
    _int(s, "num_nodes", fail, minimum=1, prefix="skypilot.")
    for key in ("envs", "file_mounts"):
        value = getattr(s, key)
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            fail(f"'skypilot.{key}' must be a mapping, got {value!r}")
        clean: dict[str, str] = {}
        for k, v in value.items():
            if not isinstance(k, str) or not k:
                fail(f"'skypilot.{key}' has a key that is not a string: {k!r}")
            if key == "envs" and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
                fail(f"'skypilot.envs.{k}' is not a valid environment variable name")
            if isinstance(v, bool) or not isinstance(v, str | int | float):
                fail(f"'skypilot.{key}.{k}' must be a string, got {v!r}")
            clean[k] = str(v)
        setattr(s, key, clean)

    _validate_search(exp.search, fail)


def _validate_search(q: SearchSettings, fail: Any) -> None:
    _int(q, "n_trials", fail, minimum=1, prefix="search.")
    _int(q, "parallel", fail, minimum=1, optional=True, prefix="search.")
    _int(q, "seed", fail, minimum=0, optional=True, prefix="search.")
    if not isinstance(q.objective, str) or not q.objective.strip():
        fail(f"'search.objective' must be a metric key such as overview/reward, got {q.objective!r}")
    if isinstance(q.results_file, os.PathLike):
        q.results_file = os.fspath(q.results_file)
    if q.results_file is not None and (not isinstance(q.results_file, str) or not q.results_file.strip()):
        fail(f"'search.results_file' must be a file path, got {q.results_file!r}")
    for key, allowed in (
        ("direction", SEARCH_DIRECTIONS),
        ("reduce", SEARCH_REDUCES),
        ("sampler", SEARCH_SAMPLERS),
        ("pruner", SEARCH_PRUNERS),
    ):
        value = getattr(q, key)
        if value not in allowed:
            fail(
                f"'search.{key}' must be one of {', '.join(allowed)}, got {value!r}{did_you_mean(str(value), allowed)}"
            )


def find_cycle(graph: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A dependency cycle as a path that ends where it started, or None."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if state.get(nxt) is None:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in graph:
        if state.get(node) is None:
            found = visit(node)
            if found:
                return found
    return None


def _check_name(value: Any, what: str, pattern: re.Pattern[str], fail: Any) -> None:
    if not isinstance(value, str) or not pattern.match(value):
        limit = 64 if what == "run" else 100
        fail(
            f"bad {what} name {value!r}: use letters, digits, '.', '_' and '-', starting with a letter "
            f"or digit, at most {limit} characters"
        )


def _str_list(value: Any, key: str, fail: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, Sequence):
        fail(f"'{key}' must be a list of strings, got {value!r}")
    out = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            fail(f"'{key}' must be a list of strings, got an item {item!r}")
        out.append(str(item))
    return out


def _run_map(value: Any, key: str, runs: set[str], fail: Any) -> dict[str, list[str]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        fail(f"'{key}' must map run names to lists of strings, got {value!r}")
    out: dict[str, list[str]] = {}
    for run, items in value.items():
        run = str(run)
        if run not in runs:
            fail(
                f"{key}: '{run}' is not a run of this experiment{did_you_mean(run, runs)}; runs are: "
                f"{', '.join(sorted(runs))}"
            )
        out[run] = _str_list(items, f"{key}.{run}", fail)
    return out


def _int(obj: Any, key: str, fail: Any, minimum: int, optional: bool = False, prefix: str = "") -> None:
    value = getattr(obj, key)
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        fail(f"'{prefix}{key}' must be an integer, got {value!r}")
    if value < minimum:
        fail(f"'{prefix}{key}' must be at least {minimum}, got {value}")


def _bool(obj: Any, key: str, fail: Any, prefix: str = "") -> None:
    value = getattr(obj, key)
    if not isinstance(value, bool):
        fail(f"'{prefix}{key}' must be true or false, got {value!r}")
