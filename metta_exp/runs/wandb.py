"""A run's W&B identity, in one place: its mode, its run id (one per attempt), its URL and its API path.

- **Mode** (:func:`wandb_mode`): from the job's W&B settings (``WANDB_MODE``, ``WANDB_DISABLED``) as wandb
  reads them; once the attempt has run, what its ``run.json`` says it did (``disabled`` when it had no
  credentials, say) wins.
- **Run id** (:func:`wandb_run_id`, :func:`attempt_run_id`): fixed before launch per group instance and
  run; every attempt is its own W&B run.
- **URL**: the one W&B gave the attempt, as it reported it (its ``[metta-exp] wandb`` log line, which
  the runner records in the store, else its ``run.json``); never built from a host name.
- **Path** (``entity/project/id``, for the W&B API): from the URL, else from the configured entity and
  project and the attempt's run id; none for an offline or disabled run.

:func:`job_wandb` puts them together for a job's current attempt: what ``job show``, the notebook and
``fetch_metrics`` use. Light: the standard library only (``hashlib`` when a run id is made).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from metta_exp.runs.state import RunState, read_run_state

if TYPE_CHECKING:
    from metta_exp.records import JobRecord

NOT_LOGGED = ("offline", "disabled")
"""Modes whose runs are not on a W&B server (an offline run is, once ``wandb sync`` ed)."""


def wandb_mode(env: Mapping[str, str]) -> str:
    """``online``, ``offline``, ``disabled`` or the unknown value itself, from ``WANDB_MODE`` (``run`` is
    ``online``, ``dryrun`` ``offline``, unset ``online``) and ``WANDB_DISABLED``, as wandb reads them."""
    if env.get("WANDB_DISABLED", "").lower() in ("true", "1", "yes"):
        return "disabled"
    mode = env.get("WANDB_MODE", "").strip().lower()
    return {"": "online", "run": "online", "dryrun": "offline"}.get(mode, mode)


def attempt_mode(state: RunState | None, told: str) -> str:
    """The W&B mode an attempt ran in: what its ``run.json`` (``state``) says it did, else what it was
    told (``told``: :func:`wandb_mode` of its settings)."""
    return (state.wandb_mode if state is not None else None) or told


def wandb_run_id(group: str, run: str, instance: str | None = None) -> str:
    """A W&B run id fixed before launch, the same every time for the same group, run and ``instance``.

    ``instance`` is a random id drawn once per launched group: a group name used again (in another
    state directory, on another machine) must not resume the old group's W&B runs.
    """
    import hashlib  # here: readers of the store import this module, and hashlib loads OpenSSL

    key = f"{group}\0{run}" + (f"\0{instance}" if instance else "")
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def attempt_run_id(run_id: str, attempt: int) -> str:
    """The W&B run id of one attempt: ``run_id`` for the first, ``<run_id>-a<N>`` for attempt N > 1.

    Every attempt is its own W&B run (same group and name). Resuming the first attempt's run instead
    would drop every step a retry logs below the first attempt's last step: a resumed wandb client
    starts at that step and ignores lower ones (wandb/sdk/wandb_run.py, "Steps must be monotonically
    increasing"). Run ids may not hold any of ``:;,#?/'`` (wandb/sdk/wandb_settings.py,
    ``validate_run_id``); ``-`` is kept as it is in the run's URL (``run_url``'s ``quote``).
    """
    return run_id if attempt <= 1 else f"{run_id}-a{attempt}"


def wandb_path_from_url(url: object) -> str | None:
    """``entity/project/id`` of a W&B run URL (``.../ENTITY/PROJECT/runs/ID``), or None."""
    if not isinstance(url, str) or not url:
        return None
    parts = [p for p in urlparse(url).path.split("/") if p]
    if len(parts) >= 4 and parts[-2] == "runs":
        return f"{parts[-4]}/{parts[-3]}/{parts[-1]}"
    return None


def configured_wandb_path(env: Mapping[str, str], run_id: str | None, attempt: int | None) -> str | None:
    """``entity/project/id`` of attempt ``attempt`` (None: the first) from the configured entity and
    project (None unless both are set: without them only the URL the job reported tells where its run
    is) and the job's run id (``run_id``, else the environment's ``WANDB_RUN_ID``)."""
    run_id = run_id or env.get("WANDB_RUN_ID")
    if not (env.get("WANDB_ENTITY") and env.get("WANDB_PROJECT") and run_id):
        return None
    number = attempt if isinstance(attempt, int) and attempt > 0 else 1
    return f"{env['WANDB_ENTITY']}/{env['WANDB_PROJECT']}/{attempt_run_id(str(run_id), number)}"


def run_wandb_path(
    url: object, env: Mapping[str, str], run_id: str | None, attempt: int | None
) -> str | None:
    """The W&B run (``entity/project/id``) of a job's attempt: from the URL it reported (``url``), else
    from its configured entity, project and run id; None when neither tells."""
    return wandb_path_from_url(url) or configured_wandb_path(env, run_id, attempt)


@dataclass(frozen=True)
class WandbIdentity:
    """Where a run's attempt is on W&B."""

    mode: str
    """``online``, ``offline``, ``disabled`` (or an unknown ``WANDB_MODE``): see :func:`wandb_identity`."""
    run_id: str | None
    """The attempt's W&B run id (None when the job has none: not launched by metta-exp)."""
    url: str | None
    """The run's page as the attempt reported it; None until it has."""
    path: str | None
    """``entity/project/id`` for the W&B API; None when not known, or the run is offline or disabled."""
    base_url: str | None = None
    """The W&B server the job used (its ``WANDB_BASE_URL``); None: the default one."""
    sync_dir: str | None = None
    """An offline run's directory, for ``wandb sync``."""

    @property
    def link(self) -> str | None:
        """The URL to show as a link (see :func:`wandb_link`)."""
        return wandb_link(self.url, self.mode)


def wandb_link(url: str | None, mode: str | None) -> str | None:
    """The URL to show as a link: an http(s) URL of a run that is on W&B; None otherwise (an offline or
    disabled run's URL, recorded before launch and never synced, would be a dead link)."""
    if mode in NOT_LOGGED or not url or urlparse(url).scheme not in ("http", "https"):
        return None
    return url


def wandb_identity(
    env: Mapping[str, str],
    run_id: str | None,
    attempt: int | None,
    url: str | None = None,
    state: RunState | None = None,
) -> WandbIdentity:
    """The W&B identity of attempt ``attempt`` of a job with W&B settings ``env`` and run id ``run_id``:
    ``url`` is what it reported (the store's record of its log line), ``state`` its ``run.json`` (by
    :func:`~metta_exp.runs.state.read_run_state`, for this attempt). The mode is what ``state`` says the
    attempt did, else what ``env`` told it."""
    url = url or (state.wandb_url if state is not None else None)
    mode = attempt_mode(state, wandb_mode(env))
    run_id = run_id or env.get("WANDB_RUN_ID") or None
    return WandbIdentity(
        mode=mode,
        run_id=attempt_run_id(run_id, attempt or 1) if run_id else None,
        url=url,
        path=None if mode in NOT_LOGGED else run_wandb_path(url, env, run_id, attempt),
        base_url=env.get("WANDB_BASE_URL") or None,
        sync_dir=state.wandb_dir if state is not None else None,
    )


def job_wandb(job: JobRecord) -> WandbIdentity:
    """The W&B identity of a job's current attempt: its recorded URL, its ``run.json`` if this attempt
    wrote it, its spec's W&B settings and run id. Reads one small file."""
    spec = job.spec
    state = read_run_state(job.run_dir or spec.run_dir, job.attempts)
    return wandb_identity(spec.env, spec.wandb_run_id, job.attempts, job.wandb_url, state)
