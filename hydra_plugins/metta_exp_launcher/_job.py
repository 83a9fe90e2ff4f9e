"""The job side of the metta-exp launcher and sweeper: run one job of a Hydra sweep as Hydra would.

    python -m hydra_plugins.metta_exp_launcher._job TASK_FILE [--num N] [OVERRIDE ...]

Loads the task file the launching process wrote (see ``_task``), restores Hydra's singleton state (its
config store, custom resolvers, job name), composes this job's config from the master config and the
job's overrides (``load_sweep_config``, as submitit's and ray's jobs do), sets ``hydra.job.num`` and
``hydra.job.id`` (``<group>/<run>``), and runs the task with Hydra's ``run_job``: the job directory is
``hydra.sweep.dir``/``hydra.sweep.subdir``, ``hydra.job.chdir`` is honoured, the job's Hydra log and
``.hydra/`` files are written there. Then it hands the ``JobReturn`` back (a pickle beside the task file
and a line in the log) and, when the task returned a number, prints ``[metta-exp] return value=X`` (a
search's objective). Exit code 0 when the task returned, 1 when it raised (its traceback is in the log).
Without ``--num`` the job number is the trial number of a search's run (``t007-...`` is 7), else 0.
"""

from __future__ import annotations

import os
import re
import sys
import traceback
from typing import Any


def parse_args(argv: list[str]) -> tuple[str, int | None, list[str]]:
    """(task file, job number or None, overrides)."""
    if not argv:
        raise SystemExit(
            "usage: python -m hydra_plugins.metta_exp_launcher._job TASK_FILE [--num N] [OVERRIDE ...]"
        )
    task_file, rest = argv[0], list(argv[1:])
    num = None
    if len(rest) >= 2 and rest[0] == "--num":
        num, rest = int(rest[1]), rest[2:]
    return task_file, num, rest


def job_number(num: int | None, run: str) -> int:
    """``num`` when given, else a search trial's number from its run name (``t007-lr0.1`` is 7), else 0."""
    if num is not None:
        return num
    match = re.match(r"t(\d+)(-|$)", run)
    return int(match.group(1)) if match else 0


def run(task_file: str, num: int, overrides: list[str]) -> Any:
    """Compose the job's config and run the task; the ``JobReturn``."""
    from hydra.core.singleton import Singleton
    from hydra.core.utils import run_job, setup_globals
    from omegaconf import open_dict

    from hydra_plugins.metta_exp_launcher._task import load

    shipped = load(task_file)
    Singleton.set_state(shipped["singleton_state"])
    setup_globals()
    hydra_context = shipped["hydra_context"]
    sweep_config = hydra_context.config_loader.load_sweep_config(shipped["config"], overrides)
    with open_dict(sweep_config.hydra.job):
        sweep_config.hydra.job.id = (
            f"{os.environ.get('METTA_EXP_GROUP', '')}/{os.environ.get('METTA_EXP_RUN', '')}"
        )
        sweep_config.hydra.job.num = num
    return run_job(
        hydra_context=hydra_context,
        task_function=shipped["task_function"],
        config=sweep_config,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )


def hand_back(ret: Any, task_file: str, num: int) -> None:
    """Write the ``JobReturn`` beside the task file and print its log line (and the numeric value)."""
    import cloudpickle
    from hydra.core.utils import JobStatus

    from hydra_plugins.metta_exp_launcher._task import encode_return, return_file
    from metta_exp.logs.lines import format_return_line

    try:
        data = cloudpickle.dumps(ret)
    except Exception as exc:  # noqa: BLE001 - a value that cannot travel: say why, as a failure
        ret._return_value = RuntimeError(f"the task's return value could not be pickled: {exc!r}")
        ret.status = JobStatus.FAILED
        data = cloudpickle.dumps(ret)
    path = return_file(task_file, num)
    try:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError:
        pass  # a remote job's task directory may be read-only: the log line carries it
    print(encode_return(ret), flush=True)
    if ret.status == JobStatus.COMPLETED:
        value = ret._return_value
        try:
            number = float(value) if not isinstance(value, str | bytes) else None
        except (TypeError, ValueError):
            number = None
        if number is not None:
            print(format_return_line(number), flush=True)


def main(argv: list[str] | None = None) -> int:
    from hydra.core.utils import JobReturn, JobStatus

    task_file, given, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    num = job_number(given, os.environ.get("METTA_EXP_RUN", ""))
    try:
        ret = run(task_file, num, overrides)
    except Exception as exc:  # noqa: BLE001 - composition failed: Hydra's message, as a failed JobReturn
        traceback.print_exc()
        ret = JobReturn(overrides=overrides, status=JobStatus.FAILED)
        ret._return_value = exc
    if ret.status == JobStatus.FAILED and isinstance(ret._return_value, BaseException):
        error = ret._return_value
        traceback.print_exception(type(error), error, error.__traceback__)
    sys.stdout.flush()
    hand_back(ret, task_file, num)
    return 0 if ret.status == JobStatus.COMPLETED else 1


if __name__ == "__main__":
    sys.exit(main())
