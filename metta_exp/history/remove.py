"""``job rm``: what removing ended groups takes away (their rows, run directories and logs, and with
``notebooks`` their notebooks and reports), the disk it frees, and removing it so that a crash or Ctrl+C
leaves each group whole or gone.

The order is rows first, then files. The rows go in ONE store transaction: a crash or Ctrl+C before it
commits leaves every group as it was; after it, the groups are gone. Their run directories are then moved
at once (one rename each, Ctrl+C held meanwhile) into ``<state dir>/.removing/``, and deleted from there.
The other order would be unsafe: files deleted first and a crash before the rows go leaves groups whose
logs and metrics are gone, which ``job show``, ``logs`` and ``notebook`` would stumble on. Rows first, a
crash can only leave files that no group owns, in ``.removing/`` (or, killed between the commit and the
renames, at their old place): the next ``job rm`` deletes ``.removing/`` and counts it in what it frees.
Moving them out of ``runs/`` at once also keeps a new group of the same name from writing into an old
group's directories.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
import subprocess
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from metta_exp.errors import UsageError
from metta_exp.history.filters import parse_statuses, parse_time
from metta_exp.history.listing import check_patterns
from metta_exp.paths import notebook_path, report_path, runs_dir
from metta_exp.records import GroupSummary
from metta_exp.store import GroupQuery, JobStore

__all__ = [
    "REMOVING_DIR",
    "Removal",
    "RemovalPlan",
    "Removed",
    "delete",
    "disk_usage",
    "disk_usage_each",
    "fmt_bytes",
    "plan",
    "remove",
]

REMOVING_DIR = ".removing"
"""Under the state directory: run directories of removed groups, moved there to be deleted."""


@dataclass(frozen=True)
class Removal:
    """One group to remove: its summary, the files and directories that go with it, their size on disk."""

    group: GroupSummary
    paths: tuple[Path, ...]
    size: int


@dataclass(frozen=True)
class RemovalPlan:
    """What ``job rm`` would do: remove ``removals`` (ended groups, newest first); refuse because of
    ``active`` (selected groups that have not ended: nothing is removed while there are any); delete
    ``leftovers`` (what an interrupted ``job rm`` left in ``.removing/``), ``leftover_size`` bytes."""

    state_dir: Path
    removals: list[Removal]
    active: list[str] = field(default_factory=list)
    leftovers: list[Path] = field(default_factory=list)
    leftover_size: int = 0

    @property
    def size(self) -> int:
        """Bytes on disk it frees."""
        return sum(r.size for r in self.removals) + self.leftover_size

    @property
    def empty(self) -> bool:
        return not (self.removals or self.leftovers)


@dataclass(frozen=True)
class Removed:
    """What ``remove`` did: the groups it removed, and the bytes it freed."""

    groups: list[str]
    freed: int


def plan(
    store: JobStore,
    patterns: Sequence[str] = (),
    older_than: str | float | None = None,
    statuses: Sequence[str] = (),
    notebooks: bool = False,
    now: float | None = None,
) -> RemovalPlan:
    """What removing the groups named by ``patterns`` (names or globs) and/or created before
    ``older_than`` (an age such as ``30d``, a date, or a unix time), with a job in one of ``statuses``,
    takes away. At least ``patterns`` or ``older_than``; a name or glob that matches nothing is an error.
    Nothing is changed."""
    if not patterns and older_than is None:
        raise UsageError(
            "name the groups to remove (GROUP... or a glob such as 'lr_*'), or give --older-than T"
        )
    stamp = time.time() if now is None else now
    before = older_than if isinstance(older_than, float | int) or older_than is None else None
    if isinstance(older_than, str):
        before = parse_time(older_than, "--older-than", stamp)
    query = GroupQuery(tuple(patterns), parse_statuses(statuses), None, before)
    check_patterns(store, query.patterns)
    selected, _ = store.find_groups(query)
    removals = []
    for summary in selected:
        if summary.ended_at is None:
            continue
        paths = [runs_dir(store.state_dir, summary.name)]
        if notebooks:
            paths += notebook_files(store, summary.name)
        removals.append(Removal(summary, tuple(p for p in paths if os.path.lexists(p)), 0))
    sizes = disk_usage_each([r.paths for r in removals])
    leftovers = sorted((store.state_dir / REMOVING_DIR).glob("*"))
    return RemovalPlan(
        store.state_dir,
        [Removal(r.group, r.paths, size) for r, size in zip(removals, sizes, strict=True)],
        [s.name for s in selected if s.ended_at is None],
        leftovers,
        disk_usage(leftovers),
    )


def notebook_files(store: JobStore, group: str) -> list[Path]:
    """The group's notebook and report where its config says they are, when they are its own (the
    notebook's metadata, the report's title name the group: a path shared by several groups holds the
    last one's)."""
    record = store.group(group)
    notebook = notebook_path(record)
    report = report_path(notebook)
    out = []
    try:
        if json.loads(notebook.read_text())["metadata"]["metta_exp"]["group"] == group:
            out.append(notebook)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        with open(report, encoding="utf-8", errors="replace") as f:
            head = f.read(65536)
        if re.search(rf"<title>{re.escape(group)}</title>", head):
            out.append(report)
    except OSError:
        pass
    return out


def remove(store: JobStore, removal: RemovalPlan) -> Removed:
    """Remove what ``removal`` lists (see the module docstring for the order, and why). Refuses
    (``UsageError``, nothing removed) while it names active groups, or when a group was reopened since
    (a ``job retry``)."""
    from metta_exp.submit import interrupts_deferred

    if removal.active:
        raise refusal(removal.active)
    names = [r.group.name for r in removal.removals]
    trash = store.state_dir / REMOVING_DIR / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    with interrupts_deferred():  # the rows, then the renames: one step that Ctrl+C does not cut
        removed = set(store.remove_groups(names))
        going = [p for r in removal.removals if r.group.name in removed for p in r.paths]
        for i, path in enumerate(going):
            _move(path, trash / f"{i}-{path.name}")
    delete([trash])
    delete(removal.leftovers)
    with contextlib.suppress(OSError):
        trash.parent.rmdir()  # .removing/, when nothing else is in it
    freed = sum(r.size for r in removal.removals if r.group.name in removed) + removal.leftover_size
    return Removed([n for n in names if n in removed], freed)


def refusal(active: Sequence[str]) -> UsageError:
    """The error for selected groups that have not ended: they are named, with how to end them."""
    shown = ", ".join(active[:5]) + (f" and {len(active) - 5} more" if len(active) > 5 else "")
    verb = "has" if len(active) == 1 else "have"
    return UsageError(
        f"{shown} {verb} not ended (jobs may still run): nothing was removed; end "
        f"{'it' if len(active) == 1 else 'them'} first with 'metta-exp job kill {active[0]}'"
        + (", ..." if len(active) > 1 else "")
    )


def _move(path: Path, target: Path) -> None:
    """``path`` renamed to ``target`` (in the state directory's file system), or deleted at once when it
    is on another (a notebook elsewhere)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.rename(target)
    except FileNotFoundError:
        pass
    except OSError:  # another file system: delete it where it is
        delete([path])


def delete(paths: Iterable[Path]) -> None:
    """Delete ``paths``: directories by ``rm -rf`` (in C: a third less CPU than ``shutil.rmtree``), their
    entries shared among up to two ``rm`` processes that run at once (unlinking is kernel work, so two cores
    halve the wait), then ``shutil.rmtree`` for whatever is left (no ``rm``, or it failed)."""
    dirs = []
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            dirs.append(path)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    if not dirs:
        return
    entries = [str(e) for d in dirs for e in _entries(d)]
    if entries:
        _rm_rf([entries[i::2] for i in range(2)])
    for path in dirs:
        shutil.rmtree(path, ignore_errors=True)  # the directory itself, and what rm left, if anything


def _entries(path: Path) -> list[Path]:
    with contextlib.suppress(OSError), os.scandir(path) as found:
        return [Path(e.path) for e in found]
    return []


def _rm_rf(chunks: Sequence[Sequence[str]]) -> None:
    """``rm -rf`` each non-empty chunk of paths, the processes running at once; an ``rm`` that cannot be
    started is no error (the caller deletes what is left)."""
    procs = []
    for chunk in chunks:
        if not chunk:
            continue
        try:
            procs.append(subprocess.Popen(["rm", "-rf", "--", *chunk], stdin=subprocess.DEVNULL))
        except OSError:
            continue
    for proc in procs:
        proc.wait()


def disk_usage(paths: Iterable[Path]) -> int:
    """Bytes the files and directories under ``paths`` take on disk (as ``du``: allocated blocks, each
    file once however many hard links it has; symbolic links not followed)."""
    return sum(disk_usage_each([list(paths)]))


def disk_usage_each(groups: Sequence[Iterable[Path]], workers: int = 4) -> list[int]:
    """:func:`disk_usage` of each set of paths; a file counted in one set is not counted again. GNU
    ``du`` counts them when it is there (in C: half the CPU of a walk in Python, which matters for
    thousands of groups); else the sets are walked in ``workers`` threads (a walk waits on system calls,
    which release the GIL), then counted in order, so the result is the same as one walk's."""
    sets = [[str(p) for p in paths] for paths in groups]
    counted = _gnu_du(sets)
    if counted is not None:
        return counted
    return _walked_usage(sets, workers)


def _gnu_du(sets: Sequence[Sequence[str]]) -> list[int] | None:
    """Each set's bytes on disk by GNU ``du -s -B1 -0`` over every path at once (it counts each file once,
    in the order given, and follows no symbolic link: the rules of :func:`disk_usage`), or None where
    there is no GNU ``du`` or it cannot read a path (the Python walk then counts)."""
    paths = [p for s in sets for p in s if os.path.lexists(p)]
    if not paths:
        return [0] * len(sets)
    try:
        done = subprocess.run(
            ["du", "-s", "-B1", "-0", "--", *paths], capture_output=True, stdin=subprocess.DEVNULL
        )
    except OSError:
        return None
    if done.returncode != 0:
        return None
    size: dict[str, int] = {}
    for record in done.stdout.split(b"\0"):
        if record:
            number, _, path = record.partition(b"\t")
            size[os.fsdecode(path)] = int(number)
    return [sum(size.get(p, 0) for p in s) for s in sets]


def _walked_usage(groups: Sequence[Sequence[str]], workers: int) -> list[int]:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        walks = list(pool.map(_walk, groups))
    seen: set[tuple[int, int]] = set()
    out = []
    for walk in walks:
        total = 0
        for key, size in walk:
            if key not in seen:
                seen.add(key)
                total += size
        out.append(total)
    return out


def _walk(paths: Iterable[str]) -> list[tuple[tuple[int, int], int]]:
    """Every file and directory under ``paths`` (not following symbolic links): its identity (device,
    inode) and the bytes it takes on disk."""
    found = []
    stack = list(paths)
    while stack:
        path = stack.pop()
        try:
            st = os.lstat(path)
        except OSError:
            continue
        found.append(((st.st_dev, st.st_ino), st.st_blocks * 512))
        if stat.S_ISDIR(st.st_mode):
            with contextlib.suppress(OSError), os.scandir(path) as entries:
                stack.extend(e.path for e in entries)
    return found


def fmt_bytes(n: int) -> str:
    """``0 B``, ``512 B``, ``4.0 KiB``, ``1.2 MiB``, ``3.5 GiB``."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
