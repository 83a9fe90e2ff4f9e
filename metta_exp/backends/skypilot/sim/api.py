"""A SkyPilot simulator: ``FakeSkyApi`` plays SkyPilot's API server, jobs controller and clusters here.

This is the one fake at the cloud boundary, at least as strict as SkyPilot 0.14 where metta-exp can notice,
harsh by default (kindness is a knob). Every behaviour names the installed file it follows (``sky/...``
under site-packages). Tasks really run: each node's ``setup`` and ``run`` scripts run with bash on a bare
machine (``machine``, ``image``).

- **An account is a directory** (``account``): its queue outlives groups and state directories and keeps
  finished jobs, shared by every process that opens the directory. Without ``all_users`` the queue shows
  the caller's jobs only: each launch records its user hash (``SKYPILOT_USER_ID``, else the home's
  ``~/.sky/user_hash``: one per machine).
- **Requests** (``requests``): ``launch`` validates and uploads (``uploads``: the workdir without what
  ``.skyignore``/``.gitignore`` exclude), then answers a request id; the request runs on the server for
  ``launch_s``, at most ``launch_slots`` at once (``sky/server/config.py``: a local API server runs 4 long
  requests at once, ``jobs.launch`` is one: ``sky/jobs/server/server.py``); ``launch_result`` (``sky.get``)
  blocks until the controller has the job (``sky/jobs/client/sdk.py``: "Request Returns: job_ids"). A job
  shows in the queue ``visible_after_s`` after its request is done and its controller up.
- **The controller** (``controller``, ``sky/jobs/server/core.py``, ``sky/backends/backend_utils.py``:
  ``is_controller_accessible``): absent until the first launch, INIT for ``controller_start_s`` while a
  launch or a refreshing call starts it, UP while jobs run, STOPPED after ``controller_idle_s`` without
  an unfinished job (``sky/jobs/constants.py``: ``CONTROLLER_AUTOSTOP`` idle_minutes 10). Unless UP,
  ``queue_v2(refresh=False)`` and ``cancel`` raise ``ClusterNotUpError`` (here ``ControllerNotUp``) with its
  status and "No in-progress managed jobs."; a tail's request fails (it answers ``""``); ``refresh=True``
  and ``launch`` start a STOPPED controller again (``_maybe_restart_controller``) and wait for it.
- **Jobs** (``jobs``): PENDING ``pending_s``, STARTING ``starting_s``, RUNNING; spot jobs preempted once
  after ``preempt_after_s`` and recovered on new machines; SkyPilot's failure reasons.
- **Queue filters** (``sky/jobs/state.py``): ``name_match`` is SQL ``name LIKE '%pattern%'`` (``%`` and
  ``_`` are wildcards, ASCII case-insensitive), ``job_ids`` selects ids; the answer's size is logged.
- **Log tails** (``logs``): wait until the job runs; after it ended, SkyPilot's terminal-state line until
  the controller downloaded the log (``log_download_s``).

Knobs: environment variables ``METTA_EXP_FAKE_SKY_<NAME>`` or ``configure(name=...)`` (which wins):
``VISIBLE_AFTER_S`` (0), ``CONTROLLER_START_S`` (0), ``CONTROLLER_IDLE_S`` (600), ``INFRAS``
(``kubernetes``), ``PENDING_S`` (1), ``STARTING_S`` (2), ``LOG_DOWNLOAD_S`` (2), ``PREEMPT_AFTER_S`` (off),
``LAUNCH_S`` (0.1), ``LAUNCH_SLOTS`` (4), ``REFUSE`` (``auth``, ``version`` or ``old-server``; off). Fault
settings (``configure``)::

    latency_s          seconds every HTTP request takes
    slow               {method: extra seconds}, e.g. {"launch_result": 5}
    enabled_infras     what ``enabled_infras`` answers
    cancel_delay_s     how long a cancelled job stays CANCELLING (default 0)
    rules              [{"match": GLOB on the job name, and any of: "status": FAILED_SETUP |
                         FAILED_NO_RESOURCE | FAILED_PRECHECKS | FAILED_CONTROLLER | FAILED, "message",
                         "pending_s", "starting_s", "visible_after_s", "preempt_after_s",
                         "recover_after_s" (default: starting_s)}]

``fail_next(call, n)`` makes the next ``n`` calls of a method fail (``mode="lost"``: a launch whose job is
made but whose answer is lost; ``mode="interrupted"``: a ``launch_result`` interrupted by a restart);
``restart_server(wipe)`` restarts the API server.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import metta_exp.backends.skypilot.sim.machine as ex
from metta_exp.backends.skypilot.api import (
    QUEUE_FIELDS,
    ControllerNotUp,
    QueueEntry,
    SkyApi,
    SkyApiError,
    SkyRequestError,
)
from metta_exp.backends.skypilot.sim.account import Account, user_hash, write_json
from metta_exp.backends.skypilot.sim.image import image_env
from metta_exp.backends.skypilot.sim.jobs import FAILURE_STATUSES, MANAGED_JOB_STATUSES, TERMINAL, preempt
from metta_exp.backends.skypilot.sim.logs import tail_answer
from metta_exp.backends.skypilot.sim.requests import LostAnswer, Requests
from metta_exp.backends.skypilot.sim.uploads import client_paths, copy_upload

__all__ = ["FAILURE_STATUSES", "MANAGED_JOB_STATUSES", "FakeSkyApi", "like"]

_NOT_UP = "ClusterNotUpError: No in-progress managed jobs."


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
        self.account = Account(self.root)
        self.requests = Requests(self.account, self._count)
        if latency_s is not None:
            self.configure(latency_s=latency_s)

    # --- the test's side ----------------------------------------------------------------------------

    def configure(self, **settings: Any) -> None:
        """Merge knobs and fault settings (see the module docstring) into ``faults.json``."""
        self.account.configure(settings)

    def fail_next(
        self,
        call: str,
        n: int = 1,
        message: str = "injected API error",
        refuse: bool = False,
        mode: str | None = None,
    ) -> None:
        """The next ``n`` calls of method ``call`` fail: ``SkyApiError`` (``SkyRequestError`` if ``refuse``);
        ``mode="lost"`` (launch: the job is made, the answer lost) or ``"interrupted"`` (launch_result)."""
        self.requests.fail_next(call, n, message, refuse, mode)

    def restart_server(self, wipe: bool = False) -> None:
        """The API server restarts: launches still being handled are interrupted (no job is made for them);
        ``wipe`` also forgets every request id, as a local API server started anew does."""
        with self.account.locked():
            now = time.time()

            def running(job_id: int) -> bool:
                return self.account.exists(job_id) and now < self.account.load(job_id)["visible_at"]

            def forget(job_id: int) -> None:
                shutil.rmtree(self.account.job_dir(job_id), ignore_errors=True)

            self.requests.restart_server(wipe, running, forget)

    def preempt(self, job_id: int, recover_after_s: float = 0.2) -> None:
        with self.account.locked():
            job = self.account.load(job_id)
            if job["status"] == "RUNNING":
                preempt(job, time.time(), recover_after_s, self.job_dir(job_id))
                self.account.save(job)

    def job(self, job_id: int) -> dict[str, Any]:
        """A job's record as the simulator keeps it (after advancing the world; whatever the controller)."""
        with self.account.locked():
            self._advance()
            return self.account.load(job_id)

    def jobs(self) -> list[dict[str, Any]]:
        with self.account.locked():
            return self._advance()

    def controller_status(self) -> str | None:
        with self.account.locked():
            self._advance()
            return self.account.controller().status

    def job_dir(self, job_id: int) -> Path:
        return self.account.job_dir(job_id)

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
        with self.account.locked():
            state = self.account.state()
            first = int(state.get("next_job_id", 1))
            state["next_job_id"] = first + n
            self.account.save_state(state)
            at = time.time() - 86400
            user = user_hash()
            archive: list[dict[str, Any]] = [
                {"job_id": first + i, "name": f"{name_prefix}{i}-a1", "status": "SUCCEEDED", "failure_reason": None,
                 "recovery_count": 0, "submitted_at": at, "start_at": at + 30, "end_at": at + 60, "visible_at": at,
                 "rule": {}, "user": user}
                for i in range(n)
            ]  # fmt: skip
            write_json(self.root / "archive.json", {"jobs": archive})

    def kill_all(self) -> None:
        """Kill the processes of every job (teardown: leave nothing behind)."""
        with self.account.locked():
            live = ex.live_groups()
            for job in self.account.all():
                if job.get("pgid") in live:
                    ex.kill_group(job["pgid"], signal.SIGKILL, wait_s=2.0)

    # --- SkyApi -------------------------------------------------------------------------------------

    def enabled_infras(self) -> list[str]:
        self.requests.request("enabled_infras", "enabled_clouds")
        self.requests.fault("enabled_infras")
        self.requests.request("enabled_infras", "get")
        default = os.environ.get("METTA_EXP_FAKE_SKY_INFRAS", "kubernetes").split(",")
        infras = self.account.faults().get("enabled_infras", default)
        return [str(i).strip().lower() for i in infras if str(i).strip()]

    def launch(self, config: Mapping[str, Any], secrets: Mapping[str, str]) -> str:
        uploads = client_paths(config)  # sky/task.py: made absolute against this process's cwd, checked
        self.requests.request("launch", "validate")
        if uploads:
            self.requests.request("launch", "upload")
        self.requests.request("launch", "jobs.launch")
        lost = None
        try:
            self.requests.fault("launch")
        except LostAnswer as exc:
            lost = exc
        name = str(config.get("name") or "")
        if not name or not isinstance(config.get("run"), str):
            raise SkyRequestError("invalid task: a managed job needs a name and a run script")
        image_env(self.root)  # the machines' image, built once per account: not under the account's lock
        with self.account.locked():
            self._advance()
            up_at = self.account.start_controller()
            job_id = self._new_job(config, secrets, uploads, up_at)
            request_id = self.requests.add(job_id)
        if lost is not None:  # the server took it; the answer never came back
            raise SkyApiError(
                f"ConnectionError: ('Connection aborted.', RemoteDisconnected()) [{lost}]", reached=True
            )
        return request_id

    def launch_result(self, request_id: str) -> int:
        self.requests.request("launch_result", "get")
        self.requests.fault("launch_result")
        job_id = self.requests.job_of(request_id)
        while True:  # sky.get blocks until the controller has submitted the job
            with self.account.locked():
                self._advance()
                if not self.account.exists(job_id):  # interrupted by a server restart meanwhile
                    return self.requests.job_of(request_id)
                if time.time() >= self.account.load(job_id)["visible_at"]:
                    return job_id
            time.sleep(0.05)

    def queue(
        self,
        name_match: str | None = None,
        *,
        job_ids: Sequence[int] | None = None,
        refresh: bool = False,
        all_users: bool = False,
    ) -> list[QueueEntry]:
        self.requests.request("queue", "jobs.queue_v2")
        self.requests.fault("queue")
        with self.account.locked():
            jobs = self.account.archive() + self._advance()
            controller = self.account.controller()
            if controller.status != "UP" and not (refresh and controller.status == "STOPPED"):
                self.requests.failed_answer()
                raise ControllerNotUp(_NOT_UP, controller.status)
            up_at = self.account.start_controller()
        self._wait_until(up_at)
        now, user = time.time(), user_hash()
        wanted = None if job_ids is None else {int(i) for i in job_ids}
        entries = [
            QueueEntry(j["job_id"], j["name"], j["status"], j["failure_reason"], j["recovery_count"],
                       j["submitted_at"], j.get("start_at"), j["end_at"])
            for j in jobs
            if now >= j["visible_at"] and (wanted is None or j["job_id"] in wanted)
            and (name_match is None or like(name_match, j["name"]))
            and (all_users or j.get("user") == user)
        ]  # fmt: skip
        size = len(json.dumps([_record(e) for e in entries]))
        self.requests.request("queue", "get", size)
        return entries

    def cancel(self, job_ids: Sequence[int]) -> None:
        self.requests.request("cancel", "jobs.cancel")
        self.requests.fault("cancel")
        with self.account.locked():
            self._advance()
            controller = self.account.controller()
            if controller.status != "UP":
                self.requests.failed_answer()
                raise ControllerNotUp(_NOT_UP, controller.status)
            now, delay = time.time(), float(self.account.faults().get("cancel_delay_s", 0))
            for job_id in job_ids:  # sky/jobs/server/core.py: job ids of any user are cancelled
                if not self.account.exists(job_id):
                    continue
                job = self.account.load(job_id)
                if job["status"] in TERMINAL or job["status"] == "CANCELLING":
                    continue
                if job.get("pgid"):
                    ex.kill_group(job["pgid"], signal.SIGTERM, wait_s=2.0)
                    ex.kill_group(job["pgid"], signal.SIGKILL, wait_s=1.0)
                job.update(status="CANCELLING", cancel_at=now + delay, pgid=None)
                if delay <= 0:
                    job.update(status="CANCELLED", end_at=now)
                self.account.save(job)
        self.requests.request("cancel", "get")

    def tail_logs(self, job_id: int, lines: int | None) -> str:
        self.requests.request("tail_logs", "jobs.tail_logs")
        try:
            self.requests.fault("tail_logs")
        except SkyApiError:
            return ""  # sky/jobs/client/sdk.py: a non-following tail never asks for its request's result
        while True:  # sky/jobs/utils.py: stream_logs_by_id waits for the task to start, even without follow
            with self.account.locked():
                self._advance()
                if self.account.controller().status != "UP":
                    return ""  # the request fails on the server (ClusterNotUpError): an empty answer
                if not self.account.exists(job_id) or time.time() < self.account.load(job_id)["visible_at"]:
                    return f"Job {job_id} not found.\n"
                job = self.account.load(job_id)
            if job["status"] in TERMINAL or job["status"] in ("RUNNING", "CANCELLING"):
                break
            time.sleep(0.2)
        return tail_answer(job, self.job_dir(job_id), lines, time.time(), self.account.knob("log_download_s"))

    # --- the controller moving jobs along -------------------------------------------------------------

    def _new_job(
        self, config: Mapping[str, Any], secrets: Mapping[str, str], uploads: dict[str, str], up_at: float
    ) -> int:
        job_id = self.account.next_job_id()
        name = str(config["name"])
        rule = self.account.rule(name)
        done = self._launch_done_at(time.time())
        visible = max(done, up_at) + float(rule.get("visible_after_s", self.account.knob("visible_after_s")))
        resources = config.get("resources") or {}
        accelerators = resources.get("accelerators") or {}
        job = {
            "job_id": job_id, "name": name, "status": "PENDING", "failure_reason": None, "recovery_count": 0,
            "submitted_at": visible, "phase_at": visible, "start_at": None, "end_at": None, "visible_at": visible,
            "rule": rule, "user": user_hash(), "spot": bool(resources.get("use_spot")),
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
            copy_upload(Path(source), directory / "upload" / target)
        self.account.save(job)
        return job_id

    def _launch_done_at(self, now: float) -> float:
        """When a launch request sent now is done: it takes ``launch_s`` and waits for one of the server's
        ``launch_slots``."""
        state = self.account.state()
        slots = sorted(float(t) for t in state.get("launch_slots", []))
        count = max(1, int(self.account.knob("launch_slots")))
        slots = (slots + [0.0] * count)[:count]
        done = max(now, slots[0]) + self.account.knob("launch_s")
        state["launch_slots"] = [done, *slots[1:]]
        self.account.save_state(state)
        return done

    def _advance(self) -> list[dict[str, Any]]:
        return self.account.advance_all(ex.live_groups())

    def _wait_until(self, at: float) -> None:
        while time.time() < at:
            time.sleep(min(0.05, max(0.0, at - time.time())))
        with self.account.locked():
            self._advance()


def _record(entry: QueueEntry) -> dict[str, Any]:
    """A queue answer's record with the fields metta-exp asks for (what travels over the wire)."""
    data = entry.to_dict() | {"job_name": entry.name, "task_id": 0}
    return {k: data.get(k) for k in QUEUE_FIELDS}
