"""A run's ``run.json``: what its training script last said about it (written by :mod:`metta_exp.tracking`,
replaced atomically on every change), read here and nowhere else.

The one attempt rule: each attempt of a job writes its own ``run.json`` over the last one (and each is its
own W&B run), so a reader that knows which attempt it is asking about gets the file only when that
attempt wrote it; one that does not (a run directory given by path) gets whichever attempt wrote it last.
A file without an ``attempt`` was written by attempt 1 (``tracking`` writes 1 outside metta-exp too).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from metta_exp.paths import RunDir


@dataclass(frozen=True)
class RunState:
    """The contents of ``run.json``."""

    attempt: int = 1
    run: str | None = None
    group: str | None = None
    total_steps: int | None = None
    checkpoint: str | None = None  # the latest checkpoint recorded (a path or a URL)
    wandb_url: str | None = None  # the W&B run's page, once it is up (online)
    wandb_mode: str | None = None  # "online", "offline" or "disabled": what the attempt did with W&B
    wandb_dir: str | None = None  # an offline W&B run's directory, for ``wandb sync``
    finished: bool = False  # finished with exit code 0

    def to_dict(self) -> dict[str, Any]:
        """The file's JSON object (``tracking`` writes it)."""
        return {
            "run": self.run,
            "group": self.group,
            "attempt": self.attempt,
            "total_steps": self.total_steps,
            "checkpoint": self.checkpoint,
            "wandb_url": self.wandb_url,
            "wandb_mode": self.wandb_mode,
            "wandb_dir": self.wandb_dir,
            "finished": self.finished,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunState:
        """The file's JSON object read back; a value of the wrong type reads as missing."""
        attempt = data.get("attempt", 1)
        total = data.get("total_steps")
        return cls(
            attempt=attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else 1,
            run=_text(data.get("run")),
            group=_text(data.get("group")),
            total_steps=total if isinstance(total, int) and not isinstance(total, bool) else None,
            checkpoint=_text(data.get("checkpoint")),
            wandb_url=_text(data.get("wandb_url")),
            wandb_mode=_text(data.get("wandb_mode")),
            wandb_dir=_text(data.get("wandb_dir")),
            finished=data.get("finished") is True,
        )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def read_run_state(run_dir: str | os.PathLike[str] | None, attempt: int | None) -> RunState | None:
    """The ``run.json`` of ``run_dir`` if attempt ``attempt`` wrote it (``attempt`` None: whichever
    attempt wrote it last); None when there is none, it cannot be read, or another attempt wrote it."""
    if not run_dir:
        return None
    try:
        data = json.loads(RunDir.at(run_dir).run_json.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, Mapping):
        return None
    state = RunState.from_dict(data)
    return state if attempt is None or state.attempt == attempt else None
