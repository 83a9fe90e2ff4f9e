"""The store's file: one SQLite connection (WAL, busy timeout), its transactions and its migrations.

Every write is one ``atomic()`` transaction that also appends an event row (``_event``); readers never
write. Schema changes are named, ordered migrations recorded in ``schema_migrations``.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

from metta_exp.errors import NotFoundError, StoreError, closest
from metta_exp.paths import keep_out_of_git
from metta_exp.records import GroupRecord, JobSpec
from metta_exp.status import JobStatus
from metta_exp.store.connect import (
    check_file,
    cleanup_created,
    connect_readonly,
    connect_writable,
    write_error,
)
from metta_exp.store.rows import group_record, job_select
from metta_exp.store.schema import MIGRATIONS, READABLE_WITHOUT


def _make_dirs(directory: Path) -> list[Path]:
    """Create ``directory`` and missing parents; return the ones made (outermost first)."""
    missing = [d for d in (directory, *directory.parents) if not d.exists()][::-1]
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"cannot create the state directory {directory}: {exc.strerror or exc}; run from a directory "
            "you can write, or set METTA_EXP_STATE_DIR to one"
        ) from None
    return missing


class Database:
    """A connection to the store file: transactions, migrations and the helpers every table uses."""

    def __init__(self, path: Path | str, *, create: bool = True, readonly: bool = False) -> None:
        """Open the store at ``path``. ``create``: make it (and its directory) when missing.
        ``readonly``: a reader's connection, which never writes; a missing or empty file then reads as a
        store with no groups yet."""
        self.path = Path(path)
        size = check_file(self.path)
        if size is None and not create and not readonly:
            raise StoreError(f"no job store at {self.path}")
        if readonly:
            self._db = (
                connect_readonly(self.path) if size else sqlite3.connect(":memory:", isolation_level=None)
            )
        else:
            made = _make_dirs(self.path.parent) if create else []
            try:
                self._db = connect_writable(self.path, create)
                self._setup(migrate=True)
            except BaseException:
                if size is None:  # made here (a full disk): leave no empty store behind
                    with contextlib.suppress(Exception):
                        self._db.close()
                    cleanup_created(self.path, made)
                raise
            if self.path.parent in made:  # the state directory, made here: out of the user's git status
                keep_out_of_git(self.path.parent)
            return
        self._setup(migrate=not size)

    def _setup(self, migrate: bool) -> None:
        self._db.row_factory = sqlite3.Row
        try:
            self._db.execute("PRAGMA foreign_keys = ON")
            if migrate:
                self._migrate()
            else:
                self._check_schema()
            recorded = "0003_final_progress" in self._applied()
            self._job_select = job_select(final_progress=recorded)
            self._job_select_no_deps = job_select(final_progress=recorded, deps=False)
            self._has_trials = "0004_trials" in self._applied()
        except sqlite3.DatabaseError as exc:
            raise write_error(self.path, exc) from None

    @property
    def state_dir(self) -> Path:
        return self.path.parent

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def atomic(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE: the write lock is taken up front, no upgrade deadlock).
        A write SQLite refuses (read-only file, full disk) is a ``StoreError`` naming the file."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise write_error(self.path, exc) from None
        try:
            yield self._db
        except sqlite3.Error as exc:
            self._rollback()
            raise write_error(self.path, exc) from None
        except BaseException:
            self._rollback()
            raise
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise write_error(self.path, exc) from None

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back already (a full disk)
            self._db.execute("ROLLBACK")

    def _check_schema(self) -> None:
        """A reader's check: the store's migrations must be ones this metta-exp knows, all applied."""
        known = {name for name, _ in MIGRATIONS}
        done = self._applied()
        if done == known or (done and done <= known and known - done <= READABLE_WITHOUT):
            return
        if done - known:
            raise StoreError(
                f"the job store {self.path} was written by a newer metta-exp "
                f"(migrations {', '.join(sorted(done - known))}); upgrade metta-exp"
            )
        if not done and not self._db.execute("SELECT 1 FROM sqlite_master").fetchone():
            self._db.close()  # an empty database: no groups yet, as if there were no file
            self._db = sqlite3.connect(":memory:", isolation_level=None)
            self._setup(migrate=True)
            return
        raise StoreError(
            f"the job store {self.path} needs an upgrade this reader cannot write "
            f"(missing {', '.join(sorted(known - done))}); run 'metta-exp job resume GROUP' where it is writable"
        )

    def _migrate(self) -> None:
        """Apply missing migrations. A store that is up to date is only read (readers stay readers)."""
        db = self._db
        known = [name for name, _ in MIGRATIONS]
        if self._applied() == set(known):
            return
        with self.atomic():
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"
            )
            done = self._applied()
            if done - set(known):
                raise StoreError(
                    f"the job store {self.path} was written by a newer metta-exp "
                    f"(migrations {', '.join(sorted(done - set(known)))}); upgrade metta-exp"
                )
            for name, script in MIGRATIONS:
                if name in done:
                    continue
                for statement in script.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute("INSERT INTO schema_migrations VALUES (?, ?)", (name, time.time()))

    def _applied(self) -> set[str]:
        try:
            return {row[0] for row in self._db.execute("SELECT name FROM schema_migrations")}
        except sqlite3.OperationalError:
            return set()

    @staticmethod
    def _insert_job(db: sqlite3.Connection, group: str, position: int, spec: JobSpec, now: float) -> int:
        """A pending job row for ``spec``; its id."""
        cur = db.execute(
            "INSERT INTO jobs (group_name, run, position, status, spec, queued_at, run_dir) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                group,
                spec.run,
                position,
                JobStatus.PENDING.value,
                json.dumps(spec.to_dict()),
                now,
                spec.run_dir,
            ),
        )
        return int(cur.lastrowid or 0)

    @staticmethod
    def _current(db: sqlite3.Connection, group: str, run: str, attempt: int) -> sqlite3.Row | None:
        return db.execute(
            "SELECT id, status FROM jobs WHERE group_name = ? AND run = ? AND attempts = ?",
            (group, run, attempt),
        ).fetchone()

    @staticmethod
    def _event(
        db: sqlite3.Connection,
        group: str,
        run: str | None,
        kind: str,
        old: JobStatus | None = None,
        new: JobStatus | None = None,
        detail: str | None = None,
    ) -> None:
        db.execute(
            "INSERT INTO events (group_name, run, at, kind, old_status, new_status, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (group, run, time.time(), kind, old.value if old else None, new.value if new else None, detail),
        )

    def group(self, name: str) -> GroupRecord:
        """The group, or ``NotFoundError`` naming the closest group names."""
        row = self._db.execute("SELECT * FROM groups WHERE name = ?", (name,)).fetchone()
        if row is None:
            names = [r[0] for r in self._db.execute("SELECT name FROM groups ORDER BY created_at DESC")]
            near = closest(name, names)
            if near:
                hint = f"; closest: {', '.join(near)}"
            else:
                hint = f"; newest: {', '.join(names[:5])}" if names else "; no groups yet"
            raise NotFoundError(f"no group '{name}'{hint} (see 'metta-exp job list')")
        return group_record(row)
