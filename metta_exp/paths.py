"""Where the job store lives: found the way git finds ``.git``.

``METTA_EXP_STATE_DIR`` names the state directory outright. Otherwise the nearest ``job_state/`` holding a
``jobs.sqlite``, in the current directory or one of its parents, is the store; with none, a new store goes
to ``job_state/`` under the current directory. Every command that reads or creates the store asks
:func:`default_state_dir`, so a group launched in a project directory is seen (and driven) from every
directory below it. Light: the standard library only.
"""

from __future__ import annotations

import os
from pathlib import Path

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
