"""The small slice of SkyPilot's SDK the SkyPilot backend uses, behind one interface.

``SkyApi`` is the boundary between metta-exp and SkyPilot: launch a managed job, learn its id, list
managed jobs in one call, cancel many in one call, read a log tail, and say which infras are enabled.
``SdkSkyApi`` implements it with SkyPilot's client SDK (``import sky`` happens inside its methods only);
``FakeSkyApi`` (``skypilot_fake.py``) implements it without any cloud, for tests and benchmarks.

``skypilot_select.default_sky_api()`` is the ONE place that picks the simulator (the simulator imports this
module for the interface, so the choice lives one level up, not here).

Statuses stay SkyPilot's own ``ManagedJobStatus`` names (``"RUNNING"``, ``"FAILED_SETUP"``...); the
backend maps them to ours. Every SDK call is counted in ``calls`` (a request and the ``sky.get`` that
waits for its answer are two calls), which is what the benchmark reports.

    SkyApiError             the call did not get an answer (API server unreachable, request failed)
    ├── RequestLost         a request's answer is gone: the server was restarted and re-submitting is
    │                       up to the client (``RequestInterruptedError``), or forgot the request id
    │                       (HTTP 404 from ``sky.get``); what the request did is unknown
    └── SkyRequestError     SkyPilot answered and refused (invalid task, unknown job): retrying won't help
        ├── ControllerNotUp SkyPilot's ``ClusterNotUpError`` for the jobs controller, with its status
        └── SkyRefused      every call is refused until the user acts: an expired login
                            (``ApiServerAuthenticationError``), a server of another version
                            (``APIVersionMismatchError``), a server too old for the call
                            (``APINotSupportedError``); ``fix`` says what to do

``ControllerNotUp.status`` is the controller's ``ClusterStatus`` name: ``None`` when it does not exist
(no managed job was ever launched, so none is in progress), ``"STOPPED"`` when it stopped itself after
being idle (``sky/jobs/constants.py``: ``CONTROLLER_AUTOSTOP`` idle_minutes 10; its finished jobs are still
recorded on it, but ``jobs.queue_v2(refresh=False)`` cannot read them until a refreshing call or a launch
starts it again), or ``"INIT"`` while it is being started (``sky/backends/backend_utils.py``,
``is_controller_accessible``). Only ``None`` means "no job in progress"; the others are transient.
"""

from __future__ import annotations

import io
import re
import threading
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "FAKE_DIR_ENV",
    "ControllerNotUp",
    "QueueEntry",
    "RequestLost",
    "SdkSkyApi",
    "SkyApi",
    "SkyApiError",
    "SkyRefused",
    "SkyRequestError",
    "launch_job_id",
]

FAKE_DIR_ENV = "METTA_EXP_FAKE_SKY_DIR"
#: The queue fields the backend needs (SkyPilot's default set carries much more).
QUEUE_FIELDS = (
    "job_id",
    "task_id",
    "job_name",
    "status",
    "failure_reason",
    "recovery_count",
    "submitted_at",
    "start_at",
    "end_at",
)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class SkyApiError(Exception):
    """A SkyPilot call got no usable answer; trying again later may work. ``reached``: whether the request
    may have reached the server (a connection reset or a read timeout after sending: what it did is
    unknown) or surely did not (the connection was refused, or never made)."""

    def __init__(self, message: str = "", reached: bool = True) -> None:
        super().__init__(message)
        self.reached = reached


class SkyRequestError(SkyApiError):
    """SkyPilot answered and refused the request; the same request will fail again."""


class RequestLost(SkyApiError):
    """The answer of a request is gone (its server restarted, or forgot it): it may or may not have done
    its work. Look for the outcome (a launch: its job name in the queue) before sending it again."""


class SkyRefused(SkyRequestError):
    """SkyPilot refuses every call, and will until the user acts: ``fix`` says how."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.fix = fix


#: What the ``requests`` library says of a connection that was never made (``urllib3``'s
#: ``NewConnectionError``), and SkyPilot of a server that did not answer its health check before the request
#: (``sky/server/common.py``: ``ApiServerConnectionError``): the request never left.
_NOT_SENT = (
    "Failed to establish a new connection",
    "Connection refused",
    "Could not connect to SkyPilot API",
)


class ControllerNotUp(SkyRequestError):
    """SkyPilot's ``ClusterNotUpError`` for the jobs controller (``sky/exceptions.py``), with its status."""

    def __init__(self, message: str, status: str | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def absent(self) -> bool:
        """The controller does not exist: no managed job is in progress (nothing to wait for)."""
        return self.status is None


@dataclass(frozen=True)
class QueueEntry:
    """One managed job as ``sky.jobs.queue_v2`` lists it (``status`` is a ManagedJobStatus name)."""

    job_id: int
    name: str
    status: str
    failure_reason: str | None = None
    recovery_count: int = 0
    submitted_at: float | None = None
    start_at: float | None = None  # when it first ran (``sky/jobs/state.py``: first RUNNING)
    end_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QueueEntry:
        return cls(
            job_id=int(data["job_id"]),
            name=str(data["name"]),
            status=str(data["status"]),
            failure_reason=data.get("failure_reason"),
            recovery_count=int(data.get("recovery_count") or 0),
            submitted_at=data.get("submitted_at"),
            start_at=data.get("start_at"),
            end_at=data.get("end_at"),
        )


class SkyApi(ABC):
    """What the SkyPilot backend asks of SkyPilot. Every method may raise ``SkyApiError``."""

    #: names this API's view of the world, so a shared queue cache never mixes two of them
    identity: str = "sky"
    #: whether SkyPilot's set-up on this machine is checked (from files) before the first call
    checks_local_setup: bool = False

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self._calls_lock = threading.Lock()

    def _count(self, call: str) -> None:
        with self._calls_lock:
            self.calls[call] += 1

    @abstractmethod
    def enabled_infras(self) -> list[str]:
        """Lowercase names of the infras SkyPilot can launch on (``aws``, ``kubernetes``...)."""

    @abstractmethod
    def launch(self, config: Mapping[str, Any], secrets: Mapping[str, str]) -> str:
        """Send one managed-job launch request; return its request id without waiting for the job."""

    @abstractmethod
    def launch_result(self, request_id: str) -> int:
        """Wait for a launch request's answer: the managed job id."""

    @abstractmethod
    def queue(
        self,
        name_match: str | None = None,
        *,
        job_ids: Sequence[int] | None = None,
        refresh: bool = False,
        all_users: bool = False,
    ) -> list[QueueEntry]:
        """Managed jobs with one of ``job_ids`` and/or whose name contains ``name_match``, in one
        ``jobs.queue_v2`` call (SkyPilot's ``name_match`` is a SQL ``LIKE '%...%'``: callers filter exact
        names themselves). ``refresh`` starts a stopped controller (slow: minutes). Without ``all_users``
        SkyPilot answers only the jobs of this machine's user hash (``~/.sky/user_hash``), so a job that
        another machine sharing the store launched is missing."""

    @abstractmethod
    def cancel(self, job_ids: Sequence[int]) -> None:
        """Cancel these managed jobs in one request and wait for its answer."""

    @abstractmethod
    def tail_logs(self, job_id: int, lines: int | None) -> str:
        """The last ``lines`` lines of a managed job's log (None: all of it), without following it. As
        SkyPilot answers: a request that failed on the server gives ``""``, and an ended job whose log
        its controller has not downloaded yet gives one line saying it is in a terminal state."""


class SdkSkyApi(SkyApi):
    """``SkyApi`` over SkyPilot's client SDK (an API server, local or remote, does the work)."""

    identity = "sdk"
    checks_local_setup = True

    def enabled_infras(self) -> list[str]:
        from sky.client import sdk

        request = self._call("enabled_clouds", sdk.enabled_clouds)
        return [str(c).lower() for c in self._get(request)]

    def launch(self, config: Mapping[str, Any], secrets: Mapping[str, str]) -> str:
        import sky

        from metta_exp.backends.skypilot.task import task_from_config

        try:
            task = task_from_config(config, secrets)
        except Exception as exc:  # an invalid task is our caller's problem, not a transient one
            raise SkyRequestError(f"invalid SkyPilot task: {_message(exc)}") from None
        # job_group=None: a launch from inside a SkyPilot job group would otherwise attach to it and be
        # cancelled with it (sky/jobs/client/sdk.py: AUTO_JOB_GROUP reads SKYPILOT_ROOT_JOB_ID)
        return str(self._call("jobs.launch", sky.jobs.launch, task, name=config.get("name"), job_group=None))

    def launch_result(self, request_id: str) -> int:
        answer = self._get(request_id)
        return launch_job_id(answer, request_id)

    def queue(
        self,
        name_match: str | None = None,
        *,
        job_ids: Sequence[int] | None = None,
        refresh: bool = False,
        all_users: bool = False,
    ) -> list[QueueEntry]:
        import sky

        request = self._call(
            "jobs.queue_v2",
            sky.jobs.queue_v2,
            refresh=refresh,
            skip_finished=False,
            all_users=all_users,
            job_ids=list(job_ids) if job_ids is not None else None,
            fields=list(QUEUE_FIELDS),
            name_match=name_match,
        )
        answer = self._get(request)
        records = answer[0] if isinstance(answer, tuple) else answer
        return [e for e in (_entry(r) for r in records) if e is not None]

    def cancel(self, job_ids: Sequence[int]) -> None:
        import sky

        if not job_ids:
            return
        self._get(self._call("jobs.cancel", sky.jobs.cancel, job_ids=list(job_ids)))

    def tail_logs(self, job_id: int, lines: int | None) -> str:
        import sky

        out = io.StringIO()
        self._call(
            "jobs.tail_logs", sky.jobs.tail_logs, job_id=job_id, follow=False, tail=lines, output_stream=out
        )
        return clean_log(out.getvalue())

    def _call(self, call: str, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        self._count(call)
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise _classify(exc) from None

    def _get(self, request_id: Any) -> Any:
        from sky.client import sdk

        return self._call("get", sdk.get, request_id)


def clean_log(text: str) -> str:
    """A log as a file should hold it: no terminal colour codes, no SkyPilot spinner payloads."""
    lines = [line for line in _ANSI.sub("", text).splitlines() if not line.startswith("<sky-payload>")]
    return "\n".join(lines) + ("\n" if lines else "")


def _entry(record: Any) -> QueueEntry | None:
    def field(name: str) -> Any:
        return record.get(name) if isinstance(record, Mapping) else getattr(record, name, None)

    job_id, status = field("job_id"), field("status")
    if job_id is None or status is None:
        return None
    status = getattr(status, "value", status)
    return QueueEntry(
        job_id=int(job_id),
        name=str(field("job_name") or field("task_name") or ""),
        status=str(status),
        failure_reason=field("failure_reason"),
        recovery_count=int(field("recovery_count") or 0),
        submitted_at=field("submitted_at"),
        start_at=field("start_at"),
        end_at=field("end_at"),
    )


def launch_job_id(answer: Any, request_id: str) -> int:
    """The managed job id from a launch request's answer: ``(job_ids, handle)`` where ``job_ids`` is a list
    (``sky/jobs/client/sdk.py``: ``Optional[List[int]]``), or a single int as some servers answer."""
    job_ids = answer[0] if isinstance(answer, tuple) else answer
    if isinstance(job_ids, int) and not isinstance(job_ids, bool):
        return job_ids
    if isinstance(job_ids, str) and job_ids.isdigit():
        return int(job_ids)
    if isinstance(job_ids, Sequence) and job_ids and str(job_ids[0]).isdigit():
        return int(job_ids[0])
    raise SkyRequestError(f"SkyPilot accepted launch request {request_id} but returned no job id")


def _message(exc: BaseException) -> str:
    text = _ANSI.sub("", str(exc)).strip() or type(exc).__name__
    return text.splitlines()[0] if len(text) > 300 else text


#: SkyPilot's refusals that stay until the user acts (``sky/exceptions.py``), with the fix for each.
REFUSALS = {
    # sky/server/common.py: check_server_healthy_or_start_fn, a server that answers NEEDS_AUTH
    "ApiServerAuthenticationError": "log in again: `sky api login` (the API server's login expired)",
    # sky/server/common.py: check_server_healthy, VERSION_MISMATCH
    "APIVersionMismatchError": (
        "use the SkyPilot version the API server runs (`pip install -U skypilot==<its version>`), or restart "
        "a local API server with this one (`sky api stop`)"
    ),
    # sky/server/versions.py: minimal_api_version, a remote API version below the call's minimum
    "APINotSupportedError": "upgrade the SkyPilot API server (it is older than this SkyPilot client)",
}


def _classify(exc: Exception) -> SkyApiError:
    """Transient (no answer), a lost answer, a refusal, or a lasting refusal, from what the SDK raised."""
    transient_names = {
        "ApiServerConnectionError",
        "ConnectionError",
        "Timeout",
        "ReadTimeout",
        "ConnectTimeout",
        "RequestCancelled",
        "ServerTemporarilyUnavailableError",
        "ChunkedEncodingError",
    }
    names = {cls.__name__ for cls in type(exc).__mro__}
    message = f"{type(exc).__name__}: {_message(exc)}"
    refused = next((fix for name, fix in REFUSALS.items() if name in names), None)
    if refused is not None:  # its first line: SkyPilot's own fix follows on the next ones
        return SkyRefused(f"{type(exc).__name__}: {_message(exc).splitlines()[0]}", refused)
    # sky/server/uvicorn.py: a request the server's restart interrupted answers this error for ever ("Please
    # re-submit the original request"); sky/client/sdk.py ``get``: a request id the server does not know
    # (a local server restarted with an empty request table) is a RuntimeError with its 404
    if "RequestInterruptedError" in names or (
        isinstance(exc, RuntimeError) and str(exc).startswith("Failed to get request") and " 404" in str(exc)
    ):
        return RequestLost(message)
    if names & transient_names or isinstance(exc, OSError | TimeoutError):
        not_sent = "ConnectTimeout" in names or isinstance(exc, ConnectionRefusedError)
        return SkyApiError(message, reached=not (not_sent or any(s in str(exc) for s in _NOT_SENT)))
    if "ClusterNotUpError" in names:
        status = getattr(exc, "cluster_status", None)
        return ControllerNotUp(message, None if status is None else str(getattr(status, "value", status)))
    return SkyRequestError(message)
