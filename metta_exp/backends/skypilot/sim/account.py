"""A simulated SkyPilot account: one directory, shared by every process that opens it.

``DIR/state.json`` (the next job id, the controller, injected API errors, the request table),
``DIR/faults.json`` (knobs set by ``configure``), ``DIR/jobs/<id>/job.json`` (each managed job; its
``log``, nodes and uploads beside it), ``DIR/archive.json`` (long-finished jobs, for benchmarks) and
``DIR/.lock`` (every change holds it). The queue keeps every job, finished ones included
(``sky/jobs/state.py`` never forgets a job).

Knobs are environment variables ``METTA_EXP_FAKE_SKY_<NAME>`` (the offline mode the README documents) or
``configure(name=...)`` values (which win).
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import hashlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from metta_exp.atomic import write_atomic
from metta_exp.backends.skypilot.api import SkyRequestError
from metta_exp.backends.skypilot.sim.controller import Controller
from metta_exp.backends.skypilot.sim.jobs import TERMINAL, advance

__all__ = ["Account", "read_json", "user_hash", "write_json"]

KNOB_PREFIX = "METTA_EXP_FAKE_SKY_"
#: The harsh defaults of the knobs that are numbers (seconds, or a count).
DEFAULTS = {
    "visible_after_s": 0.0,
    "controller_start_s": 0.0,
    "controller_idle_s": 600.0,  # sky/jobs/constants.py: CONTROLLER_AUTOSTOP idle_minutes 10
    "pending_s": 1.0,  # a managed job waits in the controller's queue...
    "starting_s": 2.0,  # ...and for its cluster to be provisioned
    "log_download_s": 2.0,  # sky/jobs/controller.py: SUCCEEDED is set before the log is downloaded
    "launch_s": 0.1,  # what one jobs.launch request takes on the API server
    "launch_slots": 4.0,  # sky/server/config.py: _MAX_LONG_WORKERS_LOCAL long requests at once
}


def user_hash(environ: Mapping[str, str] | None = None) -> str:
    """The caller's SkyPilot user: ``SKYPILOT_USER_ID``, else ``~/.sky/user_hash`` when it exists, else one
    per home directory (``sky/utils/common_utils.py``: ``get_user_hash`` keeps one hash per machine user in
    that file; the simulator only reads it)."""
    environ = os.environ if environ is None else environ
    if environ.get("SKYPILOT_USER_ID"):
        return environ["SKYPILOT_USER_ID"]
    home = Path(environ.get("HOME") or os.path.expanduser("~"))
    with contextlib.suppress(OSError):
        found = (home / ".sky" / "user_hash").read_text().strip()
        if found:
            return found
    return hashlib.sha256(str(home.absolute()).encode()).hexdigest()[:8]


class Account:
    """The account's files, read and changed under one lock."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "jobs").mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        with open(self.root / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # --- knobs --------------------------------------------------------------------------------------

    def faults(self) -> dict[str, Any]:
        return read_json(self.root / "faults.json")

    def configure(self, settings: Mapping[str, Any]) -> None:
        with self.locked():
            faults = self.faults()
            faults.update(settings)
            write_json(self.root / "faults.json", faults)

    def knob(self, name: str, default: float | None = None) -> float:
        """A number knob: ``configure`` first, then the environment, then its harsh default."""
        value = self.faults().get(name, os.environ.get(KNOB_PREFIX + name.upper()))
        fallback = DEFAULTS.get(name, 0.0) if default is None else default
        try:
            return fallback if value is None or value == "" else float(value)
        except ValueError:
            return fallback

    def optional_knob(self, name: str) -> float | None:
        """A number knob that is off unless set (``preempt_after_s``)."""
        value = self.faults().get(name, os.environ.get(KNOB_PREFIX + name.upper()))
        try:
            return None if value is None or value == "" else float(value)
        except ValueError:
            return None

    def text_knob(self, name: str) -> str:
        return str(self.faults().get(name, os.environ.get(KNOB_PREFIX + name.upper(), "")) or "").strip()

    def rule(self, name: str) -> dict[str, Any]:
        """The first ``rules`` entry whose ``match`` glob matches a job name (``{}``: none)."""
        for rule in self.faults().get("rules", []):
            if fnmatch.fnmatchcase(name, str(rule.get("match", "*"))):
                return dict(rule)
        return {}

    # --- state --------------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return read_json(self.root / "state.json")

    def save_state(self, state: Mapping[str, Any]) -> None:
        write_json(self.root / "state.json", state)

    def controller(self) -> Controller:
        return Controller.from_dict(self.state().get("controller") or {})

    def save_controller(self, controller: Controller) -> None:
        state = self.state()
        if state.get("controller") != controller.to_dict():
            state["controller"] = controller.to_dict()
            self.save_state(state)

    def start_controller(self) -> float:
        """A launch or a refreshing call starts the controller unless it is up; when it is up."""
        controller = self.controller()
        up_at = controller.start(time.time(), self.knob("controller_start_s"))
        self.save_controller(controller)
        return up_at

    def next_job_id(self) -> int:
        state = self.state()
        job_id = int(state.get("next_job_id", 1))
        state["next_job_id"] = job_id + 1
        self.save_state(state)
        return job_id

    # --- jobs ---------------------------------------------------------------------------------------

    def job_dir(self, job_id: int) -> Path:
        return self.root / "jobs" / str(int(job_id))

    def exists(self, job_id: int) -> bool:
        return (self.job_dir(job_id) / "job.json").exists()

    def load(self, job_id: int) -> dict[str, Any]:
        try:
            return json.loads((self.job_dir(job_id) / "job.json").read_text())
        except FileNotFoundError:
            raise SkyRequestError(f"Job {job_id} not found.") from None

    def save(self, job: Mapping[str, Any]) -> None:
        write_json(self.job_dir(job["job_id"]) / "job.json", job)

    def all(self) -> list[dict[str, Any]]:
        jobs: list[dict[str, Any]] = []
        for path in (self.root / "jobs").glob("*/job.json"):
            with contextlib.suppress(FileNotFoundError, ValueError):
                jobs.append(json.loads(path.read_text()))
        return sorted(jobs, key=lambda j: j["job_id"])

    def archive(self) -> list[dict[str, Any]]:
        """The account's long-finished jobs (``seed_finished``): in answers, never moved along."""
        return list(read_json(self.root / "archive.json").get("jobs", []))

    def advance_all(self, live: set[int]) -> list[dict[str, Any]]:
        """Move every job along as the controller would by now (``live``: process groups alive); the jobs."""
        now = time.time()
        controller = self.controller()
        controller.come_up(now)
        knobs = {
            "pending_s": self.knob("pending_s"),
            "starting_s": self.knob("starting_s"),
            "preempt_after_s": self.optional_knob("preempt_after_s"),
        }
        out = []
        for job in self.all():
            if controller.status == "UP":  # a controller that is not up moves nothing along
                before = dict(job)
                job = advance(job, now, live, self.job_dir(job["job_id"]), self.root, knobs)
                if job != before:
                    self.save(job)
            out.append(job)
        controller.idle_check(now, out, TERMINAL, self.knob("controller_idle_s"))
        self.save_controller(controller)
        return out


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    write_atomic(path, json.dumps(data))
