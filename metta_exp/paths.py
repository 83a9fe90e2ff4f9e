"""Where things are: the one owner of every derived path. The job store (found the way git finds
``.git``), a job's run directory and the files in it (attempt logs with their pid and exit files,
``run.json``, ``metrics.jsonl``), a group's launch directory, notebook and report, and the commands
that open them. No other module builds one of these paths.

``METTA_EXP_STATE_DIR`` names the state directory outright. Otherwise the nearest ``job_state/`` holding a
``jobs.sqlite``, in the current directory or one of its parents, is the store; with none, a new store goes
to ``job_state/`` under the current directory. Every command that reads or creates the store asks
:func:`default_state_dir`, so a group launched in a project directory is seen (and driven) from every
directory below it. Light: the standard library only.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from metta_exp.records import GroupRecord

STATE_DIR_ENV = "METTA_EXP_STATE_DIR"
STATE_DIR_NAME = "job_state"
DB_NAME = "jobs.sqlite"


def default_state_dir(cwd: Path | None = None) -> Path:
    """The state directory (absolute): ``$METTA_EXP_STATE_DIR``; else the nearest ``job_state/`` with a
    ``jobs.sqlite`` in ``cwd`` (the current directory) or a parent; else ``cwd/job_state``."""
    named = os.environ.get(STATE_DIR_ENV)
    if named:
        return Path(named).absolute()
    here = (cwd or Path.cwd()).absolute()
    for directory in (here, *here.parents):
        candidate = directory / STATE_DIR_NAME
        if (candidate / DB_NAME).is_file():
            return candidate
    return here / STATE_DIR_NAME


def project_root() -> Path | None:
    """The uv project whose ``.venv`` runs metta-exp (``pyproject.toml`` beside it), or None."""
    prefix = Path(sys.prefix)
    if prefix.name == ".venv" and (prefix.parent / "pyproject.toml").is_file():
        return prefix.parent
    return None


def command_prefix() -> str:
    """What runs a console command of metta-exp's environment as printed, activated or not: ``uv run ``
    in its uv project (with ``--project ROOT`` outside it), else nothing (the environment's ``bin/``
    is then on PATH, or the user knows how they installed it)."""
    root = project_root()
    if root is None:
        return ""
    here = Path.cwd().resolve()
    inside = here == root.resolve() or root.resolve() in here.parents
    return "uv run " if inside else f"uv run --project {shlex.quote(str(root))} "


def jupyter_command(notebook: Path) -> str:
    """A command that opens ``notebook`` in JupyterLab with a kernel that can import metta-exp."""
    root = project_root()
    quoted = shlex.quote(str(notebook))
    if root is not None:  # jupyter on top of the project's environment, fetched once and cached by uv
        return f"{command_prefix()}--with jupyter jupyter lab {quoted}"
    return f"jupyter lab {quoted}  (with jupyterlab installed beside metta-exp)"


RUNS_DIR = "runs"
RUN_FILE = "run.json"  # a run's state, written by metta_exp.tracking
METRICS_FILE = "metrics.jsonl"  # a run's metrics, written by metta_exp.tracking
RUNNER_LOG = "runner.log"


def runs_dir(state_dir: Path, group: str) -> Path:
    """The directory of a group's runs (and its runner's log)."""
    return state_dir / RUNS_DIR / group


def run_dir(state_dir: Path, group: str, run: str) -> Path:
    """The directory that is the job's own: log, metrics file, exit code."""
    return runs_dir(state_dir, group) / run


def runner_log(state_dir: Path, group: str) -> Path:
    return runs_dir(state_dir, group) / RUNNER_LOG


def attempt_log(run_dir: str | Path, attempt: int) -> Path:
    """The log of one attempt of a job: ``attempt-N.log`` in its run directory."""
    return Path(run_dir) / f"attempt-{attempt}.log"


def attempt_pid_exit(log_path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """The pid and exit files that go with an attempt's log: ``attempt-2.log`` has ``attempt-2.pid``
    and ``attempt-2.exit`` beside it (absolute)."""
    log_file = Path(os.path.abspath(log_path))
    stem = log_file.name[:-4] if log_file.name.endswith(".log") else log_file.name
    return log_file.with_name(stem + ".pid"), log_file.with_name(stem + ".exit")


def run_file(run_dir: str | os.PathLike[str]) -> Path:
    """A run's ``run.json``."""
    return Path(run_dir) / RUN_FILE


def metrics_file(run_dir: str | os.PathLike[str]) -> Path:
    """A run's ``metrics.jsonl``."""
    return Path(run_dir) / METRICS_FILE


def launch_dir(group: GroupRecord) -> Path:
    """The directory the group was launched from (its jobs start there); the current one for groups
    recorded before it was."""
    return Path(group.launch_dir) if group.launch_dir else Path.cwd()


def notebook_path(group: GroupRecord) -> Path:
    """``notebook_path``, else ``experiments/notebooks/<group>.ipynb``; relative to the launch directory."""
    configured = group.exp.notebook_path
    path = Path(configured) if configured else Path("experiments") / "notebooks" / f"{group.name}.ipynb"
    return launch_dir(group) / path


def report_path(notebook: Path) -> Path:
    """Where a notebook's HTML report goes: beside it, ``.html`` instead of ``.ipynb``."""
    return notebook.with_suffix(".html")
