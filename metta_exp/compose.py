"""Hydra composition: an experiment file and its overrides -> the experiment's keys and the hydra node.

The config is composed with Hydra's compose API (real composition, config groups, ``--config-dir``),
which writes nothing: no ``outputs/``, ``.hydra/`` or log files in the working directory. Hydra and
OmegaConf are imported inside ``compose`` only. The launch command (``app``), the sweep command and
recipes all compose through here.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metta_exp.config import Experiment
from metta_exp.errors import ConfigError, UsageError, did_you_mean
from metta_exp.values import hydra_quote, parse_value

__all__ = [
    "DEFAULTS_NODE",
    "CommandLine",
    "compose",
    "conf_dir",
    "defaults_node",
    "display",
    "experiment_files",
    "first_line",
    "hydra_readable",
    "narrow_to_runs",
    "source_label",
]

DEFAULTS_NODE = "metta_exp_defaults"
OPEN_MAPPINGS = ("args_per_run", "depends_on", "skypilot.envs", "skypilot.file_mounts")


@dataclass
class CommandLine:
    """The launch command line, split into what Hydra composes and what passes through."""

    hydra_overrides: list[str] = field(default_factory=list)
    training_overrides: list[str] = field(default_factory=list)
    config_dir: Path | None = None
    config_name: str = "config"
    multirun: bool = False
    help: bool = False
    show_config: bool = False


def package_dir() -> Path:
    return Path(__file__).resolve().parent


def conf_dir() -> Path:
    """Shipped configs: inside the package when installed as a wheel, ``conf/`` beside it in a checkout."""
    for candidate in (package_dir() / "conf", package_dir().parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise UsageError(f"metta-exp's config files are missing (looked in {package_dir()}); reinstall metta-exp")


def experiment_files(config_dir: Path | None) -> dict[str, Path]:
    """Experiment name -> file, the user's ``--config-dir`` first."""
    found: dict[str, Path] = {}
    for base in ([config_dir] if config_dir else []) + [conf_dir()]:
        directory = base / "experiment"
        if directory.is_dir():
            for path in sorted(directory.glob("*.yaml")):
                found.setdefault(path.stem, path)
    return found


def defaults_node() -> dict[str, Any]:
    """Every experiment key with its default, taken from the dataclass (the one schema)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(Experiment):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        else:
            value = f.default_factory()  # type: ignore[misc,operator]
            is_settings = dataclasses.is_dataclass(value) and not isinstance(value, type)
            out[f.name] = dataclasses.asdict(value) if is_settings else value  # type: ignore[arg-type]
    return out


def compose(cl: CommandLine) -> tuple[str, Path, dict[str, Any], dict[str, Any]]:
    """Compose the config. Returns (experiment name, its file, the experiment keys, the hydra node)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.config_store import ConfigStore
    from hydra.errors import HydraException, MissingConfigException
    from omegaconf import OmegaConf, open_dict
    from omegaconf.errors import OmegaConfBaseException
    from yaml import YAMLError

    from metta_exp.yamlcheck import bounded_hydra_loads, check_yaml_file, yaml_error_message

    files = experiment_files(cl.config_dir)
    chosen = [
        o.split("=", 1)[1] for o in cl.hydra_overrides if o.lstrip("+").split("=", 1)[0] == "experiment"
    ]
    if not chosen:
        raise UsageError(
            f"choose an experiment: metta-exp +experiment=NAME (available: {', '.join(files) or 'none'})"
        )
    name = chosen[-1]
    if name not in files:
        raise UsageError(
            f"unknown experiment '{name}'{did_you_mean(name, files)}; available: {', '.join(files)} "
            f"(files in {conf_dir() / 'experiment'}"
            + (f" or {cl.config_dir / 'experiment'})" if cl.config_dir else ")")
        )
    source = files[name]
    check_yaml_file(source, display(source))  # before Hydra: its YAML errors are tracebacks
    node = OmegaConf.create(defaults_node())
    for path in OPEN_MAPPINGS:  # free-form mappings: `depends_on={a:[b]}` must work without '+'
        OmegaConf.set_struct(OmegaConf.select(node, path), False)
    ConfigStore.instance().store(name=DEFAULTS_NODE, node=node)
    overrides = list(cl.hydra_overrides)
    if cl.config_dir:  # quoted when it must be: a path may hold spaces and quotes
        overrides.append(f"hydra.searchpath=[{hydra_quote(f'file://{cl.config_dir}')}]")
    try:
        with (
            bounded_hydra_loads(),
            initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3", job_name="metta-exp"),
        ):
            cfg = hydra_compose(cl.config_name, overrides=overrides, return_hydra_config=True)
            with open_dict(cfg):
                hydra_cfg = cfg.pop("hydra")
            data = OmegaConf.to_container(cfg, resolve=True)
            hydra_node = OmegaConf.to_container(hydra_cfg, resolve=False)
            runs_given = [o for o in overrides if o.lstrip("+~").split("=", 1)[0] == "runs"]
            if runs_given and isinstance(data, dict):  # the file's own runs, to narrow its per-run keys
                declared = hydra_compose(
                    cl.config_name, overrides=[o for o in overrides if o not in runs_given]
                )
                data = narrow_to_runs(data, OmegaConf.to_container(declared.runs, resolve=True))
    except MissingConfigException as exc:
        raise UsageError(first_line(exc)) from None
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        raise ConfigError(f"{source_label(cl, source)}: {first_line(exc)}") from None
    except YAMLError as exc:  # a file the experiment's defaults list pulls in
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        raise ConfigError(yaml_error_message(exc, mark.name if mark else display(source))) from None
    except RecursionError:
        raise ConfigError(f"{source_label(cl, source)}: nested too deeply to compose; flatten it") from None
    assert isinstance(data, dict) and isinstance(hydra_node, dict)
    if isinstance(data.get("experiment"), dict) and not data.get("runs"):
        raise ConfigError(
            f"{display(source)}: its keys landed under 'experiment' because its first line is not "
            "'# @package _global_': add that line at the top of the file (as in conf/experiment/demo.yaml)"
        )
    return name, source, {str(k): v for k, v in data.items()}, {str(k): v for k, v in hydra_node.items()}


def narrow_to_runs(data: dict[Any, Any], declared: object) -> dict[Any, Any]:
    """Drop per-run entries of runs the file declared but ``runs=[...]`` on the command line left out.

    ``metta-exp +experiment=arena 'runs=[baseline]'`` runs a subset without editing the file; an entry
    for a run the file never declared stays, so a typo in the file is still an error.
    """
    kept = {str(r) for r in data.get("runs") or []}
    dropped = {str(r) for r in declared or [] if str(r) not in kept} if isinstance(declared, list) else set()
    if not dropped:
        return data
    out = dict(data)
    for key in ("args_per_run", "depends_on"):
        mapping = out.get(key)
        if isinstance(mapping, dict):
            out[key] = {k: v for k, v in mapping.items() if str(k) not in dropped}
    deps = out.get("depends_on")
    if isinstance(deps, dict):
        out["depends_on"] = {
            k: [d for d in v if str(d) not in dropped] if isinstance(v, list) else v for k, v in deps.items()
        }
    return out


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    head = lines[0]
    if head.startswith("Could not override") and len(lines) > 1:
        head = f"{head} {lines[1]}"
    return head


def source_label(cl: CommandLine, source: Path) -> str:
    """Where a config problem comes from: the experiment file, and the overrides given with it."""
    given = [o for o in cl.hydra_overrides if not o.lstrip("+").startswith("experiment=")]
    return display(source) + (f" with overrides {' '.join(given)}" if given else "")


def display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


_DICT_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")


def hydra_readable(override: str) -> str:
    """``override`` as Hydra's override grammar reads it. A value Hydra refuses that reads as a list or a
    dict of strings (``args=[trainer.total_timesteps=150000]``: an ``=`` inside an unquoted list element,
    as a recipe's arguments take it) is written again with each string quoted
    (``args=['trainer.total_timesteps=150000']``); anything else is left as it is, for Hydra to report."""
    key, _, text = override.partition("=")
    if text.strip()[:1] not in ("[", "{") or "=" not in text:  # no "=" inside a container: Hydra's to read
        return override
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    try:
        parser.parse_override(override)
        return override
    except HydraException:  # the grammar's errors (OverrideParseException is one kind)
        pass
    try:
        value = parse_value(text)
        rewritten = f"{key}={_hydra_literal(value)}" if isinstance(value, list | dict) else None
        if rewritten is not None:
            parser.parse_override(rewritten)
            return rewritten
    except (UsageError, ValueError, HydraException):
        pass
    return override


def _hydra_literal(value: Any) -> str:
    """A list or dict of strings (and JSON's numbers, booleans and nulls) in Hydra's element syntax, every
    string quoted; a ValueError for a dict key Hydra cannot take bare."""
    from hydra.core.override_parser.types import Quote, QuotedString

    if isinstance(value, list):
        return "[" + ",".join(_hydra_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        if not all(_DICT_KEY.match(str(k)) for k in value):
            raise ValueError(f"not a Hydra dict key: {value!r:.60}")
        return "{" + ",".join(f"{k}:{_hydra_literal(v)}" for k, v in value.items()) + "}"
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int | float):
        return repr(value)
    return QuotedString(text=str(value), quote=Quote.single).with_quotes()
