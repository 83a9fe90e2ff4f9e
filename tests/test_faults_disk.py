"""Fault injection, a full disk: a small tmpfs mounted for the test (skipped, with the reason, where
the machine does not allow it) holds the state dir; a filler file takes its last free byte.

The jobs end while the disk is full, so their wrappers cannot write exit files and the runner cannot
write its log or the store: the exit status it reaps as the jobs' parent must survive, the runner must
live on and finish the group once space returns. A launch onto the full disk is one line and leaves
nothing behind.
"""

from __future__ import annotations

import errno
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import kill_everything, run_cli, wait_for, wait_group_end
from faultjob import alive, experiment, launch, read_pid

from metta_exp.status import JobStatus


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {made.stderr.strip()}")
    try:
        yield mount
    finally:
        try:
            kill_everything(mount / "job_state")
        finally:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(disk: Path) -> Path:
    """Write a file until the disk has no byte left; return it (delete it to free the space)."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:
        chunk = b"\0" * 65536
        while True:
            try:
                f.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                if len(chunk) == 1:
                    break
                chunk = chunk[: len(chunk) // 2]
    return filler


def test_jobs_that_end_on_a_full_disk_keep_their_exit_status(
    small_disk: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    state_dir = small_disk / "job_state"
    monkeypatch.setenv("METTA_EXP_STATE_DIR", str(state_dir))
    monkeypatch.chdir(tmp_path)
    runs = ["a", "b", "c", "d"]
    store = launch(state_dir, experiment(runs, args=["gate=1"]), "full")
    wait_for(lambda: all(j.status == JobStatus.RUNNING for j in store.jobs("full")), what="4 running jobs")
    jobs = [wait_for(lambda j=j: read_pid(Path(j.run_dir) / "started")) for j in store.jobs("full")]
    runner = store.group("full").runner_pid
    assert runner

    filler = fill(small_disk)
    for job in store.jobs("full"):  # the go files must exist: they take no block, only an inode
        (Path(job.run_dir) / "go").touch()
    wait_for(lambda: not any(alive(pid) for pid in jobs), what="the jobs to end")
    time.sleep(4)  # the runner meets the full disk: no store write, no log line, no exit file
    assert alive(runner), (state_dir / "runs" / "full" / "runner.log").read_text()[-2000:]
    assert not any((Path(j.run_dir) / "attempt-1.exit").exists() for j in store.jobs("full"))

    filler.unlink()
    ended = wait_group_end(state_dir, "full", timeout=90)
    assert [(j.run, j.status, j.exit_code) for j in ended] == [(r, JobStatus.SUCCEEDED, 0) for r in runs]


def test_a_launch_onto_a_full_disk_is_one_error_and_leaves_nothing(small_disk: Path, tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    (conf / "experiment").mkdir(parents=True)
    (conf / "experiment" / "tiny.yaml").write_text(
        '# @package _global_\ncommand: ["true"]\nruns: [a]\nremote: false\ngpus: 0\nwait: false\n'
    )
    fill(small_disk)
    state_dir = small_disk / "job_state"
    result = run_cli(
        "--config-dir",
        str(conf),
        "+experiment=tiny",
        cwd=tmp_path,
        env={"METTA_EXP_STATE_DIR": str(state_dir)},
    )
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert str(state_dir / "jobs.sqlite") in lines[0] and "disk is full" in lines[0]
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]  # no store, no state dir
