"""The work of the metta-exp launcher: Hydra's job overrides become the runs of ONE metta-exp job group.

Each run executes the app's task function as Hydra's own launchers do (``_task`` ships it by cloudpickle,
the job-side entry ``_job`` composes the job's config and calls Hydra's ``run_job``), so any task
function runs, the job directory is ``hydra.sweep.dir``/``hydra.sweep.subdir``, and the ``JobReturn`` of
every job, with the task's return value or its exception, comes back when the group is waited for.
Runs are named after their point as the user wrote it (``lr=1e-3`` gives ``lr1e-3``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from hydra.core.utils import JobReturn
from hydra.core.utils import JobStatus as HydraJobStatus
from hydra.errors import CompactHydraException
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.metta_exp_launcher._task import (
    JOB_MODULE,
    SHIP_DIR,
    job_args,
    merge_mounts,
    read_return,
    remote_mount,
    ship,
)
from metta_exp.config import Experiment
from metta_exp.errors import ConfigError, MettaExpError
from metta_exp.records import JobRecord, SweepRecord
from metta_exp.status import JobStatus
from metta_exp.store import JobStore, default_state_dir
from metta_exp.submit import first_free_name, generated_group_name, launch_experiment
from metta_exp.supervise.drive import runner_standing_by
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
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
Restore = Callable[[str], tuple[str, Any]]


class JobFailed(CompactHydraException):
    """A job of the group did not succeed. Hydra prints the message alone, without a traceback."""


class LaunchError(CompactHydraException):
    """metta-exp refused the sweep (bad setting, taken group name, over the limit): nothing was submitted."""


def refuse(line: str, exc: MettaExpError, kind: type[CompactHydraException] = LaunchError) -> NoReturn:
    """End the app as the metta-exp command ends on an error: ``line`` (one ``Error:`` line) on stderr and
    ``exc``'s exit code (2 for bad input). Hydra would print an exception with its HYDRA_FULL_ERROR hint and
    exit 1, whatever the cause; with ``HYDRA_FULL_ERROR=1`` it gets one (``kind``), for its full stack
    trace. ``SystemExit`` passes through Hydra's ``run_and_report``, which catches ``Exception``."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise kind(line) from exc
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
    raise SystemExit(exc.exit_code)


def launch(
    settings: Mapping[str, Any],
    config: DictConfig,
    hydra_context: Any,
    task_function: Any,
    job_overrides: Sequence[Sequence[str]],
    initial_job_idx: int,
) -> list[JobReturn]:
    """Submit every job as a run of one group; with ``wait``, watch it and return each job's
    ``JobReturn`` (its task's return value, or its exception)."""
    try:
        with runner_standing_by():  # the group's runner starts up while the task is shipped
            return _launch(settings, config, hydra_context, task_function, job_overrides, initial_job_idx)
    except MettaExpError as exc:
        refuse(f"Error: metta-exp: {exc}", exc)


def _launch(
    launcher_settings: Mapping[str, Any],
    config: DictConfig,
    hydra_context: Any,
    task_function: Any,
    job_overrides: Sequence[Sequence[str]],
    initial_job_idx: int,
) -> list[JobReturn]:
    from hydra.core.utils import configure_log, setup_globals

    setup_globals()
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    settings = as_containers(launcher_settings)
    check_limit([len(job_overrides)], 1, settings.get("sweep_limit") or sweep_limit())
    state_dir = Path(settings["state_dir"]).absolute() if settings.get("state_dir") else default_state_dir()
    task_name = str(config.hydra.job.name)
    sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
    restore = source_texts(config)
    points = [[restore(o) for o in overrides] for overrides in job_overrides]
    names, record = name_points(points, task_name)
    task_file = ship(
        sweep_dir / SHIP_DIR, f"task-{initial_job_idx}.pkl", task_function, config, hydra_context
    )
    nums = [initial_job_idx + i for i in range(len(job_overrides))]
    exp = build_experiment(settings, names, job_overrides, nums, task_file)
    log.info(f"metta-exp: submitting {len(names)} job(s) of {task_name} as one group, state in {state_dir}")
    group, _ = launch_group(exp, task_name, state_dir, record, settings.get("group"), initial_job_idx)
    if not exp.wait or exp.dry_run:
        return [submitted_return(o, task_name) for o in job_overrides]
    with JobStore.open(state_dir) as store:
        records = {j.run: j for j in store.jobs(group)}
    return job_returns(job_overrides, names, nums, task_file, task_name, group, records)


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
    job_overrides: Sequence[Sequence[str]],
    nums: list[int],
    task_file: Path,
) -> Experiment:
    """The group: one run per job, each running the shipped task function with its job's overrides
    (on SkyPilot the task file's directory is mounted at ``~/.metta_exp/hydra/<id>``)."""
    data: dict[str, Any] = {k: settings[k] for k in EXPERIMENT_KEYS if settings.get(k) is not None}
    path = str(task_file)
    if settings.get("remote"):
        remote, mounts = remote_mount(task_file.parent)
        path = f"{remote}/{task_file.name}"
        data["skypilot"] = merge_mounts(settings.get("skypilot"), mounts)
    data["module"] = JOB_MODULE
    data["runs"] = names
    data["args_per_run"] = {
        name: job_args(path, num, list(overrides))
        for name, num, overrides in zip(names, nums, job_overrides, strict=True)
    }
    return Experiment.from_mapping(data, source="hydra.launcher (metta_exp)")


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


def submitted_return(overrides: Sequence[str], task_name: str) -> JobReturn:
    """What Hydra gets for a job that was submitted and not waited for (``wait=false``): completed, with
    None as its return value (Hydra's sweepers read every job's value; the job's outcome is in the
    store, and its own ``JobReturn`` beside the task file once it ends)."""
    return JobReturn(overrides=list(overrides), task_name=task_name, status=HydraJobStatus.COMPLETED)


def job_returns(
    job_overrides: Sequence[Sequence[str]],
    names: list[str],
    nums: list[int],
    task_file: Path,
    task_name: str,
    group: str,
    records: Mapping[str, JobRecord],
) -> list[JobReturn]:
    """One ``JobReturn`` per job, as its job handed it back (the task's return value, or its exception);
    a job that ended without handing one back (killed, timed out, exited) is a failed ``JobReturn``
    whose ``return_value`` raises ``JobFailed`` naming the run and its log."""
    bad = [j for j in records.values() if j.status.is_terminal() and j.status != JobStatus.SUCCEEDED]
    out = []
    for overrides, name, num in zip(job_overrides, names, nums, strict=True):
        job = records.get(name)
        ret = read_return(task_file, num, job.log_path if job is not None else None)
        if isinstance(ret, JobReturn):
            out.append(ret)
            continue
        ret = JobReturn(overrides=list(overrides), task_name=task_name, status=HydraJobStatus.FAILED)
        status = job.status.value if job is not None else "lost"
        code = f"exit code {job.exit_code}" if job is not None and job.exit_code is not None else status
        why = (job.reason if job is not None else None) or code
        log_path = job.log_path if job is not None else None
        ret.return_value = JobFailed(
            f"run '{name}' of metta-exp group '{group}' {status}: {why}; log: {log_path}. "
            f"{len(bad)} of {len(names)} jobs did not succeed: metta-exp job show {group}"
        )
        out.append(ret)
    return out
