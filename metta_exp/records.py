"""Typed records across the store boundary, both ways. Plain data: readers (CLI, monitor, notebook) use
these only, and the store takes them: ``create_group`` a ``GroupConfig`` and ``JobSpec`` s, ``add_trial``
a ``JobSpec``.

A group's stored config and a job's stored spec are encoded and decoded here, and only here (decoded
once, on first access: a reader that never looks at them, such as ``job show``, never pays for them):
every other module reads the typed ``GroupRecord.config`` (a ``GroupConfig``: the ``Experiment``, the
facts of its launch, a sweep's ``SweepRecord``, a search's ``SearchSpace``) and ``JobRecord.spec`` (a
``JobSpec``), never a key of the JSON.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, NamedTuple

from metta_exp.status import JobStatus

if TYPE_CHECKING:  # loaded by the decoders that need them: job list reads no group config
    from metta_exp.config import Experiment
    from metta_exp.trials.space import SearchSpace


@dataclass(frozen=True)
class JobSpec:
    """One run of a group, ready for any backend.

    ``module`` or ``command`` says what runs; ``args`` are the override arguments appended to it
    (the experiment's ``args``, then the run's ``args_per_run``, then command-line overrides).
    ``env`` is the job environment of the interface, except what only a launch knows
    (``CUDA_VISIBLE_DEVICES``, ``METTA_EXP_ATTEMPT``).
    """

    group: str
    run: str
    args: tuple[str, ...]
    env: Mapping[str, str]
    gpus: int
    run_dir: str
    wandb_run_id: str
    depends_on: tuple[str, ...] = ()
    module: str | None = None
    command: tuple[str, ...] | None = None

    def argv(self, python: str = "python") -> list[str]:
        """The argv of the job, with ``python`` as the interpreter of a ``module`` job."""
        head = [python, "-m", self.module] if self.module else list(self.command or ())
        return head + list(self.args)

    def to_dict(self) -> dict[str, object]:
        return {
            "group": self.group,
            "run": self.run,
            "module": self.module,
            "command": list(self.command) if self.command is not None else None,
            "args": list(self.args),
            "env": dict(self.env),
            "gpus": self.gpus,
            "run_dir": self.run_dir,
            "wandb_run_id": self.wandb_run_id,
            "depends_on": list(self.depends_on),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> JobSpec:
        """A spec as ``to_dict`` wrote it. Keys it does not know are ignored: a store written by an older
        metta-exp has ``labels`` in its specs (never used; gone)."""
        command = data.get("command")
        return cls(
            group=str(data["group"]),
            run=str(data["run"]),
            module=data.get("module"),  # type: ignore[arg-type]
            command=tuple(command) if command is not None else None,  # type: ignore[arg-type]
            args=tuple(data.get("args", ())),  # type: ignore[arg-type]
            env=dict(data.get("env", {})),  # type: ignore[call-overload]
            gpus=int(data.get("gpus", 0)),  # type: ignore[call-overload]
            run_dir=str(data["run_dir"]),
            wandb_run_id=str(data["wandb_run_id"]),
            depends_on=tuple(data.get("depends_on", ())),  # type: ignore[arg-type]
        )


def iso(ts: float | None) -> str | None:
    """A unix time as ISO 8601 with a UTC offset, or None."""
    # as ``datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")``, at a third of its cost
    # (``job show --json`` of a big group writes tens of thousands)
    return None if ts is None else time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(ts))


def _decode(data: str | Mapping[str, Any]) -> Mapping[str, Any]:
    decoded = json.loads(data) if isinstance(data, str) else data
    return decoded if isinstance(decoded, Mapping) else {}


def stored_experiment(data: Mapping[str, Any]) -> Experiment:
    """The ``Experiment`` of a stored group config. Not validated again (it was, before it was stored;
    a store written by an older metta-exp may lack keys, which take their defaults)."""
    from metta_exp.config import Experiment, SearchSettings, SkyPilotSettings, WandbSettings

    exp = object.__new__(Experiment)
    for f in dataclasses.fields(Experiment):
        if f.name in data:
            value = data[f.name]
        elif f.default is not dataclasses.MISSING:
            value = f.default
        else:
            value = f.default_factory()  # type: ignore[misc,operator]
        setattr(exp, f.name, value)
    for key, cls in (("wandb", WandbSettings), ("skypilot", SkyPilotSettings), ("search", SearchSettings)):
        raw = getattr(exp, key)
        if isinstance(raw, Mapping):
            names = {f.name for f in dataclasses.fields(cls)}
            setattr(exp, key, cls(**{k: v for k, v in raw.items() if k in names}))
    return exp


class SweepRecord(NamedTuple):
    """What a sweep group keeps of its sweep: the notebook labels each run with its point's values.

    ``keys`` are the swept keys that name the runs (in command-line order), ``labels`` their short
    names (``trainer.lr`` -> ``lr``), ``points`` each run's swept values by key, ``base_runs`` the run of
    the experiment each point's run was made from. (A NamedTuple, as ``GroupConfig``: every ``job``
    command imports this module, and a frozen dataclass costs a millisecond or two to define.)
    """

    keys: tuple[str, ...]
    labels: Mapping[str, str]
    points: Mapping[str, Mapping[str, Any]]
    base_runs: Mapping[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "keys": list(self.keys),
            "labels": dict(self.labels),
            "points": {run: dict(values) for run, values in self.points.items()},
            "base_runs": dict(self.base_runs),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SweepRecord:
        return cls(
            keys=tuple(str(k) for k in data.get("keys") or ()),
            labels=dict(data.get("labels") or {}),
            points={str(run): dict(values) for run, values in (data.get("points") or {}).items()},
            base_runs=dict(data.get("base_runs") or {}),
        )


class GroupConfig(NamedTuple):
    """What the store keeps of a group's launch: the experiment, and the facts only the launch knew.

    ``extra_args``: command-line overrides given at launch, appended to every run's arguments;
    ``launch_dir``: the directory it was launched from (None for groups recorded before it was);
    ``instance``: the group instance's random id (None for groups recorded before instances existed);
    ``sweep``: a sweep group's ``SweepRecord``; ``search_space``: a search group's space (its
    ``interval(...)``/``choice(...)`` dimensions; its settings are ``exp.search``); ``location``: where
    its backend runs its jobs (``Backend.location``: the SkyPilot simulator's directory, the SkyPilot API
    server), so that a later command drives the group there whatever its own shell says (None: here, or
    recorded before locations were).
    """

    exp: Experiment
    extra_args: tuple[str, ...] = ()
    launch_dir: str | None = None
    instance: str | None = None
    sweep: SweepRecord | None = None
    search_space: SearchSpace | None = None
    location: Mapping[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The stored form: ``Experiment.to_dict()`` plus ``extra_args``, ``launch_dir``, ``instance``,
        and ``sweep`` or ``search_space`` when the group has one."""
        data = self.exp.to_dict() | {
            "extra_args": list(self.extra_args),
            "launch_dir": self.launch_dir,
            "instance": self.instance,
        }
        if self.sweep is not None:
            data["sweep"] = self.sweep.to_dict()
        if self.search_space is not None:
            data["search_space"] = self.search_space.to_dict()
        if self.location is not None:
            data["location"] = dict(self.location)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GroupConfig:
        """The stored form read back (a store written by an older metta-exp may lack keys, which take
        their defaults)."""
        launch_dir, instance = data.get("launch_dir"), data.get("instance")
        sweep, space, location = data.get("sweep"), data.get("search_space"), data.get("location")
        return cls(
            exp=stored_experiment(data),
            extra_args=tuple(str(a) for a in data.get("extra_args") or ()),
            launch_dir=launch_dir if isinstance(launch_dir, str) and launch_dir else None,
            instance=instance if isinstance(instance, str) and instance else None,
            sweep=SweepRecord.from_dict(sweep) if isinstance(sweep, Mapping) and sweep else None,
            search_space=_search_space(space) if isinstance(space, Mapping) else None,
            location={str(k): str(v) for k, v in location.items()} if isinstance(location, Mapping) else None,
        )


def _search_space(data: Mapping[str, Any]) -> SearchSpace:
    """A search group's stored space (only a search group loads what reads it)."""
    from metta_exp.trials.space import SearchSpace

    return SearchSpace.from_dict(data)


@dataclass(frozen=True)
class GroupRecord:
    """A job group: one launch of one experiment.

    ``stored_config`` is what the store holds (its JSON text; a ``GroupConfig``, or its JSON form as a
    mapping, for a record built in code). Read it as ``config``, decoded on first use; ``exp``,
    ``search_space`` and the others below are its parts.
    """

    name: str
    experiment: str
    backend: str  # "local" or "skypilot"
    stored_config: str | Mapping[str, Any] | GroupConfig = field(repr=False, compare=False)
    created_at: float
    ended_at: float | None
    cancel_requested: bool
    lease_owner: str | None
    lease_expires: float | None
    runner_pid: int | None

    @cached_property
    def config(self) -> GroupConfig:
        """The group's ``GroupConfig``, decoded once."""
        if isinstance(self.stored_config, GroupConfig):
            return self.stored_config
        return GroupConfig.from_dict(_decode(self.stored_config))

    @property
    def exp(self) -> Experiment:
        """The experiment the group was launched from."""
        return self.config.exp

    @property
    def extra_args(self) -> tuple[str, ...]:
        return self.config.extra_args

    @property
    def launch_dir(self) -> str | None:
        return self.config.launch_dir

    @property
    def instance(self) -> str | None:
        return self.config.instance

    @property
    def location(self) -> Mapping[str, str] | None:
        """Where its backend runs its jobs, as recorded at launch (``GroupConfig.location``)."""
        return self.config.location

    @property
    def search_space(self) -> SearchSpace | None:
        """A search group's space; None for other groups."""
        return self.config.search_space

    @property
    def is_search(self) -> bool:
        """Whether it is a search group (``search_space`` is not None), told without decoding the rest of
        its config: ``job show`` of another group never loads the experiment schema."""
        if isinstance(self.stored_config, GroupConfig) or "config" in self.__dict__:
            return self.search_space is not None
        return isinstance(_decode(self.stored_config).get("search_space"), Mapping)

    @property
    def sweep(self) -> SweepRecord | None:
        """A sweep group's sweep record; None for other groups."""
        return self.config.sweep


@dataclass(frozen=True)
class JobRecord:
    """A job of a group: one run, with its current (latest) attempt."""

    group: str
    run: str
    position: int  # order of the run in the experiment
    status: JobStatus
    #: the job's ``JobSpec``: as stored (its JSON text), or the spec itself for a record built in code;
    #: read it as ``spec``, decoded on first use
    stored_spec: str | JobSpec = field(repr=False, compare=False)
    run_dir: str
    attempts: int = 0  # attempts started so far (0 before the first launch)
    exit_code: int | None = None
    reason: str | None = None
    handle: str | None = None  # backend handle of the current attempt
    gpu_ids: tuple[int, ...] = ()
    queued_at: float | None = None  # when it (last) became pending
    started_at: float | None = None  # current attempt
    ended_at: float | None = None
    log_path: str | None = None  # current attempt's log file
    wandb_url: str | None = None
    depends_on: tuple[str, ...] = field(default_factory=tuple)
    #: the ended current attempt's last progress fraction as recorded at its end: None when not
    #: recorded (read its log), negative when it printed no progress line
    final_progress: float | None = None

    @cached_property
    def spec(self) -> JobSpec:
        if isinstance(self.stored_spec, JobSpec):
            return self.stored_spec
        return JobSpec.from_dict(_decode(self.stored_spec))

    @property
    def args(self) -> list[str]:
        return list(self.spec.args)

    @property
    def progress_needs_log(self) -> bool:
        """Whether its progress is read from its log (``logs.tail.progress_fraction``): not while pending
        (its log is an earlier attempt's), nor when the progress was recorded at its end."""
        return self.status != JobStatus.PENDING and not (
            self.final_progress is not None and self.status.is_terminal()
        )

    @property
    def progress_at_end(self) -> float | None:
        """Its progress as recorded at its end (None if none was, or when ``progress_needs_log``)."""
        if self.progress_needs_log or self.final_progress is None or self.final_progress < 0:
            return None
        return self.final_progress


@dataclass(frozen=True)
class AttemptRecord:
    group: str
    run: str
    number: int
    status: JobStatus
    handle: str | None
    gpu_ids: tuple[int, ...]
    started_at: float | None
    ended_at: float | None
    exit_code: int | None
    reason: str | None
    log_path: str | None


@dataclass(frozen=True)
class EventRecord:
    id: int
    group: str
    run: str | None
    at: float
    kind: str  # "status" for job transitions, otherwise a group event ("created", "runner", "killed", ...)
    old_status: str | None
    new_status: str | None
    detail: str | None


@dataclass(frozen=True)
class GroupSummary:
    """One row of ``metta-exp job list``."""

    name: str
    experiment: str
    backend: str
    created_at: float
    ended_at: float | None
    counts: dict[str, int]  # status value -> count, every status present

    @property
    def total(self) -> int:
        return sum(self.counts.values())
