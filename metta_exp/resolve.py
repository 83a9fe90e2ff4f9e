"""Resolution: a validated experiment becomes job specs. Pure: no I/O, no clock, no randomness."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from metta_exp.config import Experiment
from metta_exp.paths import RunDir
from metta_exp.records import JobSpec
from metta_exp.runs.wandb import wandb_run_id

#: W&B settings of the launching shell that every job gets (remote jobs inherit nothing from it).
#: ``WANDB_API_KEY`` is not one of them: it is a secret, handed to each launch, never stored.
SHELL_WANDB_KEYS = ("WANDB_BASE_URL", "WANDB_ENTITY", "WANDB_PROJECT", "WANDB_MODE", "WANDB_DISABLED")


def shell_wandb_env(exp: Experiment, environ: Mapping[str, str]) -> dict[str, str]:
    """The W&B settings a job gets from the launching shell (``environ``) and the experiment.

    The experiment's ``wandb.entity``/``project``/``mode`` win over the shell's ``WANDB_*``; an
    experiment that sets ``wandb.mode`` also drops the shell's ``WANDB_DISABLED``.
    """
    env = {key: environ[key] for key in SHELL_WANDB_KEYS if environ.get(key, "").strip()}
    for key in ("entity", "project", "mode"):
        value = getattr(exp.wandb, key)
        if value:
            env[f"WANDB_{key.upper()}"] = value
    if exp.wandb.mode:
        env.pop("WANDB_DISABLED", None)
    return env


def resolve(
    exp: Experiment,
    group: str,
    state_dir: Path,
    extra_args: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
    instance: str | None = None,
) -> list[JobSpec]:
    """Job specs for every run of ``exp`` in ``group``, in the experiment's run order.

    ``environ`` is the launching shell's environment (the caller passes ``os.environ``): its W&B
    settings (``SHELL_WANDB_KEYS``) are recorded in every job's env, so that every job of the group,
    on any backend and relaunched from any terminal, uses the W&B host and mode it was launched with.
    ``instance`` (see :func:`~metta_exp.runs.wandb.wandb_run_id`) makes the W&B run ids this group
    instance's own.
    """
    wandb_env = shell_wandb_env(exp, environ or {})
    specs = []
    for run in exp.runs:
        directory = RunDir.of(state_dir, group, run).path
        run_id = wandb_run_id(group, run, instance)
        env = {
            "METTA_EXP_GROUP": group,
            "METTA_EXP_RUN": run,
            "METTA_EXP_RUN_DIR": str(directory),
            "WANDB_RUN_GROUP": group,
            "WANDB_NAME": run,
            "WANDB_RUN_ID": run_id,
            "PYTHONUNBUFFERED": "1",
            **wandb_env,
        }
        specs.append(
            JobSpec(
                group=group,
                run=run,
                module=exp.module,
                command=tuple(exp.command) if exp.command is not None else None,
                args=tuple(exp.args) + tuple(exp.args_per_run.get(run, ())) + tuple(extra_args),
                env=env,
                gpus=exp.gpus,
                run_dir=str(directory),
                wandb_run_id=run_id,
                depends_on=tuple(exp.depends_on.get(run, ())),
            )
        )
    return specs


def identical_runs(specs: Sequence[JobSpec]) -> list[list[str]]:
    """The runs whose jobs would run the very same command (argv and GPUs), differing only in name: each
    set of two or more, in run order. A trainer given the same arguments trains the same thing, whatever
    its run is called."""
    by_command: dict[tuple[tuple[str, ...], int], list[str]] = {}
    for spec in specs:
        by_command.setdefault((tuple(spec.argv()), spec.gpus), []).append(spec.run)
    return [runs for runs in by_command.values() if len(runs) > 1]
