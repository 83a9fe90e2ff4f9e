"""State the SkyPilot backends of one state directory share: the queue answer, and jobs to cancel.

**The queue.** There is one runner process per group, and each polls its jobs. So that all active groups
together cost ONE ``jobs.queue_v2`` call per poll interval, and that call asks only for the jobs of
active groups, each runner registers what it wants (its job ids, and for attempts whose id it does not
know yet, a name prefix) in a small file, and whichever runner refreshes the shared answer asks for the
union of every live registration. A runner whose wants the current answer does not cover (it just
started, or launched new jobs) asks again at once.

Correct under concurrency: files are replaced atomically (readers see a whole answer or the previous
one), and a runner that needs a new answer takes an exclusive lock, looks at the file again (another
runner may just have refreshed it), and only then asks SkyPilot, so runners that wake up together make
one call between them. A failed call is cached too, for the same interval, so an unreachable API server
is asked once per interval rather than once per runner. A runner that cannot get the lock within the
interval asks SkyPilot itself: slower, never wrong.

**Tombstones.** An attempt that had to be cancelled while SkyPilot could not see it yet (a launch still
in flight, a controller still starting) is remembered by name, so that whoever sees it show up later
cancels it: nothing runs unobserved.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from metta_exp.atomic import write_atomic
from metta_exp.backends.skypilot.api import ControllerNotUp, QueueEntry, SkyApiError, SkyRefused

__all__ = ["SharedQueue", "Tombstones"]

Fetch = Callable[[list[int], list[str]], list[QueueEntry]]
TOMBSTONE_TTL_S = 24 * 3600.0


class SharedQueue:
    """``get(ids, names)`` returns the queue, from the shared file if it is fresh and covers the wants."""

    def __init__(self, directory: Path, identity: str, max_age: float, fetch: Fetch):
        key = hashlib.sha256(identity.encode()).hexdigest()[:12]
        self.path = directory / f"queue-{key}.json"
        self.lock_path = directory / f"queue-{key}.lock"
        self.wants_dir = directory / f"wants-{key}"
        self.wants_path = self.wants_dir / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
        self.max_age = max_age
        self.fetch = fetch
        self._wanted: tuple[list[int], list[str]] | None = None

    def get(
        self, ids: Iterable[int] = (), names: Iterable[str] = (), fresh: bool = False
    ) -> list[QueueEntry]:
        """Entries for at least these job ids and name prefixes (more when other runners want more).

        Raises ``SkyApiError`` when SkyPilot did not answer (now, or within the last ``max_age`` s), and
        ``ControllerNotUp`` when the jobs controller is not up.
        """
        ids, names = sorted(set(ids)), sorted(set(names))
        if not fresh:  # a one-off look-up (fresh) is not what this runner keeps polling for
            self._register(ids, names)
        if not fresh:
            cached = self._read_fresh()
            if cached is not None and _covers(cached, ids, names):
                return _entries(cached)
        with self._lock():
            if not fresh:
                cached = self._read_fresh()
                if cached is not None and _covers(cached, ids, names):
                    return _entries(cached)
            all_ids, all_names = self._union(ids, names)
            try:
                entries = self.fetch(all_ids, all_names)
            except SkyApiError as exc:
                status = exc.status if isinstance(exc, ControllerNotUp) else "-"
                failure = {"fetched_at": time.time(), "error": str(exc), "controller": status}
                if isinstance(exc, SkyRefused):
                    failure["refused"] = exc.fix
                self._write(failure)
                raise
            self.put(entries, all_ids, all_names)
            return entries

    def put(self, entries: list[QueueEntry], ids: list[int], names: list[str]) -> None:
        """Share an answer (for these wants) with every runner."""
        self._write({"fetched_at": time.time(), "ids": ids, "names": names,
                     "entries": [e.to_dict() for e in entries]})  # fmt: skip

    def invalidate(self) -> None:
        """Forget the shared answer (after a submit changed the queue): the next ``get`` asks SkyPilot."""
        self.path.unlink(missing_ok=True)

    def close(self) -> None:
        self.wants_path.unlink(missing_ok=True)

    def age(self) -> float | None:
        data = _read(self.path)
        return None if data is None else time.time() - float(data["fetched_at"])

    def _register(self, ids: list[int], names: list[str]) -> None:
        if self._wanted == (ids, names) and _age(self.wants_path) < self.max_age:
            return
        self._wanted = (ids, names)
        self.wants_dir.mkdir(parents=True, exist_ok=True)
        _write_json(self.wants_path, {"ids": ids, "names": names})

    def _union(self, ids: list[int], names: list[str]) -> tuple[list[int], list[str]]:
        """Every live registration's wants (a registration not renewed for a while is a dead runner's)."""
        all_ids, all_names = set(ids), set(names)
        limit = max(3 * self.max_age, 60.0)
        for path in self.wants_dir.glob("*.json"):
            if _age(path) > limit:
                path.unlink(missing_ok=True)
                continue
            data = _read(path, key="ids") or {}
            all_ids.update(int(i) for i in data.get("ids", []))
            all_names.update(str(n) for n in data.get("names", []))
        return sorted(all_ids), sorted(all_names)

    def _read_fresh(self) -> dict | None:
        data = _read(self.path)
        if data is None:
            return None
        age = time.time() - float(data["fetched_at"])
        return data if 0 <= age < self.max_age else None

    def _write(self, data: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _write_json(self.path, data)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        with _flock(self.lock_path, max(self.max_age, 1.0)):
            yield


class Tombstones:
    """Names of attempts to cancel as soon as SkyPilot shows them: ``{sky name: {"group", "at"}}``."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "tombstones.json"

    def add(self, group: str, names: Iterable[str]) -> None:
        names = list(names)
        if names:
            self._update(lambda data: data.update({n: {"group": group, "at": time.time()} for n in names}))

    def remove(self, names: Iterable[str]) -> None:
        names = set(names)
        if names & set(self.all()):
            self._update(lambda data: [data.pop(n, None) for n in names])

    def all(self, group: str | None = None) -> dict[str, dict[str, Any]]:
        data = _read(self.path, key=None) or {}
        now = time.time()
        return {
            name: info
            for name, info in data.items()
            if isinstance(info, dict) and now - float(info.get("at", 0)) < TOMBSTONE_TTL_S
            and (group is None or info.get("group") == group)
        }  # fmt: skip

    def _update(self, change: Callable[[dict[str, Any]], Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _flock(self.path.with_suffix(".lock"), 10.0):
            data = self.all()
            change(data)
            _write_json(self.path, data)


def _covers(data: dict, ids: list[int], names: list[str]) -> bool:
    if "error" in data:
        return True  # a failure is shared for the interval, whatever was asked
    answered = set(data.get("ids", [])) | {int(e["job_id"]) for e in data.get("entries", [])}
    return set(ids) <= answered and set(names) <= set(data.get("names", []))


def _entries(data: dict) -> list[QueueEntry]:
    if "error" in data:
        message = f"{data['error']} (cached {time.time() - float(data['fetched_at']):.1f} s ago)"
        if data.get("refused"):
            raise SkyRefused(message, str(data["refused"]))
        if data.get("controller") != "-":
            raise ControllerNotUp(message, data.get("controller"))
        raise SkyApiError(message)
    return [QueueEntry.from_dict(e) for e in data.get("entries", [])]


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return float("inf")


def _read(path: Path, key: str | None = "fetched_at") -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and (key is None or key in data) else None


def _write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data))


@contextlib.contextmanager
def _flock(path: Path, wait_s: float) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_s
    with open(path, "a") as lock:
        locked = False
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                locked = True
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.01)
        try:
            yield
        finally:
            if locked:
                fcntl.flock(lock, fcntl.LOCK_UN)
