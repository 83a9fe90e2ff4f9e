"""A small fake W&B server on 127.0.0.1 for the real ``wandb.Api`` client.

It answers the GraphQL queries wandb 0.26's public API sends for ``api.run(path)`` (the ``Run`` query
with ``RunFragment``; before it the viewer queries ``{ viewer { id } }``, ``GetViewer`` and
``GetDefaultEntity``), ``run.history(keys=..., samples=...)`` (``RunSampledHistory`` with
``specs: ['{"keys": [x_axis, *keys], "samples": N}']``) and ``run.summary`` (``summaryMetrics`` of the
``Run`` query). Like W&B, sampled history returns only the rows holding every requested key, sampled
evenly (not always keeping the last row: the last value is in the summary); an unknown run is
``project.run: null``. ``rate_limit(n)`` makes the next ``n`` history requests answer HTTP 429.

    with FakeWandb() as server:
        server.add_run("ent", "proj", "abc123", history=[{"_step": 0, ...}], summary={...})
        os.environ["WANDB_BASE_URL"] = server.url
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class FakeRun:
    entity: str
    project: str
    run_id: str
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    state: str = "finished"


@dataclass
class Request:
    operation: str  # "viewer", "run", "history" or "unknown"
    variables: dict[str, Any]
    status: int


class FakeWandb:
    def __init__(self) -> None:
        self.runs: dict[tuple[str, str, str], FakeRun] = {}
        self.requests: list[Request] = []
        self._rate_limited = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> FakeWandb:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def add_run(self, entity: str, project: str, run_id: str, **kwargs: Any) -> FakeRun:
        run = FakeRun(entity, project, run_id, **kwargs)
        self.runs[(entity, project, run_id)] = run
        return run

    def rate_limit(self, n: int) -> None:
        """Answer the next ``n`` history requests with HTTP 429."""
        with self._lock:
            self._rate_limited = n

    def history_requests(self, run_id: str | None = None) -> list[Request]:
        return [
            r for r in self.requests if r.operation == "history" and run_id in (None, r.variables.get("name"))
        ]

    # --- answering ----------------------------------------------------------------------------

    def answer(self, query: str, variables: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if "sampledHistory" in query:
            with self._lock:
                limited = self._rate_limited > 0
                self._rate_limited -= 1 if limited else 0
            if limited:
                return self._log("history", variables, 429, {"errors": [{"message": "rate limit exceeded"}]})
            run = self._run(variables)
            if run is None:
                return self._log("history", variables, 200, {"data": {"project": {"run": None}}})
            specs = [json.loads(s) for s in variables.get("specs", [])]
            sampled = [_sample(run.history, spec["keys"], spec.get("samples", 500)) for spec in specs]
            return self._log(
                "history", variables, 200, {"data": {"project": {"run": {"sampledHistory": sampled}}}}
            )
        if "query Run(" in query:
            run = self._run(variables)
            return self._log(
                "run", variables, 200, {"data": {"project": {"run": _run_attrs(run) if run else None}}}
            )
        if "viewer" in query:
            viewer: dict[str, Any] = {
                "id": "VXNlcjox",
                "name": "Test User",
                "username": "tester",
                "email": None,
                "admin": False,
                "flags": None,
                "entity": "tester",
                "deletedAt": None,
                "apiKeys": {"edges": []},
                "teams": {"edges": []},
            }
            return self._log("viewer", variables, 200, {"data": {"viewer": viewer}})
        return self._log(
            "unknown", variables, 400, {"errors": [{"message": f"fake W&B: unknown query {query[:80]!r}"}]}
        )

    def _run(self, variables: dict[str, Any]) -> FakeRun | None:
        key = (str(variables.get("entity")), str(variables.get("project")), str(variables.get("name")))
        return self.runs.get(key)

    def _log(
        self, operation: str, variables: dict[str, Any], status: int, body: dict[str, Any]
    ) -> tuple[int, dict]:
        with self._lock:
            self.requests.append(Request(operation, dict(variables), status))
        return status, body

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length", 0))
                payload = json.loads(self.rfile.read(length) or b"{}")
                status, body = server.answer(payload.get("query", ""), payload.get("variables") or {})
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


def _sample(history: list[dict[str, Any]], keys: list[str], samples: int) -> list[dict[str, Any]]:
    rows = [{k: row[k] for k in keys} for row in history if all(k in row for k in keys)]
    if len(rows) <= samples:
        return rows
    return [rows[i * len(rows) // samples] for i in range(samples)]  # like W&B: the last row may be left out


def _run_attrs(run: FakeRun) -> dict[str, Any]:
    return {
        "projectId": "1",
        "id": f"UnVuOj{run.run_id}",
        "tags": [],
        "name": run.run_id,
        "displayName": run.run_id,
        "sweepName": None,
        "state": run.state,
        "config": "{}",
        "group": None,
        "jobType": None,
        "commit": None,
        "readOnly": False,
        "createdAt": "2025-11-27T12:00:00",
        "heartbeatAt": "2025-11-27T12:30:00",
        "description": None,
        "notes": None,
        "systemMetrics": "{}",
        "summaryMetrics": json.dumps(run.summary),
        "historyLineCount": len(run.history),
        "user": {"name": "tester", "username": "tester"},
        "historyKeys": None,
    }
