"""What the runner keeps of what its jobs report: from their logs, the W&B run each attempt reports and an
ended attempt's final progress once its log is whole; from their backend, where an active attempt stands,
when it began to run, and each time it was started again on new machines.

Every backend's logs are local files (a remote backend copies them in, the last part after the job ended),
so this is one rule for all: a log is looked at now and then while its job runs (only what is new in it
is read: a SkyPilot recovery may report another W&B run), and once more when it is complete.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from metta_exp.logs.tail import LogMark, final_metrics, final_progress, scan_wandb_ref
from metta_exp.runs.state import read_run_state

if TYPE_CHECKING:
    from metta_exp.records import JobRecord
    from metta_exp.store import JobStore

__all__ = ["RECOVERED_EVENT", "Reports", "run_json_wandb_url", "settling"]

URL_CHECK_S = 5.0
RECOVERED_EVENT = "recovered"


@dataclass
class Reports:
    """Records what ``group``'s jobs report into ``store``."""

    store: JobStore
    group: str
    _checked: dict[str, float] = field(default_factory=dict)  # run -> when its log was last looked at
    _scanned: dict[str, LogMark] = field(default_factory=dict)  # log path -> where the last look ended
    _since: dict[tuple[str, int], float] = field(default_factory=dict)  # attempt -> when it began to run
    _notes: dict[tuple[str, int], str | None] = field(
        default_factory=dict
    )  # attempt -> its note, as recorded
    _recoveries: dict[tuple[str, int], int] = field(default_factory=dict)  # attempt -> recoveries recorded

    def note(
        self, job: JobRecord, note: str | None, started_at: float | None, recoveries: int, by: str
    ) -> None:
        """What the backend (``by``) says of an active attempt: when it began to run (timeouts count from
        then), where it stands (``SkyPilot PENDING``, ``SkyPilot RUNNING (recovered 1x)``) as its reason,
        and each time it was started again on new machines, as a ``recovered`` event."""
        key = (job.run, job.attempts)
        if started_at is not None:
            self._since[key] = started_at
        if note != job.reason and (note is not None or key in self._notes):
            self.store.set_note(self.group, job.run, job.attempts, note)
            self._notes[key] = note
        if recoveries <= self._recoveries.get(key, 0):
            return
        if key not in self._recoveries:  # a runner that took over: count what was recorded already
            marks = [e for e in self.store.events(self.group, kind=RECOVERED_EVENT) if e.run == job.run]
            self._recoveries[key] = sum(
                1 for e in marks if (e.detail or "").startswith(f"attempt {job.attempts}:")
            )
        for number in range(self._recoveries[key] + 1, recoveries + 1):
            why = f"attempt {job.attempts}: {by} started it again on new machines (recovery {number})"
            self.store.add_event(self.group, RECOVERED_EVENT, why, run=job.run)
        self._recoveries[key] = max(recoveries, self._recoveries[key])

    def running_since(self, job: JobRecord) -> float | None:
        """When the backend said the job's attempt began to run (None: not yet, as far as this runner saw)."""
        return self._since.get((job.run, job.attempts))

    def wandb_urls(self, jobs: Iterable[JobRecord], ended: set[str]) -> None:
        """Record the W&B URL each attempt reports in its log, at most every ``URL_CHECK_S`` per job, and at
        once for those that ``ended``."""
        now = time.time()
        for job in jobs:
            if job.run not in ended and now - self._checked.get(job.run, 0.0) < URL_CHECK_S:
                continue
            self._checked[job.run] = now
            path = job.log_path or ""
            ref, self._scanned[path] = scan_wandb_ref(job.log_path, self._scanned.get(path, (0, 0)))
            url = ref.url if ref is not None else run_json_wandb_url(job)
            if url and url != job.wandb_url:
                self.store.set_wandb_url(self.group, job.run, url)

    def complete(self, jobs: list[JobRecord], metrics: Sequence[str]) -> bool:
        """These ended attempts' logs are whole: their last W&B link, their final progress and final values
        of ``metrics`` (so ``job show`` and ``job runs`` read no ended job's files, and the notebook and a
        search's trial see the whole log)."""
        if not jobs:
            return False
        self.wandb_urls(jobs, {j.run for j in jobs})
        for job in jobs:
            self.store.set_final_progress(self.group, job.run, job.attempts, final_progress(job.log_path))
            found = final_metrics(job.log_path, job.run_dir, metrics, job.attempts)
            self.store.set_final_metrics(self.group, job.run, job.attempts, found)
        return True


def settling(jobs: Iterable[JobRecord]) -> list[JobRecord]:
    """Attempts that ended and whose final progress is not kept yet: their log may not be whole yet."""
    return [
        j
        for j in jobs
        if j.status.is_terminal() and j.attempts > 0 and j.final_progress is None and j.log_path
    ]


def run_json_wandb_url(job: JobRecord) -> str | None:
    """The W&B URL in ``run.json`` when this attempt wrote it (local jobs; a fallback for the ``[metta-exp]
    wandb`` line of its log)."""
    state = read_run_state(job.run_dir, job.attempts)
    return state.wandb_url if state is not None else None
