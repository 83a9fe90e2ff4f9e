"""Calling SkyPilot from the backend: bounded retries, and many calls at once on daemon threads."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from metta_exp.backends.skypilot.api import SkyApiError, SkyRequestError

__all__ = ["concurrently", "env_float", "retry"]

log = logging.getLogger(__name__)


def retry(call: Callable[[], Any], deadline: float, attempts: int = 3) -> Any:
    """``call()``, tried again after a transient ``SkyApiError`` (not after a refusal) until ``deadline``."""
    for attempt in range(attempts):
        try:
            return call()
        except SkyRequestError:
            raise
        except SkyApiError:
            pause = 0.5 * 2**attempt
            if attempt == attempts - 1 or time.monotonic() + pause > deadline:
                raise
            time.sleep(pause)
    raise AssertionError("unreachable")


def concurrently(fn: Callable[[Any], None], items: Sequence[Any], workers: int, deadline: float) -> None:
    """``fn(item)`` for every item on up to ``workers`` daemon threads, until all are done or ``deadline``.

    Items still running at the deadline finish in the background (``fn`` records its own outcome); the
    threads are daemons so a hung SDK call never keeps the process alive.
    """
    if not items:
        return
    todo = deque(items)
    lock = threading.Lock()
    remaining = [len(items)]
    done = threading.Event()

    def work() -> None:
        while True:
            with lock:
                if not todo:
                    return
                item = todo.popleft()
            try:
                fn(item)
            except Exception:  # fn records its outcomes; a bug must not hang the caller
                log.exception("metta-exp SkyPilot worker failed")
            finally:
                with lock:
                    remaining[0] -= 1
                    if remaining[0] == 0:
                        done.set()

    for _ in range(min(workers, len(items))):
        threading.Thread(target=work, daemon=True, name="metta-exp-sky").start()
    done.wait(timeout=max(0.0, deadline - time.monotonic()))


def env_float(name: str, default: float) -> float:
    """A number setting from the environment (``default`` when unset or not a number)."""
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default
