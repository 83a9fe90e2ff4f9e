"""Fault injection, the store: a store that cannot be written is still read; a damaged store is never
modified and every command says so in one line; readers never create or migrate a store.

Root ignores file permissions, so "cannot write" is made real with a read-only bind mount and with an
immutable file (``chattr +i``); each test is skipped, with the reason, where the machine allows neither.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_cli

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


@pytest.fixture
def readonly_mount(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(source, view): ``view`` is ``source`` bind-mounted read-only."""
    source, view = tmp_path / "src", tmp_path / "ro view"
    source.mkdir()
    view.mkdir()
    made = _sh("mount", "--bind", str(source), str(view))
    if made.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {made.stderr.strip()}")
    try:
        ro = _sh("mount", "-o", "remount,bind,ro", str(view))
        if ro.returncode != 0:
            pytest.skip(f"cannot remount read-only here: {ro.stderr.strip()}")
        yield source, view
    finally:
        _sh("umount", "-l", str(view))


def test_readers_work_on_a_read_only_mount(readonly_mount: tuple[Path, Path]) -> None:
    source, view = readonly_mount
    store_file = make_group(source / "job_state")
    before = digest(store_file)
    env = {"METTA_EXP_STATE_DIR": str(view / "job_state")}
    listed = run_cli("job", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert [row["group"] for row in json.loads(listed.stdout)] == ["g1"]
    shown = run_cli("job", "show", "g1", env=env)
    assert shown.returncode == 0, shown.stderr
    assert "run2" in shown.stdout
    assert run_cli("job", "list", env=env).returncode == 0
    # a writer says in one line which file it cannot write and why
    killed = run_cli("job", "kill", "g1", "--force", env=env)
    one_error(killed, str(view / "job_state" / DB_NAME), "cannot write")
    launched = run_cli("+experiment=demo", "group=g2", "wait=false", env=env)
    one_error(launched, str(view / "job_state" / DB_NAME), "cannot write")
    assert digest(store_file) == before
    assert sorted(p.name for p in (source / "job_state").iterdir()) == [DB_NAME]


@pytest.fixture
def immutable_store(state_dir: Path) -> Iterator[Path]:
    store_file = make_group(state_dir)
    made = _sh("chattr", "+i", str(store_file))
    if made.returncode != 0:
        pytest.skip(f"cannot make a file immutable here (chattr +i): {made.stderr.strip()}")
    try:
        yield store_file
    finally:
        _sh("chattr", "-i", str(store_file))


def test_readers_work_on_a_store_they_cannot_write(immutable_store: Path) -> None:
    before = digest(immutable_store)
    listed = run_cli("job", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)[0]["pending"] == 3
    shown = run_cli("job", "show", "g1", "--json")
    assert shown.returncode == 0, shown.stderr
    assert [row["run"] for row in json.loads(shown.stdout)] == ["run0", "run1", "run2"]
    one_error(run_cli("job", "kill", "g1", "--force"), str(immutable_store), "cannot write")
    assert digest(immutable_store) == before


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
        assert sorted(p.name for p in state_dir.iterdir()) == [DB_NAME]  # no WAL, no journal, no runs
    finally:
        store_file.rename(store_file.with_name("moved-aside.sqlite"))  # as the error says to


def test_monitor_watches_a_store_it_cannot_write(immutable_store: Path) -> None:
    """Its group has no runner; the monitor cannot start one there, so it only watches."""
    import signal
    import sys

    watcher = subprocess.Popen(
        [sys.executable, "-m", "metta_exp", "job", "monitor", "g1", "--refresh", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert watcher.stdout is not None
        assert watcher.stdout.readline().startswith("Watching g1: 3 jobs, 3 pending")
        time.sleep(3)  # past the healer's first attempts
        assert watcher.poll() is None, watcher.stderr.read() if watcher.stderr else ""
        watcher.send_signal(signal.SIGINT)
        out, err = watcher.communicate(timeout=30)
    finally:
        if watcher.poll() is None:
            watcher.kill()
    assert watcher.returncode == 130, err
    assert err == ""
    assert "Stopped watching" in out
