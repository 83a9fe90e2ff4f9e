"""What each attempt of a group's jobs reports, recorded in the store as the runner observes the attempt:

- through its files: the W&B run it reports (its ``[metta-exp] wandb`` log line, else its ``run.json``),
  looked for now and then while it runs (only what is new in the log is read: after a SkyPilot recovery it
  may report another W&B run) and once more when it ends; and, once it has ended and its log is complete
  (a remote log's last part is copied after the end), its last progress and the final value of each
  tracked metric, so that ``job show`` and ``job runs`` read no ended job's files. An attempt that ended
  without its log complete is **settling** (``settling``): the runner keeps copying its log, and ends the
  group only when none is left. Every backend copies its logs into the run directory, so this reads local
  files only;
- through its backend (``note``): when it began to run (``timeout_s`` counts from then on a backend that
  queues), where it stands (``SkyPilot PENDING``, ``SkyPilot RUNNING (recovered 1x)``: the job's reason
  while it is active), and each time it was started again on new machines (a ``recovered`` event).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from metta_exp.logs.tail import LogMark, final_metrics, final_progress, scan_wandb_ref
from metta_exp.metrics import tracked_metrics
from metta_exp.runs.state import read_run_state

if TYPE_CHECKING:
    from metta_exp.backends.base import Launch
    from metta_exp.records import GroupRecord, JobRecord
    from metta_exp.store import JobStore

__all__ = ["RECOVERED_EVENT", "URL_CHECK_S", "AttemptReports", "settling"]

URL_CHECK_S = 5.0
"""How often a running attempt's log is looked at for its W&B line (an ended one's, once more)."""
RECOVERED_EVENT = "recovered"


def settling(jobs: Iterable[JobRecord]) -> list[JobRecord]:
    """Attempts that ended and whose final values are not kept yet: their log may not be whole yet."""
    return [
        j
        for j in jobs
        if j.status.is_terminal() and j.attempts > 0 and j.final_progress is None and j.log_path
    ]


@dataclass
class AttemptReports:
    """The runner's bookkeeping of what its group's attempts report (one per runner)."""

    store: JobStore
    group: str
    _url_checked: dict[str, float] = field(default_factory=dict)  # run -> when its log was last looked at
    _log_scanned: dict[str, LogMark] = field(default_factory=dict)  # log path -> where the last look ended
    _url_found: dict[str, int] = field(default_factory=dict)  # run -> the attempt whose URL is recorded
    _since: dict[tuple[str, int], float] = field(default_factory=dict)  # attempt -> when it began to run
    _notes: dict[tuple[str, int], str | None] = field(default_factory=dict)  # attempt -> its note, as kept
    _recoveries: dict[tuple[str, int], int] = field(default_factory=dict)  # attempt -> recoveries recorded

    def record(
        self,
        group: GroupRecord,
        active: list[JobRecord],
        launches: list[Launch],
        ended: set[str],
        log_complete: Callable[[Launch], bool],
        ending: Sequence[tuple[JobRecord, Launch]] = (),
    ) -> bool:
        """After a poll of the ``active`` jobs (their ``launches``), of which the runs ``ended`` just
        ended, and of the settling attempts ``ending``: record the W&B URLs they report, and the final
        values of the ended ones whose log is complete (``log_complete``: the backend's say). True if any
        final values were kept."""
        self._wandb_urls(active, ended)
        just = [(job, launch) for job, launch in zip(active, launches, strict=True) if job.run in ended]
        whole = [job for job, launch in [*ending, *just] if log_complete(launch)]
        if not whole:
            return False
        self._wandb_urls(whole, {job.run for job in whole})  # their logs are whole now: once more
        metrics = tracked_metrics(group)
        finals = [
            (job.run, job.attempts, final_progress(job.log_path),
             final_metrics(job.log_path, job.run_dir, metrics, job.attempts))
            for job in whole
        ]  # fmt: skip
        self.store.keep_finals(self.group, finals)  # one transaction (one commit) for all of them
        return True

    def note(
        self, job: JobRecord, note: str | None, started_at: float | None, recoveries: int, by: str
    ) -> None:
        """What the backend (``by``) says of an active attempt (see the module docstring)."""
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

    def _wandb_urls(self, jobs: list[JobRecord], ended: set[str]) -> None:
        """Record the W&B URL each attempt reports in its log, looked for now and then while it runs and
        once more when it ends (a remote log's last part); else in its ``run.json`` (local jobs)."""
        now = time.time()
        for job in jobs:
            if job.run not in ended and now - self._url_checked.get(job.run, 0.0) < URL_CHECK_S:
                continue
            self._url_checked[job.run] = now
            path = job.log_path or ""
            ref, self._log_scanned[path] = scan_wandb_ref(job.log_path, self._log_scanned.get(path, (0, 0)))
            found = self._url_found.get(job.run) == job.attempts  # run.json is read until a URL is found
            state = read_run_state(job.run_dir, job.attempts) if ref is None and not found else None
            url = ref.url if ref is not None else (state.wandb_url if state is not None else None)
            if url:
                self._url_found[job.run] = job.attempts
                if url != job.wandb_url:
                    self.store.set_wandb_url(self.group, job.run, url)
