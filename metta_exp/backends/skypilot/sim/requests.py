"""The simulated API server's side of every call: what it costs, how it fails, and its request table.

- **Cost** (``sky/client/sdk.py``, ``sky/jobs/client/sdk.py``, ``sky/server/common.py``): each request is
  a POST, each answer a ``get``; a health check (``api.health``) precedes a process's requests at most
  every 5 s (``get_api_server_status_response`` caches it 5 s). Every request takes ``latency_s``
  (``configure``), and is written to ``DIR/calls.log`` (call, pid, thread, answer bytes).
- **Injected failures** (``fail_next``): a transient error (no answer), a refusal, a lost answer (a
  launch POST that created its job and whose answer never came back), an interrupted request
  (``RequestInterruptedError``: the server restarted while it ran, ``sky/server/uvicorn.py``); a tail
  whose request fails answers ``""``, as the real client does.
- **Lasting refusals** (``METTA_EXP_FAKE_SKY_REFUSE``): ``auth`` (every call: ``ApiServerAuthenticationError``,
  ``sky/server/common.py``), ``version`` (every call: ``APIVersionMismatchError``), ``old-server``
  (``jobs.queue_v2``: ``APINotSupportedError``, ``sky/server/versions.py``: ``minimal_api_version(18)``).
- **The request table** (``DIR/requests``): a launch answers a request id that ``get`` turns into the job
  id. ``restart_server()`` interrupts the requests still running (their job is never made; ``get`` then
  answers ``RequestInterruptedError`` for ever) and, with ``wipe``, forgets every request id (a local API
  server started anew: ``get`` answers HTTP 404).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from metta_exp.backends.skypilot.api import REFUSALS, RequestLost, SkyApiError, SkyRefused, SkyRequestError
from metta_exp.backends.skypilot.sim.account import read_json, write_json

if TYPE_CHECKING:
    from metta_exp.backends.skypilot.sim.account import Account

__all__ = ["LostAnswer", "Requests"]

_HEALTH_TTL_S = 5.0  # sky/server/common.py: get_api_server_status_response, TTLCache(ttl=5.0)
_health_lock = threading.Lock()
_health_at: dict[str, float] = {}  # per process, like SkyPilot's module-level cache
_ENDPOINT = "http://127.0.0.1:46580"
_REFUSALS = {
    "auth": (
        None,
        "ApiServerAuthenticationError",
        f"Authentication required for SkyPilot API server at {_ENDPOINT}. Please run: sky api login -e {_ENDPOINT}",
    ),
    "version": (
        None,
        "APIVersionMismatchError",
        "Client and API server versions are incompatible (client API version 44, server API version 52).",
    ),
    "old-server": (
        "queue",
        "APINotSupportedError",
        "Function queue_v2 is introduced after the remote server version '0.9.3' is released. Upgrade the "
        "remote server to 0.14.1 and re-run the command.",
    ),
}


class LostAnswer(Exception):
    """Marks an injected lost answer: the request did its work, the client saw a transient error."""


class Requests:
    """Accounting, failures and the request table of one account (``count`` counts into the API's calls)."""

    def __init__(self, account: Account, count: Callable[[str], None]) -> None:
        self.account = account
        self.count = count
        (account.root / "requests").mkdir(exist_ok=True)

    # --- cost -----------------------------------------------------------------------------------------

    def request(self, method: str, call: str, size: int = 0) -> None:
        """Count one HTTP request (after a health check when due), take its latency, and refuse it when the
        account refuses every call."""
        calls = [call]
        with _health_lock:
            key = str(self.account.root)
            if call != "get" and time.monotonic() - _health_at.get(key, -1e9) >= _HEALTH_TTL_S:
                _health_at[key] = time.monotonic()
                calls.insert(0, "api.health")
        self._log(calls, call, size)
        latency = float(self.account.faults().get("latency_s", 0)) * len(calls)
        if latency > 0:
            time.sleep(latency)
        self._refuse(method)

    def failed_answer(self) -> None:
        """The answer (``get``) of a request that failed on the server still costs a call."""
        self._log(["get"], "get", 0)

    def _log(self, calls: list[str], call: str, size: int) -> None:
        with open(self.account.root / "calls.log", "a") as f:
            for name in calls:
                self.count(name)
                f.write(f"{name} {os.getpid()} {threading.get_ident()} {size if name == call else 0}\n")

    def _refuse(self, method: str) -> None:
        kind = self.account.text_knob("refuse")
        if not kind:
            return
        only, name, message = _REFUSALS.get(kind, (None, "ApiServerAuthenticationError", kind))
        if only is None or only == method:
            raise SkyRefused(f"{name}: {message}", REFUSALS[name])

    # --- injected failures --------------------------------------------------------------------------------

    def fail_next(self, call: str, n: int, message: str, refuse: bool, mode: str | None) -> None:
        with self.account.locked():
            state = self.account.state()
            state.setdefault("api_errors", {})[call] = {
                "n": n,
                "message": message,
                "refuse": refuse,
                "mode": mode,
            }
            self.account.save_state(state)

    def fault(self, method: str) -> None:
        """Once per API method: its injected slowness, and maybe its injected failure (``LostAnswer`` for a
        lost answer: the caller does the work, then raises a transient error)."""
        slow = float(self.account.faults().get("slow", {}).get(method, 0))
        if slow > 0:
            time.sleep(slow)
        with self.account.locked():
            state = self.account.state()
            pending = state.get("api_errors", {}).get(method)
            if not pending or pending["n"] <= 0:
                return
            pending["n"] -= 1
            self.account.save_state(state)
        text = f"{pending['message']} ({method})"
        if pending.get("mode") == "lost":
            raise LostAnswer(text)
        if pending.get("mode") == "interrupted":
            raise RequestLost(f"RequestInterruptedError: {text}: please re-submit the original request")
        if pending.get("refuse"):
            raise SkyRequestError(text)
        raise SkyApiError(f"ConnectionError: Failed to establish a new connection: {text}", reached=False)

    # --- the request table ------------------------------------------------------------------------------

    def add(self, job_id: int) -> str:
        request_id = f"fake-{uuid.uuid4().hex}"
        write_json(self.account.root / "requests" / f"{request_id}.json", {"job_id": job_id})
        return request_id

    def job_of(self, request_id: str) -> int:
        """The job id a request answers; ``RequestLost`` for an interrupted or forgotten request."""
        data = read_json(self.account.root / "requests" / f"{request_id}.json")
        if not data:
            raise RequestLost(f"RuntimeError: Failed to get request {request_id}: 404 Request not found")
        if data.get("interrupted"):
            raise RequestLost(
                f"RequestInterruptedError: Request {request_id!r} was interrupted by an API server restart and "
                "will not be resumed. Please re-submit the original request."
            )
        return int(data["job_id"])

    def restart_server(
        self, wipe: bool, running: Callable[[int], bool], forget: Callable[[int], None]
    ) -> None:
        """The API server restarts: requests still ``running`` are interrupted (their job is ``forget``-ed);
        ``wipe`` forgets every request (a local server's table starts empty)."""
        for path in (self.account.root / "requests").glob("*.json"):
            data: dict[str, Any] = read_json(path)
            in_progress = bool(data) and not data.get("interrupted") and running(int(data["job_id"]))
            if in_progress:
                forget(int(data["job_id"]))
            if wipe:
                path.unlink(missing_ok=True)
            elif in_progress:
                write_json(path, {**data, "interrupted": True})
