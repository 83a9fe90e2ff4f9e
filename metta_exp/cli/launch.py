"""The launch command: ``metta-exp [flags] +experiment=NAME [key=value ...]``.

The command line is split in two before Hydra sees it: overrides of metta-exp's own keys (and of
``experiment``/``hydra``) go to Hydra's composition; every other ``key=value`` is a training override that
passes through to each job's argv exactly as written. The config is composed by ``compose.compose``
(Hydra's compose API, which writes nothing in the working directory).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from metta_exp.compose import CommandLine, compose, experiment_files, hydra_readable, source_label
from metta_exp.config import CONFIG_KEYS, Experiment, SkyPilotSettings, WandbSettings
from metta_exp.errors import ConfigError, UsageError, closest, did_you_mean

_VALUE_FLAGS = {
    "--config-dir": "config_dir",
    "-cd": "config_dir",
    "--config-name": "config_name",
    "-cn": "config_name",
}


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
        cl.hydra_overrides.append(hydra_readable(arg))
        return
    if "." not in key and "/" not in key and closest(key, CONFIG_KEYS, n=1, cutoff=0.75):
        raise ConfigError(
            f"unknown key '{key}'{did_you_mean(key, CONFIG_KEYS, cutoff=0.75)}: it looks like a metta-exp key; "
            f"to pass it to the training command anyway, write \"args=['{arg}']\""
        )
    cl.training_overrides.append(arg)


def load_experiment(cl: CommandLine) -> tuple[str, Experiment]:
    name, source, data, _ = compose(cl)
    label = source_label(cl, source)
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
        lines += _described(name, path)
    mine = config_dir / "experiment" if config_dir else None
    if mine is not None and mine.is_dir():
        lines += ["", f"Your experiments ({mine}):"]
        for path in sorted(mine.glob("*.yaml")):
            lines += _described(path.stem, path)
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


def _described(name: str, path: Path, width: int = 100) -> list[str]:
    """``  NAME         its description``, wrapped to ``width`` under the description's first column."""
    import textwrap

    first = f"  {name:<12} "
    return textwrap.wrap(describe(path), width, initial_indent=first, subsequent_indent=" " * len(first)) or [
        first.rstrip()
    ]


def describe(path: Path) -> str:
    """An experiment file's description: its first block of comment lines (after ``# @package``), as
    one paragraph."""
    words: list[str] = []
    for line in path.read_text().splitlines():
        stripped = line.strip()
        text = stripped.lstrip("#").strip()
        if not stripped.startswith("#") or (not text and words):
            if words:
                break
            continue
        if text and not text.startswith("@package"):
            words.append(text)
    return " ".join(words)


def main(argv: Sequence[str]) -> int:
    cl = parse_command_line(argv)
    if cl.help:
        print(help_text(cl.config_dir))
        return 0
    if cl.show_config:
        return launch(cl)
    from metta_exp.supervise.drive import runner_standing_by

    with runner_standing_by():  # the group's runner starts up while the config is composed
        return launch(cl)


def launch(cl: CommandLine) -> int:
    """Compose, then launch the group (a sweep: one group of its points), or show its config."""
    if cl.multirun:
        from metta_exp.sweep import launch_sweep

        return launch_sweep(cl)
    composed = compose(cl)
    name, source, data, hydra_node = composed
    if (hydra_node.get("sweeper") or {}).get("params"):
        from metta_exp.sweep import launch_sweep  # an experiment file that carries its own sweep

        return launch_sweep(cl, composed)
    exp = Experiment.from_mapping(data, source=source_label(cl, source))
    if cl.show_config:
        import json

        print(json.dumps(exp.to_dict() | {"extra_args": cl.training_overrides}, indent=2))
        return 0
    return exp.launch(name=name, extra_args=cl.training_overrides)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
