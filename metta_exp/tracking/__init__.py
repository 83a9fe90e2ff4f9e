"""What a training script calls to report metrics and progress.

    from metta_exp import tracking

    with tracking.init(total_steps=20000, config={"learning_rate": 0.01}) as run:
        for step in ...:
            run.log({"overview/reward": 21.5, "overview/sps": 3100.0}, step=step)
        save(model, run.path("ckpt.npz"))  # inside the run directory: parallel runs never share it
        run.checkpoint("ckpt.npz")          # relative paths are inside the run directory too

Everything lands in the run directory, ``$METTA_EXP_RUN_DIR`` (``./metta_exp_run/`` when the script
runs by hand):

- ``metrics.jsonl``: one flat JSON object per ``log()`` call, ``{"_step", "_time", "_attempt", ...}``,
  appended as one whole line with one ``write`` so a concurrent reader never sees half a line; NaN and
  infinities are written as ``null``.
- ``run.json``: the run's state (checkpoint, W&B URL and mode, finished), replaced atomically on
  ``init``, ``checkpoint`` and ``finish``.

On stdout (the job's log) it prints ``[metta-exp] progress step=... total=... sps=... key=value ...`` at the
first log, then at most every ``$METTA_EXP_PROGRESS_EVERY`` seconds, and at finish; ``[metta-exp] checkpoint
path=...`` on each checkpoint, and, when W&B is online, ``[metta-exp] wandb url=... entity=... project=...
id=...`` once W&B is up and again at finish (so even a short log tail holds it).
:func:`parse_progress_line`, :func:`last_progress`, :func:`last_checkpoint` and :func:`last_wandb` read them
back (``metta_exp.logs.lines``, pure: the monitor and the runner use them on local and remote logs alike).

Only rank 0 reports. In a multi-node job (SkyPilot's ``SKYPILOT_NODE_RANK``) or a multi-process one
(torchrun's ``RANK``/``LOCAL_RANK``) every other rank gets a working ``Run`` that validates its calls and
writes nothing: no metrics file, no ``run.json``, no W&B run, no lines. One W&B run id is shared by all
ranks, so a second ``wandb.init`` with it would fight rank 0's run, and ranks on one machine share one
run directory, where their metrics lines would interleave.

Metrics are mirrored to W&B when W&B is on (see :func:`init`). W&B never stops training: a W&B failure
is reported in one line and W&B is switched off for the rest of the run (the mirror and the rank rule
live in :mod:`metta_exp.tracking.wandb`). This module imports only the standard library; ``wandb`` is
imported inside :func:`init` and only when it will be used.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from metta_exp.atomic import write_atomic
from metta_exp.logs.lines import (
    CHECKPOINT_PREFIX,
    PROGRESS_PREFIX,
    WANDB_PREFIX,
    Progress,
    WandbRef,
    format_checkpoint_line,
    format_progress_line,
    format_wandb_line,
    last_checkpoint,
    last_progress,
    last_wandb,
    parse_checkpoint_line,
    parse_progress_line,
    parse_wandb_line,
)
from metta_exp.paths import METRICS_FILE, RUN_FILE, RunDir
from metta_exp.runs.state import RunState
from metta_exp.tracking.wandb import (
    WandbMirror,
    is_rank_zero,
    say,
    wandb_mode,
)

__all__ = [
    "CHECKPOINT_PREFIX",
    "DEFAULT_RUN_DIR",
    "METRICS_FILE",
    "PROGRESS_PREFIX",
    "RUN_FILE",
    "WANDB_PREFIX",
    "Progress",
    "Run",
    "WandbRef",
    "format_checkpoint_line",
    "format_progress_line",
    "format_wandb_line",
    "init",
    "is_rank_zero",
    "last_checkpoint",
    "last_progress",
    "last_wandb",
    "parse_checkpoint_line",
    "parse_progress_line",
    "parse_wandb_line",
    "wandb_mode",
]

DEFAULT_RUN_DIR = "metta_exp_run"
MAX_PROGRESS_METRICS = 32
"""A progress line shows at most this many metrics (``overview/*`` first) to keep logs readable."""
DEFAULT_PROGRESS_EVERY = 2.0
SPS_KEY = "overview/sps"


# ---------------------------------------------------------------------------------------------------
# Values


def _number(key: object, value: object) -> int | float:
    """``value`` as a JSON-ready int or float (bools as 0/1); TypeError for anything not a number."""
    if not isinstance(key, str) or not key:
        raise TypeError(f"metric names must be non-empty strings, got {key!r}")
    if key.startswith("_"):
        raise TypeError(f"metric name {key!r}: names starting with '_' are reserved (_step, _time, _attempt)")
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if not isinstance(value, str | bytes | numbers.Complex) and hasattr(value, "__float__"):
        try:  # a one-element array or tensor
            return float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            pass
    raise TypeError(f"metric {key!r} must be an int or a float, got {type(value).__name__} {value!r:.80}")


def _json_value(value: int | float) -> int | float | None:
    return value if isinstance(value, int) or math.isfinite(value) else None


# ---------------------------------------------------------------------------------------------------
# The run


class Run:
    """A training run reporting to its run directory (and W&B). Make one with :func:`init`.

    ``log``, ``checkpoint`` and ``finish`` may be called from several threads. After ``finish`` the
    run is closed: ``log`` and ``checkpoint`` raise RuntimeError, ``finish`` does nothing.
    ``env`` (default ``os.environ``), ``clock`` (for progress timing) and ``wall_clock`` (for
    ``_time``) can be given to run it somewhere else or at a fixed time.
    """

    def __init__(
        self,
        total_steps: int | None = None,
        config: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        env = os.environ if env is None else env
        self._clock = clock
        self._wall_clock = wall_clock
        if total_steps is not None and (isinstance(total_steps, bool) or not isinstance(total_steps, int)):
            raise TypeError(f"total_steps must be an int or None, got {total_steps!r}")
        self.run_dir = Path(env.get("METTA_EXP_RUN_DIR") or DEFAULT_RUN_DIR).absolute()
        self.rank_zero = is_rank_zero(env)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.total_steps = total_steps
        self.run_name = env.get("METTA_EXP_RUN") or None
        self.group = env.get("METTA_EXP_GROUP") or None
        self.attempt = _env_number(env, "METTA_EXP_ATTEMPT", 1, int)
        self.progress_every = _env_number(env, "METTA_EXP_PROGRESS_EVERY", DEFAULT_PROGRESS_EVERY, float)
        self.checkpoint_path: str | None = None
        self.finished = False
        self._closed = False
        self._lock = threading.Lock()
        self._step: int | None = None
        self._latest: dict[str, int | float] = {}
        self._last_line_time = clock()
        self._sps_base: tuple[float, int] | None = None  # (time, step) the next sps is measured from
        self._sps: float | None = None
        self._fd: int | None = None
        if self.rank_zero:
            self._fd = os.open(self.metrics_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._wandb = WandbMirror(self.run_dir, config, env, on=self.rank_zero)
        self._write_run_json()

    @property
    def metrics_path(self) -> Path:
        return RunDir(self.run_dir).metrics

    @property
    def wandb_url(self) -> str | None:
        return self._wandb.url

    @property
    def wandb_mode(self) -> str:
        return self._wandb.mode

    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Record ``metrics`` (numbers by name) at ``step`` (default: the last step logged + 1).

        Appends one line to ``metrics.jsonl``, mirrors to W&B with the same step, and prints a
        progress line at the first log and then when the last one is at least ``METTA_EXP_PROGRESS_EVERY``
        seconds old (a run plotted from its log has its first point and its last, however short it is).
        Raises TypeError for a value that is not a number, before anything is written.
        """
        values = {key: _number(key, value) for key, value in metrics.items()}
        with self._lock:
            self._check_open("log")
            step = self._next_step(step)
            record: dict[str, Any] = {"_step": step, "_time": self._wall_clock(), "_attempt": self.attempt}
            record.update((key, _json_value(value)) for key, value in values.items())
            line = json.dumps(record, allow_nan=False) + "\n"
            if self._fd is not None:
                _write_all(self._fd, line.encode())
            self._step = step
            self._latest.update(values)
            now = self._clock()
            first = self._sps_base is None
            if first:
                self._sps_base = (now, step)
            if first or now - self._last_line_time >= self.progress_every:  # a log's first point, too
                self._print_progress(now)
        self._wandb.log(values, step)

    def path(self, relative: str | os.PathLike[str]) -> Path:
        """``relative`` inside the run directory (an absolute path stays as it is): where to save a
        checkpoint or an artifact so that parallel runs, which share the launching directory as
        their working directory, never write the same file."""
        return self.run_dir / relative

    def checkpoint(self, path: str | os.PathLike[str]) -> str:
        """Record ``path`` as the latest checkpoint: a checkpoint line on stdout and ``run.json``.
        Returns the recorded path.

        A relative path is inside the run directory (as :meth:`path` makes it), an absolute one is
        kept, and so is a URL (``s3://...``). A relative path that exists only in the working
        directory gets a one-line hint on stderr.
        """
        text = os.fspath(path)
        recorded = text if "://" in text else str(self.path(text))
        if (
            self.rank_zero  # other ranks print nothing (see the module docstring)
            and "://" not in text
            and not os.path.exists(recorded)
            and not os.path.isabs(text)
            and os.path.exists(text)
        ):
            print(
                f"[metta-exp] checkpoint {text!r} means {recorded} (relative paths are inside the run "
                f"directory), which does not exist; {os.path.abspath(text)} does: save to run.path({text!r})",
                file=sys.stderr,
                flush=True,
            )
        with self._lock:
            self._check_open("checkpoint")
            self.checkpoint_path = recorded
            if self.rank_zero:
                say(format_checkpoint_line(self.checkpoint_path))
            self._write_run_json()
        return recorded

    def progress(self) -> Progress:
        """The progress a line printed now would show (sps as last measured)."""
        with self._lock:
            return self._progress(self._sps)

    def finish(self, exit_code: int = 0) -> None:
        """Close the metrics file, print a final progress line, finish W&B and write ``run.json``.

        ``finished`` in ``run.json`` is true when ``exit_code`` is 0 (a context manager passes 1 when
        the block raised).
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._fd is not None:
                os.close(self._fd)
            self._print_progress(self._clock())
            if self._wandb.ref is not None:
                say(format_wandb_line(self._wandb.ref))
        self._wandb.finish(exit_code)
        with self._lock:
            self.finished = exit_code == 0
            self._write_run_json()

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.finish(0 if exc_type is None else 1)

    def _check_open(self, what: str) -> None:
        if self._closed:
            raise RuntimeError(f"Run.{what}() after finish()")

    def _next_step(self, step: int | None) -> int:
        if step is None:
            return 0 if self._step is None else self._step + 1
        if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
            raise TypeError(f"step must be a non-negative int, got {step!r}")
        return int(step)

    def _print_progress(self, now: float) -> None:
        step = self._step if self._step is not None else 0
        if self._sps_base is not None:
            base_time, base_step = self._sps_base
            if step > base_step and now > base_time:
                self._sps = (step - base_step) / (now - base_time)
            self._sps_base = (now, step)
        self._last_line_time = now
        if self.rank_zero:
            say(format_progress_line(self._progress(self._sps)))

    def _progress(self, measured_sps: float | None) -> Progress:
        latest = dict(self._latest)
        logged_sps = latest.pop(SPS_KEY, None)
        sps = float(logged_sps) if logged_sps is not None and math.isfinite(logged_sps) else measured_sps
        keys = sorted(latest, key=lambda key: not key.startswith("overview/"))[:MAX_PROGRESS_METRICS]
        return Progress(
            step=self._step if self._step is not None else 0,
            total=self.total_steps,
            sps=sps,
            metrics={key: float(latest[key]) for key in keys},
        )

    def _write_run_json(self) -> None:
        if not self.rank_zero:
            return
        state = RunState(
            attempt=self.attempt,
            run=self.run_name,
            group=self.group,
            total_steps=self.total_steps,
            checkpoint=self.checkpoint_path,
            wandb_url=self._wandb.url,
            wandb_mode=self._wandb.mode,
            wandb_dir=self._wandb.dir,
            finished=self.finished,
        )
        _replace_json(RunDir(self.run_dir).run_json, state.to_dict())


def init(total_steps: int | None = None, config: Mapping[str, Any] | None = None) -> Run:
    """Start reporting: open the run directory, write ``run.json``, start W&B if it is on.

    W&B follows ``WANDB_MODE``: ``disabled`` never imports wandb; ``offline`` writes an offline run
    under the run directory (``wandb sync`` it later); ``online`` (or unset) is used only when
    credentials exist (``WANDB_API_KEY``, or a netrc entry for the W&B host), otherwise one line says
    W&B is off. The run's id, name, group, project and entity come from ``WANDB_RUN_ID``,
    ``WANDB_NAME``, ``WANDB_RUN_GROUP``, ``WANDB_PROJECT`` (default ``metta-exp``) and
    ``WANDB_ENTITY``, which metta-exp sets for every job (``WANDB_RUN_ID`` is the attempt's own). An
    online run's URL is printed as a ``[metta-exp] wandb`` line. On any rank but 0 (see
    :func:`is_rank_zero`) nothing is written or started. Use the run as a context manager or call
    :meth:`Run.finish`.
    """
    return Run(total_steps=total_steps, config=config)


def _env_number(env: Mapping[str, str], name: str, default: Any, kind: type) -> Any:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        return kind(text)
    except ValueError:
        say(f"[metta-exp] ignoring {name}={text!r}: not a number, using {default}")
        return default


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _replace_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically: a reader sees the old file or the new one, whole."""
    write_atomic(path, json.dumps(data, indent=2) + "\n")
