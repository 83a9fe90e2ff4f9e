"""Fetching one run's metrics from W&B with the public ``wandb.Api``.

Part of :mod:`metta_exp.metrics`. One ``run.history(keys=[KEY, <other axis>])`` request per metric
(a multi-key request drops the rows missing any key; ``_step`` and ``_runtime`` are in every row), the
last value from ``run.summary``, a back-off on HTTP 429. wandb is imported inside :class:`WandbApis`.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar

from metta_exp.metrics.local import Points, as_float

__all__ = ["X_AXES", "WandbApis", "fetch_wandb_run", "rate_limit_wait", "with_backoff"]

X_AXES = {"step": ("_step", "_runtime"), "time": ("_runtime", "_step")}
"""x_axis -> (the W&B history x-axis, the other column fetched with each key)."""
T = TypeVar("T")


def fetch_wandb_run(
    api: Any, path: str, metrics: Sequence[str], samples: int | None, x_axis: str
) -> dict[str, Points]:
    """One run from W&B: one history request per metric, the last value from the summary."""
    x_key, other = X_AXES[x_axis]
    run = with_backoff(lambda: api.run(path))
    summary = with_backoff(lambda: dict(run.summary))
    out: dict[str, Points] = {}
    for key in metrics:
        history = partial(
            run.history, keys=[key, other], samples=samples or 100_000, x_axis=x_key, pandas=False
        )
        series = _wandb_series(with_backoff(history) or [], key, summary)
        if series is not None:
            out[key] = series
    return out


def _wandb_series(rows: Iterable[Mapping[str, Any]], key: str, summary: Mapping[str, Any]) -> Points | None:
    """The sampled history rows of ``key``, by step, ending with the summary's value when it is later."""
    points: list[tuple[int, float, float | None]] = []
    for row in rows:
        step, value = row.get("_step"), as_float(row.get(key))
        if isinstance(step, int | float) and value is not None:
            points.append((int(step), value, as_float(row.get("_runtime"))))
    points.sort(key=lambda p: p[0])
    final = as_float(summary.get(key)) if key in summary else None
    final_step = summary.get("_step")
    if final is not None and isinstance(final_step, int | float) and points:
        if int(final_step) == points[-1][0]:
            points[-1] = (points[-1][0], final, points[-1][2])
        elif int(final_step) > points[-1][0]:
            points.append((int(final_step), final, as_float(summary.get("_runtime"))))
    if not points:
        return None
    times = [t for _, _, t in points if t is not None and not math.isnan(t)]
    t0 = min(times) if times else None
    return Points(
        steps=[p[0] for p in points],
        values=[p[1] for p in points],
        times=[p[2] - t0 if p[2] is not None and t0 is not None else math.nan for p in points],
    )


def with_backoff(
    call: Callable[[], T], tries: int = 5, base: float = 2.0, sleep: Callable[[float], None] = time.sleep
) -> T:
    """``call()``, retried after ``base * 2**i`` seconds (or the server's Retry-After) on HTTP 429.

    wandb's client already retries for a while; this covers a rate limit that outlasts it.
    """
    for attempt in range(tries):
        try:
            return call()
        except Exception as exc:
            wait = rate_limit_wait(exc)
            if wait is None or attempt == tries - 1:
                raise
            sleep(min(60.0, wait if wait > 0 else base * 2**attempt))
    raise AssertionError("unreachable")


def rate_limit_wait(exc: BaseException) -> float | None:
    """None unless ``exc`` (or what it wraps) is an HTTP 429; then the Retry-After seconds, or 0."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        response = getattr(current, "response", None)
        if getattr(response, "status_code", None) == 429:
            try:
                return float(response.headers.get("Retry-After", 0))  # type: ignore[union-attr]
            except (TypeError, ValueError):
                return 0.0
        wrapped = getattr(current, "exc", None)
        todo += [
            current.__cause__,
            current.__context__,
            wrapped if isinstance(wrapped, BaseException) else None,
        ]
    return None


class WandbApis:
    """One ``wandb.Api`` per worker thread and W&B server (the client is not documented as thread-safe).

    ``get(base_url)`` talks to the server a run was logged to (``overrides={"base_url": ...}``, whose
    netrc key wandb looks up itself); None is wandb's default (``WANDB_BASE_URL`` or its settings).
    They are made one at a time, and a failure (no credentials: ``wandb.Api`` may ask to log in) is
    kept and raised again for every other run of that server, so a user is asked at most once.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.local = threading.local()
        self.lock = threading.Lock()
        self.errors: dict[str | None, Exception] = {}

    def get(self, base_url: str | None = None) -> Any:
        apis: dict[str | None, Any] = self.local.__dict__.setdefault("apis", {})
        if base_url in apis:
            return apis[base_url]
        with self.lock:
            if base_url in self.errors:
                raise self.errors[base_url]
            try:
                import wandb

                overrides = {"base_url": base_url.rstrip("/")} if base_url else None
                api = apis[base_url] = wandb.Api(timeout=max(1, round(self.timeout)), overrides=overrides)
            except Exception as exc:
                self.errors[base_url] = exc
                raise
        return api
