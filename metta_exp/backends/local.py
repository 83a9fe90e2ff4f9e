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
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from metta_exp.backends import procs
from metta_exp.backends.base import Backend, Launch, Observation
from metta_exp.errors import BackendError, BackendUnavailable, UsageError
from metta_exp.resolve import JobSpec, attempt_run_id
from metta_exp.status import JobStatus

__all__ = ["AttemptFiles", "LocalBackend", "describe_exit", "parse_gpu_list"]

log = logging.getLogger(__name__)

GPUS_ENV = "METTA_EXP_LOCAL_GPUS"
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
_POLL_S = 0.05
_KILL_WAIT_S = 5.0


@dataclass(frozen=True)
class AttemptFiles:
    """The files of one attempt: ``attempt-2.log`` goes with ``attempt-2.pid`` and ``attempt-2.exit``."""

    log: Path
    pid: Path
    exit: Path

    @classmethod
    def of(cls, log_path: Path | str) -> AttemptFiles:
        log_file = Path(os.path.abspath(log_path))
        stem = log_file.name[:-4] if log_file.name.endswith(".log") else log_file.name
        return cls(log_file, log_file.with_name(stem + ".pid"), log_file.with_name(stem + ".exit"))


@dataclass(frozen=True)
class _Root:
    """The wrapper of an attempt to cancel; ``alive`` is False once it is gone (its group may live on)."""

    pid: int
    starttime: int | None
    alive: bool


class LocalBackend(Backend):
    """Runs jobs as detached processes here; ``grace_s`` is the SIGTERM to SIGKILL grace of ``cancel``."""

    name = "local"
    # A pid file appears within milliseconds of submit, so an attempt without one after a few seconds
    # was never started (its runner died between claiming and submitting it).
    unseen_grace = 3.0

    def __init__(self, grace_s: float = 10.0, python: str = sys.executable) -> None:
        self.grace_s = grace_s
        self.python = python
        self._procfs = procs.HAS_PROCFS
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._devices: list[int] | None = None

    # -- resources ---------------------------------------------------------------------------------

    def devices(self) -> list[int]:
        """``METTA_EXP_LOCAL_GPUS`` if set, else the GPUs nvidia-smi lists, else none (cached)."""
        if self._devices is None:
            declared = os.environ.get(GPUS_ENV)
            self._devices = parse_gpu_list(declared) if declared is not None else _detect_gpus()
        return list(self._devices)

    def check(self, specs: Sequence[JobSpec]) -> None:
        """Refuse, before anything starts, a job that asks for more GPUs than this machine has."""
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
        """Start every launch now, without waiting for any of them; raise only if none could start.

        The wrappers wait at a start gate (their stdin, a pipe) until the whole batch is submitted: a
        hundred jobs starting up while the rest are still being spawned would otherwise take the CPUs
        from the submission. If this process dies mid-batch, the pipe closes and the gate opens anyway.
        """
        base_env = dict(os.environ)
        handles: dict[str, str] = {}
        failures: list[str] = []
        gate, opener = os.pipe()
        try:
            for launch in launches:
                try:
                    handles[launch.name] = self._start(launch, base_env, gate)
                except OSError as exc:
                    log.warning("could not start %s: %s", launch.name, exc)
                    failures.append(f"{launch.name}: {exc}")
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
        return _ended(files) or Observation(JobStatus.FAILED, reason=VANISHED)  # it may just have ended

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
        return _ended(files, handle) or Observation(JobStatus.FAILED, reason=VANISHED, handle=handle)

    # -- cancel --------------------------------------------------------------------------------------

    def cancel(self, launches: Sequence[Launch]) -> None:
        """SIGTERM every process of every launch at once, wait ``grace_s``, SIGKILL what is left."""
        roots = [root for root in map(self._root, launches) if root is not None]
        if not roots:
            return
        targets = self._tree(roots)
        self._signal(roots, targets, signal.SIGTERM)
        alive = self._wait_gone(targets, self.grace_s)
        if alive:
            targets = {**alive, **self._tree(roots)}  # include anything forked during the grace
            self._signal(roots, targets, signal.SIGKILL)
            self._wait_gone(targets, _KILL_WAIT_S)

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

    def _tree(self, roots: Sequence[_Root]) -> dict[int, int | None]:
        """Every live process of these attempts: wrappers, their sessions and groups, descendants."""
        table = procs.process_table(self._procfs)
        found = procs.tree(table, [root.pid for root in roots], [root.pid for root in roots if root.alive])
        found.pop(os.getpid(), None)
        return found

    def _signal(self, roots: Sequence[_Root], targets: Mapping[int, int | None], sig: int) -> None:
        for root in roots:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(root.pid, sig)
        for pid, starttime in targets.items():
            if self._alive(pid, starttime):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)

    def _wait_gone(self, targets: Mapping[int, int | None], timeout: float) -> dict[int, int | None]:
        """Wait until these processes are gone (or ``timeout``); return those still alive."""
        deadline = time.monotonic() + timeout
        while True:
            self._reap()
            alive = {pid: start for pid, start in targets.items() if self._alive(pid, start)}
            if not alive or time.monotonic() >= deadline:
                return alive
            time.sleep(_POLL_S)

    # -- processes -----------------------------------------------------------------------------------

    def _reap(self) -> None:
        """Collect our own children that ended, so they do not linger as zombies that look alive."""
        for pid, child in list(self._children.items()):
            if child.poll() is not None:
                del self._children[pid]

    def _alive(self, pid: int, starttime: int | None) -> bool:
        """Whether this process still runs: not gone, not a zombie, not a reused pid."""
        child = self._children.get(pid)
        if child is not None and child.poll() is not None:
            del self._children[pid]
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


def parse_gpu_list(value: str) -> list[int]:
    """``"0,1,2,3"`` -> ``[0, 1, 2, 3]``; ``""`` or ``"none"`` -> ``[]``; anything else is a UsageError."""
    text = value.strip()
    if text.lower() in ("", "none"):
        return []
    parts = [part.strip() for part in text.split(",")]
    if not all(part.isdigit() for part in parts) or len(set(map(int, parts))) != len(parts):
        raise UsageError(
            f"{GPUS_ENV}={value!r} is not a list of GPU ids: expected distinct comma-separated "
            "integers like '0,1,2,3', or 'none' for no GPUs"
        )
    return [int(part) for part in parts]


def _detect_gpus() -> list[int]:
    """The GPU indices nvidia-smi reports; [] without nvidia-smi or when it fails in any way."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=5, check=True,
        )  # fmt: skip
        return [int(line) for line in out.stdout.split()]
    except (OSError, subprocess.SubprocessError, ValueError):
        return []


def _ended(files: AttemptFiles, handle: str | None = None) -> Observation | None:
    """The outcome written in the exit file, or None while there is none."""
    code = _read_int(files.exit)
    if code is None:
        return None
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
