"""Shared fixtures: a real store in a temporary state dir (with spaces and quotes in its path), and a
teardown that leaves no runner or job process behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

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


def kill_everything(state_dir: Path) -> None:
    """End every runner and active job recorded in ``state_dir``'s store."""
    from metta_exp.backends.local import LocalBackend
    from metta_exp.status import ACTIVE
    from metta_exp.store import DB_NAME, JobStore
    from metta_exp.supervise import launch_of

    if not (state_dir / DB_NAME).exists():
        return
    with JobStore.open(state_dir) as store:
        for summary in store.list_groups():
            group = store.group(summary.name)
            if group.runner_pid:
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
                os.killpg(int(pidfile.read_text().split()[0]), signal.SIGKILL)


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
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m metta_exp ARGS`` like a user would (stdout is a pipe, not a terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "metta_exp", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
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
