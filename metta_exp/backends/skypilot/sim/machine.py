"""How the SkyPilot simulator runs a managed job's task on this machine: nodes, environment, files.

Each node of a job is a directory (``home``: the node's home, ``workdir``: the uploaded workdir) and one
bash driver that runs ``setup`` then ``run`` there, in its own process group with every other node of
the job. As on SkyPilot:

- the environment holds only what SkyPilot gives a task: a fresh machine's basics (its image's ``PATH``,
  ``PYTHONPATH`` and variables: a Python without metta-exp, see ``image``; ``HOME``, ``LANG``, ``USER``,
  ``SHELL``), SkyPilot's node variables, the task's ``envs`` and its secrets. Nothing from the launching
  shell reaches a job (``sky/backends/task_codegen.py`` builds the job's environment from the task alone);
- node variables from ``sky/skylet/constants.py``: ``SKYPILOT_NODE_RANK``, ``SKYPILOT_NODE_IPS`` (one IP a
  line, head first), ``SKYPILOT_NUM_NODES``, ``SKYPILOT_NUM_GPUS_PER_NODE``, ``SKYPILOT_TASK_ID``,
  ``SKYPILOT_SETUP_NODE_RANK``/``SKYPILOT_SETUP_NODE_IPS`` in setup;
- with more than one node, every log line carries its node's prefix, ``(head, rank=0, pid=N)`` or
  ``(worker1, rank=1, pid=N, ip=IP)`` (``sky/skylet/executor/slurm.py``, ``sky/backends/task_codegen.py``);
- the job fails when any node's ``run`` fails, and its setup failure is ``FAILED_SETUP``;
- a machine that is preempted is gone with its disk: ``retire_machines`` moves its log aside (SkyPilot
  shows the new machine's log from then on) and the next ``spawn_job`` starts from a fresh home and workdir.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import metta_exp.backends.procs as procs
from metta_exp.backends.skypilot.sim.image import image_env

__all__ = ["kill_group", "live_groups", "node_exits", "retire_machines", "spawn_job"]

# $1: the node's directory, $2: the job's directory, $3: the node's rank, $4: the log-line prefix (or "").
# Started with an empty environment: it exports exactly the node's (NUL-separated, in a 0600 file), runs
# setup, then run, each appending to the job's log, and writes exit codes atomically into the node's dir.
_DRIVER = r"""node="$1"; job="$2"; rank="$3"; prefix="${4//@PID@/$$}"
while IFS= read -r -d '' kv; do export "$kv"; done < "$node/.env"
cd "$node/workdir" || exit 1
emit() {
  if [ -z "$prefix" ]; then cat; return; fi
  while IFS= read -r l || [ -n "$l" ]; do printf '%s %s\n' "$prefix" "$l"; done
}
save() { echo "$2" > "$node/$1.tmp" && mv -f "$node/$1.tmp" "$node/$1"; }
if [ -f "$job/setup.sh" ]; then
  export SKYPILOT_SETUP_NODE_RANK="$rank" SKYPILOT_SETUP_NODE_IPS="$SKYPILOT_NODE_IPS"
  ( bash "$job/setup.sh" 2>&1 ) | emit >> "$job/log"
  code=${PIPESTATUS[0]}
  unset SKYPILOT_SETUP_NODE_RANK SKYPILOT_SETUP_NODE_IPS
  if [ "$code" -ne 0 ]; then save setup_exit "$code"; exit "$code"; fi
fi
: > "$node/started"
( bash "$job/run.sh" 2>&1 ) | emit >> "$job/log"
save exit "${PIPESTATUS[0]}"
"""


def node_dir(job_dir: Path, rank: int) -> Path:
    """Node 0 (the head) lives in the job's directory itself; workers in ``node-RANK``."""
    return job_dir if rank == 0 else job_dir / f"node-{rank}"


def node_ips(num_nodes: int) -> list[str]:
    return [f"127.0.0.{rank + 1}" for rank in range(num_nodes)]


def retire_machines(job_dir: Path, nodes: int, recovery: int) -> None:
    """The job's machines are gone (preempted): their homes and workdirs with them, and their log, which
    is kept aside as ``log.recovery-N`` for the curious (SkyPilot shows it no more)."""
    for rank in range(nodes):
        for sub in ("home", "workdir"):
            shutil.rmtree(node_dir(job_dir, rank) / sub, ignore_errors=True)
    log = job_dir / "log"
    if log.exists():
        os.replace(log, job_dir / f"log.recovery-{recovery}")


def spawn_job(job: Mapping[str, Any], job_dir: Path, root: Path, new_machines: bool = False) -> int:
    """Start every node of ``job``; return the process group id they share. ``new_machines`` (a recovery
    after preemption): every node starts from a fresh home and workdir, as a new cluster does."""
    nodes = int(job.get("num_nodes") or 1)
    if new_machines:
        for rank in range(nodes):
            for sub in ("home", "workdir"):
                shutil.rmtree(node_dir(job_dir, rank) / sub, ignore_errors=True)
    driver = root / "driver.sh"
    if not driver.exists():
        driver.write_text(_DRIVER)
    script = ""
    for rank in range(nodes):
        directory = node_dir(job_dir, rank)
        _prepare_node(directory, job_dir)
        env = node_env(job, job_dir, directory, rank, image_env(root))
        fd = os.open(directory / ".env", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("".join(f"{k}={v}\0" for k, v in env.items()))
        prefix = "" if nodes == 1 else _prefix(rank, nodes)
        args = [
            shutil.which("bash") or "/bin/bash",
            str(driver),
            str(directory),
            str(job_dir),
            str(rank),
            prefix,
        ]
        script += f"env -i {' '.join(_sh(a) for a in args)} </dev/null >/dev/null 2>&1 &\n"
    # The outer bash leads a new session and process group and exits at once; the drivers stay in that
    # group (no job control in a script), so the group id is the outer pid, and no zombie is left here.
    outer = subprocess.Popen(
        ["bash", "-c", script], env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    outer.wait()
    return outer.pid


def _prepare_node(directory: Path, job_dir: Path) -> None:
    for marker in ("started", "exit", "setup_exit"):
        (directory / marker).unlink(missing_ok=True)
    (directory / "home").mkdir(parents=True, exist_ok=True)
    workdir = directory / "workdir"
    if workdir.exists():
        return
    upload = job_dir / "upload"
    if (upload / "workdir").is_dir():
        shutil.copytree(upload / "workdir", workdir, symlinks=True)
    else:
        workdir.mkdir()
    mounts = upload / "mounts"
    if mounts.is_dir():  # ``~/...`` destinations land in the node's home, absolute ones are not emulated
        shutil.copytree(mounts, directory / "home", symlinks=True, dirs_exist_ok=True)


def node_env(
    job: Mapping[str, Any], job_dir: Path, directory: Path, rank: int, image: Mapping[str, str]
) -> dict[str, str]:
    """A node's whole environment: its image's, a fresh machine's basics, SkyPilot's variables, the task's
    envs, its secrets."""
    nodes = int(job.get("num_nodes") or 1)
    env = {
        **image,
        "HOME": str(directory / "home"),
        "LANG": "C.UTF-8",
        "USER": "sky",
        "SHELL": "/bin/bash",
        "SKYPILOT_NUM_NODES": str(nodes),
        "SKYPILOT_NODE_RANK": str(rank),
        "SKYPILOT_NODE_IPS": "\n".join(node_ips(nodes)),
        "SKYPILOT_NUM_GPUS_PER_NODE": str(job.get("gpus_per_node") or 0),
        "SKYPILOT_TASK_ID": f"sky-managed-{job['job_id']}_{job['name']}_{job['job_id']}-0",
    }
    env.update({str(k): str(v) for k, v in (job.get("envs") or {}).items()})
    with contextlib.suppress(FileNotFoundError):
        env.update(json.loads((job_dir / "secrets.json").read_text()))
    return env


def node_exits(job_dir: Path, nodes: int) -> tuple[list[int | None], list[int | None]]:
    """Each node's (setup exit code, run exit code), None while unknown."""
    setup, run = [], []
    for rank in range(nodes):
        directory = node_dir(job_dir, rank)
        setup.append(_read_int(directory / "setup_exit"))
        run.append(_read_int(directory / "exit"))
    return setup, run


def exit_time(job_dir: Path, nodes: int) -> float | None:
    """When the last node wrote its exit code (the job's end as SkyPilot's controller saw it)."""
    times = []
    for rank in range(nodes):
        for name in ("exit", "setup_exit"):
            with contextlib.suppress(OSError):
                times.append((node_dir(job_dir, rank) / name).stat().st_mtime)
    return max(times) if times else None


def live_groups() -> set[int]:
    """Process groups with at least one process that is not a zombie."""
    return {p.pgid for p in procs.process_table().values() if not p.dead}


def kill_group(pgid: int, sig: signal.Signals, wait_s: float) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
    deadline = time.time() + wait_s
    while time.time() < deadline and pgid in live_groups():
        time.sleep(0.02)


def _prefix(rank: int, nodes: int) -> str:
    if rank == 0:
        return "(head, rank=0, pid=@PID@)"
    return f"(worker{rank}, rank={rank}, pid=@PID@, ip={node_ips(nodes)[rank]})"


def _sh(value: str) -> str:
    import shlex

    return shlex.quote(value)


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None
