"""The README's "History" section, to the letter: each command of its ``bash`` block run in order against real
groups named as the README names them (jobs that report metrics through ``tracking``, one on a GPU the
machine declares, some dated weeks back), with the exit code and output its comment promises; then its
Python example."""

from __future__ import annotations

import re
import shlex
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import ROOT, run_cli, wait_group_end

README = (ROOT / "README.md").read_text()
DAY = 86400.0

# Each command of the section, in order: (exit code, a check of its output)
HISTORY_COMMANDS = {
    "metta-exp job runs --since 7d --sort overview/reward -n 10": 0,
    "metta-exp job runs --where trainer.learning_rate=0.01": 0,
    "metta-exp job compare baseline-1201 variant-1204 --open": 0,
    "metta-exp job list --all": 0,
    "metta-exp job rm --older-than 30d --dry-run": 0,
    "metta-exp job list 'lr_*' --status failed --since 30d": 0,
    "metta-exp job runs 'lr_*' --where 'trainer.learning_rate>=0.01' --where 'run~lr_*' --csv": 0,
    "metta-exp job rm --older-than 30d --status failed --force": 0,
}

# A trainer: reward grows with its learning rate; `fail=1` makes it fail after logging.
JOB = textwrap.dedent(
    """
    import sys
    from metta_exp import tracking
    opts = dict(a.split("=", 1) for a in sys.argv[1:])
    lr = float(opts["trainer.learning_rate"])
    with tracking.init(total_steps=200) as run:
        for step in range(0, 201, 50):
            run.log({"overview/reward": step * lr, "overview/sps": 500.0}, step=step)
    sys.exit(int(opts.get("fail", 0)))
    """
)
GROUPS = {  # name: (age in days, {run: args}, gpus)
    "old_ok": (45, {"a": ["trainer.learning_rate=0.02"]}, 0),
    "lr_old": (40, {"lr_a": ["trainer.learning_rate=0.01", "fail=1"]}, 0),
    "baseline-1201": (
        6,
        {"lr_low": ["trainer.learning_rate=0.01"], "lr_mid": ["trainer.learning_rate=0.03"]},
        0,
    ),
    "lr_recent": (
        3,
        {"lr_b": ["trainer.learning_rate=0.05", "fail=1"], "lr_c": ["trainer.learning_rate=0.002"]},
        0,
    ),
    "variant-1204": (
        0,
        {"lr_mid": ["trainer.learning_rate=0.03"], "lr_high": ["trainer.learning_rate=0.1"]},
        1,
    ),
}


def section() -> str:
    found = re.search(r"## History: questions across groups\n(.*?)\n## ", README, re.S)
    assert found is not None
    return found[1]


def make_groups(state_dir: Path) -> None:
    from metta_exp.config import Experiment

    now = time.time()
    for name, (age, runs, gpus) in GROUPS.items():
        exp = Experiment(command=[sys.executable, "-c", JOB], runs=list(runs), args_per_run=runs, gpus=gpus,
                         remote=False, wait=False, generate_notebook=False, group=name)  # fmt: skip
        assert exp.launch() in (0, 1)
        wait_group_end(state_dir, name)
        db = sqlite3.connect(state_dir / "jobs.sqlite")  # dated back: a test cannot wait for weeks
        db.execute("UPDATE groups SET created_at = ? WHERE name = ?", (now - age * DAY - 60, name))
        db.commit()
        db.close()


def table_rows(text: str) -> list[list[str]]:
    """The rows of a table a command printed: its lines that begin with a group's name, as cells."""
    rows = [re.split(r"\s{2,}", line.strip()) for line in text.splitlines()]
    return [row for row in rows if row[0] in GROUPS]


@pytest.mark.slow
def test_the_history_commands_answer_as_the_readme_says(
    state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METTA_EXP_LOCAL_GPUS", "0,1")  # variant-1204's run holds a GPU of this machine
    make_groups(state_dir)
    block = re.search(r"```bash\n(.*?)```", section(), re.S)
    assert block is not None
    lines = [line.split("  #")[0].strip() for line in block[1].splitlines() if line.strip()]
    assert lines == list(HISTORY_COMMANDS)
    browser = tmp_path / "browser"
    browser.write_text(f'#!/bin/sh\necho "$1" > {tmp_path / "opened"}\n')
    browser.chmod(0o755)
    out = {}
    for line, code in HISTORY_COMMANDS.items():
        result = run_cli(*shlex.split(line)[1:], env={"BROWSER": str(browser), "COLUMNS": "200"}, timeout=600)
        assert result.returncode == code, (line, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr, line
        out[line] = result.stdout
    best, lr01, compare, every, dry, failed, csv_text, removed = out.values()
    # which of last week's runs did best: by final reward, 200 steps times the learning rate
    assert [row[:2] for row in table_rows(best)] == [
        ["variant-1204", "lr_high"], ["lr_recent", "lr_b"], ["variant-1204", "lr_mid"], ["baseline-1201", "lr_mid"],
        ["baseline-1201", "lr_low"], ["lr_recent", "lr_c"],
    ]  # fmt: skip
    assert "old_ok" not in best and "lr_old" not in best  # older than a week
    assert sorted(row[:2] for row in table_rows(lr01)) == [["baseline-1201", "lr_low"], ["lr_old", "lr_a"]]
    assert (tmp_path / "opened").read_text().strip().endswith("/compare-baseline-1201-vs-variant-1204.html")
    assert "Report: " in compare
    assert [row[0] for row in table_rows(every)] == [
        "variant-1204",
        "lr_recent",
        "baseline-1201",
        "lr_old",
        "old_ok",
    ]
    assert re.search(r"^GPU-hours: \S+ in these groups\.$", every, re.M)
    assert dry.splitlines()[0].startswith("Remove 2 groups (2 jobs), freeing ")
    assert dry.splitlines()[-1] == "Dry run: nothing removed."
    assert [row[0] for row in table_rows(failed)] == ["lr_recent"]
    assert [line.split(",")[:2] for line in csv_text.splitlines()[1:]] == [
        ["lr_recent", "lr_b"],
        ["lr_old", "lr_a"],
    ]
    assert removed.splitlines()[-1].startswith("Removed 1 group; freed ")
    listed = run_cli("job", "list", "--all", "--json").stdout
    assert "lr_old" not in listed and "old_ok" in listed

    code = re.search(r"```python\n(.*?)```", section(), re.S)
    assert code is not None
    result = subprocess.run([sys.executable, "-c", code[1]], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    printed = result.stdout.splitlines()
    assert printed[0].split() == ["group", "run", "overview/reward", "gpu_hours"]
    assert [line.split()[1:3] for line in printed[1:6]] == [
        ["variant-1204", "lr_high"], ["lr_recent", "lr_b"], ["variant-1204", "lr_mid"], ["baseline-1201", "lr_mid"],
        ["baseline-1201", "lr_low"],
    ]  # fmt: skip
    assert printed[-3] == "2"  # lr_recent's 2 runs
    assert printed[-2] == "{'baseline-1201': 2, 'variant-1204': 2}"
    assert printed[-1].split()[0] == "1"  # old_ok is left to remove
