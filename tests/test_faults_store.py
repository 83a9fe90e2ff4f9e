"""Fault injection, the store: a store that cannot be written is still read; a damaged store is never
modified and every command says so in one line; readers never create or migrate a store.

"Cannot write" comes two ways for each fault. As only root can make it: a read-only bind mount, an
immutable file (``chattr +i``), which hold for root too (skipped, saying so, without root). As any user
meets it: a read-only directory, a store file without write permission, with the commands run
``unprivileged`` (without the capabilities that let root ignore permission bits, so it holds for root too;
each such fixture checks that the fault is real before the test relies on it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import run_cli, wait_for
from faultjob import assert_cannot_write, unprivileged

from metta_exp.config import Experiment
from metta_exp.records import GroupConfig, JobSpec
from metta_exp.store import DB_NAME, JobStore


def make_group(state_dir: Path, name: str = "g1", jobs: int = 3) -> Path:
    """A real store holding one group of ``jobs`` pending jobs; returns the store file."""
    runs = [f"run{i}" for i in range(jobs)]
    specs = [
        JobSpec(name, run, ("x" * 400,), {}, 0, str(state_dir / "runs" / name / run), "id", module="m")
        for run in runs
    ]
    with JobStore.open(state_dir) as store:
        store.create_group(name, "demo", "local", GroupConfig(Experiment(module="m", runs=runs)), specs)
    return state_dir / DB_NAME


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_error(result: subprocess.CompletedProcess[str], *words: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def _sh(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False)


ROOT_ONLY = "needs root"


def needs_root(what: str, variant: str) -> None:
    if os.geteuid() != 0:
        pytest.skip(f"{ROOT_ONLY} ({what}); the '{variant}' variant covers this fault without privileges")


@dataclass
class Unwritable:
    """A store the commands cannot write: ``state`` is its directory as they see it, ``source`` the file
    itself, ``preexec`` what they start with; ``lifted()`` lets this test write it for a moment."""

    state: Path
    source: Path
    preexec: Callable[[], None] | None
    lifted: Callable[[], contextlib.AbstractContextManager[None]]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, env={"METTA_EXP_STATE_DIR": str(self.state)}, preexec_fn=self.preexec)


@contextlib.contextmanager
def _chmod_lifted(path: Path, mode: int) -> Iterator[None]:
    path.chmod(0o644)
    try:
        yield
    finally:
        path.chmod(mode)


@pytest.fixture(params=["read-only mount", "read-only directory"])
def unwritable_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Unwritable]:
    """A store in a directory the commands cannot write (so neither can its file, nor a WAL beside it)."""
    source = tmp_path / "src"
    store_file = make_group(source / "job_state")
    if request.param == "read-only directory":
        store_file.chmod(0o444)
        store_file.parent.chmod(0o555)
        try:
            assert_cannot_write(store_file)
            yield Unwritable(
                store_file.parent, store_file, unprivileged(), lambda: _chmod_lifted(store_file, 0o444)
            )
        finally:
            store_file.parent.chmod(0o755)
            store_file.chmod(0o644)
        return
    needs_root("a read-only bind mount", "read-only directory")
    view = tmp_path / "ro view"
    view.mkdir()
    made = _sh("mount", "--bind", str(source), str(view))
    if made.returncode != 0:
        pytest.skip(f"cannot bind-mount here ({made.stderr.strip()}); the 'read-only directory' variant runs")
    try:
        ro = _sh("mount", "-o", "remount,bind,ro", str(view))
        if ro.returncode != 0:
            pytest.skip(
                f"cannot remount read-only ({ro.stderr.strip()}); the 'read-only directory' variant runs"
            )
        yield Unwritable(view / "job_state", store_file, None, contextlib.nullcontext)
    finally:
        _sh("umount", "-l", str(view))


def test_readers_work_on_a_read_only_mount(unwritable_dir: Unwritable) -> None:
    store = unwritable_dir
    before = digest(store.source)
    listed = store.cli("job", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [row["group"] for row in json.loads(listed.stdout)] == ["g1"]
    shown = store.cli("job", "show", "g1")
    assert shown.returncode == 0, shown.stderr
    assert "run2" in shown.stdout
    assert store.cli("job", "list").returncode == 0
    # a writer says in one line which file it cannot write and why
    one_error(store.cli("job", "kill", "g1", "--force"), str(store.state / DB_NAME), "cannot write")
    one_error(
        store.cli("+experiment=demo", "group=g2", "wait=false"), str(store.state / DB_NAME), "cannot write"
    )
    assert digest(store.source) == before
    # what the launch that made the store wrote (its ignore file beside it), and nothing since
    assert sorted(p.name for p in store.source.parent.iterdir()) == [".gitignore", DB_NAME]


@contextlib.contextmanager
def _chattr_lifted(path: Path) -> Iterator[None]:
    _sh("chattr", "-i", str(path))
    try:
        yield
    finally:
        _sh("chattr", "+i", str(path))


@pytest.fixture(params=["immutable file", "file without write permission"])
def immutable_store(request: pytest.FixtureRequest, state_dir: Path) -> Iterator[Unwritable]:
    """A store file the commands cannot write, in a directory they can."""
    store_file = make_group(state_dir)
    if request.param == "file without write permission":
        store_file.chmod(0o444)
        try:
            assert_cannot_write(store_file)
            yield Unwritable(state_dir, store_file, unprivileged(), lambda: _chmod_lifted(store_file, 0o444))
        finally:
            store_file.chmod(0o644)
        return
    needs_root("chattr +i: CAP_LINUX_IMMUTABLE", "file without write permission")
    made = _sh("chattr", "+i", str(store_file))
    if made.returncode != 0:
        pytest.skip(
            f"cannot make a file immutable here ({made.stderr.strip()}); "
            "the 'file without write permission' variant runs"
        )
    try:
        yield Unwritable(state_dir, store_file, None, lambda: _chattr_lifted(store_file))
    finally:
        _sh("chattr", "-i", str(store_file))


def test_readers_work_on_a_store_they_cannot_write(immutable_store: Unwritable) -> None:
    store = immutable_store
    before = digest(store.source)
    listed = store.cli("job", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)[0]["pending"] == 3
    shown = store.cli("job", "show", "g1", "--json")
    assert shown.returncode == 0, shown.stderr
    assert [row["run"] for row in json.loads(shown.stdout)] == ["run0", "run1", "run2"]
    one_error(store.cli("job", "kill", "g1", "--force"), str(store.source), "cannot write")
    assert digest(store.source) == before


def test_a_reader_never_migrates_or_creates_a_store(state_dir: Path) -> None:
    state_dir.mkdir()
    empty = state_dir / DB_NAME
    empty.touch()
    listed = run_cli("job", "list")
    assert listed.returncode == 0, listed.stderr
    assert "No groups yet" in listed.stdout
    assert run_cli("job", "list", "--json").stdout.strip() == "[]"
    one_error(run_cli("job", "show", "g1"), "no group 'g1'")
    assert empty.stat().st_size == 0
    assert sorted(p.name for p in state_dir.iterdir()) == [DB_NAME]


def _garbage(path: Path) -> None:
    path.write_bytes(os.urandom(4096))


def _text(path: Path) -> None:
    path.write_text("groups:\n  - g1\n" * 40)


def _truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("damage", [_garbage, _text, _truncated], ids=["garbage", "text", "truncated"])
def test_a_damaged_store_is_one_error_for_every_command(state_dir: Path, damage) -> None:  # noqa: ANN001
    store_file = make_group(state_dir, jobs=200)  # pages enough that half of them is a valid header
    damage(store_file)
    before = digest(store_file)
    commands = [
        ("job", "list"),
        ("job", "list", "--json"),
        ("job", "show", "g1"),
        ("job", "logs", "g1", "run0"),
        ("job", "kill", "g1", "--force"),
        ("job", "retry", "g1", "--no-wait"),
        ("+experiment=demo", "group=g2", "wait=false"),
    ]
    try:
        for argv in commands:
            line = one_error(run_cli(*argv), str(store_file), "damaged", ".recover", "mv ")
            assert "Traceback" not in line
        assert digest(store_file) == before
        # no WAL, no journal, no runs: the store and the ignore file written when it was made
        assert sorted(p.name for p in state_dir.iterdir()) == [".gitignore", DB_NAME]
    finally:
        store_file.rename(store_file.with_name("moved-aside.sqlite"))  # as the error says to


def test_monitor_watches_a_store_it_cannot_write(immutable_store: Unwritable) -> None:
    """Its group has no runner; the monitor cannot start one there (its healer's writer is refused), so it
    watches on: it shows what happens to the group after that attempt, and Ctrl+C ends it as usual."""
    store = immutable_store
    watcher = subprocess.Popen(
        [sys.executable, "-m", "metta_exp", "job", "monitor", "g1", "--refresh", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=store.preexec,
    )
    try:
        assert watcher.stdout is not None
        assert watcher.stdout.readline().startswith("Watching g1: 3 jobs, 3 pending")
        wait_for(
            lambda: store_connections(watcher.pid) >= 2, what="the healer's try with a writer of its own"
        )
        with store.lifted(), JobStore.open(store.state) as writer:  # someone who can write it
            writer.add_event("g1", "notebook", "elsewhere.ipynb")
        assert watcher.stdout.readline().endswith(" notebook written (elsewhere.ipynb)\n")
        watcher.send_signal(signal.SIGINT)
        out, err = watcher.communicate(timeout=30)
    finally:
        if watcher.poll() is None:
            watcher.kill()
    assert watcher.returncode == 130, err
    assert err == ""
    assert "Stopped watching" in out


def store_connections(pid: int) -> int:
    """How many times ``pid`` has the store file open (a connection each)."""
    try:
        return sum(
            os.readlink(f"/proc/{pid}/fd/{fd}").endswith("/" + DB_NAME)
            for fd in os.listdir(f"/proc/{pid}/fd")
        )
    except OSError:
        return 0
