"""One SkyPilot queue answer shared by every runner on a state directory.

There is one runner process per group, and each polls its jobs. So that all active groups together
still cost ONE ``sky.jobs.queue_v2`` call per poll interval, the answer (every metta-exp managed job of
this user) is kept in a small JSON file next to the store, and a runner that finds it younger than the
interval uses it instead of asking SkyPilot.

Correct under concurrency: the file is replaced atomically (readers see a whole answer or the previous
one), and a runner that needs a new answer takes an exclusive lock, looks at the file again (another
runner may just have refreshed it), and only then asks SkyPilot, so runners that wake up together make
one call between them. A failed call is cached too, for the same interval, so an unreachable API server
is asked once per interval rather than once per runner. A runner that cannot get the lock within the
interval (the holder is stuck) asks SkyPilot itself: slower, never wrong.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from metta_exp.backends.skypilot_api import QueueEntry, SkyApiError

__all__ = ["SharedQueue"]


class SharedQueue:
    """``get()`` returns the queue, from the shared file if it is younger than ``max_age`` seconds."""

    def __init__(self, directory: Path, identity: str, max_age: float, fetch: Callable[[], list[QueueEntry]]):
        key = hashlib.sha256(identity.encode()).hexdigest()[:12]
        self.path = directory / f"queue-{key}.json"
        self.lock_path = directory / f"queue-{key}.lock"
        self.max_age = max_age
        self.fetch = fetch

    def get(self, fresh: bool = False) -> list[QueueEntry]:
        """The queue; ``fresh`` skips the cached answer (its new answer is shared all the same).

        Raises ``SkyApiError`` when SkyPilot did not answer (now, or within the last ``max_age`` s).
        """
        if not fresh:
            cached = self._read_fresh()
            if cached is not None:
                return _entries(cached)
        with self._lock():
            if not fresh:
                cached = self._read_fresh()
                if cached is not None:
                    return _entries(cached)
            try:
                entries = self.fetch()
            except SkyApiError as exc:
                self._write({"fetched_at": time.time(), "error": str(exc)})
                raise
            self._write({"fetched_at": time.time(), "entries": [e.to_dict() for e in entries]})
            return entries

    def invalidate(self) -> None:
        """Forget the shared answer (after a submit changed the queue): the next ``get`` asks SkyPilot."""
        self.path.unlink(missing_ok=True)

    def age(self) -> float | None:
        data = self._read()
        return None if data is None else time.time() - float(data["fetched_at"])

    def _read(self) -> dict | None:
        try:
            data = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return data if isinstance(data, dict) and "fetched_at" in data else None

    def _read_fresh(self) -> dict | None:
        data = self._read()
        if data is None:
            return None
        age = time.time() - float(data["fetched_at"])
        return data if 0 <= age < self.max_age else None

    def _write(self, data: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{id(data)}.tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.path)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + max(self.max_age, 1.0)
        with open(self.lock_path, "a") as lock:
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    locked = True
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        locked = False
                        break
                    time.sleep(0.01)
            try:
                yield
            finally:
                if locked:
                    fcntl.flock(lock, fcntl.LOCK_UN)


def _entries(data: dict) -> list[QueueEntry]:
    if "error" in data:
        raise SkyApiError(f"{data['error']} (cached {time.time() - float(data['fetched_at']):.1f} s ago)")
    return [QueueEntry.from_dict(e) for e in data.get("entries", [])]
