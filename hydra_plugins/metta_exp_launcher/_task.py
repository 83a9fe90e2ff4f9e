"""Shipping a Hydra task function to metta-exp jobs, and its ``JobReturn`` back.

As Hydra's submitit and ray launchers do, the task function is not re-run as a script: the launching
process pickles (cloudpickle) what a job needs to run it as Hydra would, once per launch, into
``<hydra.sweep.dir>/.metta_exp/task-<first job>.pkl``: the task function, the sweep's master config,
the Hydra context (config loader, callbacks) and Hydra's singleton state (config store, custom
resolvers), after the launching process's ``sys.path`` (as ``multiprocessing`` hands it to a spawned
child, so what the task function refers to by module, a test module's class say, imports in a local job
as it did here). Each job gets the file's path, its job number and its overrides on its command line; the
job-side entry (``python -m hydra_plugins.metta_exp_launcher._job``) composes its own config from them
and runs the task with Hydra's ``run_job`` (job directory from ``hydra.sweep.dir``/``hydra.sweep.subdir``,
``HydraConfig``, ``hydra.job.chdir``), so a task function defined in a notebook, a test or a module that
is not a script runs as well as an app's ``main``.

Its ``JobReturn`` comes back two ways: a pickle beside the task file (``return-<job number>.pkl``,
read when the job ran on this machine), and one ``[metta-exp] hydra-return <base64>`` line in the job's
log, the channel that reaches this machine from every backend (a remote job's log tail is copied into
its local log file). A SkyPilot job reaches the task file through a file mount of ``.metta_exp/``.
"""

from __future__ import annotations

import base64
import os
import pickle
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

JOB_MODULE = "hydra_plugins.metta_exp_launcher._job"
SHIP_DIR = ".metta_exp"
RETURN_LINE = "[metta-exp] hydra-return "
LINE_LIMIT = 1 << 20  # a return line longer than this drops its configs, then its value
REMOTE_ROOT = "~/.metta_exp/hydra"


def ship(
    directory: Path,
    name: str,
    task_function: Any,
    config: Any,
    hydra_context: Any,
) -> Path:
    """Write the task file ``directory/name`` atomically; its path."""
    import cloudpickle
    from hydra.core.singleton import Singleton

    directory.mkdir(parents=True, exist_ok=True)
    payload = {
        "task_function": task_function,
        "config": config,
        "hydra_context": hydra_context,
        "singleton_state": Singleton.get_state(),
    }
    path = directory / name
    tmp = path.with_name(f".{name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as f:
        pickle.dump(list(sys.path), f)
        cloudpickle.dump(payload, f)
    os.replace(tmp, path)
    return path


def load(task_file: str | os.PathLike[str]) -> dict[str, Any]:
    """What ``ship`` wrote, with the launching process's ``sys.path`` entries added to this one's first."""
    with open(os.path.expanduser(os.fspath(task_file)), "rb") as f:
        paths = pickle.load(f)
        sys.path.extend(p for p in paths if p not in sys.path)
        payload: dict[str, Any] = pickle.load(f)
    return payload


def remote_mount(directory: Path) -> tuple[str, dict[str, str]]:
    """Where a SkyPilot job finds ``directory`` (``~/.metta_exp/hydra/<id>``), and the file mount."""
    remote = f"{REMOTE_ROOT}/{uuid.uuid4().hex[:12]}"
    return remote, {remote: str(directory)}


def return_file(task_file: str | os.PathLike[str], num: int) -> Path:
    """The ``JobReturn`` pickle of job ``num`` of the launch whose task file is ``task_file``."""
    return Path(os.path.expanduser(os.fspath(task_file))).parent / f"return-{num}.pkl"


def encode_return(ret: Any) -> str:
    """The log line carrying ``ret`` (without its configs when they would make it too long; without its
    value too when that alone is too long)."""
    import copy

    import cloudpickle

    line = RETURN_LINE + base64.b64encode(cloudpickle.dumps(ret)).decode()
    if len(line) <= LINE_LIMIT:
        return line
    slim = copy.copy(ret)
    slim.cfg = slim.hydra_cfg = None
    line = RETURN_LINE + base64.b64encode(cloudpickle.dumps(slim)).decode()
    if len(line) <= LINE_LIMIT:
        return line
    slim._return_value = RuntimeError(
        f"the task's return value is too large for the job's log ({len(line)} characters); it ran on "
        "another machine, so only its log reaches this one"
    )
    from hydra.core.utils import JobStatus

    slim.status = JobStatus.FAILED
    return RETURN_LINE + base64.b64encode(cloudpickle.dumps(slim)).decode()


def read_return(task_file: str | os.PathLike[str], num: int, log_path: str | None) -> Any | None:
    """Job ``num``'s ``JobReturn``: from its pickle beside the task file, else from the last return line
    of its log; None when neither holds one (the job died before it could say)."""
    path = return_file(task_file, num)
    try:
        with open(path, "rb") as f:
            return pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError):
        pass
    if not log_path:
        return None
    try:
        text = Path(log_path).read_text(errors="replace")
    except OSError:
        return None
    at = text.rfind(RETURN_LINE)
    if at < 0:
        return None
    end = text.find("\n", at)
    encoded = text[at + len(RETURN_LINE) : end if end >= 0 else len(text)].strip()
    try:
        return pickle.loads(base64.b64decode(encoded))
    except Exception:  # noqa: BLE001 - a cut or garbled line: as if there were none
        return None


def job_args(task_file: str, num: int, overrides: list[str] | tuple[str, ...]) -> list[str]:
    """A job's arguments to the job-side entry: the task file, its job number, its overrides."""
    return [task_file, "--num", str(num), *overrides]


def merge_mounts(skypilot: Mapping[str, Any] | None, mounts: Mapping[str, str]) -> dict[str, Any]:
    """The launcher's ``skypilot`` settings with ``mounts`` added to its file mounts."""
    settings = dict(skypilot or {})
    settings["file_mounts"] = {**(settings.get("file_mounts") or {}), **mounts}
    return settings
