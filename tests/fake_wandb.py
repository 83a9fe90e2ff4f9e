"""A small fake W&B server on 127.0.0.1 for the real ``wandb`` 0.26 client: reads AND writes.

Reading (the public ``wandb.Api``): the GraphQL queries it sends for ``api.run(path)`` (the ``Run``
query with ``RunFragment``; before it the viewer queries ``{ viewer { id } }``, ``GetViewer`` and
``GetDefaultEntity``), ``run.history(keys=..., samples=...)`` (``RunSampledHistory`` with
``specs: ['{"keys": [x_axis, *keys], "samples": N}']``) and ``run.summary`` (``summaryMetrics`` of the
``Run`` query). Like W&B, sampled history returns only the rows holding every requested key, sampled
evenly (not always keeping the last row: the last value is in the summary); an unknown run is
``project.run: null``. ``rate_limit(n)`` makes the next ``n`` history requests answer HTTP 429.

Writing (``wandb.init(mode="online")``, whose wandb-core service sends, as recorded from wandb 0.26.1):
``Viewer`` (with ``serverInfo``), ``ServerFeaturesQuery``, ``RunResumeStatus`` (only with ``resume=``:
the run's ``historyLineCount`` and ``historyTail``, from which the client takes the step it resumes at
and drops every ``log(step=...)`` below it, as the real client does), ``UpsertBucket`` (creates the run;
an absent entity is the API key's default entity, ``tester``), ``OrganizationCoreWeaveOrganizationID``,
``CreateRunFiles`` (upload URLs on this server; ``PUT`` stores the file) and the file stream
``POST /files/ENTITY/PROJECT/RUN/file_stream`` (``wandb-history.jsonl`` rows are appended to the run's
history, ``wandb-summary.json`` replaces its summary, ``complete`` finishes it).

Like the real service, every request must carry an API key it knows (HTTP basic auth ``api:KEY``),
else HTTP 401: a job only writes here when the key reached it.

    with FakeWandb() as server:
        server.add_run("ent", "proj", "abc123", history=[{"_step": 0, ...}], summary={...})
        os.environ["WANDB_BASE_URL"] = server.url
        os.environ["WANDB_API_KEY"] = API_KEY
"""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

API_KEY = "0123456789abcdef0123456789abcdef01234567"
DEFAULT_ENTITY = "tester"


@dataclass
class FakeRun:
    entity: str
    project: str
    run_id: str
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    state: str = "finished"
    group: str | None = None
    display_name: str | None = None
    upserts: int = 0  # UpsertBucket calls: one per wandb.init (and more while it runs)
    files: dict[str, bytes] = field(default_factory=dict)


@dataclass
class Request:
    operation: str  # "viewer", "run", "history" or "unknown"
    variables: dict[str, Any]
    status: int


class FakeWandb:
    def __init__(self, api_keys: tuple[str, ...] = (API_KEY,)) -> None:
        self.api_keys = set(api_keys)
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

    def run(self, run_id: str) -> FakeRun | None:
        """The run with this id in any entity and project (ids are unique in the tests)."""
        found = [run for key, run in self.runs.items() if key[2] == run_id]
        return found[0] if found else None

    def history_requests(self, run_id: str | None = None) -> list[Request]:
        return [
            r for r in self.requests if r.operation == "history" and run_id in (None, r.variables.get("name"))
        ]

    # --- answering ----------------------------------------------------------------------------

    def answer(self, query: str, variables: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        for name, write in _WRITES.items():
            if name in query:
                return self._log(name, variables, 200, {"data": write(self, variables)})
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
            data: dict[str, Any] = {"viewer": viewer}
            if "serverInfo" in query:
                data["serverInfo"] = {"cliVersionInfo": None, "latestLocalVersionInfo": None}
            return self._log("viewer", variables, 200, {"data": data})
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

    # --- writing (wandb.init online) ------------------------------------------------------------

    def upsert_bucket(self, variables: dict[str, Any]) -> dict[str, Any]:
        entity = variables.get("entity") or DEFAULT_ENTITY
        project = variables.get("project") or "uncategorized"
        run_id = str(variables["name"])
        with self._lock:
            run = self.runs.get((entity, project, run_id))
            inserted = run is None
            if run is None:
                run = self.runs[(entity, project, run_id)] = FakeRun(entity, project, run_id, state="running")
            run.upserts += 1
            run.group = variables.get("groupName") or run.group
            run.display_name = variables.get("displayName") or run.display_name
        bucket = {
            "id": f"UnVuOj{run_id}",
            "name": run_id,
            "displayName": run.display_name or run_id,
            "description": None,
            "config": "{}",
            "sweepName": None,
            "project": {
                "id": "UHJvamVjdDox",
                "name": project,
                "entity": {"id": "RW50aXR5OjE=", "name": entity},
            },
            "historyLineCount": len(run.history),
        }
        return {"upsertBucket": {"bucket": bucket, "inserted": inserted}}

    def resume_status(self, variables: dict[str, Any]) -> dict[str, Any]:
        entity = variables.get("entity") or DEFAULT_ENTITY
        run = self.runs.get((entity, str(variables.get("project")), str(variables.get("name"))))
        if run is None:
            return {"model": None}
        # W&B keeps the last history rows as JSON strings: the client resumes after the last _step.
        bucket = {
            "id": f"UnVuOj{run.run_id}",
            "name": run.run_id,
            "summaryMetrics": json.dumps(run.summary),
            "displayName": run.display_name or run.run_id,
            "logLineCount": 0,
            "historyLineCount": len(run.history),
            "eventsLineCount": 0,
            "historyTail": json.dumps([json.dumps(row) for row in run.history[-10:]]),
            "eventsTail": "[]",
            "config": "{}",
            "tags": [],
            "notes": None,
            "wandbConfig": json.dumps({"t": {"1": [1], "3": [14]}}),  # a run that has started
        }
        return {"model": {"id": "UHJvamVjdDox", "name": run.project,
                          "entity": {"id": "RW50aXR5OjE=", "name": run.entity}, "bucket": bucket}}  # fmt: skip

    def create_run_files(self, variables: dict[str, Any]) -> dict[str, Any]:
        path = f"{variables['entity']}/{variables['project']}/{variables['run']}"
        files = [{"name": n, "uploadUrl": f"{self.url}/upload/{path}/{n}"} for n in variables["files"]]
        return {"createRunFiles": {"runID": f"UnVuOj{variables['run']}", "uploadHeaders": [], "files": files}}

    def file_stream(self, path: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        entity, project, run_id = path.split("/")[2:5]
        with self._lock:
            run = self.runs.get((entity, project, run_id))
            if run is None:
                return 404, {"error": f"run {entity}/{project}/{run_id} not found"}
            files = payload.get("files") or {}
            for line in (files.get("wandb-history.jsonl") or {}).get("content", []):
                run.history.append(json.loads(line))
            for line in (files.get("wandb-summary.json") or {}).get("content", []):
                run.summary = json.loads(line)
            if payload.get("complete"):
                run.state = "finished" if payload.get("exitcode", 0) == 0 else "failed"
        return 200, {"exitcode": None, "limits": {}}

    def upload(self, path: str, data: bytes) -> int:
        entity, project, run_id, name = path.split("/", 5)[2:6]
        with self._lock:
            run = self.runs.get((entity, project, run_id))
            if run is not None:
                run.files[name] = data
        return 200 if run is not None else 404

    def authorized(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, key = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return user == "api" and key in self.api_keys

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length", 0))
                payload = json.loads(self.rfile.read(length) or b"{}")
                if not server.authorized(self.headers.get("Authorization")):
                    status, body = server._log("unauthorized", {}, 401, {"errors": [{"message": "bad key"}]})
                elif self.path.startswith("/files/") and self.path.endswith("/file_stream"):
                    status, body = server.file_stream(self.path, payload)
                else:
                    status, body = server.answer(payload.get("query", ""), payload.get("variables") or {})
                self._send(status, json.dumps(body).encode())

            def do_PUT(self) -> None:  # noqa: N802
                data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self._send(server.upload(self.path, data) if self.path.startswith("/upload/") else 404, b"")

            def _send(self, status: int, data: bytes) -> None:
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


# The mutations and queries of wandb.init (matched by operation name in the query text).
_WRITES = {
    "mutation UpsertBucket": FakeWandb.upsert_bucket,
    "query RunResumeStatus": FakeWandb.resume_status,
    "mutation CreateRunFiles": FakeWandb.create_run_files,
    "query ServerFeaturesQuery": lambda self, v: {"serverInfo": {"features": []}},
    "query OrganizationCoreWeaveOrganizationID": lambda self, v: {"entity": {"organization": None}},
}


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
