"""Launching a group: validate, resolve, check the backend, record, hand to a detached runner, watch.

Everything that can be wrong with the input is found before the store is touched, so bad input writes
nothing. The runner is a separate process in its own session: closing the terminal or pressing Ctrl+C
while watching stops only the watching.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import re
import shlex
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, TextIO, TypeVar

from metta_exp.config import Experiment
from metta_exp.errors import BackendUnavailable, ConfigError
from metta_exp.records import GroupConfig, JobSpec, SweepRecord
from metta_exp.resolve import identical_runs, resolve
from metta_exp.search.text import search_size
from metta_exp.status import JobStatus
from metta_exp.store import GroupExistsError, JobStore, default_state_dir
from metta_exp.text import plural
from metta_exp.trials.space import SearchSpace

SUBMIT_WAIT_S = 60.0
MAX_GROUP_SUFFIX = 999
"""A generated group name that is taken gets ``-2``, ``-3``, ... up to this suffix (then it is an error)."""


def generated_group_name(experiment: str, now: float | None = None) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]", "-", experiment).strip("-._")[:60] or "group"
    return f"{stem}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}"


def suffixed(base: str) -> Iterator[str]:
    """``base``, ``base-2``, ``base-3``, … ``base-999``: the names a generated group name takes in turn
    while taken (:data:`MAX_GROUP_SUFFIX`)."""
    yield base
    for n in range(2, MAX_GROUP_SUFFIX + 1):
        yield f"{base}-{n}"


T = TypeVar("T")


def first_free_name(base: str, take: Callable[[str], T], hint: str = "choose one with group=NAME") -> T:
    """``take(name)`` for each of :func:`suffixed` ``(base)`` in turn until one is not taken (``take``
    raises ``GroupExistsError`` for a taken one); what it returned. ``GroupExistsError`` when every
    name is taken, ending with ``hint``."""
    for name in suffixed(base):
        try:
            return take(name)
        except GroupExistsError:
            continue
    raise GroupExistsError(f"no free group name like '{base}' (up to '{base}-{MAX_GROUP_SUFFIX}'): {hint}")


def backend_name(exp: Experiment) -> str:
    return "skypilot" if exp.remote else "local"


def launch_experiment(
    exp: Experiment,
    name: str,
    extra_args: Sequence[str] = (),
    state_dir: Path | None = None,
    out: TextIO | None = None,
    specs_hook: Callable[[list[JobSpec]], list[JobSpec]] | None = None,
    *,
    sweep: SweepRecord | None = None,
    search_space: SearchSpace | None = None,
    trials: Sequence[tuple[int, Mapping[str, Any]]] = (),
) -> int:
    """Submit ``exp`` as one group and (with ``wait``) watch it; returns the interface's exit code.

    ``specs_hook`` may adjust the resolved specs (a sweep sets per-point GPUs). A sweep group keeps its
    ``sweep`` record (the notebook labels runs with it); a search its ``search_space``, and passes its
    first ``trials`` (number, values), one per run, recorded with their jobs.
    """
    return submit_experiments(
        [exp],
        name,
        extra_args,
        state_dir,
        out,
        specs_hook,
        sweep=sweep,
        search_space=search_space,
        trials=trials,
    )[1]


def submit_experiments(
    exps: Sequence[Experiment],
    name: str,
    extra_args: Sequence[str] = (),
    state_dir: Path | None = None,
    out: TextIO | None = None,
    specs_hook: Callable[[list[JobSpec]], list[JobSpec]] | None = None,
    *,
    sweep: SweepRecord | None = None,
    search_space: SearchSpace | None = None,
    trials: Sequence[tuple[int, Mapping[str, Any]]] = (),
) -> tuple[list[str], int]:
    """Submit each experiment as a group of its own, then watch those that ``wait``, one after another.

    Every experiment is resolved and its backend checked before any is submitted, so bad input (a taken
    group name, too many GPUs) writes nothing. Returns the names of the groups submitted (none for dry
    runs) and the exit code: the worst of the groups watched.
    """
    out = out or sys.stdout
    state_dir = (state_dir or default_state_dir()).absolute()
    submitted: list[str] = []
    try:
        return submitted, _submit_and_watch(
            exps, name, extra_args, state_dir, out, specs_hook, sweep, search_space, trials, submitted
        )
    except KeyboardInterrupt:  # Ctrl+C (or a closed terminal) anywhere before or while watching
        return submitted, interrupted(state_dir, submitted, out)


def _submit_and_watch(
    exps: Sequence[Experiment],
    name: str,
    extra_args: Sequence[str],
    state_dir: Path,
    out: TextIO,
    specs_hook: Callable[[list[JobSpec]], list[JobSpec]] | None,
    sweep: SweepRecord | None,
    search_space: SearchSpace | None,
    trials: Sequence[tuple[int, Mapping[str, Any]]],
    submitted: list[str],
) -> int:
    """``submit_experiments``'s work; each group recorded and driven is appended to ``submitted``."""
    from metta_exp.backends import make_backend

    exps = [absolute_paths(e) if e.remote else e for e in exps]
    groups = _group_names(exps, name)
    # each launched group instance's own (its W&B run ids and SkyPilot job names, see sky_job_name); a dry
    # run's output stays the same every time
    instances = [None if e.dry_run else uuid.uuid4().hex[:12] for e in exps]
    specs = [
        _resolve(e, g, state_dir, extra_args, specs_hook, instance)
        for e, g, instance in zip(exps, groups, instances, strict=True)
    ]
    if sweep is None:  # a sweep warns of its own repeats (warn_swept_per_run), in its own words
        for exp, resolved in zip(exps, specs, strict=True):
            warn_identical_runs(exp, resolved)
    backends = {}
    refused = 0
    for i, exp in enumerate(exps):
        if exp.dry_run:
            print_dry_run(exp, specs[i], out)
            refused = max(refused, dry_run_refusal(exp, specs[i], state_dir))
            continue
        backends[i] = make_backend(backend_name(exp), state_dir, exp)
        backends[i].check(specs[i])
    if not backends:
        return refused
    with JobStore.open(state_dir) as store:
        for i in backends:
            _check_group_is_new(store, exps[i], groups[i])
        for i, backend in backends.items():
            exp = exps[i]
            again = functools.partial(
                _resolve,
                exp,
                state_dir=state_dir,
                extra_args=extra_args,
                hook=specs_hook,
                instance=instances[i],
            )
            # launch_dir: where jobs start and relative notebook paths resolve, whoever drives the group later
            own = GroupConfig(
                exp, tuple(extra_args), str(Path.cwd()), instances[i], sweep, search_space, backend.location()
            )
            # recorded and handed to a runner as one step: a Ctrl+C in between would leave a group that
            # nobody drives, so it waits until the runner has the group, then stops us as usual
            with interrupts_deferred():
                groups[i] = _submit_group(
                    store, name, groups[i], specs[i], backend.name, own, again, out, trials
                )
                submitted.append(groups[i])
        return _watch_all(store, [(groups[i], exps[i].wait) for i in backends], out)


def warn_identical_runs(exp: Experiment, specs: Sequence[JobSpec], out: TextIO | None = None) -> None:
    """Warn (stderr) about runs that would run the very same command, naming them and the fix: runs
    named for variants (``high_lr``, ``low_lr``) that ``args_per_run`` forgot train the same thing."""
    sets = identical_runs(specs)
    if not sets:
        return
    keep = [r for r in exp.runs if not any(r in same[1:] for same in sets)]
    by_run = {s.run: s for s in specs}
    for same in sets:
        command = shlex.join(by_run[same[0]].argv())
        bare = [r for r in same if r not in exp.args_per_run]
        why = (
            f" (args_per_run has no entry for {'them' if bare == same else ', '.join(bare)})" if bare else ""
        )
        print(
            f"Warning: runs {', '.join(same)} run the same command ({command}): they differ only in name{why}. "
            f"Give each its own arguments in args_per_run (a seed, for repeats on purpose), or run one of "
            f"them: 'runs=[{','.join(keep)}]'.",
            file=out or sys.stderr,
        )


def interrupted(state_dir: Path, submitted: Sequence[str], out: TextIO) -> int:
    """What a Ctrl+C during a launch leaves, said on ``out``: nothing submitted, or each submitted
    group's jobs going on and the commands that watch and stop them. Returns 130."""
    with contextlib.suppress(OSError):  # a terminal that hung up cannot be written to
        if not submitted:
            print("\nStopped before submitting: nothing was submitted.", file=out, flush=True)
            return 130
        from metta_exp.monitor.live import going_on_text

        with JobStore.open(state_dir, readonly=True) as store:
            print("\nStopped. " + going_on_text(store, submitted), file=out, flush=True)
    return 130


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl+C (SIGINT) and a hang-up (SIGHUP) for the duration, then deliver them as they would
    have been. Only the main thread receives signals; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        held.append(signum)

    # a Python-level handler, not a blocked signal mask: a runner spawned meanwhile must not inherit a
    # mask that blocks SIGHUP (exec resets handlers to their defaults, but keeps the mask)
    previous = {sig: signal.signal(sig, hold) for sig in (signal.SIGINT, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for number in dict.fromkeys(held):
            signal.raise_signal(number)


def absolute_paths(exp: Experiment, cwd: Path | None = None) -> Experiment:
    """``skypilot.workdir`` and local ``skypilot.file_mounts`` sources made absolute against the launching
    command's directory, as SkyPilot would (``sky/task.py``: ``os.path.abspath(os.path.expanduser(...))``)
    but now, once: they are stored so, and every later runner (``job retry``/``monitor``/``resume``, from
    any directory) uploads the same files."""
    base = cwd or Path.cwd()

    def absolute(path: str) -> str:
        return os.path.abspath(os.path.join(base, os.path.expanduser(path)))

    sky = exp.skypilot
    mounts = {k: v if "://" in v else absolute(v) for k, v in sky.file_mounts.items()}
    workdir = absolute(sky.workdir) if sky.workdir else sky.workdir
    if workdir == sky.workdir and mounts == sky.file_mounts:
        return exp
    return dataclasses.replace(exp, skypilot=dataclasses.replace(sky, workdir=workdir, file_mounts=mounts))


def _group_names(exps: Sequence[Experiment], name: str) -> list[str]:
    """Each experiment's group: its own, else generated (distinct within the batch)."""
    names: list[str] = []
    explicit = {e.group for e in exps if e.group is not None}
    for exp in exps:
        if exp.group is not None:
            if exp.group in names:
                raise ConfigError(f"two experiments name the group '{exp.group}': give each its own group")
            names.append(exp.group)
            continue
        base = generated_group_name(name)
        free = next((g for g in suffixed(base) if g not in names and g not in explicit), None)
        if free is None:
            raise ConfigError(f"more than {MAX_GROUP_SUFFIX} groups named like '{base}': give each a group")
        names.append(free)
    return names


def _check_group_is_new(store: JobStore, exp: Experiment, group: str) -> None:
    """A named group must be new; the error suggests what fits the group that has the name: watching it
    while it runs, rerunning its failed runs once it ended with some."""
    if exp.group is None:
        return  # a generated name that is taken gets a suffix
    record = store.lookup_group(group)  # not group(): naming the closest of 10,000 groups takes a while
    if record is None:
        return
    quoted = shlex.quote(group)
    if record.ended_at is None:
        raise GroupExistsError(
            f"group '{group}' already exists and has not ended: choose another group=NAME, or watch it: "
            f"metta-exp job monitor {quoted}"
        )
    again = (JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.SKIPPED)  # what 'job retry' reruns
    rerun = [j for j in store.jobs(group) if j.status in again]
    if rerun and record.search_space is None:
        raise GroupExistsError(
            f"group '{group}' already exists: choose another group=NAME, or rerun its "
            f"{plural(len(rerun), 'run')} that did not succeed: metta-exp job retry {quoted}"
        )
    raise GroupExistsError(f"group '{group}' already exists: choose another group=NAME")


def _submit_group(
    store: JobStore,
    name: str,
    group: str,
    specs: list[JobSpec],
    backend: str,
    config: GroupConfig,
    resolve_again: Callable[[str], list[JobSpec]],
    out: TextIO,
    trials: Sequence[tuple[int, Mapping[str, Any]]] = (),
) -> str:
    """Record the group and start its runner; a generated name taken meanwhile gets the next suffix."""
    from metta_exp.supervise.drive import ensure_driver

    def create(candidate: str) -> list[JobSpec]:
        own = specs if candidate == group else resolve_again(candidate)
        store.create_group(candidate, name, backend, config, own, trials)
        return own

    try:
        specs = create(group)
    except GroupExistsError:
        if config.exp.group is not None:
            raise
        group, specs = first_free_name(generated_group_name(name), lambda g: (g, create(g)))
    ensure_driver(store, group, cwd=Path.cwd())
    size = plural(len(specs), "job") + " on"
    if config.search_space is not None:  # its first trials are its first jobs; the line says the study's size
        size = search_size(store.group(group)) + ", on"
    print(f"Group {group}: {size} {backend}, state in {store.state_dir}", file=out)
    return group


def _watch_all(store: JobStore, groups: list[tuple[str, bool]], out: TextIO) -> int:
    worst = 0
    for group, wait in groups:
        if not wait:
            wait_until_submitted(store, group)
            print(f"Submitted. Watch: metta-exp job monitor {group}    List: metta-exp job list", file=out)
    for i, (group, wait) in enumerate(groups):
        if wait:
            from metta_exp.monitor.live import watch_and_heal

            # on Ctrl+C, what else goes on: the groups not waited for, and those not watched yet
            others = [g for j, (g, w) in enumerate(groups) if not w or j > i]
            code = watch_and_heal(store, group, out=out, also=others)
            if code == 130:
                return code
            worst = max(worst, code)
    return worst


def _resolve(
    exp: Experiment,
    group: str,
    state_dir: Path,
    extra_args: Sequence[str],
    hook: Callable[[list[JobSpec]], list[JobSpec]] | None,
    instance: str | None = None,
) -> list[JobSpec]:
    specs = resolve(exp, group, state_dir, extra_args, environ=os.environ, instance=instance)
    return hook(specs) if hook else specs


def wait_until_submitted(store: JobStore, group: str, timeout: float = SUBMIT_WAIT_S) -> bool:
    """Block until the group's runner made its first launch pass (or the group already ended). Each look
    reads only the events since the last (a 100-job pass records 200), so it takes no CPU from the
    runner it waits for."""
    deadline = time.time() + timeout
    seen = 0
    while time.time() < deadline:
        for event in store.events(group, after_id=seen):
            if event.kind in ("submitted", "ended"):
                return True
            seen = event.id
        time.sleep(0.02)
    return False


def dry_run_refusal(exp: Experiment, specs: list[JobSpec], state_dir: Path) -> int:
    """What the real launch of a local group would refuse (more GPUs than this machine has): one line
    on stderr and exit code 2; else 0. A remote group's SkyPilot set-up is checked by the real launch
    only (a dry run stays offline)."""
    from metta_exp.backends import make_backend

    if exp.remote:
        return 0
    backend = make_backend(backend_name(exp), state_dir, exp)
    try:
        backend.check(specs)
    except (BackendUnavailable, ConfigError) as exc:  # too many GPUs; a module or command not found
        print(f"Error: the real launch would be refused: {exc}", file=sys.stderr)
        return exc.exit_code
    finally:
        backend.close()
    return 0


def print_dry_run(exp: Experiment, specs: list[JobSpec], out: TextIO) -> None:
    """Every job as it would be launched; for remote groups, its SkyPilot task YAML too."""
    print(
        f"Dry run: group {specs[0].group}, {plural(len(specs), 'job')} on {backend_name(exp)} (nothing submitted)",
        file=out,
    )
    for spec in specs:
        print(f"\n== {spec.run}", file=out)
        print(f"argv:       {shlex.join(spec.argv())}", file=out)
        print(f"gpus:       {spec.gpus}", file=out)
        print(f"depends_on: {', '.join(spec.depends_on) or '-'}", file=out)
        if exp.remote:  # the task carries the job's remote environment and run dir
            from metta_exp.backends.skypilot.task import task_yaml

            print("skypilot task:", file=out)
            print(task_yaml(spec, 1, exp.skypilot, exp.wandb).rstrip(), file=out)
        else:
            print(f"run_dir:    {spec.run_dir}", file=out)
            print(f"env:        {json.dumps(dict(spec.env), sort_keys=True)}", file=out)
