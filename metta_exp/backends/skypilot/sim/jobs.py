"""How the simulated jobs controller moves one managed job along (``sky/jobs/state.py``: ``ManagedJobStatus``):

- PENDING for ``pending_s`` (queued at the controller), STARTING for ``starting_s`` (its cluster is being
  provisioned), RUNNING (its nodes' processes; ``start_at`` is set the first time, as ``set_started``
  does);
- a spot job (``use_spot``) is preempted once after ``preempt_after_s`` of running (off unless set):
  RECOVERING while a new cluster is provisioned (``starting_s``), then RUNNING again **on new machines**:
  a fresh home and workdir, the setup run again, a new log (``sky/jobs/recovery_strategy.py`` launches a
  new cluster; the preempted one is torn down with its disk);
- it ends SUCCEEDED when every node's ``run`` exits 0; FAILED when one fails (the others are ended);
  FAILED_SETUP when a ``setup`` fails, each with SkyPilot's failure reason (``sky/jobs/controller.py``:
  ``Job exited with exit code N (user program failure). To see the details, run: sky jobs logs
  --controller ID``); or with a rule's injected FAILED_* before any cluster runs it.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Mapping
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


def advance(
    job: dict[str, Any],
    now: float,
    live: set[int],
    job_dir: Path,
    root: Path,
    knobs: Mapping[str, float | None],
) -> dict[str, Any]:
    """Move one job along as the controller would by ``now`` (``live``: process groups alive; ``root``: the
    account; ``knobs``: ``pending_s``, ``starting_s``, ``preempt_after_s``, which a job's rule overrides)."""
    rule = job["rule"]
    if now < job["visible_at"]:
        return job
    pending_s = float(rule.get("pending_s", knobs["pending_s"] or 0.0))
    starting_s = float(rule.get("starting_s", knobs["starting_s"] or 0.0))
    if job["status"] == "CANCELLING" and now >= job["cancel_at"]:
        job.update(status="CANCELLED", end_at=now)
    if job["status"] == "PENDING" and now >= job["submitted_at"] + pending_s:
        job.update(status="STARTING", phase_at=now)
    if job["status"] == "STARTING" and now >= job["phase_at"] + starting_s:
        if rule.get("status") in _NO_CLUSTER:
            _end(job, rule["status"], rule.get("message") or _DEFAULT_REASONS[rule["status"]], now)
        else:
            _spawn(job, now, job_dir, root)
    if job["status"] == "RECOVERING" and now >= job["recover_at"]:
        _spawn(job, now, job_dir, root, new_machines=True)
    if job["status"] == "RUNNING":
        recover_s = float(rule.get("recover_after_s", starting_s))
        _check_running(job, now, live, job_dir, _preempt_after(job, knobs), recover_s)
    return job


def _preempt_after(job: dict[str, Any], knobs: Mapping[str, float | None]) -> float | None:
    """Seconds of running after which this job is preempted (once), or None: a rule's, else the
    ``preempt_after_s`` knob for a spot job."""
    rule = job["rule"]
    if rule.get("preempt_after_s") is not None:
        return float(rule["preempt_after_s"])
    return knobs.get("preempt_after_s") if job.get("spot") else None


def _spawn(job: dict[str, Any], now: float, job_dir: Path, root: Path, new_machines: bool = False) -> None:
    """Its machines run it from now on: RUNNING, and ``start_at`` the first time, once their processes
    started (preparing them is the cluster's provisioning, STARTING: it never counts as running)."""
    pgid = ex.spawn_job(job, job_dir, root, new_machines)
    started = max(now, time.time())
    job.update(status="RUNNING", phase_at=started, pgid=pgid)
    if job.get("start_at") is None:
        job["start_at"] = started


def _check_running(
    job: dict[str, Any], now: float, live: set[int], job_dir: Path, after: float | None, recover_s: float
) -> None:
    directory, nodes, rule = job_dir, int(job.get("num_nodes") or 1), job["rule"]
    for _ in range(2):  # a second look, in case the job ended between the two checks
        setup, run = ex.node_exits(directory, nodes)
        ended = ex.exit_time(directory, nodes) or now
        if any(code not in (None, 0) for code in setup):
            code = next(c for c in setup if c not in (None, 0))
            _end(job, "FAILED_SETUP", rule.get("message") or _user_failure(job, code), ended)
            return
        failed = [c for c in run if c not in (None, 0)]
        if failed or all(c == 0 for c in run):
            if job.get("pgid") in live:  # a failed node ends the job: the others are cancelled
                ex.kill_group(job["pgid"], signal.SIGKILL, wait_s=1.0)
            if failed:
                _end(job, "FAILED", rule.get("message") or _user_failure(job, failed[0]), ended)
            else:
                _end(job, "SUCCEEDED", None, ended)
            return
        if job["pgid"] in live:
            break
        live = ex.live_groups()
    else:
        _end(job, "FAILED", "The job's processes vanished without an exit code.", now)
        return
    if after is not None and not job["preempted"] and now >= job["phase_at"] + after:
        preempt(job, now, recover_s, job_dir)


def _user_failure(job: dict[str, Any], code: int) -> str:
    """``sky/jobs/controller.py``'s failure reason for a job whose program failed."""
    return (
        f"Job exited with exit code {code} (user program failure). To see the details, run: sky jobs logs "
        f"--controller {job['job_id']}"
    )


def preempt(job: dict[str, Any], now: float, recover_after_s: float, job_dir: Path) -> None:
    """Preemption: the cluster dies with its disk and its log; SkyPilot recovers the job on a new one."""
    if job.get("pgid"):
        ex.kill_group(job["pgid"], signal.SIGKILL, wait_s=2.0)
    ex.retire_machines(job_dir, int(job.get("num_nodes") or 1), job["recovery_count"])
    job.update(status="RECOVERING", preempted=True, recovery_count=job["recovery_count"] + 1,
               recover_at=now + recover_after_s, pgid=None)  # fmt: skip


def _end(job: dict[str, Any], status: str, reason: str | None, at: float) -> None:
    job.update(status=status, failure_reason=reason, end_at=at, pgid=None)
