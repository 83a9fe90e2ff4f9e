"""What each attempt of a group's jobs reports through its files, recorded in the store as the runner
observes the attempt: the W&B run it reports (its ``[metta-exp] wandb`` log line, else its ``run.json``),
looked for now and then while it runs and once more when it ends; and, once it has ended and its log is
complete (a remote log's last tail is fetched after the end is seen), its last progress and the final
value of each tracked metric, so that ``job show`` and ``job runs`` read no ended job's files. Every
backend copies its logs into the run directory, so this reads local files only."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from metta_exp.logs.tail import LogMark, final_metrics, final_progress, scan_wandb_ref
from metta_exp.metrics import tracked_metrics
from metta_exp.runs.state import read_run_state

if TYPE_CHECKING:
    from metta_exp.backends.base import Launch
    from metta_exp.records import GroupRecord, JobRecord
    from metta_exp.store import JobStore

URL_CHECK_S = 5.0
"""How often a running attempt's log is looked at for its W&B line (an ended one's, once more)."""


@dataclass
class AttemptReports:
    """The runner's bookkeeping of what its group's attempts report (one per runner)."""

    store: JobStore
    group: str
    _url_checked: dict[str, float] = field(default_factory=dict)  # run -> when its log was last looked at
    _url_found: dict[str, int] = field(default_factory=dict)  # run -> the attempt whose URL is recorded
    _log_scanned: dict[str, LogMark] = field(default_factory=dict)  # log path -> where the last look ended

    def record(
        self,
        group: GroupRecord,
        active: list[JobRecord],
        launches: list[Launch],
        ended: set[str],
        log_complete: Callable[[Launch], bool],
    ) -> None:
        """After a poll of the ``active`` jobs (their ``launches``), of which the runs ``ended`` just
        ended: record the W&B URLs they report, and the final values of those whose log is complete
        (``log_complete``: the backend's say)."""
        self._wandb_urls(active, ended)
        self._final_values(group, active, launches, ended, log_complete)

    def _final_values(
        self,
        group: GroupRecord,
        active: list[JobRecord],
        launches: list[Launch],
        ended: set[str],
        log_complete: Callable[[Launch], bool],
    ) -> None:
        """Keep the last progress and tracked metric values of each attempt that just ended. An attempt
        left out (its last tail not fetched yet, or a runner that stopped in between) is read from its
        files instead."""
        finals = [
            (job.run, job.attempts, final_progress(launch.log_path),
             final_metrics(launch.log_path, job.run_dir, tracked_metrics(group), job.attempts))
            for job, launch in zip(active, launches, strict=True)
            if job.run in ended and log_complete(launch)
        ]  # fmt: skip
        if finals:  # one transaction (one commit) for every attempt this cycle saw end
            self.store.keep_finals(self.group, finals)

    def _wandb_urls(self, active: list[JobRecord], ended: set[str]) -> None:
        """Record the W&B URL each attempt reports in its log, looked for now and then while it runs and
        once more when it ends (a remote log's last tail); else in its ``run.json`` (local jobs)."""
        now = time.time()
        for job in active:
            if self._url_found.get(job.run) == job.attempts:
                continue
            if job.run not in ended and now - self._url_checked.get(job.run, 0.0) < URL_CHECK_S:
                continue
            self._url_checked[job.run] = now
            ref, self._log_scanned[job.log_path or ""] = scan_wandb_ref(
                job.log_path, self._log_scanned.get(job.log_path or "", (0, 0))
            )
            state = read_run_state(job.run_dir, job.attempts) if ref is None else None
            url = ref.url if ref is not None else (state.wandb_url if state is not None else None)
            if url:
                self._url_found[job.run] = job.attempts
                if url != job.wandb_url:
                    self.store.set_wandb_url(self.group, job.run, url)
