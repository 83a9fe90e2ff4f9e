"""The W&B side of :mod:`metta_exp.tracking`: whether W&B is on, who reports, and the guarded mirror.

Standard library only; ``wandb`` is imported inside :class:`WandbMirror` and only when it will be used.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from metta_exp.logs.lines import WandbRef, format_wandb_line
from metta_exp.runs.wandb import wandb_mode

__all__ = [
    "NO_CREDENTIALS",
    "WandbMirror",
    "has_wandb_credentials",
    "is_rank_zero",
    "reason",
    "say",
    "wandb_mode",
]

NO_CREDENTIALS = "[metta-exp] W&B off: no credentials (set WANDB_API_KEY or wandb.mode=offline)"


def has_wandb_credentials(env: Mapping[str, str]) -> bool:
    """WANDB_API_KEY is set, or the netrc file (``$NETRC``, else ``~/.netrc``, else ``~/_netrc``) has a
    ``machine`` entry for the W&B server's ``host[:port]`` (of ``WANDB_BASE_URL``, default
    ``api.wandb.ai``), which is the entry wandb reads (wandb/sdk/lib/wbauth/wbnetrc.py)."""
    if env.get("WANDB_API_KEY", "").strip():
        return True
    from urllib.parse import urlsplit

    netloc = urlsplit(env.get("WANDB_BASE_URL", "").strip() or "https://api.wandb.ai").netloc
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    paths = [Path(env["NETRC"]).expanduser()] if env.get("NETRC") else [home / ".netrc", home / "_netrc"]
    for path in paths:
        try:
            tokens = path.read_text().split()
        except OSError:
            continue
        return any(a == "machine" and b == netloc for a, b in zip(tokens, tokens[1:], strict=False))
    return False


def is_rank_zero(env: Mapping[str, str]) -> bool:
    """Whether this process is rank 0 of its job: ``RANK`` (torchrun's global rank) when it is set,
    else ``SKYPILOT_NODE_RANK`` and ``LOCAL_RANK`` both 0 (or unset)."""
    if env.get("RANK", "").strip():
        return _rank(env, "RANK") == 0
    return _rank(env, "SKYPILOT_NODE_RANK") == 0 and _rank(env, "LOCAL_RANK") == 0


def _rank(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env.get(name, "").strip() or 0)
    except ValueError:
        return 0


class WandbMirror:
    """The W&B run, or nothing. Every call to wandb is guarded: a failure switches W&B off.

    **A SkyPilot recovery** runs the job's command again on a new machine, with the same ``WANDB_RUN_ID``:
    ``wandb.init(resume="allow")`` resumes the attempt's W&B run, and W&B drops every step below the one
    it resumes at (``wandb/sdk/internal/handler.py``: "step ... is less than current step"; the run's
    ``starting_step``). A trainer that resumes from its checkpoint goes on past it, in the same run. One
    that starts below it (from step 0, or from a checkpoint older than its last logged step) would lose
    those steps: at its first such ``log`` the mirror finishes the resumed run and goes on in a W&B run of
    its own, ``<id>-r<random>``, named ``<name> (recovered)`` in the same group, and says so in a
    ``[metta-exp] wandb`` line (the notebook shows each recovery's run)."""

    def __init__(
        self, run_dir: Path, config: Mapping[str, Any] | None, env: Mapping[str, str], on: bool = True
    ) -> None:
        self.run: Any = None
        self.mode = "disabled"
        self.url: str | None = None
        self.ref: WandbRef | None = None
        self.dir: str | None = None
        self._floor = 0  # W&B drops steps below this one (a resumed run's starting step)
        self._init: dict[str, Any] = {}
        mode = wandb_mode(env) if on else "disabled"
        if mode == "disabled":
            return
        if mode not in ("online", "offline"):
            say(f"[metta-exp] W&B off: unknown WANDB_MODE {env.get('WANDB_MODE')!r}")
            return
        if mode == "online" and not has_wandb_credentials(env):
            say(NO_CREDENTIALS)
            return
        try:
            import wandb

            self._init = {
                "name": env.get("WANDB_NAME") or None,
                "group": env.get("WANDB_RUN_GROUP") or None,
                "project": env.get("WANDB_PROJECT") or "metta-exp",
                "entity": env.get("WANDB_ENTITY") or None,
                "config": dict(config or {}),
                # resume only means something online (offline, wandb warns that it ignores it); it continues
                # an attempt's own run after a SkyPilot recovery (every attempt has its own run id)
                "resume": "allow" if mode == "online" else None,
                "mode": "offline" if mode == "offline" else "online",
                "dir": str(run_dir),
            }
            self.run = wandb.init(id=env.get("WANDB_RUN_ID") or None, **self._init)
            self.mode = mode
            if mode == "online":
                self._floor = int(getattr(self.run, "starting_step", 0) or 0)
                self._announce()
            else:
                sync_dir = getattr(self.run.settings, "sync_dir", None)
                self.dir = str(sync_dir) if sync_dir else os.path.dirname(self.run.dir)
        except Exception as exc:  # W&B must never stop training
            self.run = None
            say(f"[metta-exp] W&B off: wandb.init failed: {reason(exc)}")

    def _announce(self) -> None:
        self.url = self.run.url
        self.ref = WandbRef(self.run.url, self.run.entity, self.run.project, self.run.id)
        say(format_wandb_line(self.ref))

    def _recovered(self) -> None:
        """Go on in a W&B run of this recovery's own (see the class docstring)."""
        import secrets

        import wandb

        base, floor = self.run.id, self._floor
        self._floor = 0
        say(f"[metta-exp] W&B run {base} already has steps up to {floor - 1}; this recovery of the job logs "
            "below them, in a W&B run of its own")  # fmt: skip
        self.run.finish()
        name = self._init.get("name")
        settings = {**self._init, "name": f"{name} (recovered)" if name else None}
        self.run = wandb.init(id=f"{base}-r{secrets.token_hex(3)}", **settings)
        self._announce()

    def log(self, metrics: Mapping[str, int | float], step: int) -> None:
        if self.run is None:
            return
        try:
            if step < self._floor:
                self._recovered()
            self.run.log(dict(metrics), step=step)
        except Exception as exc:
            say(f"[metta-exp] W&B off: wandb.log failed: {reason(exc)}")
            self.run = None

    def finish(self, exit_code: int) -> None:
        if self.run is None:
            return
        try:
            self.run.finish(exit_code=exit_code)
        except Exception as exc:
            say(f"[metta-exp] W&B: wandb.finish failed: {reason(exc)}")
        self.run = None


def reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def say(line: str) -> None:
    print(line, file=sys.stdout, flush=True)
