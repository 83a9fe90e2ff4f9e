"""Opening the store file: read-only for readers, checked before use, never modified when damaged.

A reader (``job list``, ``job show``) opens ``jobs.sqlite`` with SQLite's ``mode=ro`` URI, so it works on a
read-only mount or another user's file, and never creates, migrates or repairs anything; a missing or
empty file is a store with no groups yet. A file that is not a valid SQLite database, or fails
``PRAGMA quick_check``, is left as it is: the error names it, what is wrong and how to recover. A writer
that cannot write (read-only file system, a file it may not change, a full disk) gets one line naming
the file and the reason.
"""

from __future__ import annotations

import contextlib
import shlex
import sqlite3
from pathlib import Path
from urllib.parse import quote

from metta_exp.errors import StoreError

__all__ = ["check_file", "cleanup_created", "connect_readonly", "connect_writable", "write_error"]

TIMEOUT_S = 30.0


def corrupt_error(path: Path, what: str) -> StoreError:
    file, broken, recovered = (shlex.quote(f"{path}{suffix}") for suffix in ("", ".broken", ".recovered"))
    return StoreError(
        f"the job store {path} is damaged ({what}); metta-exp leaves it as it is. Move it aside to start "
        f"a new store (mv {file} {broken}), or recover what it holds with SQLite: "
        f"sqlite3 {file} .recover | sqlite3 {recovered}"
    )


def check_file(path: Path) -> int | None:
    """The file's size, None when there is none.

    Only ``stat``: opening and closing the file here would drop the POSIX locks SQLite connections of
    this process hold on it (closing any descriptor of a file releases them all), after which another
    process may delete the WAL index under them. What the file holds, SQLite itself checks.
    """
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"cannot read the job store {path}: {exc.strerror or exc}") from None


def _not_a_database(path: Path) -> str:
    """What a file SQLite refused begins with (safe to open now: no connection has a lock on it)."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return "not an SQLite database"
    shown = head.decode("latin-1").encode("unicode_escape").decode()
    return f"not an SQLite database: it begins with '{shown}'"


#: Bytes of store up to which opening it runs SQLite's full ``quick_check``; a bigger store (its cost grows
#: with the file: 70 ms at 100,000 jobs, more than the rest of ``job list``) gets the cheap checks only.
QUICK_CHECK_MAX = 8 << 20


def verify(db: sqlite3.Connection, path: Path) -> None:
    """Raise the damaged-store error unless the file passes SQLite's checks: its quick check, or for a
    big store reading its schema and a size that covers every page its header counts."""
    try:
        size = path.stat().st_size
        if size <= QUICK_CHECK_MAX:
            rows = [r[0] for r in db.execute("PRAGMA quick_check(3)")]
        else:
            pages = (
                db.execute("PRAGMA page_count").fetchone()[0] * db.execute("PRAGMA page_size").fetchone()[0]
            )
            wal = Path(f"{path}-wal")
            have = size + (wal.stat().st_size if wal.exists() else 0)
            rows = ["ok"] if pages <= have else [f"the file holds {size} bytes of the {pages} it says it has"]
    except sqlite3.DatabaseError as exc:
        if not _is_corruption(exc):
            raise  # not the file's fault (cannot open its WAL index, locked): the caller decides
        what = _not_a_database(path) if "not a database" in str(exc) else str(exc)
        raise corrupt_error(path, what) from None
    if rows != ["ok"]:
        raise corrupt_error(path, "integrity check failed: " + "; ".join(map(str, rows)))


def connect_readonly(path: Path) -> sqlite3.Connection:
    """A connection that cannot write. On a read-only directory SQLite cannot create the WAL index a
    WAL database needs, so the file is then opened as immutable (nobody can change it there)."""
    uri = "file:" + quote(str(path.absolute()), safe="/")
    last: sqlite3.Error | None = None
    for query in ("?mode=ro", "?mode=ro&immutable=1"):
        try:
            db = sqlite3.connect(uri + query, uri=True, timeout=TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            last = exc
            continue
        try:
            db.execute("PRAGMA busy_timeout = 30000")
            verify(db, path)
            return db
        except StoreError:
            db.close()
            raise
        except sqlite3.Error as exc:
            db.close()
            last = exc
    raise StoreError(f"cannot read the job store {path}: {last}")


def connect_writable(path: Path, create: bool) -> sqlite3.Connection:
    """A read-write connection in WAL mode; write failures become ``StoreError`` lines."""
    try:
        db = sqlite3.connect(path, timeout=TIMEOUT_S, isolation_level=None)
    except sqlite3.Error as exc:
        raise write_error(path, exc) from None
    try:
        db.execute("PRAGMA busy_timeout = 30000")
        if check_file(path):
            verify(db, path)
        if create:
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise write_error(path, sqlite3.OperationalError(f"cannot use WAL mode (got {mode})"))
    except sqlite3.Error as exc:
        db.close()
        raise write_error(path, exc) from None
    except BaseException:
        db.close()
        raise
    return db


def write_error(path: Path, exc: BaseException) -> StoreError:
    """One line for a write that failed: the file, the reason, the fix."""
    text = str(exc)
    low = text.lower()
    if isinstance(exc, sqlite3.DatabaseError) and _is_corruption(exc):
        return corrupt_error(path, _not_a_database(path) if "not a database" in low else text)
    if "readonly" in low or "read-only" in low or "permission" in low:
        why = "it cannot be written (a read-only file system, or a file or directory you may not change)"
        fix = "run from a directory you can write, or set METTA_EXP_STATE_DIR to one"
    elif "disk is full" in low or "no space" in low or "quota" in low:
        why = "the disk is full"
        fix = "free some space and run the command again"
    elif "unable to open" in low:
        why = "the file cannot be opened for writing (a missing or read-only directory?)"
        fix = "run from a directory you can write, or set METTA_EXP_STATE_DIR to one"
    elif "locked" in low or "busy" in low:
        why = f"it stayed locked by another process for {TIMEOUT_S:g} s"
        fix = "try again; a process holding it may be stuck"
    else:
        why, fix = text, "check the file and its disk"
    return StoreError(f"cannot write the job store {path}: {why} ({text}); {fix}")


def cleanup_created(path: Path, made_dirs: list[Path]) -> None:
    """Remove a store file this process created (and its WAL files and directories) after a failure."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(OSError):
            Path(str(path) + suffix).unlink()
    for directory in reversed(made_dirs):
        with contextlib.suppress(OSError):
            directory.rmdir()


def _is_corruption(exc: sqlite3.Error) -> bool:
    low = str(exc).lower()
    return "not a database" in low or "malformed" in low or "corrupt" in low
