"""The local backend: every attempt is a detached process tree on this machine.

Each attempt runs under a tiny POSIX ``sh`` wrapper in a session of its own, so it outlives the runner
and the terminal that started it. Next to the attempt's log ``<name>.log`` the wrapper writes its pid to
``<name>.pid`` before the job starts and the job's exit code to ``<name>.exit`` when it ends (both
atomically), so any later process, not only the one that started the job, learns how it ended.

A handle is ``"<pid>:<starttime>"``, starttime being field 22 of ``/proc/<pid>/stat``, so a reused pid
is never mistaken for the job. Without ``/proc`` (macOS) a handle is the plain pid.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import metta_exp.backends.preflight as preflight
import metta_exp.backends.procs as procs
from metta_exp.backends.base import Backend, Launch, Observation
from metta_exp.backends.gpus import GPUS_ENV, local_gpus
from metta_exp.errors import BackendError, BackendUnavailable, UsageError
from metta_exp.paths import AttemptFiles
from metta_exp.records import JobSpec
from metta_exp.runs.wandb import attempt_run_id
from metta_exp.status import JobStatus

__all__ = ["LocalBackend", "describe_exit"]

log = logging.getLogger(__name__)

GRACE_ENV = "METTA_EXP_KILL_GRACE_S"
DEFAULT_GRACE_S = 10.0
VANISHED = "process vanished without an exit code (killed or crashed)"

# $1 pid file, $2 exit file, $3 "--", then the job's argv. The job runs as a child (not exec) so the
# wrapper can record its exit code; the no-op trap keeps the wrapper alive through a SIGTERM sent to
# the whole group until the job has ended (a caught signal is reset to default in the child).
_WRAPPER = """trap : TERM INT
echo $$ > "$1.tmp" && mv -f "$1.tmp" "$1"
read -r _ || :
exec </dev/null
exitfile=$2
shift 3
"$@"
code=$?
echo $code > "$exitfile.tmp" && mv -f "$exitfile.tmp" "$exitfile"
exit $code"""
_SH = "/bin/sh"
_SPAWN_THREADS = 4  # a batch of 8 or more launches is spawned by this many threads
_POLL_S = 0.05
_KILL_WAIT_S = 5.0
_Pids = dict[int, int | None]  # pid -> starttime


@dataclass(frozen=True)
class _Root:
    """The wrapper of an attempt to cancel; ``alive`` is False once it is gone (its group may live on)."""

    pid: int
    starttime: int | None
    alive: bool


def path_with(first: str, path: str) -> str:
    """``path`` (a ``PATH`` value) with ``first`` as its first entry (not repeated if it is already)."""
    entries = path.split(os.pathsep) if path else []
    return path if entries[:1] == [first] else os.pathsep.join([first, *entries])


class LocalBackend(Backend):
    """Runs jobs as detached processes here; ``grace_s`` is the SIGTERM to SIGKILL grace of ``cancel``
    (default: ``METTA_EXP_KILL_GRACE_S``, else 10 s: time for a trainer to save a checkpoint)."""

    name = "local"
    # A pid file appears within milliseconds of submit, so an attempt without one after a few seconds
    # was never started (its runner died between claiming and submitting it).
    unseen_grace = 3.0

    def __init__(self, grace_s: float | None = None, python: str = sys.executable) -> None:
        self.grace_s = kill_grace() if grace_s is None else grace_s
        self.python = python
        self._procfs = procs.HAS_PROCFS
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._exit_codes: dict[int, int] = {}  # wrapper pid -> the status we reaped as its parent
        self._killers: list[tuple[threading.Thread, list[Launch]]] = []
        self._devices: list[int] | None = None

    # -- resources ---------------------------------------------------------------------------------

    def devices(self) -> list[int]:
        """``METTA_EXP_LOCAL_GPUS`` if set, else the GPUs nvidia-smi lists, else none (cached)."""
        if self._devices is None:
            self._devices = local_gpus()
        return list(self._devices)

    def check(self, specs: Sequence[JobSpec]) -> None:
        """Refuse, before anything starts, a job whose module or command cannot be found where it would
        run (:mod:`metta_exp.backends.preflight`), or that asks for more GPUs than this machine has."""
        start = os.getcwd()  # where a group's jobs start: the directory it is launched from
        job_path = path_with(str(Path(self.python).parent), os.environ.get("PATH", os.defpath))
        for module in dict.fromkeys(s.module for s in specs if s.module):
            preflight.check_module(module, start, self.python)
        for argv0 in dict.fromkeys(s.command[0] for s in specs if s.command):
            preflight.check_command(argv0, start, job_path)
        have = self.devices()
        for spec in specs:
            if spec.gpus > len(have):
                exists = f"{len(have)} GPU(s) (ids {','.join(map(str, have))})" if have else "no GPUs"
                raise BackendUnavailable(
                    f"run '{spec.run}' of group '{spec.group}' asks for {spec.gpus} GPU(s) but this machine "
                    f"has {exists}: set gpus={len(have)} or fewer, or declare devices with "
                    f"{GPUS_ENV}=0,1,..."
                )

    # -- submit --------------------------------------------------------------------------------------

    def submit(self, launches: Sequence[Launch]) -> dict[str, str]:
        return self.submit_recorded(launches, None)

    def submit_recorded(
        self, launches: Sequence[Launch], record: Callable[[dict[str, str]], None] | None
    ) -> dict[str, str]:
        """Start every launch now, without waiting for any of them; raise only if none could start.

        The wrappers wait at a start gate (their stdin, a pipe) until the whole batch is submitted (and
        ``record`` has returned): a hundred jobs starting up while the rest are still being spawned, or
        recorded, would otherwise take the CPUs from the submission. If this process dies mid-batch, the
        pipe closes and the gate opens anyway. A few threads spawn them: each spawn waits for its child
        to execute the wrapper (a vfork), and on a busy machine that wait is most of it, so spawning in
        turn took three times as long.
        """
        base_env = dict(os.environ)
        handles: dict[str, str] = {}
        failures: list[str] = []
        gate, opener = os.pipe()

        def start(launch: Launch) -> None:
            try:
                handles[launch.name] = self._start(launch, base_env, gate)
            except OSError as exc:
                log.warning("could not start %s: %s", launch.name, exc)
                failures.append(f"{launch.name}: {exc}")

        try:
            if len(launches) < _SPAWN_THREADS * 2:
                for launch in launches:
                    start(launch)
            else:
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(_SPAWN_THREADS, thread_name_prefix="spawn") as pool:
                    list(pool.map(start, launches))
            if record is not None and handles:
                record(dict(handles))
        finally:
            os.close(gate)
            os.close(opener)  # every wrapper reads EOF: the batch starts together
        if failures and not handles:
            raise BackendError(f"could not start any of {len(failures)} job(s); first: {failures[0]}")
        return handles

    def _start(self, launch: Launch, base_env: Mapping[str, str], gate: int) -> str:
        files = AttemptFiles.of(launch.log_path)
        files.log.parent.mkdir(parents=True, exist_ok=True)
        Path(launch.spec.run_dir).mkdir(parents=True, exist_ok=True)
        for stale in (files.pid, files.exit):  # left by an earlier start of this same attempt
            stale.unlink(missing_ok=True)
        env = {
            **base_env,
            **launch.spec.env,
            # metta-exp's own interpreter first: `command: [python, ...]` runs in its environment,
            # activated or not (a symlinked venv python stays unresolved: its bin/ is the venv's)
            "PATH": path_with(str(Path(self.python).parent), base_env.get("PATH", os.defpath)),
            "METTA_EXP_ATTEMPT": str(launch.attempt),
            "WANDB_RUN_ID": attempt_run_id(launch.spec.wandb_run_id, launch.attempt),
            "CUDA_VISIBLE_DEVICES": ",".join(str(gpu) for gpu in launch.gpu_ids),
        }
        argv = [_SH, "-c", _WRAPPER, "metta-exp-job", str(files.pid), str(files.exit), "--"]
        argv += launch.spec.argv(python=self.python)
        with open(files.log, "ab") as log_file:
            proc = subprocess.Popen(
                argv, stdin=gate, stdout=log_file, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,
            )  # fmt: skip
        self._children[proc.pid] = proc
        self._exit_codes.pop(proc.pid, None)  # an earlier child's, whose pid this one reuses
        # Our unreaped child cannot vanish from /proc, so its starttime is always readable here.
        stat = self._stat(proc.pid)
        return _format_handle(proc.pid, stat.starttime if stat is not None else None)

    # -- poll ----------------------------------------------------------------------------------------

    def poll(self, launches: Sequence[Launch]) -> dict[str, Observation]:
        """One pass over every launch: the exit file, else whether the wrapper still lives."""
        self._reap()
        return {launch.name: self._observe(launch) for launch in launches}

    def _observe(self, launch: Launch) -> Observation:
        files = AttemptFiles.of(launch.log_path)
        if launch.handle is None:
            return self._reconcile(files)
        try:
            pid, starttime = _parse_handle(launch.handle)
        except ValueError:
            return Observation(JobStatus.FAILED, reason=f"not a local job handle: {launch.handle!r}")
        ended = _ended(files)
        if ended is not None:
            return ended
        if self._wrapper(pid, starttime, files) is not None:
            return Observation(JobStatus.RUNNING)
        return _ended(files) or self._reaped(pid) or Observation(JobStatus.FAILED, reason=VANISHED)

    def _reaped(self, pid: int, handle: str | None = None) -> Observation | None:
        """The outcome from the status we reaped as the wrapper's parent, if we did."""
        code = self._exit_codes.get(pid)
        if code is None or code < 0:  # a wrapper killed by a signal says nothing of its job
            return None
        return _outcome(code, handle)

    def _reconcile(self, files: AttemptFiles) -> Observation:
        """An attempt whose handle was never recorded: find it by its pid file, if it ever started."""
        pid = _read_int(files.pid)
        if pid is None:
            return Observation(status=None)
        proc = self._wrapper(pid, None, files)
        handle = _format_handle(pid, proc.starttime if proc is not None else None)
        ended = _ended(files, handle)
        if ended is not None:
            return ended
        if proc is not None:
            return Observation(JobStatus.RUNNING, handle=handle)
        return (
            _ended(files, handle)
            or self._reaped(pid, handle)
            or Observation(JobStatus.FAILED, reason=VANISHED, handle=handle)
        )

    # -- cancel --------------------------------------------------------------------------------------

    def cancel(self, launches: Sequence[Launch]) -> None:
        """SIGTERM every process of every launch at once, wait until they are gone (at most ``grace_s``),
        SIGKILL what is left."""
        begun = self._terminate(launches)
        if begun is not None:
            self._finish_kill(*begun, reap=True)

    def cancel_soon(self, launches: Sequence[Launch]) -> None:
        """SIGTERM now; a thread SIGKILLs what outlives ``grace_s`` (``close`` waits for it)."""
        begun = self._terminate(launches)
        if begun is not None:
            self._kill_later(launches, *begun)

    def end_leftovers(self, launches: Sequence[Launch]) -> dict[str, int]:
        """End, as ``cancel_soon`` does, the processes of these ended attempts that are still alive: the
        members of their sessions and process groups, their descendants, and (with /proc) whatever
        carries their job markers. The wrapper is not one of them: it ends by itself once it wrote the
        exit code. One look at the process table for all of them."""
        table = procs.process_table(self._procfs)
        markers = {_markers(launch): launch.name for launch in launches}
        marked: dict[str, _Pids] = {}
        for pid, start in (procs.marked(table, markers) if self._procfs else {}).items():
            owner = markers.get(procs.environ_markers(pid) or ("", ""))
            if owner is not None:
                marked.setdefault(owner, {})[pid] = start
        found: dict[str, int] = {}
        for launch in launches:
            root = self._root(launch)
            roots = [root] if root is not None else []
            targets = {**procs.tree(table, [r.pid for r in roots], []), **marked.get(launch.name, {})}
            for pid in (os.getpid(), *(r.pid for r in roots)):
                targets.pop(pid, None)
            if targets:
                self._signal(roots, targets, signal.SIGTERM)
                self._kill_later([launch], roots, {_markers(launch)}, targets)
                found[launch.name] = len(targets)
        return found

    def _kill_later(
        self, launches: Sequence[Launch], roots: list[_Root], jobs: set[tuple[str, str]], targets: _Pids
    ) -> None:
        """A thread SIGKILLs what of ``targets`` outlives ``grace_s``; ``still_ending`` lists ``launches``
        until it is done."""
        killer = threading.Thread(target=self._finish_kill, args=(roots, jobs, targets), daemon=True)
        killer.start()
        self._killers = [k for k in self._killers if k[0].is_alive()] + [(killer, list(launches))]

    def still_ending(self) -> list[Launch]:
        """The attempts whose SIGTERM-then-SIGKILL (``cancel_soon``) is still under way."""
        return [launch for killer, launches in self._killers if killer.is_alive() for launch in launches]

    def close(self) -> None:
        for killer, _ in self._killers:
            killer.join()
        self._killers = []

    def _terminate(
        self, launches: Sequence[Launch]
    ) -> tuple[list[_Root], set[tuple[str, str]], _Pids] | None:
        """SIGTERM every process of these launches: their trees, and every process carrying their
        job markers (a daemon that left the tree). None when nothing of them is left."""
        roots = [root for root in map(self._root, launches) if root is not None]
        jobs = {_markers(launch) for launch in launches}
        targets = self._tree(roots, jobs)
        if not roots and not targets:
            return None
        self._signal(roots, targets, signal.SIGTERM)
        return roots, jobs, targets

    def _finish_kill(
        self, roots: list[_Root], jobs: set[tuple[str, str]], targets: _Pids, reap: bool = False
    ) -> None:
        alive = self._wait_gone(targets, self.grace_s, reap)
        if alive:
            targets = {**alive, **self._tree(roots, jobs)}  # include anything forked during the grace
            self._signal(roots, targets, signal.SIGKILL, reap)
            self._wait_gone(targets, _KILL_WAIT_S, reap)

    def _root(self, launch: Launch) -> _Root | None:
        """The wrapper of a launch to cancel, or None when nothing of it can be left."""
        files = AttemptFiles.of(launch.log_path)
        try:
            pid, starttime = _parse_handle(launch.handle) if launch.handle else (_read_int(files.pid), None)
        except ValueError:
            return None
        if pid is None:
            return None  # never started
        proc = self._wrapper(pid, starttime, files)
        if proc is not None:
            return _Root(pid, proc.starttime, True)
        other = self._stat(pid)
        if other is not None and not other.dead:
            return None  # pid reused: a pid stays reserved while its session lives, so ours is all gone
        return _Root(pid, starttime, False)

    def _tree(self, roots: Sequence[_Root], jobs: Collection[tuple[str, str]] = ()) -> _Pids:
        """Every live process of these attempts: wrappers, their sessions and groups, descendants, and
        (with /proc) every process whose environment carries the markers of one of ``jobs``."""
        table = procs.process_table(self._procfs)
        found = procs.tree(table, [root.pid for root in roots], [root.pid for root in roots if root.alive])
        if self._procfs and jobs:
            found.update(procs.marked(table, jobs))
        found.pop(os.getpid(), None)
        return found

    def _signal(self, roots: Sequence[_Root], targets: _Pids, sig: int, reap: bool = True) -> None:
        for root in roots:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(root.pid, sig)
        for pid, starttime in targets.items():
            if self._running(pid, starttime, reap):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)

    def _wait_gone(self, targets: Mapping[int, int | None], timeout: float, reap: bool = True) -> _Pids:
        """Wait until these processes are gone (or ``timeout``); return those still alive. Without
        ``reap`` (from a killer thread) our own children are left to the main thread to collect."""
        deadline = time.monotonic() + timeout
        while True:
            if reap:
                self._reap()
            alive = {pid: start for pid, start in targets.items() if self._running(pid, start, reap)}
            if not alive or time.monotonic() >= deadline:
                return alive
            time.sleep(_POLL_S)

    # -- processes -----------------------------------------------------------------------------------

    def _reap(self) -> None:
        """Collect our own children that ended, so they do not linger as zombies that look alive, and
        keep their exit status: when the wrapper cannot write the exit file (a full disk), the status
        its parent reaps is still the job's."""
        for pid, child in list(self._children.items()):
            if child.poll() is not None:
                self._exit_codes[pid] = child.returncode
                self._children.pop(pid, None)

    def _running(self, pid: int, starttime: int | None, reap: bool) -> bool:
        """Whether the process still runs (``_alive``); without ``reap``, from /proc only."""
        if reap:
            return self._alive(pid, starttime)
        if not self._procfs:
            return procs.pid_exists(pid)
        proc = procs.read_stat(pid)  # our unreaped child shows as a zombie: dead
        return proc is not None and not proc.dead and (starttime is None or proc.starttime == starttime)

    def _alive(self, pid: int, starttime: int | None) -> bool:
        """Whether this process still runs: not gone, not a zombie, not a reused pid."""
        child = self._children.get(pid)
        if child is not None and child.poll() is not None:
            self._exit_codes[pid] = child.returncode
            self._children.pop(pid, None)
            return False
        if not self._procfs:
            return procs.pid_exists(pid)
        proc = procs.read_stat(pid)
        return proc is not None and not proc.dead and (starttime is None or proc.starttime == starttime)

    def _wrapper(self, pid: int, starttime: int | None, files: AttemptFiles) -> procs.ProcInfo | None:
        """The attempt's live wrapper: same starttime if known, else its argv names its pid file."""
        if not self._alive(pid, starttime):
            return None
        if not self._procfs:
            return procs.ProcInfo(pid, 0, pid, None, "S", None)
        proc = procs.read_stat(pid)
        if proc is not None and starttime is None:
            named = os.fsencode(str(files.pid)) in (procs.cmdline(pid) or [])
            return proc if named else None
        return proc

    def _stat(self, pid: int) -> procs.ProcInfo | None:
        return procs.read_stat(pid) if self._procfs else None


def kill_grace() -> float:
    """``METTA_EXP_KILL_GRACE_S``: seconds between SIGTERM and SIGKILL (default 10); a UsageError when it
    is not a number of seconds."""
    text = os.environ.get(GRACE_ENV, "").strip()
    if not text:
        return DEFAULT_GRACE_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise UsageError(f"{GRACE_ENV}={text!r} is not a number of seconds: expected e.g. 10 or 60")
    return value


def _ended(files: AttemptFiles, handle: str | None = None) -> Observation | None:
    """The outcome written in the exit file, or None while there is none."""
    code = _read_int(files.exit)
    return None if code is None else _outcome(code, handle)


def _outcome(code: int, handle: str | None = None) -> Observation:
    if code == 0:
        return Observation(JobStatus.SUCCEEDED, exit_code=0, handle=handle)
    return Observation(JobStatus.FAILED, exit_code=code, reason=describe_exit(code), handle=handle)


def describe_exit(code: int) -> str:
    """``"exit code 3"``, or ``"killed by SIGKILL (exit code 137)"`` for the 128+N codes of signals."""
    if code > 128:
        try:
            return f"killed by {signal.Signals(code - 128).name} (exit code {code})"
        except ValueError:
            pass
    return f"exit code {code}"


def _markers(launch: Launch) -> tuple[str, str]:
    """The ``(METTA_EXP_GROUP, METTA_EXP_RUN_DIR)`` every process of this job carries."""
    env = launch.spec.env
    return env.get("METTA_EXP_GROUP", launch.spec.group), env.get("METTA_EXP_RUN_DIR", launch.spec.run_dir)


def _format_handle(pid: int, starttime: int | None) -> str:
    return f"{pid}:{starttime}" if starttime is not None else str(pid)


def _parse_handle(handle: str) -> tuple[int, int | None]:
    pid, _, starttime = handle.partition(":")
    return int(pid), int(starttime) if starttime else None


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None
