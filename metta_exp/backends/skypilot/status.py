"""SkyPilot's managed-job statuses (``sky/jobs/state.py``: ``ManagedJobStatus``) in metta-exp's terms.

How SkyPilot's ``ManagedJobStatus`` maps to ours: PENDING, STARTING, RUNNING, RECOVERING (preempted,
SkyPilot is bringing it back), WINDING_DOWN and CANCELLING (not ended yet) are all ``running``: SkyPilot
has the job; its SkyPilot status (and how often it was recovered) is the observation's reason, and
``start_at`` (its first RUNNING) when its command began. SUCCEEDED, CANCELLED map to themselves; FAILED
and every FAILED_* are ``failed``, with a reason naming SkyPilot's status and its failure reason (without
SkyPilot's pointer at its controller log) and the exit code SkyPilot reports. An API error, or a launch
this process is still sending, is a transient observation (the runner waits); a job not in the queue is
an unseen one (the runner's grace period applies, then it is failed as vanished).
"""

from __future__ import annotations

import re

from metta_exp.backends.base import Observation
from metta_exp.backends.skypilot.api import QueueEntry
from metta_exp.status import JobStatus

__all__ = ["ACTIVE_STATUSES", "ENDED", "FAILURE_MEANING", "TAILABLE", "observe"]

#: SkyPilot statuses whose log tail answers at once (``sky/jobs/utils.py``: ``stream_logs_by_id`` waits
#: for any other status to become RUNNING, even with ``follow=False``).
TAILABLE = frozenset({"RUNNING", "CANCELLING", "SUCCEEDED", "CANCELLED"})

ENDED = frozenset({"SUCCEEDED", "CANCELLED", "CANCELLING"}) | frozenset(
    {"FAILED", "FAILED_SETUP", "FAILED_PRECHECKS", "FAILED_NO_RESOURCE", "FAILED_CONTROLLER"}
)
#: SkyPilot still has the job: it is queued, provisioning, running, recovering or being cancelled.
ACTIVE_STATUSES = frozenset(
    {"PENDING", "SUBMITTED", "STARTING", "RUNNING", "RECOVERING", "WINDING_DOWN", "CANCELLING"}
)
FAILURE_MEANING = {
    "FAILED": "the job's command failed",
    "FAILED_SETUP": "the setup script failed",
    "FAILED_PRECHECKS": "SkyPilot's prechecks failed (no feasible resources, or a bad setting)",
    "FAILED_NO_RESOURCE": "no capacity for the requested resources on any enabled infra",
    "FAILED_CONTROLLER": "SkyPilot's jobs controller failed",
}


#: What SkyPilot appends to a failure reason (``sky/jobs/controller.py``): a pointer at its controller log,
#: whose place the job's own log (``metta-exp job logs``) takes here.
_CONTROLLER_LOG_HINT = re.compile(
    r"\s*To see the (?:details|job error output), run: sky jobs logs --controller \d+\.?"
)
_EXIT_CODE = re.compile(r"exited with exit codes? \[?(-?\d+)")


def observe(entry: QueueEntry) -> Observation:
    """Our view of one managed job from its queue entry (every ManagedJobStatus is covered)."""
    status, handle = entry.status.upper(), str(entry.job_id)
    if status == "SUCCEEDED":
        return Observation(JobStatus.SUCCEEDED, exit_code=0, handle=handle, recoveries=entry.recovery_count)
    if status == "CANCELLED":
        return Observation(JobStatus.CANCELLED, reason="cancelled in SkyPilot", handle=handle)
    if status == "FAILED" or status.startswith("FAILED_"):
        meaning = FAILURE_MEANING.get(status, "SkyPilot reports a failure")
        detail = _CONTROLLER_LOG_HINT.sub("", entry.failure_reason or "").strip()
        reason = f"SkyPilot {status}: {detail}" if detail else f"SkyPilot {status}: {meaning}"
        code = _EXIT_CODE.search(detail)
        return Observation(JobStatus.FAILED, int(code[1]) if code else None, reason, handle)
    recovered = f" (recovered {entry.recovery_count}x)" if entry.recovery_count else ""
    note = None if status == "RUNNING" and not recovered else f"SkyPilot {status}{recovered}"
    if status not in ACTIVE_STATUSES:
        note = f"SkyPilot {status} (unknown to metta-exp; treated as still running)"
    return Observation(
        JobStatus.RUNNING,
        reason=note,
        handle=handle,
        started_at=entry.start_at,
        recoveries=entry.recovery_count,
    )
