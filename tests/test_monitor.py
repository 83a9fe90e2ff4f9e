"""The monitor: its rendering as exact text at fixed sizes (a pure function of records, log tails, the
time and the terminal size), the log reading it relies on, and ``job monitor`` run as a user runs it:
one line per change in a pipe, a live view in a terminal, exiting by itself, Ctrl+C leaving the jobs
running, and taking over a group whose runner was killed."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import textwrap
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import PY, run_cli, wait_for
from rich.console import Console

from metta_exp.config import Experiment
from metta_exp.logs.tail import LogReader, clean_line, explain_failure, job_log, tail_lines, tail_offset
from metta_exp.monitor.live import event_line
from metta_exp.monitor.view import Frame, Gpus, monitor_lines, pending_reason, render_monitor
from metta_exp.records import EventRecord, GroupRecord, JobRecord, JobSpec
from metta_exp.status import JobStatus
from metta_exp.store import JobStore
from metta_exp.submit import launch_experiment

T0 = 1_800_000_000.0

TRACEBACK = """\
[metta-exp] progress step=9890 total=30000 sps=8316.32 overview/reward=62.75
Traceback (most recent call last):
  File "/src/train.py", line 268, in <module>
    sys.exit(main())
             ^^^^^^
  File "/src/train.py", line 186, in collect
    raise RuntimeError("loss is NaN")
RuntimeError: loss is NaN
wandb: Waiting for W&B process to finish... (success).
"""
RUNNING = """\
[cartpole] starting
epoch 3: loss=0.21
[metta-exp] progress step=12000 total=30000 sps=2000 overview/reward=41.5
epoch 4: loss=0.19\r
[metta-exp] progress step=15000 total=30000 sps=2500 overview/reward=48.25
"""
DONE = """\
[metta-exp] progress step=30000 total=30000 sps=8000 overview/reward=99.5
[metta-exp] checkpoint path=/runs/lr_sweep/lr_low/checkpoint.npz
"""


def group_record(**kw: Any) -> GroupRecord:
    base: dict[str, Any] = dict(
        name="lr_sweep",
        experiment="demo",
        backend="local",
        stored_config={"max_parallel": 2, "metrics_to_track": ["overview/sps", "overview/reward"]},
        created_at=T0,
        ended_at=None,
        cancel_requested=False,
        lease_owner="host:1:x",
        lease_expires=T0 + 100,
        runner_pid=4242,
    )
    return GroupRecord(**(base | kw))


def job_record(run: str, status: JobStatus, position: int, **kw: Any) -> JobRecord:
    base: dict[str, Any] = dict(
        group="lr_sweep",
        run=run,
        position=position,
        status=status,
        stored_spec=JobSpec("lr_sweep", run, (), {}, 0, f"/runs/lr_sweep/{run}", ""),
        attempts=1,
        exit_code=None,
        reason=None,
        handle=None,
        gpu_ids=(),
        queued_at=T0,
        started_at=T0 + 5,
        ended_at=None,
        log_path=f"/runs/lr_sweep/{run}/attempt-1.log",
        run_dir=f"/runs/lr_sweep/{run}",
        wandb_url=None,
        depends_on=(),
    )
    return JobRecord(**(base | kw))


def sample_frame() -> Frame:
    jobs = [
        job_record(
            "lr_low",
            JobStatus.SUCCEEDED,
            0,
            exit_code=0,
            ended_at=T0 + 65,
            wandb_url="https://wandb.ai/e/p/runs/abc",
        ),
        job_record("lr_mid", JobStatus.RUNNING, 1),
        job_record("lr_high", JobStatus.FAILED, 2, exit_code=1, reason="exit code 1", ended_at=T0 + 20),
        job_record("lr_huge", JobStatus.RUNNING, 3, started_at=T0 + 50),
        job_record(
            "finetune",
            JobStatus.PENDING,
            4,
            attempts=0,
            started_at=None,
            log_path=None,
            depends_on=("lr_mid",),
        ),
        job_record("extra", JobStatus.PENDING, 5, attempts=0, started_at=None, log_path=None),
    ]
    logs = {
        "lr_low": job_log(DONE, "/runs/lr_sweep/lr_low/checkpoint.npz"),
        "lr_mid": job_log(RUNNING),
        "lr_high": job_log(TRACEBACK),
        "lr_huge": job_log(""),
    }
    return Frame(group_record(), jobs, logs, now=T0 + 75, runner_alive=True)


def render(frame: Frame, width: int, height: int, show_logs: bool = True) -> str:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(render_monitor(frame, width, height, show_logs))
    return out.getvalue()


# --- rendering: exact text ----------------------------------------------------------------------------

EXPECTED_100x30 = """\
lr_sweep · demo on local · 6 jobs · 1:15 elapsed · runner pid 4242
━━━━──────── 2/6 done  ✗ 1 failed  ▶ 2 running  ✓ 1 succeeded  · 2 pending
── Failed 1 ────────────────────────────────────────────────────────────────────────────────────────
  ✗ lr_high   exit code 1 · attempt 1 · ran 0:15 · 33% (9.9k/30k)
        File "/src/train.py", line 268, in <module>
          sys.exit(main())
        File "/src/train.py", line 186, in collect
          raise RuntimeError("loss is NaN")
      RuntimeError: loss is NaN
      log: /runs/lr_sweep/lr_high/attempt-1.log
── Active 2 running ────────────────────────────────────────────────────────────────────────────────
  ▶ lr_mid    ━━━━━━━━━━━━━━──────────────   50%    15k/30k   2.5k/s  ETA  0:06   1:10  reward 48.25
      │ [cartpole] starting
      │ epoch 3: loss=0.21
      │ epoch 4: loss=0.19
  ▶ lr_huge   waiting for progress…  0:25
── Completed 1 succeeded ───────────────────────────────────────────────────────────────────────────
  ✓ lr_low    succeeded   1:00  reward 99.5
      W&B https://wandb.ai/e/p/runs/abc  ckpt checkpoint.npz  dir /runs/lr_sweep/lr_low
── Pending 2 ───────────────────────────────────────────────────────────────────────────────────────
  · finetune  waits for lr_mid (running)
  · extra     waits for a slot: max_parallel=2, 2 active
Ctrl+C stops watching; the jobs go on · stop them: metta-exp job kill lr_sweep
"""


def test_render_shows_every_section_in_order_with_details() -> None:
    assert render(sample_frame(), 100, 30) == EXPECTED_100x30


EXPECTED_80x14 = """\
lr_sweep · demo on local · 6 jobs · 1:15 elapsed · runner pid 4242
━━━─────── 2/6 done  ✗ 1 failed  ▶ 2 running  ✓ 1 succeeded  · 2 pending
── Failed 1 ────────────────────────────────────────────────────────────────────
  ✗ lr_high   exit code 1 · attempt 1 · ran 0:15 · 33% (9.9k/30k)
      RuntimeError: loss is NaN
── Active 2 running ────────────────────────────────────────────────────────────
  ▶ lr_mid    ━━━━━━━━━━━───────────   50%    15k/30k   2.5k/s  ETA  0:06   1:10
      │ epoch 4: loss=0.19
  ▶ lr_huge   waiting for progress…  0:25
── Completed 1 succeeded ───────────────────────────────────────────────────────
  ✓ lr_low    succeeded   1:00  reward 99.5  W&B https://wandb.ai/e/p/runs/abc …
── Pending 2 ───────────────────────────────────────────────────────────────────
  … 2 not shown: 1 wait for a dependency, 1 wait for max_parallel
Ctrl+C stops watching; the jobs go on · stop them: metta-exp job kill lr_sweep
"""


def test_render_shrinks_details_then_folds_to_fit_a_small_terminal() -> None:
    assert render(sample_frame(), 80, 14) == EXPECTED_80x14


def test_no_logs_hides_the_log_tails() -> None:
    text = render(sample_frame(), 100, 30, show_logs=False)
    assert "│" not in text and "epoch 4" not in text
    assert "▶ lr_mid" in text and "RuntimeError: loss is NaN" in text


def test_render_is_pure() -> None:
    frame = sample_frame()
    assert render(frame, 100, 30) == render(frame, 100, 30)
    assert render(replace(frame, now=T0 + 76), 100, 30) != render(frame, 100, 30)


def big_frame(n: int = 300) -> Frame:
    """A group of ``n`` jobs: a few failed, 40 running, a hundred succeeded, the rest pending."""
    jobs: list[JobRecord] = []
    logs = {}
    for i in range(n):
        run = f"run_{i:03d}"
        if i % 50 == 7:
            jobs.append(
                job_record(run, JobStatus.FAILED, i, exit_code=1, reason="exit code 1", ended_at=T0 + i)
            )
            logs[run] = job_log(TRACEBACK)
        elif i < 100:
            jobs.append(job_record(run, JobStatus.SUCCEEDED, i, exit_code=0, ended_at=T0 + i))
            logs[run] = job_log(DONE)
        elif i < 140:
            jobs.append(job_record(run, JobStatus.RUNNING, i))
            logs[run] = job_log(RUNNING)
        else:
            jobs.append(job_record(run, JobStatus.PENDING, i, attempts=0, started_at=None, log_path=None))
    group = group_record(stored_config={"max_parallel": 40, "metrics_to_track": []})
    return Frame(group, jobs, logs, now=T0 + 400, runner_alive=True)


@pytest.mark.parametrize(("width", "height"), [(80, 24), (100, 30), (200, 50), (60, 12)])
def test_hundreds_of_jobs_fit_the_terminal_failed_first(width: int, height: int) -> None:
    frame = big_frame()
    lines = render(frame, width, height).splitlines()
    assert len(lines) <= height
    assert all(len(line) <= width for line in lines)
    assert lines[2].startswith("── Failed 6 ")
    assert lines[3].startswith("  ✗ run_")  # a failure is visible at once
    titles = [line for line in lines if line.startswith("── ")]
    assert [t.split()[1] for t in titles] == ["Failed", "Active", "Completed", "Pending"]
    assert any("more: " in line or "not shown: " in line for line in lines)


EXPECTED_FOLDED = """\
lr_sweep · demo on local · 300 jobs · 6:40 elapsed · runner pid 4242
━━━━━━━━━──────────────── 104/300 done  ✗ 6 failed  ▶ 39 running  ✓ 98 succeeded  · 157 pending
── Failed 6 ────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────
  ✗ run_257  exit code 1 · attempt 1 · ran 4:12 · 33% (9.9k/30k)
      RuntimeError: loss is NaN
  ✗ run_207  exit code 1 · attempt 1 · ran 3:22 · 33% (9.9k/30k)
      RuntimeError: loss is NaN
  ✗ run_157  exit code 1 · attempt 1 · ran 2:32 · 33% (9.9k/30k)
      RuntimeError: loss is NaN
  ✗ run_107  exit code 1 · attempt 1 · ran 1:42 · 33% (9.9k/30k)
  ✗ run_057  exit code 1 · attempt 1 · ran 0:52 · 33% (9.9k/30k)
  ✗ run_007  exit code 1 · attempt 1 · ran 0:02 · 33% (9.9k/30k)
── Active 39 running ───────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────
  ▶ run_100  ━━━━━━━━━━━━━━━━━━━━────────────────────   50%    15k/30k   2.5k/s  ETA  0:06   6:35
  ▶ run_101  ━━━━━━━━━━━━━━━━━━━━────────────────────   50%    15k/30k   2.5k/s  ETA  0:06   6:35
  ▶ run_102  ━━━━━━━━━━━━━━━━━━━━────────────────────   50%    15k/30k   2.5k/s  ETA  0:06   6:35
  ▶ run_103  ━━━━━━━━━━━━━━━━━━━━────────────────────   50%    15k/30k   2.5k/s  ETA  0:06   6:35
  … 35 more: run_104, run_105, run_106, run_108, run_109, run_110, run_111, run_112, run_113, run_114, run_115, run_116, run_117, run_118, run_119, run_120, run_121, run_122, run_123, run_124, run_12…
── Completed 98 succeeded ──────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────
  ✓ run_099  succeeded   1:34  dir /runs/lr_sweep/run_099
  … 97 more: 97 succeeded
── Pending 157 ─────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────
  … 157 not shown: 157 ready
Ctrl+C stops watching; the jobs go on · stop them: metta-exp job kill lr_sweep
"""  # noqa: E501


def test_folded_sections_at_200x24() -> None:
    assert render(big_frame(), 200, 24) == EXPECTED_FOLDED


# --- pending reasons ------------------------------------------------------------------------------------


def test_pending_reasons_name_what_each_job_waits_for() -> None:
    frame = sample_frame()
    by_run = {j.run: j for j in frame.jobs}
    assert pending_reason(by_run["finetune"], frame) == ("dependency", "waits for lr_mid (running)")
    assert pending_reason(by_run["extra"], frame) == (
        "max_parallel",
        "waits for a slot: max_parallel=2, 2 active",
    )

    free_slot = replace(frame, group=group_record(stored_config={}))
    assert pending_reason(by_run["extra"], free_slot) == ("ready", "ready: the runner launches it next")
    gpu_job = replace(by_run["extra"], stored_spec=replace(by_run["extra"].spec, gpus=2))
    gpus = replace(free_slot, gpus=Gpus((0, 1, 2), frozenset({0, 1})))
    assert pending_reason(gpu_job, gpus) == ("gpu", "waits for 2 GPUs: 1 of 3 free")
    no_runner = replace(free_slot, runner_alive=False)
    assert pending_reason(by_run["extra"], no_runner)[0] == "runner"

    failed_dep = replace(by_run["finetune"], depends_on=("lr_high",))
    assert pending_reason(failed_dep, frame) == ("dependency", "dependency lr_high failed: will be skipped")
    retried = replace(by_run["extra"], attempts=1, reason="exit code 3 (retry 1 of 2)")
    assert pending_reason(retried, free_slot)[1] == (
        "retry 2 queued (exit code 3 (retry 1 of 2)); ready: the runner launches it next"
    )


def test_header_says_when_nobody_drives_the_group_and_when_it_is_killed() -> None:
    frame = replace(sample_frame(), runner_alive=False)
    assert "no runner: starting one" in monitor_lines(frame, 100, 30)[0].plain
    killed = replace(frame, group=group_record(cancel_requested=True), runner_alive=True)
    assert monitor_lines(killed, 100, 30)[0].plain.endswith("· killing")
    ended = replace(frame, group=group_record(ended_at=T0 + 70))
    assert "1:10 elapsed · ended" in monitor_lines(ended, 100, 30)[0].plain


# --- reading logs -----------------------------------------------------------------------------------------


def test_explain_failure_keeps_the_end_of_the_last_traceback() -> None:
    assert explain_failure(TRACEBACK, 3) == [
        '  File "/src/train.py", line 186, in collect',
        '    raise RuntimeError("loss is NaN")',
        "RuntimeError: loss is NaN",
    ]
    assert explain_failure(TRACEBACK, 1) == ["RuntimeError: loss is NaN"]
    assert explain_failure(TRACEBACK, 4) == explain_failure(TRACEBACK, 3)  # never starts mid-frame


def test_explain_failure_without_a_traceback() -> None:
    log = "step 1\nCUDA error: out of memory\nstep 2\nFATAL: giving up\nbye\n"
    assert explain_failure(log, 5) == ["CUDA error: out of memory", "FATAL: giving up"]
    assert explain_failure("one\ntwo\nthree\n", 2) == ["two", "three"]
    prefixed = "".join(f"(task, pid=7) {line}\n" for line in TRACEBACK.splitlines())
    assert explain_failure(prefixed, 1) == ["(task, pid=7) RuntimeError: loss is NaN"]


def test_log_lines_are_cleaned_of_escapes_and_carriage_returns() -> None:
    assert clean_line("\x1b[31mred\x1b[0m text") == "red text"
    assert clean_line("10%\r50%\r100%\r") == "100%"
    assert clean_line("a\tb\x07") == "a   b"
    assert tail_lines(RUNNING, 2) == ["epoch 3: loss=0.21", "epoch 4: loss=0.19"]


def test_tail_offset_finds_the_last_lines(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_bytes(b"".join(b"line %d\n" % i for i in range(1000)))
    data = path.read_bytes()
    assert data[tail_offset(path, 3, block=7) :] == b"line 997\nline 998\nline 999\n"
    assert tail_offset(path, 5000) == 0
    assert tail_offset(path, 0) == len(data)
    path.write_bytes(b"a\nb\nno newline")
    assert path.read_bytes()[tail_offset(path, 2) :] == b"b\nno newline"


def test_log_reader_rereads_only_a_changed_log(tmp_path: Path) -> None:
    log = tmp_path / "attempt-1.log"
    log.write_text("[metta-exp] progress step=1 total=10\n")
    reader = LogReader()
    first = reader.read(str(log), str(tmp_path))
    assert first.progress is not None and first.progress.step == 1
    assert reader.read(str(log), str(tmp_path)) is first
    with log.open("a") as f:
        f.write("[metta-exp] progress step=5 total=10\n")
    second = reader.read(str(log), str(tmp_path))
    assert second.progress is not None and second.progress.step == 5
    (tmp_path / "run.json").write_text('{"checkpoint": "/ckpt/model.pt"}')
    assert reader.read(str(log), str(tmp_path), JobStatus.SUCCEEDED).checkpoint == "/ckpt/model.pt"
    assert reader.read(str(log), str(tmp_path)).checkpoint is None  # a running job has none to show


# --- the monitor as a user runs it ------------------------------------------------------------------------

# A job that prints progress and log lines, waits for a 'go' file (when asked) and exits with a code.
JOB = textwrap.dedent(
    """
    import os, pathlib, sys, time
    opts = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
    rd = pathlib.Path(os.environ["METTA_EXP_RUN_DIR"])
    total = 100
    for step in range(0, total + 1, 25):
        print(f"[metta-exp] progress step={step} total={total} sps=50", flush=True)
        time.sleep(float(opts.get("tick", 0.05)))
    while opts.get("gate") and not (rd / "go").exists():
        time.sleep(0.05)
    if opts.get("exit", "0") != "0":
        raise SystemExit(f"giving up: exit {opts['exit']}")
    """
)


def experiment(runs: list[str], **kw: Any) -> Experiment:
    return Experiment(
        command=[PY, "-c", JOB], runs=runs, remote=False, wait=False, gpus=0, generate_notebook=False, **kw
    )


def launch(state_dir: Path, exp: Experiment, group: str) -> None:
    exp.group = group
    assert launch_experiment(exp, name="test", state_dir=state_dir, out=io.StringIO()) == 0


def open_go(state_dir: Path, group: str, run: str) -> None:
    (state_dir / "runs" / group / run / "go").write_text("")


def test_monitor_in_a_pipe_prints_one_line_per_change_and_exits_by_itself(state_dir: Path) -> None:
    # the jobs wait at a gate until the monitor is watching, so every change happens in front of it
    exp = experiment(["ok", "bad"], args=["gate=1"], args_per_run={"bad": ["exit=3"]})
    launch(state_dir, exp, "piped")
    monitor = subprocess.Popen(
        [sys.executable, "-m", "metta_exp", "job", "monitor", "piped", "--refresh", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert monitor.stdout is not None
    first = monitor.stdout.readline()
    for run in ("ok", "bad"):
        (state_dir / "runs" / "piped" / run).mkdir(parents=True, exist_ok=True)
        open_go(state_dir, "piped", run)
    rest, stderr = monitor.communicate(timeout=120)
    assert monitor.returncode == 1, stderr
    lines = (first + rest).splitlines()
    assert lines[0].startswith("Watching piped: 2 jobs")
    assert "\x1b" not in first + rest  # no redrawing in a pipe
    changes = [line.split(" ", 1)[1] for line in lines if " -> " in line]
    assert changes.count("ok: running -> succeeded") == 1
    assert any(c.startswith("bad: running -> failed (exit code 1): giving up: exit 3") for c in changes)
    out = first + rest
    assert "group ended" in out
    assert "piped: 2 jobs, 1 succeeded, 1 failed" in out
    assert "  bad failed: exit code 1" in out and "      giving up: exit 3" in out


def test_monitor_of_an_ended_group_prints_its_summary(state_dir: Path) -> None:
    launch(state_dir, experiment(["a"]), "done")
    wait_for(lambda: JobStore.open(state_dir).group("done").ended_at, what="group end")
    result = run_cli("job", "monitor", "done")
    assert result.returncode == 0
    assert result.stdout.startswith("done: 1 job, 1 succeeded")


def test_monitor_takes_over_a_group_whose_runner_was_killed(state_dir: Path) -> None:
    launch(state_dir, experiment(["a", "b", "c"], args=["gate=1"], max_parallel=2), "orphan")
    store = JobStore.open(state_dir)
    wait_for(lambda: sum(j.status == JobStatus.RUNNING for j in store.jobs("orphan")) == 2, what="2 running")
    old = store.group("orphan").runner_pid
    assert old is not None
    os.kill(old, signal.SIGKILL)
    wait_for(
        lambda: not Path(f"/proc/{old}").exists() or "Z" in Path(f"/proc/{old}/stat").read_text().split()[2],
        what="the runner to die",
    )
    for run in ("a", "b", "c"):
        (state_dir / "runs" / "orphan" / run).mkdir(parents=True, exist_ok=True)
        open_go(state_dir, "orphan", run)
    result = run_cli("job", "monitor", "orphan", "--refresh", "0.2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert [j.status for j in store.jobs("orphan")] == [JobStatus.SUCCEEDED] * 3
    assert [j.attempts for j in store.jobs("orphan")] == [1, 1, 1]  # nothing launched twice
    owners = {e.detail for e in store.events("orphan") if e.kind == "runner"}
    assert len(owners) >= 2  # the killed runner, then the one the monitor started
    assert store.group("orphan").ended_at is not None


class Pty:
    """A process whose stdin and stdout are a terminal of a given size; its output is collected."""

    def __init__(self, args: list[str], cols: int = 100, rows: int = 30) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(cols), "LINES": str(rows)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "metta_exp", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            close_fds=True,
        )
        os.close(slave)
        self.output = b""

    def read(self, timeout: float = 0.1) -> str:
        """Everything written so far, as text without its escape sequences."""
        while select.select([self.master], [], [], timeout)[0]:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                break
            if not chunk:
                break
            self.output += chunk
        return re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", self.raw)

    @property
    def raw(self) -> str:
        return self.output.decode("utf-8", "replace")

    def wait(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self.read()
        self.read()
        return self.proc.wait(timeout=1)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


def test_monitor_on_a_terminal_redraws_and_exits_when_the_group_ends(state_dir: Path) -> None:
    launch(state_dir, experiment(["fast", "slow"], args_per_run={"slow": ["gate=1"]}), "live")
    term = Pty(["job", "monitor", "live", "--refresh", "0.2"])
    try:
        wait_for(lambda: "✓ fast" in term.read() and "▶ slow" in term.read(), what="a live frame")
        assert "\x1b[?1049h" in term.raw  # the alternate screen: redraws in place
        open_go(state_dir, "live", "slow")
        assert term.wait() == 0
        assert "\x1b[?1049l" in term.raw  # the screen is given back before the summary
        assert "live: 2 jobs, 2 succeeded" in term.raw.split("\x1b[?1049l")[-1]
    finally:
        term.close()


def test_ctrl_c_stops_watching_and_leaves_the_jobs_running(state_dir: Path) -> None:
    launch(state_dir, experiment(["a"], args=["gate=1"]), "stay")
    store = JobStore.open(state_dir)
    wait_for(lambda: store.job("stay", "a").status == JobStatus.RUNNING, what="a running")
    term = Pty(["job", "monitor", "stay", "--no-logs"], cols=80, rows=24)
    try:
        wait_for(lambda: "▶ a" in term.read(), what="a live frame")
        term.proc.send_signal(signal.SIGINT)
        assert term.wait() == 130
        text = term.read()
        assert "Stopped watching. Group stay: 1 job submitted; it goes on." in text
        assert "metta-exp job monitor stay" in text and "metta-exp job kill stay" in text
        # asked nothing of the group (a kill is recorded before the command exits)...
        assert not store.group("stay").cancel_requested and store.group("stay").ended_at is None
        assert store.job("stay", "a").status == JobStatus.RUNNING
    finally:
        term.close()
    open_go(state_dir, "stay", "a")
    wait_for(lambda: store.group("stay").ended_at, what="the group to end after the monitor left")
    # ...and the job it left running ran to its own end: the attempt that was running, exit code 0
    job = store.job("stay", "a")
    assert (job.status, job.attempts, job.exit_code) == (JobStatus.SUCCEEDED, 1, 0)


def test_a_watchers_line_for_a_job_being_ended_names_the_run() -> None:
    def event(kind: str, detail: str) -> EventRecord:
        return EventRecord(1, "g", "a", 0.0, kind, None, None, detail)

    assert (
        event_line(event("timed_out", "timed out after 5 s; ending it"))
        == "a: timed out after 5 s; ending it"
    )
    left = event("leftovers", "ended (exit code 0), leaving 1 process running; ending it")
    assert event_line(left) == "a: ended (exit code 0), leaving 1 process running; ending it"
