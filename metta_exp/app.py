"""The launch command: ``metta-exp [flags] +experiment=NAME [key=value ...]``.

The command line is split in two before Hydra sees it: overrides of metta-exp's own keys (and of
``experiment``/``hydra``) go to Hydra's composition; every other ``key=value`` is a training override that
passes through to each job's argv exactly as written. The config is composed with Hydra's compose API
(real composition, config groups, ``--config-dir``) which writes nothing: no ``outputs/``, ``.hydra/`` or
log files in the working directory.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metta_exp.config import CONFIG_KEYS, Experiment, SkyPilotSettings, WandbSettings
from metta_exp.errors import ConfigError, UsageError, closest, did_you_mean
from metta_exp.values import hydra_quote

DEFAULTS_NODE = "metta_exp_defaults"
OPEN_MAPPINGS = ("args_per_run", "depends_on", "skypilot.envs", "skypilot.file_mounts")
_VALUE_FLAGS = {
    "--config-dir": "config_dir",
    "-cd": "config_dir",
    "--config-name": "config_name",
    "-cn": "config_name",
}


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


def parse_command_line(argv: Sequence[str]) -> CommandLine:
    """Split argv; raise ``UsageError`` for unknown flags and misspelt metta-exp keys."""
    cl = CommandLine()
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        flag, eq, inline = arg.partition("=")
        if flag in _VALUE_FLAGS:
            if eq:
                value = inline
            elif i + 1 < len(args):
                i += 1
                value = args[i]
            else:
                raise UsageError(f"{flag} needs a value, e.g. {flag} ./my_conf")
            if _VALUE_FLAGS[flag] == "config_dir":
                path = Path(value).expanduser().absolute()
                if not path.is_dir():
                    raise UsageError(f"--config-dir {value}: no such directory")
                cl.config_dir = path
            else:
                cl.config_name = value
        elif arg in ("-m", "--multirun"):
            cl.multirun = True
        elif arg in ("-h", "--help"):
            cl.help = True
        elif arg in ("--cfg", "-c"):
            cl.show_config = True
            if i + 1 < len(args) and args[i + 1] in ("job", "all", "hydra"):
                i += 1
        elif arg.startswith("-"):
            raise UsageError(
                f"unknown flag '{arg}'; metta-exp takes --config-dir DIR, --config-name NAME, -m, --cfg, --help"
            )
        elif "=" not in arg:
            raise UsageError(f"'{arg}' is not an override: write key=value (e.g. gpus=4 or +experiment=demo)")
        else:
            _classify(arg, cl)
        i += 1
    return cl


def _classify(arg: str, cl: CommandLine) -> None:
    key = arg.split("=", 1)[0].lstrip("+~")
    if key.startswith("experiment") or key.startswith("hydra"):
        cl.hydra_overrides.append(arg)
        return
    parts = key.split(".")
    top = parts[0].split("/", 1)[0]
    if top in CONFIG_KEYS:
        nested = {f.name: f.type for f in dataclasses.fields(Experiment)}.get(top)
        sub = {"wandb": WandbSettings, "skypilot": SkyPilotSettings}.get(top)
        if sub is not None and nested is not None and len(parts) > 1:
            names = [f.name for f in dataclasses.fields(sub)]
            if parts[1] not in names:
                raise ConfigError(
                    f"unknown key '{top}.{parts[1]}'{did_you_mean(parts[1], names)}; "
                    f"{top} keys are: {', '.join(names)}"
                )
        cl.hydra_overrides.append(arg)
        return
    if "." not in key and "/" not in key and closest(key, CONFIG_KEYS, n=1, cutoff=0.75):
        raise ConfigError(
            f"unknown key '{key}'{did_you_mean(key, CONFIG_KEYS, cutoff=0.75)}: it looks like a metta-exp key; "
            f"to pass it to the training command anyway, write \"args=['{arg}']\""
        )
    cl.training_overrides.append(arg)


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
    check_yaml_file(source, _display(source))  # before Hydra: its YAML errors are tracebacks
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
        raise UsageError(_first_line(exc)) from None
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        raise ConfigError(f"{_source_label(cl, source)}: {_first_line(exc)}") from None
    except YAMLError as exc:  # a file the experiment's defaults list pulls in
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        raise ConfigError(yaml_error_message(exc, mark.name if mark else _display(source))) from None
    except RecursionError:
        raise ConfigError(f"{_source_label(cl, source)}: nested too deeply to compose; flatten it") from None
    assert isinstance(data, dict) and isinstance(hydra_node, dict)
    if isinstance(data.get("experiment"), dict) and not data.get("runs"):
        raise ConfigError(
            f"{_display(source)}: its keys landed under 'experiment' because its first line is not "
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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    head = lines[0]
    if head.startswith("Could not override") and len(lines) > 1:
        head = f"{head} {lines[1]}"
    return head


def _source_label(cl: CommandLine, source: Path) -> str:
    """Where a config problem comes from: the experiment file, and the overrides given with it."""
    given = [o for o in cl.hydra_overrides if not o.lstrip("+").startswith("experiment=")]
    return _display(source) + (f" with overrides {' '.join(given)}" if given else "")


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def load_experiment(cl: CommandLine) -> tuple[str, Experiment]:
    name, source, data, _ = compose(cl)
    label = _source_label(cl, source)
    return name, Experiment.from_mapping(data, source=label)


def help_text(config_dir: Path | None = None) -> str:
    lines = [
        "metta-exp: launch and manage groups of training runs from Hydra experiment configs.",
        "",
        "Usage:",
        "  metta-exp [--config-dir DIR] +experiment=NAME [key=value ...]   launch one job group",
        "  metta-exp -m +experiment=NAME trainer.lr=1e-3,3e-3              a sweep: one group, a run per point",
        "  metta-exp run RECIPE [key=value ...]                            a Python recipe (metta-exp run --help)",
        "  metta-exp job list|show|monitor|kill|logs|retry|resume|notebook|report  manage groups (job --help)",
        "",
        "Keys of an experiment (set in its YAML file or on the command line):",
        "  module | command, runs, args, args_per_run, depends_on, group, gpus, remote, wait,",
        "  generate_notebook, notebook_path, metrics_to_track, max_parallel, max_retries, timeout_s,",
        "  dry_run, wandb.{entity,project,mode}, skypilot.{accelerator,cloud,region,use_spot,num_nodes,",
        "  workdir,setup,envs,file_mounts}",
        "Any other key=value (e.g. trainer.learning_rate=0.01) is passed to every job's command as written.",
        "",
        "Shipped experiments:",
    ]
    for name, path in experiment_files(None).items():
        lines.append(f"  {name:<12} {_describe(path)}")
    mine = config_dir / "experiment" if config_dir else None
    if mine is not None and mine.is_dir():
        lines += ["", f"Your experiments ({mine}):"]
        lines += [f"  {path.stem:<12} {_describe(path)}" for path in sorted(mine.glob("*.yaml"))]
    lines += [
        "",
        "Examples:",
        "  metta-exp +experiment=demo                         three CartPole runs on this machine",
        "  metta-exp +experiment=lr_sweep gpus=8              on SkyPilot, 8 GPUs per job",
        "  metta-exp +experiment=arena 'runs=[a,b]' group=g1 dry_run=true",
        "  metta-exp --config-dir ./conf +experiment=mine     your own conf/experiment/mine.yaml",
        "",
        "State: the nearest job_state/jobs.sqlite here or in a parent directory, else a new ./job_state",
        "($METTA_EXP_STATE_DIR names another). Exit codes: 0 all succeeded, 1 a job did not succeed,",
        "2 bad input (nothing written), 130 interrupted while watching (jobs go on).",
    ]
    return "\n".join(lines)


def _describe(path: Path) -> str:
    for line in path.read_text().splitlines():
        text = line.strip().lstrip("#").strip()
        if line.strip().startswith("#") and text and not text.startswith("@package"):
            return text
    return ""


def main(argv: Sequence[str]) -> int:
    cl = parse_command_line(argv)
    if cl.help:
        print(help_text(cl.config_dir))
        return 0
    if cl.multirun:
        from metta_exp.sweep import launch_sweep

        return launch_sweep(cl)
    composed = compose(cl)
    name, source, data, hydra_node = composed
    if (hydra_node.get("sweeper") or {}).get("params"):
        from metta_exp.sweep import launch_sweep  # an experiment file that carries its own sweep

        return launch_sweep(cl, composed)
    exp = Experiment.from_mapping(data, source=_source_label(cl, source))
    if cl.show_config:
        import json

        print(json.dumps(exp.to_dict() | {"extra_args": cl.training_overrides}, indent=2))
        return 0
    return exp.launch(name=name, extra_args=cl.training_overrides)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
