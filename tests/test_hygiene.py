"""The suite's own hygiene check: a run that leaves anything in its temporary directory or writes into
the checkout fails, naming what it left; a test's own temporary directory is removed when it ends."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from conftest import ONE_WORKER_FILES, ROOT, SESSION_TMP_ENV

LEAKY = """
import os, pathlib, tempfile
from conftest import ROOT

def test_leaves_a_file_in_its_own_temp_dir():
    pathlib.Path(tempfile.mkstemp(suffix=".json")[1]).write_text("{}")  # a kernel file, say: removed with it

def test_leaves_a_file_in_the_session_temp_dir():
    pathlib.Path(os.environ["METTA_EXP_TESTS_TMP"], "leftover.sock").write_text("")

def test_writes_into_the_checkout():
    (ROOT / "notebook.ipynb").write_text("{}")
"""


def test_a_run_that_leaves_files_behind_fails_and_names_them(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    (checkout / "tests").mkdir(parents=True)
    shutil.copy(ROOT / "tests" / "conftest.py", checkout / "tests" / "conftest.py")
    (checkout / "tests" / "test_leaky.py").write_text(LEAKY)
    (checkout / ".gitignore").write_text("*.sock\n")
    subprocess.run(["git", "init", "-q", str(checkout)], check=True)
    env = {k: v for k, v in os.environ.items() if k != SESSION_TMP_ENV}
    env["TMPDIR"] = str(tmp_path / "temp")
    (tmp_path / "temp").mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider", "tests"],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "3 passed" in result.stdout
    assert "the run left files behind" in result.stdout
    assert "left in the temporary directory (1): leftover.sock\n" in result.stdout
    assert f"written into the checkout {checkout}: notebook.ipynb\n" in result.stdout
    # the session's directory is gone all the same; pytest's own directory is pytest's business
    assert [p.name for p in (tmp_path / "temp").iterdir()] == [f"pytest-of-{_user()}"]


def test_a_tests_temporary_files_are_its_own(own_temp_dir: Path) -> None:
    assert tempfile.gettempdir() == str(own_temp_dir) == os.environ["TMPDIR"]
    assert own_temp_dir.parent == Path(os.environ[SESSION_TMP_ENV])
    out = subprocess.run(
        [sys.executable, "-c", "import tempfile; print(tempfile.gettempdir())"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == str(own_temp_dir)


def _user() -> str:
    import getpass

    return getpass.getuser()


def test_the_files_kept_on_one_worker_still_share_a_module_scoped_fixture() -> None:
    """``ONE_WORKER_FILES`` names files whose tests share an expensive module-scoped fixture; a file that no
    longer has one would only hold its tests on one worker for nothing."""
    import ast

    for path in sorted(ONE_WORKER_FILES):
        tree = ast.parse((ROOT / path).read_text())
        scopes = [
            kw.value.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "pytest.fixture"
            for kw in node.keywords
            if kw.arg == "scope" and isinstance(kw.value, ast.Constant)
        ]
        assert "module" in scopes, f"{path} has no module-scoped fixture: take it out of ONE_WORKER_FILES"


def test_a_tests_teardown_kills_only_its_own_processes(tmp_path: Path) -> None:
    """A test's teardown kills the runner and jobs its store recorded, by process group. Their pids are
    reused: a suite starts thousands of processes (pids wrapped in one CI run), and runners and jobs lead
    sessions of their own, so a stale pid can be another test's live runner. Such a process survives."""
    import signal

    from conftest import kill_everything

    from metta_exp.config import Experiment
    from metta_exp.records import GroupConfig
    from metta_exp.store import JobStore

    state = tmp_path / "state"
    other = subprocess.Popen(["sleep", "60"], start_new_session=True)  # another test's runner, say
    try:
        with JobStore.open(state) as store:
            store.create_group("g", "demo", "local", GroupConfig(Experiment(module="m", runs=["a"])), [])
            assert store.acquire_lease("g", "elsewhere:1:x", 30.0, other.pid)  # the stale pid, now reused
        stale = state / "runs" / "g" / "a" / "attempt-1.pid"  # a job's pid file, its pid reused as well
        stale.parent.mkdir(parents=True)
        stale.write_text(f"{other.pid} 0\n")
        kill_everything(state)
        assert other.poll() is None, "a process that is not the test's own was killed"
    finally:
        other.send_signal(signal.SIGKILL)
        other.wait()
