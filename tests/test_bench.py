"""Every script in ``bench/`` runs, in its quick mode (``--quick``: tiny sizes, each measurement once, its
pictures into a temporary file), as a smoke test: it must run to its end, print its figures and leave no
process and no file behind. The figures are not checked: they are a benchmark's to print, and on a test
machine they say nothing (a benchmark is run by hand, on a quiet machine, without ``--quick``)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import PY, ROOT, wait_for

pytestmark = pytest.mark.slow

SCRIPTS = sorted(p.name for p in (ROOT / "bench").glob("*.py"))


def test_every_benchmark_has_a_quick_mode() -> None:
    assert len(SCRIPTS) >= 13
    for script in SCRIPTS:
        assert '"--quick"' in (ROOT / "bench" / script).read_text(), f"bench/{script} has no --quick"


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_runs_in_its_quick_mode(script: str, tmp_path: Path, own_temp_dir: Path) -> None:
    docs = _tracked_changes("docs")
    result = subprocess.run(
        [PY, str(ROOT / "bench" / script), "--quick"],
        cwd=tmp_path,
        env={**os.environ, "METTA_EXP_STATE_DIR": str(tmp_path / "job_state")},
        capture_output=True,
        text=True,
        timeout=600,
    )
    # a detached runner may still be on its way out when the command that watched its group returns
    # (a loaded machine: a second or more): what the benchmark started must end by itself, soon
    left: list[str] = []
    try:
        wait_for(lambda: not _processes_of(own_temp_dir), timeout=60, what="the benchmark's processes to end")
    except AssertionError:
        left = [_described(pid) for pid in _processes_of(own_temp_dir)]
        for pid in _processes_of(own_temp_dir):
            _kill(pid)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert result.stdout.strip(), "a benchmark prints its figures"
    assert left == [], f"processes left running: {left}"
    assert _tracked_changes("docs") == docs, "--quick writes its pictures elsewhere than docs/"


def _tracked_changes(path: str) -> str:
    return subprocess.run(
        ["git", "status", "--porcelain", "--", path], cwd=ROOT, capture_output=True, text=True
    ).stdout


def _processes_of(temp_dir: Path) -> list[int]:
    """Processes (not this one) started with ``TMPDIR`` set to ``temp_dir``: everything the script
    started inherited it."""
    marker = f"TMPDIR={temp_dir}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{name}/environ").read_bytes()
        except OSError:
            continue
        if marker in environ.split(b"\0"):
            found.append(int(name))
    return found


def _described(pid: int) -> str:
    """``pid`` and its command line, for a message."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return f"{pid} (gone)"
    return f"{pid}: {b' '.join(argv).decode(errors='replace')[:200]}"


def _kill(pid: int) -> None:
    import contextlib
    import signal

    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
