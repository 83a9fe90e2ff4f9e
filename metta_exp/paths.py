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

import contextlib
import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from metta_exp.records import GroupRecord

STATE_DIR_ENV = "METTA_EXP_STATE_DIR"
STATE_DIR_NAME = "job_state"
DB_NAME = "jobs.sqlite"
NOTEBOOKS_DIR = ("experiments", "notebooks")  # the default notebooks' directory, under the launch directory


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


def runner_log(state_dir: Path, group: str) -> Path:
    return runs_dir(state_dir, group) / RUNNER_LOG


class AttemptFiles(NamedTuple):
    """The files of one attempt of a job, side by side in its run directory: its log ``attempt-2.log``,
    and the pid file ``attempt-2.pid`` and exit file ``attempt-2.exit`` that a local job's wrapper writes
    (its pid before the job starts, its exit code when it ends), so that any later process can learn
    how the job ended. All absolute."""

    log: Path
    pid: Path
    exit: Path

    @classmethod
    def of(cls, log_path: str | os.PathLike[str]) -> AttemptFiles:
        """The files that go with an attempt's log (a launch carries its log's path)."""
        log = Path(os.path.abspath(log_path))
        stem = log.name.removesuffix(".log")
        return cls(log, log.with_name(stem + ".pid"), log.with_name(stem + ".exit"))


class RunDir:
    """A job's run directory, the job's own (as submitit's ``JobPaths``), and every file in it: each
    attempt's log, pid and exit files (:class:`AttemptFiles`), ``run.json`` (the run's state, written by
    :mod:`metta_exp.tracking`, read by :mod:`metta_exp.runs.state`) and ``metrics.jsonl`` (its metrics).
    Whatever the job itself writes (checkpoints: ``run.path(...)``) goes in it too. (A plain class, as
    ``AttemptFiles`` is a NamedTuple: every ``job`` command imports this module, and a dataclass costs a
    millisecond or two to define.)"""

    __slots__ = ("path",)

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def of(cls, state_dir: Path, group: str, run: str) -> RunDir:
        """The run directory of ``run`` in ``group``: ``<state_dir>/runs/<group>/<run>``."""
        return cls(runs_dir(state_dir, group) / run)

    @classmethod
    def at(cls, path: str | os.PathLike[str]) -> RunDir:
        """The run directory at ``path`` (as a job record or spec holds it)."""
        return cls(Path(path))

    def attempt(self, number: int) -> AttemptFiles:
        """The files of attempt ``number`` (1 is the first)."""
        return AttemptFiles.of(self.log(number))

    def log(self, number: int) -> Path:
        """The log of attempt ``number``: ``attempt-N.log``."""
        return self.path / f"attempt-{number}.log"

    @property
    def run_json(self) -> Path:
        return self.path / RUN_FILE

    @property
    def metrics(self) -> Path:
        return self.path / METRICS_FILE

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunDir) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    def __repr__(self) -> str:
        return f"RunDir({self.path!r})"


def launch_dir(group: GroupRecord) -> Path:
    """The directory the group was launched from (its jobs start there); the current one for groups
    recorded before it was."""
    return Path(group.launch_dir) if group.launch_dir else Path.cwd()


def notebook_path(group: GroupRecord) -> Path:
    """``notebook_path``, else ``experiments/notebooks/<group>.ipynb``; relative to the launch directory."""
    configured = group.exp.notebook_path
    path = Path(configured) if configured else Path(*NOTEBOOKS_DIR) / f"{group.name}.ipynb"
    return launch_dir(group) / path


def search_results_path(group: GroupRecord) -> Path | None:
    """A search's ``search.results_file`` (relative to the launch directory), or None when it has none."""
    configured = group.exp.search.results_file if group.search_space is not None else None
    return launch_dir(group) / Path(configured).expanduser() if configured else None


def report_path(notebook: Path) -> Path:
    """Where a notebook's HTML report goes: beside it, ``.html`` instead of ``.ipynb``."""
    return notebook.with_suffix(".html")


GITIGNORE = ".gitignore"


def keep_out_of_git(directory: Path) -> None:
    """Write ``directory/.gitignore`` ignoring everything in it, as a virtualenv or pytest's cache does,
    so that a directory metta-exp created (the state directory, ``experiments/notebooks``) does not show
    in the user's ``git status``; unless the user's own ignore rules already cover it (``git
    check-ignore``), which are never touched. Best effort: nothing is raised."""
    import subprocess

    try:
        covered = (
            subprocess.run(
                ["git", "check-ignore", "-q", f"{directory.name}/"],
                cwd=directory.parent,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=10,
            ).returncode
            == 0
        )  # 1: not ignored; 128: not in a git repository
    except (OSError, subprocess.SubprocessError):  # no git here: the file costs nothing
        covered = False
    if not covered:
        with contextlib.suppress(OSError):
            (directory / GITIGNORE).write_text(
                "# Created by metta-exp; delete this file to keep this directory in git.\n*\n"
            )


def make_output_dir(path: Path) -> None:
    """Create the directory of a notebook or report ``path``; the default ``experiments/notebooks``, when
    it is made here, stays out of git (:func:`keep_out_of_git`)."""
    parent = path.absolute().parent
    if parent.is_dir():
        return
    parent.mkdir(parents=True, exist_ok=True)
    if parent.parts[-2:] == NOTEBOOKS_DIR:
        keep_out_of_git(parent)
