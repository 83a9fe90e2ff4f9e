"""Daily use from a real shell: jobs find metta-exp's own interpreter first on PATH, the Python API
returns what the README says, dry runs say what the real launch would refuse, sweeps warn when their key
is also set per run, and the small things a user trips over (hints, help, what non-terminal output says)."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

from conftest import run_cli, wait_group_end

PROBE = "import sys, metta_exp; print('python', sys.executable, flush=True)"


def write_experiment(conf: Path, name: str, body: str) -> Path:
    (conf / "experiment").mkdir(parents=True, exist_ok=True)
    path = conf / "experiment" / f"{name}.yaml"
    path.write_text(textwrap.dedent(body))
    return path


def test_jobs_see_metta_exps_own_interpreter_first_on_path(state_dir: Path) -> None:
    """``command: [python, ...]`` from an environment that is not activated (its bin/ not on PATH)."""
    conf = state_dir.parent / "conf"
    write_experiment(
        conf,
        "probe",
        f"""\
        # @package _global_
        command: [python, -c, {json.dumps(PROBE)}]
        runs: [a]
        gpus: 0
        remote: false
        generate_notebook: false
        """,
    )
    bare = {"PATH": "/usr/bin:/bin", "VIRTUAL_ENV": ""}  # no venv, no pyenv shims: as a fresh shell
    result = run_cli("--config-dir", str(conf), "+experiment=probe", "group=p", env=bare)
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = wait_group_end(state_dir, "p")
    log = Path(jobs[0].log_path or "").read_text()
    assert log == f"python {Path(sys.executable)}\n"
