"""The work of the metta-exp launcher: Hydra's job overrides become the runs of ONE metta-exp job group.

Each run executes the user's app again (``python /abs/my_train.py``, or ``python -m pkg.train`` for an
app started with ``-m``) in run mode, with that point's overrides, the Hydra overrides and config flags
the user gave (not the launcher or sweeper ones), and ``hydra.run.dir=<sweep dir>/<job number>``, so
each job writes its Hydra outputs where Hydra's own multirun would. Values keep the text the user wrote
(``lr=1e-3`` stays ``1e-3``). Return values cannot cross processes: every ``JobReturn`` has ``None``.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.utils import JobReturn
from hydra.core.utils import JobStatus as HydraJobStatus
from hydra.errors import CompactHydraException
from omegaconf import DictConfig, OmegaConf

from metta_exp.config import Experiment
from metta_exp.errors import ConfigError, MettaExpError
from metta_exp.records import JobRecord, SweepRecord
from metta_exp.status import JobStatus
from metta_exp.store import JobStore, default_state_dir
from metta_exp.submit import first_free_name, generated_group_name, launch_experiment
from metta_exp.sweep import (
    Point,
    check_limit,
    key_labels,
    name_part,
    parse_overrides,
    run_names,
    sweep_limit,
    sweep_record,
)
from metta_exp.values import hydra_quote

if TYPE_CHECKING:
    from hydra_plugins.metta_exp_launcher.metta_exp_launcher import MettaExpLauncher

log = logging.getLogger(__name__)

EXPERIMENT_KEYS = (
    "remote",
    "wait",
    "gpus",
    "max_parallel",
    "max_retries",
    "timeout_s",
    "generate_notebook",
    "notebook_path",
    "metrics_to_track",
    "dry_run",
    "wandb",
    "skypilot",
)
# Hydra overrides that are about this multirun, not about a job: the job runs in run mode, in its own dir.
_NOT_FORWARDED = (
    "hydra/launcher",
    "hydra.launcher",
    "hydra/sweeper",
    "hydra.sweeper",
    "hydra.mode",
    "hydra.sweep.",
    "hydra.run.dir",
)
_CONFIG_FLAGS = ("--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd")
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
Restore = Callable[[str], tuple[str, Any]]


class JobFailed(CompactHydraException):
    """A job of the group did not succeed. Hydra prints the message alone, without a traceback."""


class LaunchError(CompactHydraException):
    """metta-exp refused the sweep (bad setting, taken group name, over the limit): nothing was submitted."""


def launch(
    launcher: MettaExpLauncher, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
) -> list[JobReturn]:
    """Submit every job as a run of one group; with ``wait``, watch it and report how each job ended."""
    try:
        return _launch(launcher, job_overrides, initial_job_idx)
    except MettaExpError as exc:
        raise LaunchError(f"metta-exp: {exc}") from None


def _launch(
    launcher: MettaExpLauncher, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
) -> list[JobReturn]:
    from hydra.core.utils import configure_log, setup_globals

    setup_globals()
    config = launcher.config
    assert config is not None, "setup() first"
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    settings = as_containers(launcher.settings)
    check_limit([len(job_overrides)], 1, settings.get("sweep_limit") or sweep_limit())
    state_dir = Path(settings["state_dir"]).absolute() if settings.get("state_dir") else default_state_dir()
    task_name = str(config.hydra.job.name)
    sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
    run_dirs = [sweep_dir / str(initial_job_idx + i) for i in range(len(job_overrides))]

    restore = source_texts(config)
    points = [[restore(o) for o in overrides] for overrides in job_overrides]
    names, record = name_points(points, task_name)
    exp = build_experiment(
        settings, names, [[arg for arg, _ in p] for p in points], run_dirs, common_args(config, sys.argv[1:])
    )
    log.info(f"metta-exp: submitting {len(names)} job(s) of {task_name} as one group, state in {state_dir}")
    group, _ = launch_group(exp, task_name, state_dir, record, settings.get("group"), initial_job_idx)
    records = None
    if exp.wait and not exp.dry_run:
        with JobStore.open(state_dir) as store:
            records = {j.run: j for j in store.jobs(group)}
    return job_returns(job_overrides, names, run_dirs, task_name, group, records)


def as_containers(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The launcher's settings with OmegaConf values as plain lists and dicts (other values as they are)."""
    return {k: OmegaConf.to_container(v) if OmegaConf.is_config(v) else v for k, v in settings.items()}


def source_texts(config: DictConfig) -> Restore:
    """A function from a job override as Hydra formatted it (``lr=0.001``) to the text the user wrote
    (``lr=1e-3``) and its value; overrides it does not know come back unchanged."""
    lines = [str(o) for o in OmegaConf.to_container(config.hydra.overrides.task, resolve=False) or []]
    params = OmegaConf.select(config, "hydra.sweeper.params", default=None)
    if isinstance(params, DictConfig):
        lines = [f"{k!s}={v}" for k, v in params.items()] + lines
    known: dict[tuple[str, str], tuple[str, Any]] = {}
    try:
        for parsed in parse_overrides(lines):
            if parsed.is_sweep:
                entry = parsed.entry()
                for text, hydra_text, value in zip(entry.texts, entry.hydra_texts, entry.values, strict=True):
                    known.setdefault((entry.key, hydra_text), (text, value))
    except ConfigError:
        pass  # Hydra parsed these already; whatever it accepted is passed on as it formatted it

    def restore(override: str) -> tuple[str, Any]:
        key, _, value = override.partition("=")
        text, parsed = known.get((key, value)) or (value, literal(value))
        return f"{key}={text}", parsed

    return restore


def literal(text: str) -> Any:
    """A value as the notebook should see it: a number, a boolean, null, or the unquoted string."""
    t = text.strip()
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "'\"":
        return t[1:-1]
    if t.lower() in ("true", "false"):
        return t.lower() == "true"
    if t.lower() == "null":
        return None
    if _NUMBER.fullmatch(t):
        return int(t) if t.lstrip("+-").isdigit() else float(t)
    return t


def name_points(points: Sequence[Sequence[tuple[str, Any]]], task_name: str) -> tuple[list[str], SweepRecord]:
    """Run names from the keys whose values differ between points, and the group's ``sweep`` record."""
    rows = [{arg.partition("=")[0]: (arg.partition("=")[2], value) for arg, value in p} for p in points]
    distinct: dict[str, set[str]] = {}
    for row in rows:
        for key, (text, _) in row.items():
            distinct.setdefault(key, set()).add(text)
    varying = [key for key, texts in distinct.items() if len(texts) > 1 or any(key not in r for r in rows)]
    labels = key_labels([k.lstrip("+~") for k in varying])
    parts = [[name_part(labels[k.lstrip("+~")], *row[k]) for k in varying if k in row] for row in rows]
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", task_name).strip("._-") or "run"
    names = run_names([None if p else base for p in parts], parts)
    swept = [
        Point(
            index=i,
            run=n,
            base_run=base,
            args=tuple(arg for arg, _ in point),
            values={k.lstrip("+~"): row[k][1] for k in varying if k in row},
            settings={},
        )
        for i, (n, row, point) in enumerate(zip(names, rows, points, strict=True))
    ]
    return names, sweep_record(swept, [k.lstrip("+~") for k in varying])


def build_experiment(
    settings: Mapping[str, Any],
    names: list[str],
    args: list[list[str]],
    run_dirs: list[Path],
    common: list[str],
) -> Experiment:
    """The group: one run per job, each running the app again with its own overrides and run dir."""
    data: dict[str, Any] = {k: settings[k] for k in EXPERIMENT_KEYS if settings.get(k) is not None}
    data.update(app_command(bool(settings.get("remote"))))
    data["runs"] = names
    data["args"] = common
    data["args_per_run"] = {
        name: [*point, f"hydra.run.dir={hydra_quote(str(run_dir))}"]
        for name, point, run_dir in zip(names, args, run_dirs, strict=True)
    }
    return Experiment.from_mapping(data, source="hydra.launcher (metta_exp)")


def app_command(remote: bool) -> dict[str, Any]:
    """How a job runs the app: ``module`` if it was started with ``python -m``, else its script."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name and spec.name != "__main__":
        return {"module": spec.name.removesuffix(".__main__")}
    script = Path(sys.argv[0]).absolute()
    if not remote:
        return {"command": [sys.executable, str(script)]}
    try:  # on SkyPilot the job runs in the synced workdir: the script's path relative to here
        return {"command": ["python", str(script.relative_to(Path.cwd()))]}
    except ValueError:
        return {"command": ["python", str(script)]}


def common_args(config: DictConfig, argv: Sequence[str]) -> list[str]:
    """What every job gets first: the config flags the app was started with, then its Hydra overrides."""
    flags: list[str] = []
    i = 0
    while i < len(argv):
        flag, eq, _ = argv[i].partition("=")
        if flag in _CONFIG_FLAGS:
            flags += [argv[i]] if eq else list(argv[i : i + 2])
            i += 0 if eq else 1
        i += 1
    overrides = [str(o) for o in OmegaConf.to_container(config.hydra.overrides.hydra, resolve=False) or []]
    return flags + [o for o in overrides if not o.lstrip("+~").startswith(_NOT_FORWARDED)]


def launch_group(
    exp: Experiment, task_name: str, state_dir: Path, record: SweepRecord, group: str | None, first: int
) -> tuple[str, int]:
    """Launch under ``group`` (or a generated name, suffixed while taken); the group name and exit code."""
    base = group or generated_group_name(task_name)
    if first:  # a sweeper that launches in batches: one group per batch
        base = f"{base}-{first}"

    def take(name: str) -> tuple[str, int]:
        exp_named = dataclasses.replace(exp, group=name)
        return name, launch_experiment(exp_named, name=task_name, state_dir=state_dir, sweep=record)

    if group is not None:
        return take(base)
    return first_free_name(base, take, hint="choose one with hydra.launcher.group=NAME")


def job_returns(
    job_overrides: Sequence[Sequence[str]],
    names: list[str],
    run_dirs: list[Path],
    task_name: str,
    group: str,
    records: Mapping[str, JobRecord] | None,
) -> list[JobReturn]:
    """One ``JobReturn`` per job: completed once submitted or succeeded; failed (raising on access) when
    the group was watched and the job did not succeed."""
    out = []
    bad = [j for j in (records or {}).values() if j.status.is_terminal() and j.status != JobStatus.SUCCEEDED]
    for overrides, name, run_dir in zip(job_overrides, names, run_dirs, strict=True):
        ret = JobReturn(
            overrides=list(overrides),
            working_dir=str(run_dir),
            task_name=task_name,
            status=HydraJobStatus.COMPLETED,
        )
        job = records.get(name) if records is not None else None
        if job is not None and job.status.is_terminal() and job.status != JobStatus.SUCCEEDED:
            ret.status = HydraJobStatus.FAILED
            code = f"exit code {job.exit_code}" if job.exit_code is not None else job.status.value
            why = job.reason or code
            ret.return_value = JobFailed(
                f"run '{name}' of metta-exp group '{group}' {job.status.value}: {why}; log: {job.log_path}. "
                f"{len(bad)} of {len(names)} jobs did not succeed: metta-exp job show {group}"
            )
        out.append(ret)
    return out
