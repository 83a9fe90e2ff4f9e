"""Who drives a group, and whether that driver lives: the lease as its readers see it.

One runner process drives a group at a time. It holds the group's lease in the store (owner, expiry,
pid). Readers (``job list``, ``job show``, the monitor) ask here whether the holder lives, without loading
what starts and keeps runners (:mod:`metta_exp.supervise.drive`).
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from metta_exp.backends.procs import pid_alive

if TYPE_CHECKING:
    from metta_exp.records import GroupRecord
    from metta_exp.store import JobStore

__all__ = [
    "LEASE_TTL",
    "REFUSED_EVENT",
    "held",
    "lease_owner_id",
    "needs_driver",
    "owner_alive",
    "this_host",
    "unattended_groups",
]

LEASE_TTL = 30.0
REFUSED_EVENT = "refused"  # the runner stopped because its backend refuses every call (see ``held``)


def lease_owner_id() -> str:
    """A lease owner: host, pid and a random part (a pid is reused; the random part is not)."""
    return f"{this_host()}:{os.getpid()}:{os.urandom(4).hex()}"


def this_host() -> str:
    """This machine's host name, as in lease owners (``socket.gethostname()``, without importing socket:
    readers such as ``job show`` check leases and start fast)."""
    return os.uname().nodename


def owner_alive(group: GroupRecord) -> bool:
    """Whether the group's lease holder is alive: lease unexpired and, on this host, its process exists."""
    if not group.lease_owner or group.lease_expires is None or group.lease_expires < time.time():
        return False
    host = group.lease_owner.split(":", 1)[0]
    if host == this_host() and group.runner_pid:
        return pid_alive(group.runner_pid)
    return True


def unattended_groups(store: JobStore) -> tuple[dict[str, GroupRecord], list[str]]:
    """The groups of ``store`` that have not ended, by name, and the names of those no runner drives
    (their jobs run on unobserved until resumed); a killed group counts as driven."""
    open_groups = {g.name: g for g in store.active_groups()}
    return open_groups, [n for n, g in open_groups.items() if not g.cancel_requested and not owner_alive(g)]


def needs_driver(group: GroupRecord) -> bool:
    """Whether the group is still open and nobody drives it."""
    return group.ended_at is None and not owner_alive(group)


def held(store: JobStore, group: str) -> str | None:
    """Why the group's last runner stopped, when it stopped because its backend refuses every call (an
    expired login): no runner is started for it until someone asks (``job resume``, ``job retry``), since
    a new one would be refused as well. None otherwise."""
    refused = store.events(group, kind=REFUSED_EVENT)
    if not refused:
        return None
    started = store.events(group, refused[-1].id, kind="runner")
    return None if started else refused[-1].detail or "the backend refuses every call"
