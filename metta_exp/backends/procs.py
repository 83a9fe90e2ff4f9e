"""This machine's process table, read from ``/proc`` on Linux and from ``ps`` elsewhere.

The local backend uses it to tell a live job from a zombie or a reused pid, and to find every process
of a job's tree before it signals them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "HAS_PROCFS",
    "ProcInfo",
    "cmdline",
    "environ_markers",
    "marked",
    "pid_exists",
    "process_table",
    "read_stat",
    "tree",
]

MARKERS = (b"METTA_EXP_GROUP", b"METTA_EXP_RUN_DIR")

HAS_PROCFS = os.path.exists("/proc/self/stat")


@dataclass(frozen=True)
class ProcInfo:
    """One process: ``sid`` and ``starttime`` (clock ticks after boot) are None without /proc."""

    pid: int
    ppid: int
    pgid: int
    sid: int | None
    state: str
    starttime: int | None

    @property
    def dead(self) -> bool:
        """A zombie (ended, not yet reaped) or dying process: it runs nothing any more."""
        return self.state[:1] in ("Z", "X")


def read_stat(pid: int) -> ProcInfo | None:
    """Parse ``/proc/<pid>/stat``; None if there is no such process.

    The command name (field 2) may hold spaces and parentheses, so the fields are split after its
    last ``)``: state is field 3, ppid 4, pgrp 5, session 6, starttime 22.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
        fields = data[data.rindex(b")") + 2 :].split()
        ppid, pgid, sid, starttime = int(fields[1]), int(fields[2]), int(fields[3]), int(fields[19])
        return ProcInfo(pid, ppid, pgid, sid, fields[0].decode(), starttime)
    except (OSError, ValueError, IndexError):
        return None


def cmdline(pid: int) -> list[bytes] | None:
    """The argv of a process (Linux), or None if it cannot be read."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as args:
            return args.read().split(b"\0")
    except OSError:
        return None


def process_table(procfs: bool = HAS_PROCFS) -> dict[int, ProcInfo]:
    """Every process visible now, by pid."""
    if not procfs:
        return _ps_table()
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            proc = read_stat(int(entry))
            if proc is not None:
                table[proc.pid] = proc
    return table


def tree(
    table: Mapping[int, ProcInfo], leaders: Iterable[int], live_leaders: Iterable[int]
) -> dict[int, int | None]:
    """``{pid: starttime}`` of the live processes that belong to these session leaders.

    That is each live leader, every member of a session or process group a leader started (even after
    the leader died: a pid stays reserved while it names a live session or group), and, following ppid
    links, every descendant of those, including children that left the session with ``setsid``.
    Pure: reads only ``table``.
    """
    leader_ids = set(leaders)
    children: dict[int, list[int]] = {}
    for proc in table.values():
        children.setdefault(proc.ppid, []).append(proc.pid)
    todo = list(live_leaders)
    todo += [p.pid for p in table.values() if p.sid in leader_ids or p.pgid in leader_ids]
    found: dict[int, int | None] = {}
    while todo:
        pid = todo.pop()
        member = table.get(pid)
        if pid in found or member is None or member.dead:
            continue
        found[pid] = member.starttime
        todo += children.get(pid, [])
    return found


def environ_markers(pid: int) -> tuple[str, str] | None:
    """``(METTA_EXP_GROUP, METTA_EXP_RUN_DIR)`` from a process's environment (Linux), or None.

    Every job process inherits them, so they find a job's processes wherever they went: a helper that
    double-forked into a session of its own matches neither the job's group, session nor parents.
    """
    try:
        with open(f"/proc/{pid}/environ", "rb") as env:
            data = env.read()
    except OSError:  # gone, or another user's
        return None
    if b"METTA_EXP_RUN_DIR=" not in data:
        return None
    found = dict(item.split(b"=", 1) for item in data.split(b"\0") if b"=" in item)
    group, run_dir = (found.get(key) for key in MARKERS)
    if group is None or run_dir is None:
        return None
    return os.fsdecode(group), os.fsdecode(run_dir)


def marked(table: Mapping[int, ProcInfo], jobs: Iterable[tuple[str, str]]) -> dict[int, int | None]:
    """``{pid: starttime}`` of the live processes whose environment marks them as one of these jobs
    (``(group, run_dir)`` pairs). Empty without /proc."""
    wanted = set(jobs)
    found: dict[int, int | None] = {}
    for proc in table.values():
        if not proc.dead and proc.pid != os.getpid() and environ_markers(proc.pid) in wanted:
            found[proc.pid] = proc.starttime
    return found


def pid_alive(pid: int) -> bool:
    """True while ``pid`` is a live process: it exists and is not a zombie."""
    if not pid_exists(pid):
        return False
    info = read_stat(pid)
    return info is None or not info.dead


def pid_exists(pid: int) -> bool:
    """Whether some process has this pid (maybe a zombie, maybe another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ps_table() -> dict[int, ProcInfo]:
    """The process table from ``ps`` (no session ids, no start times); {} if ps fails."""
    import subprocess  # only where there is no /proc: readers that check a lease start without it

    try:
        out = subprocess.run(
            ["ps", "-A", "-o", "pid=", "-o", "ppid=", "-o", "pgid=", "-o", "stat="],
            capture_output=True, text=True, timeout=10, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return {}
    table = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 4 and all(part.isdigit() for part in parts[:3]):
            pid = int(parts[0])
            table[pid] = ProcInfo(pid, int(parts[1]), int(parts[2]), None, parts[3], None)
    return table
