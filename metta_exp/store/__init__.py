"""The job store: the single source of truth, and the only package that speaks SQL.

One SQLite file (WAL, busy timeout) shared by every process: the runner that drives a group, the
foreground view, ``metta-exp job ...`` in any terminal. Every write is one ``atomic()`` transaction that
also appends an event row; readers never write. Schema changes are named, ordered migrations recorded in
``schema_migrations``.
"""

from __future__ import annotations

from pathlib import Path

from metta_exp.errors import NotFoundError
from metta_exp.paths import DB_NAME, default_state_dir
from metta_exp.store.groups import GroupExistsError
from metta_exp.store.history import GroupQuery, History, RunRecord
from metta_exp.store.schema import MIGRATIONS
from metta_exp.store.trials import Trials

__all__ = [
    "DB_NAME",
    "MIGRATIONS",
    "GroupExistsError",
    "GroupQuery",
    "JobStore",
    "RunRecord",
    "default_state_dir",
]


class JobStore(Trials, History):
    """A connection to the store file. Cheap to open; one per process and thread.

    Its methods come in families, a module each: the file, transactions and migrations (``db``), jobs
    and attempts (``jobs``), groups (``groups``), a search's trials (``trials``) and the history across groups
    (``history``: finding groups, every run as a row, GPU-seconds, removing groups).
    """

    @classmethod
    def open(cls, state_dir: Path | None = None, *, create: bool = True, readonly: bool = False) -> JobStore:
        return cls((state_dir or default_state_dir()) / DB_NAME, create=create, readonly=readonly)

    @classmethod
    def found(cls, readonly: bool = False) -> JobStore | None:
        """The store metta-exp finds (:func:`default_state_dir`), or None when there is none yet (none is
        created); the caller closes it (``with``). ``readonly``: a reader's connection (works on a store
        it cannot write, never changes it)."""
        state_dir = default_state_dir()
        if not (state_dir / DB_NAME).exists():
            return None
        return cls.open(state_dir, create=False, readonly=readonly)

    @classmethod
    def holding(cls, group: str, readonly: bool = False) -> JobStore:
        """The store metta-exp finds, which must hold ``group`` (``NotFoundError`` naming the closest
        groups otherwise: exit code 2); the caller closes it (``with``)."""
        store = cls.found(readonly)
        if store is None:
            raise NotFoundError(
                f"no group '{group}': no groups yet in {default_state_dir()} (no job_state/ here or in a "
                "parent directory; METTA_EXP_STATE_DIR names another state directory)"
            )
        try:
            store.group(group)
        except BaseException:
            store.close()
            raise
        return store
