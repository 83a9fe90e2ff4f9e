"""A SkyPilot simulator: ``FakeSkyApi`` plays SkyPilot's API server, jobs controller and clusters here.

This is the one fake at the cloud boundary, as strict as SkyPilot 0.14 where metta-exp can notice.
Every behaviour names the installed file it comes from (``sky/...`` under site-packages). Tasks really
run: each node's ``setup`` and ``run`` scripts run with bash (see ``skypilot_fake_exec``).

- **An account is a directory.** Its queue outlives groups and state directories and keeps finished
  jobs (``sky/jobs/state.py`` never forgets a job), shared by every process that opens the directory.
- **Requests.** ``launch`` sends the task and returns a request id; ``launch_result`` (``sky.get``) blocks
  until the controller has the job (``sky/jobs/client/sdk.py``: "Request Returns: job_ids"). A job shows
  in the queue ``visible_after_s`` after its controller is up.
- **The controller** (``sky/jobs/server/core.py``, ``sky/backends/backend_utils.py``:
  ``is_controller_accessible``): absent until the first launch, INIT for ``controller_start_s`` while a
  launch or a refreshing call starts it, UP while jobs run, STOPPED after ``controller_idle_s`` without
  an unfinished job (``sky/jobs/constants.py``: ``CONTROLLER_AUTOSTOP`` idle_minutes 10). Unless UP,
  ``queue_v2(refresh=False)``, ``cancel`` and ``tail_logs`` raise ``ClusterNotUpError`` (here
  ``ControllerNotUp``) with its status and "No in-progress managed jobs."; ``refresh=True`` and
  ``launch`` start a STOPPED controller again (``_maybe_restart_controller``) and wait for it.
- **Queue filters** (``sky/jobs/state.py``): ``name_match`` is SQL ``name LIKE '%pattern%'`` (``%`` and
  ``_`` are wildcards, ASCII case-insensitive), ``job_ids`` selects ids; the answer's size is logged.
- **Log tails** with ``follow=False`` wait until the job is RUNNING, CANCELLING or ended
  (``sky/jobs/utils.py``: ``stream_logs_by_id`` waits "for task to start").
- **Calls cost what the real client spends** (``sky/client/sdk.py``, ``sky/jobs/client/sdk.py``,
  ``sky/server/common.py``): each request is a POST, each answer a ``get``; a health check
  (``api.health``) precedes a process's requests at most every 5 s (``get_api_server_status_response``
  caches it 5 s); a launch also posts ``validate`` and, with a workdir or local file mounts, ``upload``
  (``sky/client/common.py``: ``upload_mounts_to_api_server``, for an API server that is not local).
- **Client-side paths** (``sky/task.py``: ``expand_and_validate_workdir``): a relative ``workdir`` or
  file-mount source is made absolute against the *calling process's* current directory, must exist, and
  is uploaded at launch.

Knobs (environment, or ``configure`` which wins): ``METTA_EXP_FAKE_SKY_VISIBLE_AFTER_S`` (0),
``METTA_EXP_FAKE_SKY_CONTROLLER_START_S`` (0), ``METTA_EXP_FAKE_SKY_CONTROLLER_IDLE_S`` (600),
``METTA_EXP_FAKE_SKY_INFRAS`` (``kubernetes``; comma-separated). Fault settings (``configure``)::

    latency_s          seconds every HTTP request takes
    slow               {method: extra seconds}, e.g. {"launch_result": 5}
    enabled_infras     what ``enabled_infras`` answers
    cancel_delay_s     how long a cancelled job stays CANCELLING (default 0)
    rules              [{"match": GLOB on the job name, and any of: "status": FAILED_SETUP |
                         FAILED_NO_RESOURCE | FAILED_PRECHECKS | FAILED_CONTROLLER | FAILED, "message",
                         "pending_s", "starting_s", "visible_after_s", "preempt_after_s",
                         "recover_after_s" (default 0.2)}]

``fail_next(call, n)`` makes the next ``n`` calls of a method raise ``SkyApiError``.
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import json
import os
import re
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import metta_exp.backends.skypilot.sim.machine as ex
from metta_exp.atomic import write_atomic
from metta_exp.backends.skypilot.api import (
    QUEUE_FIELDS,
    ControllerNotUp,
    QueueEntry,
    SkyApi,
    SkyApiError,
    SkyRequestError,
)
from metta_exp.backends.skypilot.sim.controller import Controller
from metta_exp.backends.skypilot.sim.jobs import (
    FAILURE_STATUSES,
    MANAGED_JOB_STATUSES,
    TERMINAL,
    advance,
    preempt,
)

__all__ = ["FAILURE_STATUSES", "MANAGED_JOB_STATUSES", "FakeSkyApi", "like"]

_HEALTH_TTL_S = 5.0  # sky/server/common.py: get_api_server_status_response, TTLCache(ttl=5.0)
_health_lock = threading.Lock()
_health_at: dict[str, float] = {}  # per process, like SkyPilot's module-level cache


def like(pattern: str, value: str) -> bool:
    """SQLite's ``value LIKE '%pattern%'`` (``sky/jobs/state.py``): ``%`` any run, ``_`` any character,
    ASCII letters case-insensitive."""
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.search(regex, value, re.DOTALL | re.IGNORECASE) is not None


class FakeSkyApi(SkyApi):
    """``SkyApi`` on this machine; the account's state in ``root`` (shared by every process)."""

    def __init__(self, root: str | os.PathLike[str], latency_s: float | None = None) -> None:
        super().__init__()
        self.root = Path(root).absolute()
        self.identity = f"fake:{self.root}"
        (self.root / "jobs").mkdir(parents=True, exist_ok=True)
        (self.root / "requests").mkdir(exist_ok=True)
        if latency_s is not None:
            self.configure(latency_s=latency_s)

    # --- the test's side ----------------------------------------------------------------------------

    def configure(self, **settings: Any) -> None:
        """Merge knobs and fault settings (see the module docstring) into ``faults.json``."""
        with self._locked():
            faults = self._faults()
            faults.update(settings)
            _write_json(self.root / "faults.json", faults)

    def fail_next(
        self, call: str, n: int = 1, message: str = "injected API error", refuse: bool = False
    ) -> None:
        """The next ``n`` calls of method ``call`` raise ``SkyApiError`` (``SkyRequestError`` if ``refuse``)."""
        with self._locked():
            state = self._state()
            state.setdefault("api_errors", {})[call] = {"n": n, "message": message, "refuse": refuse}
            _write_json(self.root / "state.json", state)

    def preempt(self, job_id: int, recover_after_s: float = 0.2) -> None:
        with self._locked():
            job = self._load(job_id)
            if job["status"] == "RUNNING":
                preempt(job, time.time(), recover_after_s, self.job_dir(job_id))
                self._save(job)

    def job(self, job_id: int) -> dict[str, Any]:
        """A job's record as the simulator keeps it (after advancing the world; whatever the controller)."""
        with self._locked():
            self._advance_all()
            return self._load(job_id)

    def jobs(self) -> list[dict[str, Any]]:
        with self._locked():
            return self._advance_all()

    def controller_status(self) -> str | None:
        with self._locked():
            self._advance_all()
            return self._controller().status

    def job_dir(self, job_id: int) -> Path:
        return self.root / "jobs" / str(job_id)

    def call_counts(self) -> Counter[str]:
        """HTTP requests made by every process using this account."""
        return Counter(call for call, *_ in self.call_log())

    def call_log(self) -> list[tuple[str, int, int, int]]:
        """Every request in order: (call, pid, thread id, answer bytes or 0)."""
        try:
            lines = (self.root / "calls.log").read_text().splitlines()
        except FileNotFoundError:
            return []
        rows = [line.split() for line in lines]
        return [(p[0], int(p[1]), int(p[2]), int(p[3]) if len(p) > 3 else 0) for p in rows if len(p) >= 3]

    def seed_finished(self, n: int, name_prefix: str = "metta-exp-old-") -> None:
        """Give the account a history: ``n`` long-finished jobs (one archive file, for benchmarks)."""
        with self._locked():
            state = self._state()
            first = int(state.get("next_job_id", 1))
            state["next_job_id"] = first + n
            _write_json(self.root / "state.json", state)
            at = time.time() - 86400
            archive: list[dict[str, Any]] = [
                {"job_id": first + i, "name": f"{name_prefix}{i}-a1", "status": "SUCCEEDED", "failure_reason": None,
                 "recovery_count": 0, "submitted_at": at, "end_at": at + 60, "visible_at": at, "rule": {}}
                for i in range(n)
            ]  # fmt: skip
            _write_json(self.root / "archive.json", {"jobs": archive})

    def kill_all(self) -> None:
        """Kill the processes of every job (teardown: leave nothing behind)."""
        with self._locked():
            live = ex.live_groups()
            for job in self._all():
                if job.get("pgid") in live:
                    ex.kill_group(job["pgid"], signal.SIGKILL, wait_s=2.0)

    # --- SkyApi -------------------------------------------------------------------------------------

    def enabled_infras(self) -> list[str]:
        self._request("enabled_infras", "enabled_clouds")
        self._fault("enabled_infras")
        self._request("enabled_infras", "get")
        default = os.environ.get("METTA_EXP_FAKE_SKY_INFRAS", "kubernetes").split(",")
        return [
            str(i).strip().lower() for i in self._faults().get("enabled_infras", default) if str(i).strip()
        ]

    def launch(self, config: Mapping[str, Any], secrets: Mapping[str, str]) -> str:
        uploads = _client_paths(config)  # sky/task.py: made absolute against this process's cwd, checked
        self._request("launch", "validate")
        if uploads:
            self._request("launch", "upload")
        self._request("launch", "jobs.launch")
        self._fault("launch")
        name = str(config.get("name") or "")
        if not name or not isinstance(config.get("run"), str):
            raise SkyRequestError("invalid task: a managed job needs a name and a run script")
        with self._locked():
            self._advance_all()
            up_at = self._start_controller()
            job_id = self._new_job(config, secrets, uploads, up_at)
            request_id = f"fake-{uuid.uuid4().hex}"
            _write_json(self.root / "requests" / f"{request_id}.json", {"job_id": job_id})
        return request_id

    def launch_result(self, request_id: str) -> int:
        self._request("launch_result", "get")
        self._fault("launch_result")
        try:
            job_id = int(json.loads((self.root / "requests" / f"{request_id}.json").read_text())["job_id"])
        except FileNotFoundError:
            raise SkyRequestError(f"no such request: {request_id}") from None
        while True:  # sky.get blocks until the controller has submitted the job
            with self._locked():
                self._advance_all()
                if time.time() >= self._load(job_id)["visible_at"]:
                    return job_id
            time.sleep(0.05)

    def queue(
        self, name_match: str | None = None, *, job_ids: Sequence[int] | None = None, refresh: bool = False
    ) -> list[QueueEntry]:
        self._request("queue", "jobs.queue_v2")
        self._fault("queue")
        with self._locked():
            jobs = self._archive() + self._advance_all()
            controller = self._controller()
            if controller.status != "UP" and not (refresh and controller.status == "STOPPED"):
                self._request_failed()
                raise ControllerNotUp("ClusterNotUpError: No in-progress managed jobs.", controller.status)
            up_at = self._start_controller()
        self._wait_until(up_at)
        now = time.time()
        wanted = None if job_ids is None else {int(i) for i in job_ids}
        entries = [
            QueueEntry(j["job_id"], j["name"], j["status"], j["failure_reason"], j["recovery_count"],
                       j["submitted_at"], j["end_at"])
            for j in jobs
            if now >= j["visible_at"] and (wanted is None or j["job_id"] in wanted)
            and (name_match is None or like(name_match, j["name"]))
        ]  # fmt: skip
        size = len(json.dumps([_record(e) for e in entries]))
        self._request("queue", "get", size)
        return entries

    def cancel(self, job_ids: Sequence[int]) -> None:
        self._request("cancel", "jobs.cancel")
        self._fault("cancel")
        with self._locked():
            self._advance_all()
            controller = self._controller()
            if controller.status != "UP":
                self._request_failed()
                raise ControllerNotUp("ClusterNotUpError: No in-progress managed jobs.", controller.status)
            now, delay = time.time(), float(self._faults().get("cancel_delay_s", 0))
            for job_id in job_ids:
                if not self._job_file(job_id).exists():
                    continue
                job = self._load(job_id)
                if job["status"] in TERMINAL or job["status"] == "CANCELLING":
                    continue
                if job.get("pgid"):
                    ex.kill_group(job["pgid"], signal.SIGTERM, wait_s=2.0)
                    ex.kill_group(job["pgid"], signal.SIGKILL, wait_s=1.0)
                job.update(status="CANCELLING", cancel_at=now + delay, pgid=None)
                if delay <= 0:
                    job.update(status="CANCELLED", end_at=now)
                self._save(job)
        self._request("cancel", "get")

    def tail_logs(self, job_id: int, lines: int) -> str:
        self._request("tail_logs", "jobs.tail_logs")
        self._fault("tail_logs")
        while True:  # sky/jobs/utils.py: stream_logs_by_id waits for the task to start, even without follow
            with self._locked():
                self._advance_all()
                controller = self._controller()
                if controller.status != "UP":
                    raise ControllerNotUp(
                        "ClusterNotUpError: No in-progress managed jobs.", controller.status
                    )
                if not self._job_file(job_id).exists() or time.time() < self._load(job_id)["visible_at"]:
                    raise SkyRequestError(f"Job {job_id} not found.")
                status = self._load(job_id)["status"]
            if status in TERMINAL or status in ("RUNNING", "CANCELLING"):
                break
            time.sleep(0.2)
        try:
            text = (self.job_dir(job_id) / "log").read_text(errors="replace")
        except FileNotFoundError:
            return ""
        tail = text.splitlines()[-lines:] if lines > 0 else []
        return "\n".join(tail) + ("\n" if tail else "")

    # --- the controller moving jobs along -------------------------------------------------------------

    def _new_job(
        self, config: Mapping[str, Any], secrets: Mapping[str, str], uploads: dict, up_at: float
    ) -> int:
        state = self._state()
        job_id = int(state.get("next_job_id", 1))
        state["next_job_id"] = job_id + 1
        _write_json(self.root / "state.json", state)
        name = str(config["name"])
        rule = self._rule(name)
        now = time.time()
        visible = max(now, up_at) + float(rule.get("visible_after_s", self._knob("visible_after_s", 0.0)))
        accelerators = (config.get("resources") or {}).get("accelerators") or {}
        job = {
            "job_id": job_id, "name": name, "status": "PENDING", "failure_reason": None, "recovery_count": 0,
            "submitted_at": visible, "phase_at": visible, "end_at": None, "visible_at": visible, "rule": rule,
            "envs": {str(k): str(v) for k, v in (config.get("envs") or {}).items()},
            "num_nodes": int(config.get("num_nodes") or 1),
            "gpus_per_node": max([int(v) for v in accelerators.values()] or [0]),
            "pgid": None, "preempted": False, "recover_at": None, "cancel_at": None,
        }  # fmt: skip
        directory = self.job_dir(job_id)
        directory.mkdir(parents=True)
        (directory / "run.sh").write_text(str(config["run"]))
        if config.get("setup"):
            (directory / "setup.sh").write_text(str(config["setup"]))
        if rule.get("status") == "FAILED_SETUP":
            (directory / "setup.sh").write_text("echo 'injected setup failure' >&2\nexit 1\n")
        fd = os.open(directory / "secrets.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(dict(secrets), f)
        for target, source in uploads.items():  # the upload happens now, at launch
            ex.copy_tree(Path(source), directory / "upload" / target)
        self._save(job)
        return job_id

    def _advance_all(self) -> list[dict[str, Any]]:
        now, live = time.time(), ex.live_groups()
        controller = self._controller()
        controller.come_up(now)
        out = []
        for job in self._all():
            if controller.status == "UP":  # a controller that is not up moves nothing along
                before = dict(job)
                job = advance(job, now, live, self.job_dir(job["job_id"]), self.root)
                if job != before:
                    self._save(job)
            out.append(job)
        controller.idle_check(now, out, TERMINAL, self._knob("controller_idle_s", 600.0))
        self._save_controller(controller)
        return out

    def _wait_until(self, at: float) -> None:
        while time.time() < at:
            time.sleep(min(0.05, max(0.0, at - time.time())))
        with self._locked():
            self._advance_all()

    # --- requests and files ---------------------------------------------------------------------------

    def _fault(self, method: str) -> None:
        """Once per API method: its injected slowness, and maybe its injected failure."""
        slow = float(self._faults().get("slow", {}).get(method, 0))
        if slow > 0:
            time.sleep(slow)
        with self._locked():
            state = self._state()
            pending = state.get("api_errors", {}).get(method)
            if not pending or pending["n"] <= 0:
                return
            pending["n"] -= 1
            _write_json(self.root / "state.json", state)
        error = SkyRequestError if pending.get("refuse") else SkyApiError
        raise error(f"{pending['message']} ({method})")

    def _request(self, method: str, call: str, size: int = 0) -> None:
        """Count one HTTP request (after a health check when due) and take its latency."""
        faults = self._faults()
        calls = [call]
        with _health_lock:
            key = str(self.root)
            if call != "get" and time.monotonic() - _health_at.get(key, -1e9) >= _HEALTH_TTL_S:
                _health_at[key] = time.monotonic()
                calls.insert(0, "api.health")
        with open(self.root / "calls.log", "a") as f:
            for name in calls:
                self._count(name)
                f.write(f"{name} {os.getpid()} {threading.get_ident()} {size if name == call else 0}\n")
        latency = float(faults.get("latency_s", 0)) * len(calls)
        if latency > 0:
            time.sleep(latency)

    def _request_failed(self) -> None:
        """The answer (``get``) of a request that failed on the server still costs a call."""
        self._count("get")
        with open(self.root / "calls.log", "a") as f:
            f.write(f"get {os.getpid()} {threading.get_ident()} 0\n")

    def _knob(self, name: str, default: float) -> float:
        value = self._faults().get(name, os.environ.get(f"METTA_EXP_FAKE_SKY_{name.upper()}"))
        try:
            return default if value is None or value == "" else float(value)
        except ValueError:
            return default

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.root / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _start_controller(self) -> float:
        controller = self._controller()
        up_at = controller.start(time.time(), self._knob("controller_start_s", 0.0))
        self._save_controller(controller)
        return up_at

    def _controller(self) -> Controller:
        return Controller.from_dict(self._state().get("controller") or {})

    def _save_controller(self, controller: Controller) -> None:
        state = self._state()
        if state.get("controller") != controller.to_dict():
            state["controller"] = controller.to_dict()
            _write_json(self.root / "state.json", state)

    def _faults(self) -> dict[str, Any]:
        return _read_json(self.root / "faults.json")

    def _state(self) -> dict[str, Any]:
        return _read_json(self.root / "state.json")

    def _rule(self, name: str) -> dict[str, Any]:
        for rule in self._faults().get("rules", []):
            if fnmatch.fnmatchcase(name, str(rule.get("match", "*"))):
                return dict(rule)
        return {}

    def _job_file(self, job_id: int) -> Path:
        return self.job_dir(int(job_id)) / "job.json"

    def _load(self, job_id: int) -> dict[str, Any]:
        try:
            return json.loads(self._job_file(job_id).read_text())
        except FileNotFoundError:
            raise SkyRequestError(f"Job {job_id} not found.") from None

    def _save(self, job: dict[str, Any]) -> None:
        _write_json(self._job_file(job["job_id"]), job)

    def _archive(self) -> list[dict[str, Any]]:
        """The account's long-finished jobs (``seed_finished``): in answers, never moved along."""
        return list(_read_json(self.root / "archive.json").get("jobs", []))

    def _all(self) -> list[dict[str, Any]]:
        jobs: list[dict[str, Any]] = []
        for path in (self.root / "jobs").glob("*/job.json"):
            with contextlib.suppress(FileNotFoundError, ValueError):
                jobs.append(json.loads(path.read_text()))
        return sorted(jobs, key=lambda j: j["job_id"])


def _client_paths(config: Mapping[str, Any]) -> dict[str, str]:
    """What the client uploads: ``{"workdir" | "mounts/<dst under ~>": absolute local source}``.

    ``sky/task.py`` (``expand_and_validate_workdir``/``_file_mounts``) expands each path with
    ``os.path.abspath(os.path.expanduser(...))`` in the calling process and refuses a missing one.
    """
    out = {}
    workdir = config.get("workdir")
    if isinstance(workdir, str):
        path = os.path.abspath(os.path.expanduser(workdir))
        if not os.path.isdir(path):
            raise SkyRequestError(
                f"ValueError: Workdir must be a valid directory (or a symlink to a directory). {workdir} not found."
            )
        out["workdir"] = path
    for dst, src in (config.get("file_mounts") or {}).items():
        if not isinstance(src, str) or "://" in src:
            continue  # cloud storage: not uploaded from here
        path = os.path.abspath(os.path.expanduser(src))
        if not os.path.exists(path):
            raise SkyRequestError(f"ValueError: File mount source {src!r} does not exist locally.")
        if str(dst).startswith("~/"):
            out[f"mounts/{str(dst)[2:]}"] = path
    return out


def _record(entry: QueueEntry) -> dict[str, Any]:
    """A queue answer's record with the fields metta-exp asks for (what travels over the wire)."""
    data = entry.to_dict() | {"job_name": entry.name, "task_id": 0}
    return {k: data.get(k) for k in QUEUE_FIELDS}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    write_atomic(path, json.dumps(data))
