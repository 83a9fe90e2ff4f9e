"""The simulated SkyPilot jobs controller's life: absent, INIT (starting), UP, STOPPED (idle).

From ``sky/jobs/server/core.py`` (``launch`` brings the controller up; ``_maybe_restart_controller``
starts a STOPPED one on a refreshing call), ``sky/backends/backend_utils.py``
(``is_controller_accessible``: only UP answers, anything else raises ``ClusterNotUpError`` with the
status) and ``sky/jobs/constants.py`` (``CONTROLLER_AUTOSTOP``: it stops itself after ``idle_minutes``
without an unfinished job).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Controller"]


@dataclass
class Controller:
    """``status``: None (never launched), ``INIT``, ``UP`` or ``STOPPED``; times are epoch seconds."""

    status: str | None = None
    up_at: float = 0.0  # when a starting controller is up
    busy_at: float = 0.0  # the last moment it had an unfinished job (or was started)
    starts: int = 0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Controller:
        return cls(**{k: data[k] for k in ("status", "up_at", "busy_at", "starts") if k in data})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def start(self, now: float, start_s: float) -> float:
        """A launch or a refreshing call: start the controller unless it runs; when it is up."""
        if self.status == "UP":
            self.busy_at = now
            return now
        if self.status != "INIT":
            self.status, self.up_at, self.starts = "INIT", now + start_s, self.starts + 1
        return self.up_at

    def come_up(self, now: float) -> None:
        if self.status == "INIT" and now >= self.up_at:
            self.status, self.busy_at = "UP", max(self.busy_at, self.up_at)

    def idle_check(
        self, now: float, jobs: Sequence[Mapping[str, Any]], terminal: Collection[str], idle_s: float
    ) -> None:
        """Stop an UP controller that had no unfinished job for ``idle_s``."""
        if self.status != "UP":
            return
        if any(j["status"] not in terminal for j in jobs):
            self.busy_at = now
            return
        ends = [float(j["end_at"]) for j in jobs if j.get("end_at")]
        last = max([self.busy_at, *ends])
        if now - last >= idle_s:
            self.status = "STOPPED"
