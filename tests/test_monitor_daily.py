"""The monitor at 80 columns, as a demo group looks in it: the elapsed time is never cut, each job's log
tail is its own latest output (not metta-exp's notices), and tracebacks leave out ``<frozen runpy>``."""

from __future__ import annotations

import io

from rich.console import Console
from test_monitor import T0, group_record, job_record

from metta_exp.logs.tail import explain_failure, job_log, tail_lines
from metta_exp.monitor.view import Frame, render_monitor
from metta_exp.status import JobStatus


def demo_log(lr: str, step: str) -> str:
    return (
        "[metta-exp] W&B off: no credentials (set WANDB_API_KEY or wandb.mode=offline)\n"
        f"[cartpole] learning_rate={lr} total_timesteps=150000 seed=0 batch_steps=500\n"
        f"[metta-exp] progress step={step} total=150000 sps=79100.5 overview/reward=90.8\n"
    )


def render(frame: Frame, width: int, height: int) -> list[str]:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(render_monitor(frame, width, height))
    return out.getvalue().splitlines()


def test_at_80_columns_the_elapsed_time_of_an_active_job_is_whole() -> None:
    jobs = [
        job_record("lr_low", JobStatus.RUNNING, 0, started_at=T0 - 3720),  # 1h02m
        job_record("lr_mid", JobStatus.RUNNING, 1),
        job_record("lr_high", JobStatus.RUNNING, 2),
    ]
    logs = {
        "lr_low": job_log(demo_log("0.01", "77611")),  # 77.6k/150k: 10 cells
        "lr_mid": job_log(demo_log("0.03", "7761")),
        "lr_high": job_log(demo_log("0.1", "149999")),
    }
    lines = render(Frame(group_record(), jobs, logs, now=T0 + 5, runner_alive=True), 80, 24)
    rows = [line for line in lines if line.startswith("  ▶ ")]
    assert [row.split()[-1] for row in rows] == ["1h02m", "0:00", "0:00"]
    assert all(len(row) <= 80 and "…" not in row for row in rows)
    bars = {row.index("  ", 6 + 7) for row in rows}
    assert len(bars) == 1  # the bars still line up


def test_the_log_tail_is_the_jobs_own_latest_output_not_metta_exps_notices() -> None:
    text = demo_log("0.01", "1000") + "[metta-exp] checkpoint path=/runs/x/checkpoint.npz\n"
    assert tail_lines(text, 1) == [
        "[cartpole] learning_rate=0.01 total_timesteps=150000 seed=0 batch_steps=500"
    ]
    assert tail_lines("[metta-exp] W&B off: no credentials\n", 1) == []  # nothing of its own yet
    remote = "(task, pid=7) [metta-exp] W&B off\n(task, pid=7) epoch 1\n(task, pid=7) [metta-exp] checkpoint path=x\n"
    assert tail_lines(remote, 2) == ["(task, pid=7) epoch 1"]


def test_tracebacks_leave_out_frozen_runpy_frames() -> None:
    log = (
        "Traceback (most recent call last):\n"
        '  File "<frozen runpy>", line 198, in _run_module_as_main\n'
        '  File "<frozen runpy>", line 88, in _run_code\n'
        '  File "/src/train.py", line 12, in <module>\n'
        "    main()\n"
        '  File "/src/train.py", line 9, in main\n'
        '    raise RuntimeError("loss is NaN")\n'
        "RuntimeError: loss is NaN\n"
    )
    assert explain_failure(log, limit=10) == [
        '  File "/src/train.py", line 12, in <module>',
        "    main()",
        '  File "/src/train.py", line 9, in main',
        '    raise RuntimeError("loss is NaN")',
        "RuntimeError: loss is NaN",
    ]
