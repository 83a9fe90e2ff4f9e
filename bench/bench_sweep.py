"""How long a 100-point sweep of a trivial job takes to be submitted, beside Hydra's own launchers.

    .venv/bin/python bench/bench_sweep.py [--points 100] [--repeat 3] [--no-hydra]

Figures, each the median of ``--repeat`` runs, from command start:

- ``metta-exp -m +experiment=bench x=range(0,N) wait=false``: until every job of the group has started
  (its attempt has a start time in the store), and until the command returned; the trivial job is
  ``true`` (no work: what is measured is submission), then ``python -c pass`` and the tiny Hydra app
  below (the job the Hydra launchers run), whose own start-up competes with the submission for the CPUs;
- the tiny ``@hydra.main`` app with ``-m hydra/launcher=metta_exp`` (the plugin, ``wait=false``): Hydra's
  sweeper composes every job before the launcher gets them;
- the same app with ``hydra/launcher=joblib`` and with Hydra's basic launcher: until the command returned
  (they return when every job has run; there is no earlier "submitted" moment).

Everything runs in a temporary directory; every group is waited for, so no process is left behind.
Python may write bytecode caches (``PYTHONDONTWRITEBYTECODE`` is dropped for the commands), and one
unmeasured warm-up run comes first, as on a user's machine where imports are cached.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

PY = sys.executable

TINY_APP = """\
import hydra
from omegaconf import DictConfig


@hydra.main(version_base=None, config_path=None, config_name=None)
def main(cfg: DictConfig) -> None:
    pass


if __name__ == "__main__":
    main()
"""


def environment(state_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(METTA_EXP_STATE_DIR=str(state_dir), WANDB_MODE="disabled", HYDRA_FULL_ERROR="1")
    return env


def write_experiment(conf: Path, name: str, command: list[str]) -> None:
    (conf / "experiment").mkdir(parents=True, exist_ok=True)
    quoted = ", ".join(f'"{part}"' for part in command)
    body = f"""\
        # @package _global_
        command: [{quoted}]
        runs: [job]
        remote: false
        gpus: 0
        generate_notebook: false
        """
    (conf / "experiment" / f"{name}.yaml").write_text(textwrap.dedent(body))


def all_started(state_dir: Path, expected: int, timeout: float = 300.0) -> tuple[str, float]:
    """Wait for the newest group to have ``expected`` started jobs; its name and the last start time."""
    from metta_exp.store import JobStore

    deadline = time.time() + timeout
    with JobStore.open(state_dir) as store:
        while time.time() < deadline:
            groups = store.list_groups()
            if groups:
                jobs = store.jobs(groups[0].name)
                starts = [j.started_at for j in jobs if j.started_at is not None]
                if len(jobs) == expected and len(starts) == expected:
                    return groups[0].name, max(starts)
            time.sleep(0.02)
    raise RuntimeError(f"the jobs of the sweep did not all start within {timeout} s")


def wait_ended(state_dir: Path, group: str, timeout: float = 600.0) -> None:
    from metta_exp.store import JobStore

    deadline = time.time() + timeout
    with JobStore.open(state_dir) as store:
        while store.group(group).ended_at is None:
            if time.time() > deadline:
                raise RuntimeError(f"group {group} did not end within {timeout} s")
            time.sleep(0.1)


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Seconds the command took; raises if it failed."""
    start = time.time()
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        output = f"{result.stdout}\n{result.stderr}"
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}):\n{output}")
    return time.time() - start


def metta_submit(argv: list[str], work: Path, points: int) -> tuple[float, float]:
    """(seconds until every job started, seconds until the command returned) for one fresh state dir."""
    state = Path(tempfile.mkdtemp(prefix="state-", dir=work))
    env = environment(state)
    start = time.time()
    returned = run(argv, work, env)
    group, last_start = all_started(state, points)
    wait_ended(state, group)
    return last_start - start, returned


def median(samples: list[float]) -> str:
    return f"{statistics.median(samples):6.2f} s" + (f"  (runs: {', '.join(f'{s:.2f}' for s in samples)})")


def measure(label: str, repeat: int, once: Callable[[], float | tuple[float, float]]) -> None:
    once()  # warm-up: bytecode caches, page cache
    samples = [once() for _ in range(repeat)]
    if isinstance(samples[0], tuple):
        started = [s[0] for s in samples]  # type: ignore[index]
        returned = [s[1] for s in samples]  # type: ignore[index]
        print(f"{label}\n    all jobs started   {median(started)}\n    command returned   {median(returned)}")
    else:
        print(f"{label}\n    command returned   {median(samples)}")  # type: ignore[arg-type]
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-hydra", action="store_true", help="skip Hydra's own launchers (slow)")
    args = parser.parse_args()
    n = args.points
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        work = Path(tmp)
        app = work / "tiny_app.py"
        app.write_text(TINY_APP)
        conf = work / "conf"
        write_experiment(conf, "bench", ["true"])
        write_experiment(conf, "bench_py", [PY, "-c", "pass"])
        write_experiment(conf, "bench_app", [PY, str(app)])
        sweep = f"x=range(0,{n})"
        metta = [PY, "-m", "metta_exp", "-m", "--config-dir", str(conf)]
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(
            f"{n}-point sweeps on {os.cpu_count()} CPUs (load average {load}), median of {args.repeat} "
            "after one warm-up run\n"
        )
        measure(
            f"metta-exp -m +experiment=bench '{sweep}' wait=false   (job: true)",
            args.repeat,
            lambda: metta_submit([*metta, "+experiment=bench", sweep, "wait=false"], work, n),
        )
        measure(
            f"metta-exp -m +experiment=bench_py '{sweep}' wait=false   (job: python -c pass)",
            args.repeat,
            lambda: metta_submit([*metta, "+experiment=bench_py", sweep, "wait=false"], work, n),
        )
        measure(
            f"metta-exp -m +experiment=bench_app '{sweep}' wait=false   (job: the tiny Hydra app)",
            args.repeat,
            lambda: metta_submit([*metta, "+experiment=bench_app", sweep, "wait=false"], work, n),
        )
        plugin = [PY, str(app), "-m", "hydra/launcher=metta_exp", "hydra.launcher.wait=false"]
        plugin += ["hydra.launcher.generate_notebook=false", f"+{sweep}"]
        measure(
            f"python tiny_app.py -m hydra/launcher=metta_exp '+{sweep}' (wait=false)",
            args.repeat,
            lambda: metta_submit(plugin, work, n),
        )
        if args.no_hydra:
            return
        env = environment(work / "unused")
        joblib = [PY, str(app), "-m", "hydra/launcher=joblib", f"+{sweep}"]
        label = f"python tiny_app.py -m hydra/launcher=joblib '+{sweep}'"
        measure(label, args.repeat, lambda: run(joblib, work, env))
        basic = [PY, str(app), "-m", f"+{sweep}"]
        label = f"python tiny_app.py -m '+{sweep}'   (Hydra's basic launcher)"
        measure(label, 1, lambda: run(basic, work, env))


if __name__ == "__main__":
    main()
