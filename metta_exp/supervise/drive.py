"""Driving a group: starting its runner, keeping its lease, healing it, and how a group ended.

``ensure_driver`` takes the lease for a group nobody drives (:mod:`metta_exp.supervise.lease` says whether
anyone does) and hands it to a new, detached runner process; ``LeaseKeeper`` renews it through slow calls;
``Healer`` starts a runner again when one dies while someone watches. Which commands may take the lease,
and why, is written down in ``docs/lease.md``.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from metta_exp.backends import procs
from metta_exp.backends.base import Launch, LaunchSettings
from metta_exp.backends.procs import pid_alive
from metta_exp.paths import RunDir, launch_dir, runner_log
from metta_exp.records import GroupRecord, JobRecord
from metta_exp.status import JobStatus
from metta_exp.supervise.lease import LEASE_TTL, held, lease_owner_id, needs_driver
from metta_exp.trials import TrialRecord, TrialState

if TYPE_CHECKING:
    from metta_exp.store import JobStore

__all__ = [
    "HEAL_EVERY_S",
    "Healer",
    "LeaseKeeper",
    "StandbyRunner",
    "ensure_driver",
    "exit_code",
    "launch_of",
    "launch_settings",
    "leftovers",
    "runner_standing_by",
    "spawn_runner",
    "wait_driven",
]

HEAL_EVERY_S = 2.0


def exit_code(jobs: Sequence[JobRecord], trials: Sequence[TrialRecord] = ()) -> int:
    """A group's exit code: 0 when every job succeeded (a search's pruned trials count as done, not as
    failures) and no trial of a search failed; 1 otherwise."""
    ok = all(j.status in (JobStatus.SUCCEEDED, JobStatus.PRUNED) for j in jobs)
    return 0 if ok and not any(t.state == TrialState.FAILED for t in trials) else 1


# The runner's parent: a short-lived launcher (no site, no imports beyond subprocess) that starts the
# runner in a session of its own, prints its pid and exits at once. The runner is then nobody's child
# here: a command that starts one (a monitor may watch for days) holds no Popen to collect and leaves no
# zombie when the runner ends first. os._exit: the launcher's own Popen is not collected either.
# The runner's stdin is the launcher's: /dev/null, or a standby runner's pipe (``StandbyRunner``).
_LAUNCHER = (
    "import os, subprocess, sys\n"
    "child = subprocess.Popen(sys.argv[1:], stdin=0, stdout=2, stderr=2, start_new_session=True)\n"
    "print(child.pid, flush=True)\n"
    "os._exit(0)\n"
)
STANDBY_FLAG = "--standby"


def spawn_runner(state_dir: Path, group: str, owner: str, cwd: Path | None = None) -> int:
    """Start a detached runner for ``group`` under lease ``owner`` and return its pid: its own session,
    so it outlives this terminal, and not this process's child. Use ``ensure_driver``, which takes the
    lease first. Raises ``OSError`` if it could not be started (why is in the runner's log)."""
    log_path = runner_log(state_dir, group)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, METTA_EXP_STATE_DIR=str(state_dir), METTA_EXP_RUNNER_OWNER=owner)
    with open(log_path, "ab") as log:
        started = subprocess.run(
            [sys.executable, "-S", "-c", _LAUNCHER, sys.executable, "-m", "metta_exp.runner", group],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            check=False,
        )
    pid = started.stdout.strip()
    if started.returncode != 0 or not pid.isdigit():
        raise OSError(f"could not start the runner of group {group!r} (see {log_path})")
    return int(pid)


def ensure_driver(store: JobStore, group: str, cwd: Path | None = None, *, heal: bool = False) -> bool:
    """Start a runner if the group is open and nobody drives it. True if one was started.

    The lease is taken here, before the runner process exists, and handed to it: two commands that both
    find a dead runner cannot both start one. ``heal`` (the monitor, ``wait``: nobody asked for a runner)
    leaves a group ``held`` as it is.
    """
    record = store.group(group)
    if not needs_driver(record):
        return False
    if heal and held(store, group) is not None:
        return False
    owner = lease_owner_id()
    steal = record.lease_owner if record.lease_owner else None
    if not store.acquire_lease(group, owner, LEASE_TTL, os.getpid(), steal_from=steal):
        return False
    start = cwd or launch_dir(record)
    pid = _hand_to_standby(start, store.state_dir, group, owner)
    if pid is None:
        pid = spawn_runner(store.state_dir, group, owner, cwd=start if start.is_dir() else None)
    store.acquire_lease(group, owner, LEASE_TTL, pid)
    return True


class LeaseKeeper:
    """Renews a runner's lease from a thread (with its own store connection) while the runner is ``busy``:
    one backend call can outlast the lease (SkyPilot's SDK calls have no read timeout; a local API server
    that starts inside a poll takes about 45 s), and a lease that expired while its runner lives would let
    ``job resume`` start a second runner. A runner busy for longer than ``max_busy_s`` is presumed hung:
    its lease is left to expire, and the group is taken over."""

    def __init__(
        self, store_path: Path, group: str, owner: str, ttl: float, max_busy_s: float = 900.0
    ) -> None:
        self.store_path, self.group, self.owner, self.ttl = store_path, group, owner, ttl
        self.max_busy_s = max_busy_s
        self._since: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """The body may take longer than the lease: renew it meanwhile."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="lease", daemon=True)
            self._thread.start()
        self._since = time.monotonic()
        try:
            yield
        finally:
            self._since = None

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        from metta_exp.store import JobStore

        with JobStore(self.store_path) as store:
            while not self._stop.wait(self.ttl / 3):
                since = self._since
                if since is not None and time.monotonic() - since < self.max_busy_s:
                    with contextlib.suppress(Exception):  # a full disk: the runner's own renewal says so
                        store.renew_lease(self.group, self.owner, self.ttl)


class StandbyRunner:
    """A runner process started before its group exists (``python -m metta_exp.runner --standby``), so that
    its start-up (an interpreter and metta-exp's imports: a tenth of a second, several times that on a
    busy machine or without bytecode caches) overlaps the launching command's own work, composing its
    config, instead of following it. Detached as ``spawn_runner``'s runners are, it waits on its stdin
    for the group to drive (``hand``); when this end is closed unused, it exits having touched nothing."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        read, self._write = os.pipe()  # neither end is inherited by other children of this process
        try:
            self._launcher: subprocess.Popen[bytes] | None = subprocess.Popen(
                [
                    sys.executable,
                    "-S",
                    "-c",
                    _LAUNCHER,
                    sys.executable,
                    "-m",
                    "metta_exp.runner",
                    STANDBY_FLAG,
                ],
                cwd=cwd,
                stdin=read,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,  # until it has a group: then that group's runner log
            )
        except BaseException:
            os.close(self._write)
            raise
        finally:
            os.close(read)
        self._pid: int | None = None

    def pid(self) -> int | None:
        """The standby runner's pid once its launcher said it (the launcher exits at once: collected here)."""
        if self._launcher is not None:
            out, _ = self._launcher.communicate()
            self._launcher = None
            self._pid = int(out) if out.strip().isdigit() else None
        return self._pid

    def hand(self, state_dir: Path, group: str, owner: str) -> int | None:
        """Give it ``group`` to drive under lease ``owner``; its pid, or None when it cannot take it (it
        died): then start a runner as usual."""
        pid = self.pid()
        line = json.dumps({"state_dir": str(state_dir), "group": group, "owner": owner}) + "\n"
        try:
            if pid is None or not pid_alive(pid) or self._write < 0:
                return None
            os.write(self._write, line.encode())
            return pid
        except OSError:  # it died meanwhile (a closed pipe)
            return None
        finally:
            self.close()

    def close(self) -> None:
        """Close this end: a standby still waiting reads end-of-file and exits."""
        if self._write >= 0:
            os.close(self._write)
            self._write = -1
        self.pid()


_standing_by: list[StandbyRunner] = []


@contextlib.contextmanager
def runner_standing_by(cwd: Path | None = None) -> Iterator[None]:
    """Within, a runner is started ahead (``StandbyRunner``), and the first ``ensure_driver`` for a group
    whose jobs start in ``cwd`` (the current directory) hands it that group; unused, it exits at the end.
    For a command that composes a config before it records a group (a launch, a sweep, a Hydra app)."""
    try:
        standby = StandbyRunner(cwd or Path.cwd())
    except OSError:  # no runner ahead: ensure_driver starts one as usual
        yield
        return
    _standing_by.append(standby)
    try:
        yield
    finally:
        if standby in _standing_by:
            _standing_by.remove(standby)
        standby.close()


def _hand_to_standby(cwd: Path, state_dir: Path, group: str, owner: str) -> int | None:
    """The pid of the standby runner that took ``group``, or None (none waits for a group from ``cwd``)."""
    for standby in _standing_by:
        if standby.cwd == cwd:
            _standing_by.remove(standby)
            return standby.hand(state_dir, group, owner)
    return None


def wait_driven(store: JobStore, group: str, after_event: int, timeout: float) -> bool:
    """Make sure a runner drives ``group`` after a retry: start one when none is alive, until a driver
    acted after event ``after_event`` (took the lease, or moved a job). A runner that was just ending
    the group may exit without seeing the requeued runs; the one started here then takes over."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        ensure_driver(store, group)
        if any(e.kind in ("runner", "status") for e in store.events(group, after_event)):
            return True
        time.sleep(0.1)
    return False


def leftovers(group: GroupRecord, jobs: Sequence[JobRecord]) -> list[JobRecord]:
    """Ended jobs of a local group with processes still alive: helpers that daemonised and outlived
    their job, found by the markers in their environment (Linux)."""
    if group.backend != "local" or not procs.HAS_PROCFS:
        return []
    ended = {j.run_dir: j for j in jobs if j.status.is_terminal()}
    found: dict[str, JobRecord] = {}
    for proc in procs.process_table().values():
        markers = None if proc.dead else procs.environ_markers(proc.pid)
        if markers is not None and markers[0] == group.name and markers[1] in ended:
            found[markers[1]] = ended[markers[1]]
    return list(found.values())


class Healer:
    """ "Heal this group": start a runner when nobody drives it (checked at most every ``every`` s).

    The monitor and ``job logs --follow`` receive one as a plain callable. The watching store may be a
    reader's (read-only); the healer opens a writable one of its own only when the group needs a driver
    (closed by ``close``, or at the end of a ``with`` block), and stops trying where the store cannot be
    written.
    """

    def __init__(self, store: JobStore, group: str, every: float = HEAL_EVERY_S) -> None:
        self.store, self.group, self.every = store, group, every
        self._last = 0.0
        self._writer: JobStore | None = None

    def __enter__(self) -> Healer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the writable store it opened, if it did."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __call__(self) -> None:
        if time.monotonic() - self._last < self.every:
            return
        self._last = time.monotonic()
        from metta_exp.errors import StoreError
        from metta_exp.store import JobStore

        if not needs_driver(self.store.group(self.group)):
            return
        try:
            if self._writer is None:
                self._writer = JobStore(self.store.path, create=False)
            ensure_driver(self._writer, self.group, heal=True)
        except StoreError:  # a read-only store: watch without healing ('job list' says how to resume)
            self.every = float("inf")


# ---------------------------------------------------------------------------------------------------
# A job record as the backends see it: the one translation from the store's records to the backends'
# inputs, used by the runner (to submit, poll and cancel), by ``job kill`` and by the tests' clean-up.


def launch_of(group: GroupRecord, job: JobRecord) -> Launch:
    """The backend's view of a job's current attempt."""
    log = Path(job.log_path) if job.log_path else RunDir.at(job.run_dir).log(max(job.attempts, 1))
    return Launch(job.spec, job.attempts, log, job.handle, job.gpu_ids, settings=launch_settings(group))


def launch_settings(group: GroupRecord) -> LaunchSettings:
    """What every launch of ``group`` carries: its SkyPilot and W&B settings and its instance id."""
    return LaunchSettings(group.exp.skypilot, group.exp.wandb, group.instance)
