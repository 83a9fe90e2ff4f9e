"""A job record as the backends see it: the ``Launch`` of its current attempt, with its group's settings.

The one translation from the store's records to the backends' inputs, used by the runner (to submit,
poll and cancel), by ``job kill`` and by the tests' clean-up.
"""

from __future__ import annotations

from pathlib import Path

from metta_exp.backends.base import Launch, LaunchSettings
from metta_exp.paths import attempt_log
from metta_exp.records import GroupRecord, JobRecord


def launch_of(group: GroupRecord, job: JobRecord) -> Launch:
    """The backend's view of a job's current attempt."""
    log = Path(job.log_path) if job.log_path else attempt_log(job.run_dir, max(job.attempts, 1))
    return Launch(job.spec, job.attempts, log, job.handle, job.gpu_ids, settings=launch_settings(group))


def launch_settings(group: GroupRecord) -> LaunchSettings:
    """What every launch of ``group`` carries: its SkyPilot and W&B settings and its instance id."""
    return LaunchSettings(group.exp.skypilot, group.exp.wandb, group.instance)
