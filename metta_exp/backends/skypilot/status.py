"""SkyPilot's managed-job statuses (``sky/jobs/state.py``: ``ManagedJobStatus``) in metta-exp's terms.

How SkyPilot's ``ManagedJobStatus`` maps to ours: PENDING, STARTING, RUNNING, RECOVERING (preempted,
SkyPilot is bringing it back), WINDING_DOWN and CANCELLING (not ended yet) are all ``running``: SkyPilot
has the job. SUCCEEDED, CANCELLED map to themselves; FAILED and every FAILED_* are ``failed``, with a
reason naming SkyPilot's status and its failure reason. An API error, or a launch this process is still
sending, is a transient observation (the runner waits); a job not in the queue is an unseen one (the
runner's grace period applies, then it is failed as vanished).
"""

from __future__ import annotations

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


def observe(entry: QueueEntry) -> Observation:
    """Our view of one managed job from its queue entry (every ManagedJobStatus is covered)."""
    status, handle = entry.status.upper(), str(entry.job_id)
    if status == "SUCCEEDED":
        return Observation(JobStatus.SUCCEEDED, exit_code=0, handle=handle)
    if status == "CANCELLED":
        return Observation(JobStatus.CANCELLED, reason="cancelled in SkyPilot", handle=handle)
    if status == "FAILED" or status.startswith("FAILED_"):
        meaning = FAILURE_MEANING.get(status, "SkyPilot reports a failure")
        detail = (entry.failure_reason or "").strip()
        reason = f"SkyPilot {status}: {detail}" if detail else f"SkyPilot {status}: {meaning}"
        return Observation(JobStatus.FAILED, reason=reason, handle=handle)
    note = None
    if status != "RUNNING":
        note = f"SkyPilot {status}" + (
            f" (recovered {entry.recovery_count}x)" if entry.recovery_count else ""
        )
    if status not in ACTIVE_STATUSES:
        note = f"SkyPilot {status} (unknown to metta-exp; treated as still running)"
    return Observation(JobStatus.RUNNING, reason=note, handle=handle)
