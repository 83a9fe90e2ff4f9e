"""The records of a search (an adaptive sweep): its trials and their states. Its space (the dimensions
it samples, a trial's run name) is :mod:`metta_exp.trials.space`.

Pure data, standard library only: the store, the runner, ``job show``, the monitor and the notebook all
read these; only the study driver (:mod:`metta_exp.search`) imports Optuna.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

__all__ = ["TrialRecord", "TrialState", "best_trial"]


class TrialState(str, Enum):
    """Where a trial of a search stands (Optuna's states, less ``waiting``)."""

    RUNNING = "running"
    """Asked: its job is pending, launching or running (or being retried)."""
    COMPLETE = "complete"
    """Its job succeeded and its objective value was told to the study."""
    PRUNED = "pruned"
    """Ended early by the pruner: its objective was behind the other trials' at the same step."""
    FAILED = "failed"
    """Its job failed or was cancelled, or it logged no objective value."""

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class TrialRecord:
    """A trial of a search group: the run it launched, its values, its state, its objective value (the
    run's curve reduced as ``search.reduce`` says) and the intermediate values the pruner saw."""

    group: str
    number: int
    run: str
    params: Mapping[str, Any]
    state: TrialState
    value: float | None = None
    steps: tuple[tuple[int, float], ...] = field(default_factory=tuple)
    reason: str | None = None

    @property
    def ended(self) -> bool:
        return self.state != TrialState.RUNNING


def best_trial(trials: Sequence[TrialRecord], direction: str) -> TrialRecord | None:
    """The complete trial with the best value (the first of equals), or None."""
    done = [
        t
        for t in trials
        if t.state == TrialState.COMPLETE and t.value is not None and not math.isnan(t.value)
    ]
    if not done:
        return None
    sign = -1.0 if direction == "minimize" else 1.0
    return max(done, key=lambda t: (sign * float(t.value or 0.0), -t.number))
