"""A TEST DOUBLE of SkyPilot's managed jobs: ``FakeSkyApi`` runs every task here, with bash, for real.

This is the one fake at the cloud boundary. It implements ``SkyApi`` without a cloud, an API server or a
network, so the SkyPilot backend, and a whole metta-exp run on it, can be tested on any machine:

- each launched task's ``setup`` and ``run`` scripts run with ``bash`` in a temporary workdir (a copy of
  the task's local ``workdir``, if it has one) with the task's ``envs`` and secrets, ``HOME`` set to a
  per-job directory (the "remote machine") and this Python's ``bin`` first on ``PATH``; so the generated
  scripts, their quoting and their environment are exercised exactly as SkyPilot would run them;
- statuses are SkyPilot's own ``ManagedJobStatus`` names: PENDING, STARTING, RUNNING, RECOVERING,
  SUCCEEDED, CANCELLING, CANCELLED, FAILED, FAILED_SETUP, FAILED_PRECHECKS, FAILED_NO_RESOURCE,
  FAILED_CONTROLLER;
- it can inject preemption (RECOVERING, then the task runs again and is RUNNING), FAILED_SETUP,
  FAILED_NO_RESOURCE (or any FAILED_* status), API errors, slow answers, a job that shows up in the
  queue only after a delay, and a slow cancel (CANCELLING for a while).

All of its state lives in one directory (jobs as JSON files, their scripts, logs and exit codes, the
fault settings and a log of calls), guarded by a file lock, so the test, the runner process and a
``metta-exp job kill`` process share one fake world. Setting ``METTA_EXP_FAKE_SKY_DIR=DIR`` makes
``default_sky_api()`` return ``FakeSkyApi(DIR)`` everywhere in metta-exp instead of the SDK.

Like SkyPilot's controller, the fake moves jobs along when it is asked (every queue, cancel or launch
call advances every job first), and it plays SkyPilot's API server: it keeps each job's secrets, in a
``0600`` file inside its directory, to run the task again after a preemption.

Fault settings (``configure``), each optional::

    latency_s          seconds every SDK call takes (a request and its ``get`` are two calls)
    slow               {method: extra seconds}, e.g. {"launch_result": 5} for a launch that takes long
    enabled_infras     what ``enabled_infras`` answers (default ["kubernetes"])
    cancel_delay_s     how long a cancelled job stays CANCELLING (default 0)
    rules              [{"match": GLOB on the job name, and any of:
                         "status": FAILED_SETUP | FAILED_NO_RESOURCE | FAILED_PRECHECKS | FAILED_CONTROLLER
                                   | FAILED, "message": failure reason,
                         "pending_s", "starting_s": time in PENDING / STARTING,
                         "visible_after_s": time before the job shows up in the queue,
                         "preempt_after_s": preempt once after RUNNING this long,
                         "recover_after_s": time in RECOVERING (default 0.2)}]

``fail_next(call, n)`` makes the next ``n`` calls of ``launch``, ``launch_result``, ``queue``, ``cancel``,
``tail_logs`` or ``enabled_infras`` raise ``SkyApiError``, in whichever process makes them.
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from metta_exp.backends import procs
from metta_exp.backends.skypilot_api import QueueEntry, SkyApi, SkyApiError, SkyRequestError

__all__ = ["FAILURE_STATUSES", "MANAGED_JOB_STATUSES", "FakeSkyApi"]

MANAGED_JOB_STATUSES = (
    "PENDING", "STARTING", "RUNNING", "RECOVERING", "SUCCEEDED", "CANCELLING", "CANCELLED", "FAILED",
    "FAILED_SETUP", "FAILED_PRECHECKS", "FAILED_NO_RESOURCE", "FAILED_CONTROLLER",
)  # fmt: skip
FAILURE_STATUSES = ("FAILED", "FAILED_SETUP", "FAILED_PRECHECKS", "FAILED_NO_RESOURCE", "FAILED_CONTROLLER")
TERMINAL = frozenset({"SUCCEEDED", "CANCELLED", *FAILURE_STATUSES})
# Failures injected before the task ever runs (no cluster was had) vs. while it runs.
_NO_CLUSTER = frozenset({"FAILED_PRECHECKS", "FAILED_NO_RESOURCE", "FAILED_CONTROLLER"})

# $1: the job's directory. Setup, then run, both appending to the job's log; exit codes written atomically.
_DRIVER = """cd "$1/workdir" || exit 1
if [ -f "$1/setup.sh" ]; then
  bash "$1/setup.sh" >> "$1/log" 2>&1
  code=$?
  if [ $code -ne 0 ]; then
    echo $code > "$1/setup_exit.tmp" && mv -f "$1/setup_exit.tmp" "$1/setup_exit"
    exit $code
  fi
fi
: > "$1/started"
bash "$1/run.sh" >> "$1/log" 2>&1
code=$?
echo $code > "$1/exit.tmp" && mv -f "$1/exit.tmp" "$1/exit"
"""
# Inherited variables a fresh remote machine would not have. WANDB_MODE and WANDB_DISABLED stay, so a
# test that turned W&B off keeps it off on the "remote" too (a task's own envs still win).
_NOT_INHERITED = ("METTA_EXP_", "WANDB_", "SKYPILOT_", "CUDA_VISIBLE_DEVICES", "VIRTUAL_ENV")
_KEPT = ("WANDB_MODE", "WANDB_DISABLED")
_WORKDIR_IGNORE = shutil.ignore_patterns(".git", ".venv", "__pycache__", "job_state", "node_modules")


class FakeSkyApi(SkyApi):
    """``SkyApi`` on this machine, its state in ``root`` (shared by every process that opens it)."""

    def __init__(self, root: str | os.PathLike[str], latency_s: float | None = None) -> None:
        super().__init__()
        self.root = Path(root).absolute()
        self.identity = f"fake:{self.root}"
        (self.root / "jobs").mkdir(parents=True, exist_ok=True)
        (self.root / "requests").mkdir(exist_ok=True)
        if latency_s is not None:
            self.configure(latency_s=latency_s)

    # --- fault settings (the test's side) ---------------------------------------------------------

    def configure(self, **settings: Any) -> None:
        """Merge fault settings (see the module docstring) into ``faults.json``."""
        with self._locked():
            faults = self._faults()
            faults.update(settings)
            _write_json(self.root / "faults.json", faults)

    def fail_next(
        self, call: str, n: int = 1, message: str = "injected API error", refuse: bool = False
    ) -> None:
        """The next ``n`` calls of method ``call`` raise ``SkyApiError(message)``.

        With ``refuse`` they raise ``SkyRequestError`` instead: SkyPilot answered and refused.
        """
        with self._locked():
            state = self._state()
            state.setdefault("api_errors", {})[call] = {"n": n, "message": message, "refuse": refuse}
            _write_json(self.root / "state.json", state)

    def preempt(self, job_id: int, recover_after_s: float = 0.2) -> None:
        """Preempt a running job now: its processes die, it is RECOVERING, then it runs again."""
        with self._locked():
            job = self._load(job_id)
            if job["status"] == "RUNNING":
                self._preempt(job, time.time(), recover_after_s)
                self._save(job)

    def job(self, job_id: int) -> dict[str, Any]:
        """A job's record as the fake keeps it (after advancing it)."""
        with self._locked():
            job = self._advance(self._load(job_id), time.time(), _live_groups())
            return job

    def jobs(self) -> list[dict[str, Any]]:
        with self._locked():
            return self._advance_all()

    def job_dir(self, job_id: int) -> Path:
        return self.root / "jobs" / str(job_id)

    def call_counts(self) -> Counter[str]:
        """SDK calls made by every process using this directory."""
        try:
            lines = (self.root / "calls.log").read_text().splitlines()
        except FileNotFoundError:
            return Counter()
        return Counter(line.split()[0] for line in lines if line)

    def call_log(self) -> list[tuple[str, int, int]]:
        """Every SDK call in order: (call, pid, thread id)."""
        try:
            lines = (self.root / "calls.log").read_text().splitlines()
        except FileNotFoundError:
            return []
        return [(p[0], int(p[1]), int(p[2])) for p in (line.split() for line in lines) if len(p) == 3]

    def kill_all(self) -> None:
        """Kill the processes of every job (test teardown: leave nothing behind)."""
        with self._locked():
            live = _live_groups()
            for job in self._all():
                if job.get("pgid") in live:
                    _kill_group(job["pgid"], signal.SIGKILL, wait_s=2.0)

    # --- SkyApi -------------------------------------------------------------------------------------

    def enabled_infras(self) -> list[str]:
        self._sdk_call("enabled_infras", "enabled_clouds", "get")
        return [str(i).lower() for i in self._faults().get("enabled_infras", ["kubernetes"])]

    def launch(self, config: Mapping[str, Any], secrets: Mapping[str, str]) -> str:
        self._sdk_call("launch", "jobs.launch")
        name = str(config.get("name") or "")
        run = config.get("run")
        if not name or not isinstance(run, str):
            raise SkyRequestError("invalid task: a managed job needs a name and a run script")
        with self._locked():
            state = self._state()
            job_id = int(state.get("next_job_id", 1))
            state["next_job_id"] = job_id + 1
            _write_json(self.root / "state.json", state)
            rule = self._rule(name)
            now = time.time()
            job = {
                "job_id": job_id, "name": name, "status": "PENDING", "failure_reason": None,
                "recovery_count": 0, "submitted_at": now, "phase_at": now, "end_at": None,
                "visible_at": now + float(rule.get("visible_after_s", 0)), "rule": rule,
                "envs": {str(k): str(v) for k, v in (config.get("envs") or {}).items()},
                "workdir": config.get("workdir"), "file_mounts": dict(config.get("file_mounts") or {}),
                "pgid": None, "preempted": False, "recover_at": None, "cancel_at": None,
            }  # fmt: skip
            directory = self.job_dir(job_id)
            (directory / "home").mkdir(parents=True)
            (directory / "run.sh").write_text(run)
            if config.get("setup"):
                (directory / "setup.sh").write_text(str(config["setup"]))
            secrets_file = directory / "secrets.json"
            fd = os.open(secrets_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(dict(secrets), f)
            self._save(job)
            request_id = f"fake-{uuid.uuid4().hex}"
            _write_json(self.root / "requests" / f"{request_id}.json", {"job_id": job_id})
        return request_id

    def launch_result(self, request_id: str) -> int:
        self._sdk_call("launch_result", "get")
        try:
            data = json.loads((self.root / "requests" / f"{request_id}.json").read_text())
        except FileNotFoundError:
            raise SkyRequestError(f"no such request: {request_id}") from None
        return int(data["job_id"])

    def queue(self, name_prefix: str) -> list[QueueEntry]:
        self._sdk_call("queue", "jobs.queue_v2", "get")
        now = time.time()
        with self._locked():
            jobs = self._advance_all()
        return [
            QueueEntry(j["job_id"], j["name"], j["status"], j["failure_reason"], j["recovery_count"],
                       j["submitted_at"], j["end_at"])
            for j in jobs
            if j["name"].startswith(name_prefix) and now >= j["visible_at"]
        ]  # fmt: skip

    def cancel(self, job_ids: Sequence[int]) -> None:
        self._sdk_call("cancel", "jobs.cancel", "get")
        with self._locked():
            now = time.time()
            delay = float(self._faults().get("cancel_delay_s", 0))
            live = _live_groups()
            for job_id in job_ids:
                path = self._job_file(job_id)
                if not path.exists():
                    continue
                job = self._advance(self._load(job_id), now, live)
                if job["status"] in TERMINAL or job["status"] == "CANCELLING":
                    continue
                if job.get("pgid"):
                    _kill_group(job["pgid"], signal.SIGTERM, wait_s=2.0)
                    _kill_group(job["pgid"], signal.SIGKILL, wait_s=1.0)
                job["status"] = "CANCELLING"
                job["cancel_at"] = now + delay
                if delay <= 0:
                    job.update(status="CANCELLED", end_at=now)
                self._save(job)

    def tail_logs(self, job_id: int, lines: int) -> str:
        self._sdk_call("tail_logs", "jobs.tail_logs")
        if not self._job_file(job_id).exists():
            raise SkyRequestError(f"no managed job with id {job_id}")
        try:
            text = (self.job_dir(job_id) / "log").read_text(errors="replace")
        except FileNotFoundError:
            return ""
        tail = text.splitlines()[-lines:] if lines > 0 else []
        return "\n".join(tail) + ("\n" if tail else "")

    # --- the "controller": moving jobs along ---------------------------------------------------------

    def _advance_all(self) -> list[dict[str, Any]]:
        now, live = time.time(), _live_groups()
        out = []
        for job in self._all():
            before = dict(job)
            job = self._advance(job, now, live)
            if job != before:
                self._save(job)
            out.append(job)
        return out

    def _advance(self, job: dict[str, Any], now: float, live: set[int]) -> dict[str, Any]:
        rule = job["rule"]
        if job["status"] == "CANCELLING" and now >= job["cancel_at"]:
            job.update(status="CANCELLED", end_at=now)
        if job["status"] == "PENDING" and now >= job["submitted_at"] + float(rule.get("pending_s", 0)):
            job.update(status="STARTING", phase_at=now)
        if job["status"] == "STARTING" and now >= job["phase_at"] + float(rule.get("starting_s", 0)):
            if rule.get("status") in _NO_CLUSTER:
                self._end(job, rule["status"], rule.get("message") or _DEFAULT_REASONS[rule["status"]], now)
            else:
                self._spawn(job, now)
        if job["status"] == "RECOVERING" and now >= job["recover_at"]:
            self._spawn(job, now)
        if job["status"] == "RUNNING":
            self._check_running(job, now, live)
        return job

    def _check_running(self, job: dict[str, Any], now: float, live: set[int]) -> None:
        directory = self.job_dir(job["job_id"])
        rule = job["rule"]
        for _ in range(2):  # a second look, in case the job ended between the two checks
            if (directory / "exit").exists():
                code = _read_int(directory / "exit")
                if code == 0:
                    self._end(job, "SUCCEEDED", None, now)
                else:
                    self._end(job, "FAILED", rule.get("message") or f"Job exited with code {code}.", now)
                return
            if (directory / "setup_exit").exists():
                code = _read_int(directory / "setup_exit")
                reason = rule.get("message") or f"Setup failed with return code {code}."
                self._end(job, "FAILED_SETUP", reason, now)
                return
            if job["pgid"] in live:
                break
            live = _live_groups()
        else:
            self._end(job, "FAILED", "The job's processes vanished without an exit code.", now)
            return
        preempt_after = rule.get("preempt_after_s")
        if (
            preempt_after is not None
            and not job["preempted"]
            and now >= job["phase_at"] + float(preempt_after)
        ):
            self._preempt(job, now, float(rule.get("recover_after_s", 0.2)))

    def _spawn(self, job: dict[str, Any], now: float) -> None:
        directory = self.job_dir(job["job_id"])
        for marker in ("started", "exit", "setup_exit"):
            (directory / marker).unlink(missing_ok=True)
        workdir = directory / "workdir"
        if not workdir.exists():
            source = job.get("workdir")
            if isinstance(source, str) and Path(source).expanduser().is_dir():
                shutil.copytree(Path(source).expanduser(), workdir, ignore=_WORKDIR_IGNORE, symlinks=True)
            else:
                workdir.mkdir()
            self._copy_mounts(job, directory)
        if job["rule"].get("status") == "FAILED_SETUP":
            (directory / "setup.sh").write_text("echo 'injected setup failure' >&2\nexit 1\n")
        driver = self.root / "driver.sh"
        if not driver.exists():
            driver.write_text(_DRIVER)
        # The outer bash leads a new session and process group and exits at once; the driver stays in
        # that group (no job control in a script), so the group id is the outer pid, and no zombie is
        # left for this process to reap.
        outer = subprocess.Popen(
            ["bash", "-c", 'bash "$1" "$2" </dev/null >/dev/null 2>&1 &', "fake-sky", str(driver),
             str(directory)],
            env=self._job_env(job, directory), start_new_session=True,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        outer.wait()
        job.update(status="RUNNING", phase_at=now, pgid=outer.pid)

    def _job_env(self, job: dict[str, Any], directory: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k in _KEPT or not k.startswith(_NOT_INHERITED)}
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "/usr/bin:/bin")])
        env.update(HOME=str(directory / "home"), SKYPILOT_NUM_NODES="1", SKYPILOT_NODE_RANK="0",
                   SKYPILOT_TASK_ID=f"fake-{job['job_id']}-{job['recovery_count']}")  # fmt: skip
        env.update(job["envs"])
        with contextlib.suppress(FileNotFoundError):
            env.update(json.loads((directory / "secrets.json").read_text()))
        return env

    def _copy_mounts(self, job: dict[str, Any], directory: Path) -> None:
        """``~/...`` file mounts from local paths land in the job's home; others are not emulated."""
        for dst, src in job.get("file_mounts", {}).items():
            source = Path(str(src)).expanduser()
            if not str(dst).startswith("~/") or not source.exists():
                continue
            target = directory / "home" / str(dst)[2:]
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, target, dirs_exist_ok=True)
            else:
                shutil.copy2(source, target)

    def _preempt(self, job: dict[str, Any], now: float, recover_after_s: float) -> None:
        if job.get("pgid"):
            _kill_group(job["pgid"], signal.SIGKILL, wait_s=2.0)
        with open(self.job_dir(job["job_id"]) / "log", "a") as log:
            log.write("[fake sky] the cluster was preempted; recovering\n")
        job.update(status="RECOVERING", preempted=True, recovery_count=job["recovery_count"] + 1,
                   recover_at=now + recover_after_s, pgid=None)  # fmt: skip

    @staticmethod
    def _end(job: dict[str, Any], status: str, reason: str | None, now: float) -> None:
        job.update(status=status, failure_reason=reason, end_at=now)

    # --- files ---------------------------------------------------------------------------------------

    def _sdk_call(self, method: str, *calls: str) -> None:
        """Count the SDK calls this method stands for, take their latency, and maybe fail."""
        faults = self._faults()
        for call in calls:
            self._count(call)
            with open(self.root / "calls.log", "a") as f:
                f.write(f"{call} {os.getpid()} {threading.get_ident()}\n")
            latency = float(faults.get("latency_s", 0))
            if latency > 0:
                time.sleep(latency)
        slow = float(faults.get("slow", {}).get(method, 0))
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

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.root / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

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
            raise SkyRequestError(f"no managed job with id {job_id}") from None

    def _save(self, job: dict[str, Any]) -> None:
        _write_json(self._job_file(job["job_id"]), job)

    def _all(self) -> list[dict[str, Any]]:
        jobs = []
        for path in (self.root / "jobs").glob("*/job.json"):
            with contextlib.suppress(FileNotFoundError, ValueError):
                jobs.append(json.loads(path.read_text()))
        return sorted(jobs, key=lambda j: j["job_id"])


_DEFAULT_REASONS = {
    "FAILED_NO_RESOURCE": "Failed to provision all possible launchable resources (injected: no resource).",
    "FAILED_PRECHECKS": "Failed prechecks (injected).",
    "FAILED_CONTROLLER": "Controller process has exited abnormally (injected).",
}


def _live_groups() -> set[int]:
    """Process groups with at least one process that is not a zombie."""
    return {p.pgid for p in procs.process_table().values() if not p.dead}


def _kill_group(pgid: int, sig: signal.Signals, wait_s: float) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
    deadline = time.time() + wait_s
    while time.time() < deadline and pgid in _live_groups():
        time.sleep(0.02)


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return -1


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)
