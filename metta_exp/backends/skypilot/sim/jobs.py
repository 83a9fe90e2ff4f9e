"""How the simulated jobs controller moves one managed job along: PENDING, STARTING, RUNNING (its nodes'
processes), RECOVERING after a preemption (on new machines, ``sky/jobs/recovery_strategy.py``), and how
it ends: SUCCEEDED when every node's ``run`` exits 0, FAILED when one fails (the others are ended),
FAILED_SETUP when a ``setup`` fails, and the injected FAILED_* of a rule (``sky/jobs/state.py`` has the
statuses, ``ManagedJobStatus``).
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import metta_exp.backends.skypilot.sim.machine as ex

__all__ = ["FAILURE_STATUSES", "MANAGED_JOB_STATUSES", "TERMINAL", "advance", "preempt"]

MANAGED_JOB_STATUSES = (
    "PENDING", "STARTING", "RUNNING", "RECOVERING", "SUCCEEDED", "CANCELLING", "CANCELLED", "FAILED",
    "FAILED_SETUP", "FAILED_PRECHECKS", "FAILED_NO_RESOURCE", "FAILED_CONTROLLER",
)  # fmt: skip
FAILURE_STATUSES = ("FAILED", "FAILED_SETUP", "FAILED_PRECHECKS", "FAILED_NO_RESOURCE", "FAILED_CONTROLLER")
TERMINAL = frozenset({"SUCCEEDED", "CANCELLED", *FAILURE_STATUSES})
_NO_CLUSTER = frozenset({"FAILED_PRECHECKS", "FAILED_NO_RESOURCE", "FAILED_CONTROLLER"})
_DEFAULT_REASONS = {
    "FAILED_NO_RESOURCE": "Failed to provision all possible launchable resources (injected: no resource).",
    "FAILED_PRECHECKS": "Failed prechecks (injected).",
    "FAILED_CONTROLLER": "Controller process has exited abnormally (injected).",
}


def advance(job: dict[str, Any], now: float, live: set[int], job_dir: Path, root: Path) -> dict[str, Any]:
    """Move one job along as the controller would by ``now`` (``live``: process groups alive)."""
    rule = job["rule"]
    if now < job["visible_at"]:
        return job
    if job["status"] == "CANCELLING" and now >= job["cancel_at"]:
        job.update(status="CANCELLED", end_at=now)
    if job["status"] == "PENDING" and now >= job["submitted_at"] + float(rule.get("pending_s", 0)):
        job.update(status="STARTING", phase_at=now)
    if job["status"] == "STARTING" and now >= job["phase_at"] + float(rule.get("starting_s", 0)):
        if rule.get("status") in _NO_CLUSTER:
            _end(job, rule["status"], rule.get("message") or _DEFAULT_REASONS[rule["status"]], now)
        else:
            _spawn(job, now, job_dir, root)
    if job["status"] == "RECOVERING" and now >= job["recover_at"]:
        _spawn(job, now, job_dir, root)
    if job["status"] == "RUNNING":
        _check_running(job, now, live, job_dir)
    return job


def _spawn(job: dict[str, Any], now: float, job_dir: Path, root: Path, new_machines: bool = False) -> None:
    pgid = ex.spawn_job(job, job_dir, root, new_machines)
    job.update(status="RUNNING", phase_at=now, pgid=pgid)


def _check_running(job: dict[str, Any], now: float, live: set[int], job_dir: Path) -> None:
    directory, nodes, rule = job_dir, int(job.get("num_nodes") or 1), job["rule"]
    for _ in range(2):  # a second look, in case the job ended between the two checks
        setup, run = ex.node_exits(directory, nodes)
        ended = ex.exit_time(directory, nodes) or now
        if any(code not in (None, 0) for code in setup):
            code = next(c for c in setup if c not in (None, 0))
            _end(
                job,
                "FAILED_SETUP",
                rule.get("message") or f"Setup failed with return code {code}.",
                ended,
            )
            return
        failed = [c for c in run if c not in (None, 0)]
        if failed or all(c == 0 for c in run):
            if job.get("pgid") in live:  # a failed node ends the job: the others are cancelled
                ex.kill_group(job["pgid"], signal.SIGKILL, wait_s=1.0)
            if failed:
                _end(job, "FAILED", rule.get("message") or f"Job exited with code {failed[0]}.", ended)
            else:
                _end(job, "SUCCEEDED", None, ended)
            return
        if job["pgid"] in live:
            break
        live = ex.live_groups()
    else:
        _end(job, "FAILED", "The job's processes vanished without an exit code.", now)
        return
    after = rule.get("preempt_after_s")
    if after is not None and not job["preempted"] and now >= job["phase_at"] + float(after):
        preempt(job, now, float(rule.get("recover_after_s", 0.2)), job_dir)


def preempt(job: dict[str, Any], now: float, recover_after_s: float, job_dir: Path) -> None:
    """Preemption: the cluster dies; SkyPilot recovers the job on a new one (RECOVERING)."""
    if job.get("pgid"):
        ex.kill_group(job["pgid"], signal.SIGKILL, wait_s=2.0)
    with open(job_dir / "log", "a") as log:
        log.write("[fake sky] the cluster was preempted; recovering\n")
    job.update(status="RECOVERING", preempted=True, recovery_count=job["recovery_count"] + 1,
               recover_at=now + recover_after_s, pgid=None)  # fmt: skip


def _end(job: dict[str, Any], status: str, reason: str | None, at: float) -> None:
    job.update(status=status, failure_reason=reason, end_at=at, pgid=None)
