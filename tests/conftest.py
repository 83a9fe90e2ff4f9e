"""Shared fixtures: a real store in a temporary state dir (with spaces and quotes in its path), and a
teardown that leaves no runner or job process behind.

A run leaves the temporary directory and the checkout as it found them. The session gets a temporary
directory of its own (``TMPDIR``, which the xdist workers and every process a test starts inherit), and
each test a directory of its own inside it (``TMPDIR`` again), removed when the test ends together with
whatever the libraries it drove left there (kernel connection files, W&B sockets, IPython profiles). When
the session ends its directory must be empty, and the checkout may hold no new untracked or ignored path;
anything else fails the run, naming what was left.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from metta_exp.backends.skypilot.sim.api import FakeSkyApi

ROOT = Path(__file__).resolve().parent.parent

# No network in tests: W&B stays off unless a test turns it on, SkyPilot never starts its API server.
# The shell's W&B settings and state directory do not leak in: a developer's WANDB_MODE=offline (or
# METTA_EXP_STATE_DIR) must not change what the tests see, nor the tests write into their store.
for _key in ("WANDB_ENTITY", "WANDB_PROJECT", "WANDB_BASE_URL", "WANDB_DISABLED", "METTA_EXP_STATE_DIR"):
    os.environ.pop(_key, None)
os.environ["WANDB_MODE"] = "disabled"
os.environ["SKYPILOT_DISABLE_LOCAL_API_SERVER"] = "1"
os.environ["SKYPILOT_DISABLE_USAGE_COLLECTION"] = "1"
os.environ.pop("METTA_EXP_LOCAL_GPUS", None)

# Tests press Ctrl+C on real launches (SIGINT to a process group). A run started in the background of a
# shell without job control (``uv run pytest &``, a CI step's subshell) ignores SIGINT, and every process
# it starts would inherit that and never see the key: each of this run's processes answers it as a
# terminal's foreground would (a handler, which exec resets to the default in the processes it starts).
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

#: the session's own temporary directory, for the workers and nested runs to find
SESSION_TMP_ENV = "METTA_EXP_TESTS_TMP"


def _controller(config: pytest.Config) -> bool:
    """The process that runs the session (not an xdist worker, not a pytest nested in a test)."""
    return not hasattr(config, "workerinput") and not os.environ.get(SESSION_TMP_ENV)


def _checkout_leftovers() -> set[str] | None:
    """The checkout's untracked and ignored paths (bytecode caches aside: the interpreter's business);
    None outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--ignored"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    paths = {line[3:] for line in out.stdout.splitlines() if line[:2] in ("??", "!!")}
    return {p for p in paths if "__pycache__" not in p}


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    if not _controller(config):
        return
    config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]  # pytest's own stays where it was
    session_tmp = tempfile.mkdtemp(prefix="metta-exp-tests-")
    config.stash[_SESSION_TMP] = Path(session_tmp)
    config.stash[_CHECKOUT] = _checkout_leftovers()
    config.stash[_BYTECODE] = _share_bytecode()
    os.environ[SESSION_TMP_ENV] = os.environ["TMPDIR"] = session_tmp
    tempfile.tempdir = None  # asked again: the new TMPDIR


def _share_bytecode() -> Path:
    """One bytecode cache for the whole run, outside the checkout: every process the run starts (the
    workers, runners, jobs, CLI commands, notebook kernels) compiles a module once and reads it from there
    afterwards, as on a user's machine.

    These machines set ``PYTHONDONTWRITEBYTECODE=1`` and ``uv sync`` installs no bytecode, so otherwise
    every process compiles each module it imports from source, every time: ``import pandas`` costs 1.4 CPU
    seconds that way and 0.4 from bytecode, ``import sky`` 4.2 and 1.9. The run starts some hundreds of such processes
    (a kernel per notebook, a runner per group). What compiling from source costs is measured where it
    belongs, in ``bench/`` (each start-up figure, fresh and cached)."""
    cache = Path(tempfile.mkdtemp(prefix="metta-exp-tests-bytecode-"))
    os.environ["PYTHONPYCACHEPREFIX"] = str(cache)  # inherited by the workers and all they start
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    sys.pycache_prefix, sys.dont_write_bytecode = str(cache), False  # and this process
    return cache


_SESSION_TMP = pytest.StashKey[Path]()
_CHECKOUT = pytest.StashKey["set[str] | None"]()
_BYTECODE = pytest.StashKey[Path]()


@pytest.hookimpl(optionalhook=True)  # xdist's hook
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: three workers per CPU this process may use. A test spends much of its time waiting for
    what it started (an interpreter's start-up, a runner's half-second tick, a simulated cloud's queue, a
    kernel, a job's exit). On 2 CPUs the suite (about 590 CPU-seconds, bytecode shared) took 491 s with a
    worker per CPU, 374-385 s with two per CPU (the CPUs still idle a fifth of the time) and 332-352 s
    with three (busy all but the last seconds)."""
    return 3 * len(os.sched_getaffinity(0))


#: test files whose tests share an expensive module-scoped fixture (a wheel built and installed in a venv;
#: the real sky package's answers for every task): each runs on one worker, so it is set up once
ONE_WORKER_FILES = frozenset({"tests/test_wheel.py", "tests/test_skypilot_task.py"})


@pytest.hookimpl(optionalhook=True)  # xdist's hook
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """xdist's ``load`` scheduling (one test at a time to whichever worker is free, in collection order),
    except that the tests of ``ONE_WORKER_FILES`` go to one worker together. (xdist's own ``loadgroup``
    cannot do it under pytest 9: it marks a group by rewriting ``item._nodeid``, which pytest 9 no longer
    reads.)"""
    if config.getvalue("dist") != "load":
        return None  # another --dist asked for: xdist's own
    from xdist.scheduler import LoadScopeScheduling

    class FilesTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return path if path in ONE_WORKER_FILES else nodeid

    return FilesTogether(config, log)  # type: ignore[arg-type]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The slow tests first: xdist hands tests out in this order, and a long test started last would hold
    the run up alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: files keep their order


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> Iterator[None]:
    """After the workers ended: fail the run if it left anything in its temporary directory or checkout."""
    result = yield
    config = session.config
    session_tmp = config.stash.get(_SESSION_TMP, None)
    if session_tmp is None:
        return result
    left = sorted(p.name for p in session_tmp.iterdir()) if session_tmp.is_dir() else []
    _remove(session_tmp)
    _remove(config.stash[_BYTECODE])
    before, after = config.stash.get(_CHECKOUT, None), _checkout_leftovers()
    new_in_checkout = sorted(after - before) if before is not None and after is not None else []
    if left or new_in_checkout:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        lines = []
        if left:
            lines.append(f"left in the temporary directory ({len(left)}): {', '.join(left[:20])}")
        if new_in_checkout:
            lines.append(f"written into the checkout {ROOT}: {', '.join(new_in_checkout[:20])}")
        if reporter is not None:
            reporter.write_sep("=", "the run left files behind", red=True, bold=True)
            for line in lines:
                reporter.write_line(line, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    return result


def _remove(path: Path) -> None:
    """Remove ``path`` and everything under it, read-only directories included (a fault test makes some)."""
    for root, dirs, _files in os.walk(path):
        for name in dirs:
            with contextlib.suppress(OSError):
                d = Path(root) / name
                if not d.is_symlink():
                    d.chmod(d.stat().st_mode | stat.S_IRWXU)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True)
def own_temp_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """This test's temporary files, its subprocesses' and the libraries' it drives, in a directory of its
    own, removed when the test ends."""
    path = Path(tempfile.mkdtemp(prefix="t", dir=os.environ.get(SESSION_TMP_ENV)))
    monkeypatch.setenv("TMPDIR", str(path))
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    try:
        yield path
    finally:
        _remove(path)


def kill_everything(state_dir: Path) -> None:
    """End every runner and active job recorded in ``state_dir``'s store."""
    from metta_exp.backends.local import LocalBackend
    from metta_exp.status import ACTIVE
    from metta_exp.store import DB_NAME, JobStore
    from metta_exp.supervise.drive import launch_of

    if not (state_dir / DB_NAME).exists():
        return
    with JobStore.open(state_dir) as store:
        for summary in store.list_groups():
            group = store.group(summary.name)
            if group.runner_pid and _of_state_dir(group.runner_pid, state_dir):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(group.runner_pid, signal.SIGKILL)
            if group.backend != "local":
                continue
            active = [launch_of(group, j) for j in store.jobs(group.name) if j.status in ACTIVE]
            if active:
                LocalBackend(grace_s=1.0).cancel(active)
        # runs whose pid files exist but never reached the store
        for pidfile in (state_dir / "runs").glob("*/*/attempt-*.pid"):
            with contextlib.suppress(ValueError, OSError, ProcessLookupError, PermissionError):
                pid = int(pidfile.read_text().split()[0])
                if _of_state_dir(pid, state_dir):
                    os.killpg(pid, signal.SIGKILL)


def _of_state_dir(pid: int, state_dir: Path) -> bool:
    """Whether process ``pid`` is one of ``state_dir``'s: a runner or job writing its log there, or one
    whose environment names it. A pid from the store or a pid file may be stale: the suite starts
    thousands of processes (pids wrapped in one CI run), and runners and jobs lead process groups of
    their own, so a reused pid can be another test's live runner, which its teardown must not kill."""
    root = os.fsencode(state_dir.absolute()) + b"/"
    for fd in (1, 2):
        with contextlib.suppress(OSError):
            if os.fsencode(os.readlink(f"/proc/{pid}/fd/{fd}")).startswith(root):
                return True
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"METTA_EXP_STATE_DIR=" + root[:-1] in environ or any(
        item.startswith(b"METTA_EXP_RUN_DIR=" + root) for item in environ
    )


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A real, empty state dir whose path has spaces and quotes; the cwd is its parent."""
    work = tmp_path / "work dir 'quoted' \"double\""
    work.mkdir()
    state = work / "job state"
    monkeypatch.setenv("METTA_EXP_STATE_DIR", str(state))
    monkeypatch.chdir(work)
    try:
        yield state
    finally:
        kill_everything(state)


def run_cli(
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 180,
    stdin: str | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m metta_exp ARGS`` like a user would (stdout is a pipe, not a terminal);
    ``preexec_fn`` runs in the child before it starts (a fault test's privileges or limits)."""
    return subprocess.run(
        [sys.executable, "-m", "metta_exp", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
        preexec_fn=preexec_fn,
    )


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.05, what: str = "condition"):  # noqa: ANN001
    """``predicate()``'s first truthy value, asked every ``interval`` s for up to ``timeout`` s (on the
    monotonic clock: a wall-clock step cannot cut a wait short or stretch it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def wait_group_end(state_dir: Path, group: str, timeout: float = 120.0):  # noqa: ANN201
    from metta_exp.store import JobStore

    with JobStore.open(state_dir) as store:
        wait_for(lambda: store.group(group).ended_at, timeout=timeout, what=f"group {group} to end")
        return store.jobs(group)


PY = sys.executable


@pytest.fixture
def sky_account(tmp_path: Path) -> Iterator[FakeSkyApi]:
    """A simulated SkyPilot account in the test's directory, as harsh as SkyPilot (the simulator's
    defaults: queueing, late logs, bare machines); every process of its machines is killed at the end."""
    from metta_exp.backends.skypilot.sim.api import FakeSkyApi

    api = FakeSkyApi(tmp_path / "sky account")
    try:
        yield api
    finally:
        api.kill_all()
