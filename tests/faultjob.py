"""Helpers of the fault-injection suites: a job that misbehaves on request, and process checks.

The job (run as ``python -c JOB key=value ...``): ``daemon=1`` double-forks a helper into a session of
its own (its pid in ``daemon.pid``); ``child=1`` forks a child that stays in the job's session, ignores
SIGTERM and outlives the job (its pid in ``child.pid``); ``ignore_term=1`` ignores SIGTERM; ``gate=1``
waits for a ``go`` file in its run dir; ``sleep=S`` sleeps first; ``exit=N`` is its exit code. It
prints nothing after it starts, so a full disk cannot change how it ends.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import PY

from metta_exp.backends.procs import pid_alive as alive  # noqa: F401  (the fault tests import it from here)
from metta_exp.config import Experiment
from metta_exp.store import JobStore
from metta_exp.submit import launch_experiment

JOB = textwrap.dedent(
    """
    import os, pathlib, signal, sys, time
    opts = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
    rd = pathlib.Path(os.environ["METTA_EXP_RUN_DIR"])
    if opts.get("ignore_term"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if opts.get("daemon") and os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            (rd / "daemon.tmp").write_text(str(os.getpid()))
            (rd / "daemon.tmp").replace(rd / "daemon.pid")
            time.sleep(600)
        os._exit(0)
    if opts.get("child") and os.fork() == 0:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        (rd / "child.tmp").write_text(str(os.getpid()))
        (rd / "child.tmp").replace(rd / "child.pid")
        time.sleep(600)
        os._exit(0)
    for helper in ("daemon", "child"):  # started (its pid written) before the job goes on
        while opts.get(helper) and not (rd / f"{helper}.pid").exists():
            time.sleep(0.01)
    (rd / "started").write_text(str(os.getpid()))
    time.sleep(float(opts.get("sleep", 0)))
    while opts.get("gate") and not (rd / "go").exists():
        time.sleep(0.05)
    os._exit(int(opts.get("exit", 0)))
    """
)


def experiment(runs: list[str], **kw: Any) -> Experiment:
    return Experiment(
        command=[PY, "-c", JOB], runs=runs, remote=False, wait=False, gpus=0, generate_notebook=False, **kw
    )


def launch(state_dir: Path, exp: Experiment, group: str) -> JobStore:
    exp.group = group
    assert launch_experiment(exp, name="faults", state_dir=state_dir, out=io.StringIO()) == 0
    return JobStore.open(state_dir)


def kill_quietly(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


def drain(fd: int, into: bytearray | None = None) -> None:
    """Read a pty's master side until it closes (a live view must never block on a full pty), keeping the
    last 64 KiB read in ``into`` when given (for a failed test to show)."""
    try:
        while chunk := os.read(fd, 65536):
            if into is not None:
                into += chunk
                del into[: max(0, len(into) - 65536)]
    except OSError:
        pass


# --- faults without privileges ------------------------------------------------------------------------------
# Root ignores file permission bits (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER), so a read-only
# file or directory is no fault for it. A child started with ``unprivileged`` loses those capabilities
# (from its bounding set, so from everything it runs): as root or not, it meets permission bits as any
# user does. A fault that needs no privilege at all (``RLIMIT_FSIZE``) applies to root alike.

_PR_CAPBSET_DROP = 24
_PERMISSION_CAPS = (1, 2, 3)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER (linux/capability.h)


def _drop_permission_caps() -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in _PERMISSION_CAPS:
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), f"prctl(PR_CAPBSET_DROP, {cap})")


def unprivileged() -> Callable[[], None] | None:
    """A ``preexec_fn`` for a child that respects file permission bits even when this process is root
    (None when it is not: it already does)."""
    return _drop_permission_caps if os.geteuid() == 0 else None


def assert_cannot_write(path: Path) -> None:
    """The fault is real: an ``unprivileged`` child cannot open ``path`` for writing."""
    import subprocess

    probe = subprocess.run(
        [PY, "-c", f"open({str(path)!r}, 'r+b')"], capture_output=True, text=True, preexec_fn=unprivileged()
    )
    assert probe.returncode == 1 and "PermissionError" in probe.stderr, (
        f"the fault is not real: an unprivileged child can write {path}"
    )


def write_calls(pid: int) -> int:
    """How many write system calls ``pid`` has made, failed ones included (``/proc/<pid>/io``: syscw);
    -1 once it is gone. A process that keeps making them is alive and trying to write."""
    try:
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            if line.startswith("syscw:"):
                return int(line.split()[1])
    except OSError:
        pass
    return -1
