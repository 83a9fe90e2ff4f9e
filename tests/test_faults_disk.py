"""Fault injection, a full disk, two ways. As only root can make it: a small tmpfs mounted for the test
holds the state dir and a filler file takes its last free byte (skipped, saying so, without root). As any
user (root alike) meets it: a file size limit of 0 bytes (``RLIMIT_FSIZE``) on the processes that write,
so that every write of theirs to a file fails (``EFBIG``) as on a full disk.

The jobs end while the disk is full, so the runner cannot write its log or the store (on the tmpfs their
wrappers cannot write exit files either): the exit status it reaps as the jobs' parent must survive, the
runner must live on and finish the group once space returns. A launch onto the full disk is one line and
leaves nothing behind.
"""

from __future__ import annotations

import errno
import os
import resource
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import kill_everything, run_cli, wait_for, wait_group_end
from faultjob import alive, experiment, launch, read_pid, write_calls

from metta_exp.status import JobStatus


@dataclass
class FullDisk:
    """Where the state dir goes (``root``), and how to fill the disk and free it again: ``fill(pids)``
    makes every write of those processes fail (on the tmpfs, of every process); ``preexec`` starts a
    command on an already full disk."""

    root: Path
    kind: str
    _filler: Path | None = None
    _limited: list[int] = field(default_factory=list)

    def fill(self, pids: list[int]) -> None:
        if self.kind == "tmpfs":
            self._filler = fill(self.root)
            return
        for pid in pids:  # the soft limit only: the process (or we) may raise it again
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))
            self._limited.append(pid)

    def free(self) -> None:
        if self._filler is not None:
            self._filler.unlink()
        for pid in self._limited:
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

    def preexec(self) -> Callable[[], None] | None:
        if self.kind == "tmpfs":
            self._filler = fill(self.root)
            return None
        return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))


@pytest.fixture(params=["tmpfs", "file size limit"])
def small_disk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FullDisk]:
    mount = tmp_path / "small disk"
    mount.mkdir()
    if request.param == "file size limit":
        try:
            yield FullDisk(mount, "rlimit")
        finally:
            kill_everything(mount / "job_state")
        return
    if os.geteuid() != 0:
        pytest.skip("needs root (mounting a small tmpfs); the 'file size limit' variant covers this fault")
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if made.returncode != 0:
        pytest.skip(
            f"cannot mount a small tmpfs here ({made.stderr.strip()}); the 'file size limit' variant runs"
        )
    try:
        yield FullDisk(mount, "tmpfs")
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
    small_disk: FullDisk, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    state_dir = small_disk.root / "job_state"
    monkeypatch.setenv("METTA_EXP_STATE_DIR", str(state_dir))
    monkeypatch.chdir(tmp_path)
    runs = ["a", "b", "c", "d"]
    store = launch(state_dir, experiment(runs, args=["gate=1"]), "full")
    wait_for(lambda: all(j.status == JobStatus.RUNNING for j in store.jobs("full")), what="4 running jobs")
    jobs = [wait_for(lambda j=j: read_pid(Path(j.run_dir) / "started")) for j in store.jobs("full")]
    runner = store.group("full").runner_pid
    assert runner

    small_disk.fill([runner])
    for job in store.jobs("full"):  # the go files must exist: they take no block, only an inode
        (Path(job.run_dir) / "go").touch()
    wait_for(lambda: not any(alive(pid) for pid in jobs), what="the jobs to end")
    # the runner meets the full disk: it tries to record the ends (and its lease, and a log line), every
    # write fails, and it tries again at its next pass; a runner that died of it would stop trying
    writes = write_calls(runner)
    wait_for(lambda: write_calls(runner) >= writes + 3, what="the runner's writes to fail, again and again")
    assert alive(runner)
    assert [j.status for j in store.jobs("full")] == [JobStatus.RUNNING] * 4  # nothing recorded, nothing lost
    if small_disk.kind == "tmpfs":  # the wrappers could not write either
        assert not any((Path(j.run_dir) / "attempt-1.exit").exists() for j in store.jobs("full"))

    small_disk.free()
    ended = wait_group_end(state_dir, "full", timeout=90)
    assert [(j.run, j.status, j.exit_code) for j in ended] == [(r, JobStatus.SUCCEEDED, 0) for r in runs]


def test_a_launch_onto_a_full_disk_is_one_error_and_leaves_nothing(
    small_disk: FullDisk, tmp_path: Path
) -> None:
    conf = tmp_path / "conf"
    (conf / "experiment").mkdir(parents=True)
    (conf / "experiment" / "tiny.yaml").write_text(
        '# @package _global_\ncommand: ["true"]\nruns: [a]\nremote: false\ngpus: 0\nwait: false\n'
    )
    preexec = small_disk.preexec()
    state_dir = small_disk.root / "job_state"
    result = run_cli(
        "--config-dir",
        str(conf),
        "+experiment=tiny",
        cwd=tmp_path,
        env={"METTA_EXP_STATE_DIR": str(state_dir)},
        preexec_fn=preexec,
    )
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"Error: cannot write the job store {state_dir / 'jobs.sqlite'}: "
    )
    # ENOSPC says the disk is full; EFBIG (a file size limit) is SQLite's "disk I/O error"
    assert ("disk is full" if small_disk.kind == "tmpfs" else "disk I/O error") in lines[0], lines[0]
    left = sorted(p.name for p in small_disk.root.iterdir())
    assert left == (["filler"] if small_disk.kind == "tmpfs" else []), "no store, no state dir"
