"""The runner's part of a search: each cycle, tell the trials whose jobs ended, report the running ones'
new checkpoints to the pruner (ending those it prunes), and ask new trials while slots are free.

Every change goes through the store first, in one transaction each: a trial and its job are added
together (``add_trial``), a pruned trial and its job's attempt end together (``prune_trial``), an outcome
is told once (``end_trial`` refuses a trial already told). The in-memory study follows the store; when
the store refuses something (the group was taken over or killed), the study is rebuilt from the store.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from metta_exp.config import Experiment
from metta_exp.records import GroupRecord, JobRecord, JobSpec
from metta_exp.resolve import SHELL_WANDB_KEYS, resolve
from metta_exp.search.curve import WARMUP, CurveReader, final_curve, reduce_curve
from metta_exp.status import JobStatus
from metta_exp.trials import TrialRecord, TrialState
from metta_exp.trials.space import SearchSpace

if TYPE_CHECKING:
    from metta_exp.search.study import Study
    from metta_exp.store import JobStore


def trial_spec(
    group: GroupRecord, state_dir: Any, number: int, params: dict[str, Any], shell_env: dict[str, str]
) -> JobSpec:
    """The job of trial ``number``: the experiment's base run with the trial's values after its own
    arguments, named after the trial (``t007-lr0.00231-...``)."""
    space = group.search_space
    assert space is not None
    exp = trial_experiment(group.exp, space, [(number, params)])
    return resolve(exp, group.name, state_dir, group.extra_args, environ=shell_env, instance=group.instance)[
        0
    ]


def trial_experiment(
    base: Experiment, space: SearchSpace, trials: Sequence[tuple[int, dict[str, Any]]]
) -> Experiment:
    """The experiment whose runs are ``trials`` (number, values) of a search of ``base``: each named after
    its trial, with its arguments (``SearchSpace.args``)."""
    names = [space.run_name(n, params) for n, params in trials]
    return dataclasses.replace(
        base,
        runs=names,
        args_per_run={name: space.args(params) for name, (_, params) in zip(names, trials, strict=True)},
        depends_on={},
    )


@dataclass
class SearchDriver:
    """Drives the study of search group ``group`` for the runner holding its lease (``owner``)."""

    store: JobStore
    group: str
    owner: str
    cancel: Callable[[JobRecord], None]  # end a pruned job's attempt on the backend
    #: whether a job that ended has all it reports (its whole log): only then is its trial told
    ended: Callable[[JobRecord], bool] = lambda job: True
    _study: Study | None = None
    _readers: dict[tuple[str, int], CurveReader] = field(default_factory=dict)

    def step(self, group: GroupRecord, jobs: list[JobRecord]) -> bool:
        """One cycle; True if the store changed."""
        space = group.search_space
        assert space is not None, f"group {self.group} is not a search"
        trials = self.store.trials(self.group)
        study = self._study_of(group, space, trials)
        by_run = {j.run: j for j in jobs}
        changed = False
        for trial in trials:
            job = by_run.get(trial.run)
            if trial.state != TrialState.RUNNING or job is None:
                continue
            if job.status.is_terminal():
                if not self.ended(job):  # its log is not whole yet (a remote log's end comes later)
                    continue
                changed |= self._tell(group, study, trial, job)
            elif job.status == JobStatus.RUNNING and job.log_path:
                changed |= self._watch(study, trial, job)
        return self._ask(group, study, jobs) or changed

    def done(self, group: GroupRecord) -> bool:
        """Whether the study is over: every trial asked and told (or the group killed and all told)."""
        trials = self.store.trials(self.group)
        if any(t.state == TrialState.RUNNING for t in trials):
            return False
        return group.cancel_requested or len(trials) >= group.exp.search.n_trials

    def _study_of(self, group: GroupRecord, space: SearchSpace, trials: list[TrialRecord]) -> Study:
        if self._study is None:
            from metta_exp.search.study import Study

            self._study = Study(space, group.exp.search, trials)
        return self._study

    def _reader(self, job: JobRecord, objective: str) -> CurveReader:
        key = (job.run, job.attempts)
        if key not in self._readers:
            self._readers[key] = CurveReader(str(job.log_path), objective)
        return self._readers[key]

    def _watch(self, study: Study, trial: TrialRecord, job: JobRecord) -> bool:
        reader = self._reader(job, study.settings.objective)
        if not reader.read():
            return False
        # judged from a fifth of its training on, and never once it reached its last step: a finished
        # curve is the trial's outcome, told when its job ends, whatever the others did
        why = study.report(trial.number, reader.points, decide=WARMUP <= reader.fraction < 1.0)
        steps = study.steps(trial.number)
        if why is None:
            self.store.set_trial_steps(self.group, trial.number, steps)
            return False
        if self.store.prune_trial(self.group, trial.number, job.run, job.attempts, why, steps):
            study.tell(trial.number, TrialState.PRUNED)
            self.cancel(job)
        else:
            self._study = None  # the store moved on: follow it
        return True

    def _tell(self, group: GroupRecord, study: Study, trial: TrialRecord, job: JobRecord) -> bool:
        settings = group.exp.search
        reader = self._reader(job, settings.objective) if job.log_path else None
        if reader is not None:  # the checkpoints it reached since the last look: pruners compare with them
            reader.read()
            study.report(trial.number, reader.points, decide=False)
        steps = study.steps(trial.number)
        value: float | None = None
        if job.status == JobStatus.SUCCEEDED:
            values, _ = final_curve(job, settings.objective, reader)
            value = reduce_curve(values, settings.reduce)
            state = TrialState.COMPLETE if value is not None else TrialState.FAILED
            reason = (
                None if value is not None else f"its job succeeded but logged no '{settings.objective}' value"
            )
        else:
            state = TrialState.FAILED
            reason = f"its job {job.status.value}" + (f": {job.reason}" if job.reason else "")
        if self.store.end_trial(self.group, trial.number, state, value, reason, steps):
            study.tell(trial.number, state, value)
        else:
            self._study = None
        self._readers.pop((job.run, job.attempts), None)
        return True

    def _ask(self, group: GroupRecord, study: Study, jobs: list[JobRecord]) -> bool:
        settings = group.exp.search
        if group.cancel_requested:
            return False
        at_once = settings.trials_at_once(group.exp.max_parallel)
        shell_env = {k: v for k, v in jobs[0].spec.env.items() if k in SHELL_WANDB_KEYS} if jobs else {}
        asked = False
        while study.asked < settings.n_trials and study.running < at_once:
            number, params = study.ask()
            spec = trial_spec(group, self.store.state_dir, number, params, shell_env)
            if not self.store.add_trial(self.group, self.owner, number, params, spec):
                self._study = None  # not recorded: the trial never happened; the store says what did
                break
            asked = True
        return asked
