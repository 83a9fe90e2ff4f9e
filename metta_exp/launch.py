"""Launching a group: validate, resolve, check the backend, record, hand to a detached runner, watch.

Everything that can be wrong with the input is found before the store is touched, so bad input writes
nothing. The runner is a separate process in its own session: closing the terminal or pressing Ctrl+C
while watching stops only the watching.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from metta_exp.config import Experiment
from metta_exp.resolve import JobSpec, resolve
from metta_exp.store import GroupExistsError, JobStore, default_state_dir

SUBMIT_WAIT_S = 60.0


def generated_group_name(experiment: str, now: float | None = None) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]", "-", experiment).strip("-._")[:60] or "group"
    return f"{stem}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}"


def backend_name(exp: Experiment) -> str:
    return "skypilot" if exp.remote else "local"


def launch_experiment(
    exp: Experiment,
    name: str,
    extra_args: Sequence[str] = (),
    state_dir: Path | None = None,
    out: TextIO | None = None,
    specs_hook: Callable[[list[JobSpec]], list[JobSpec]] | None = None,
    extra_config: Mapping[str, Any] | None = None,
) -> int:
    """Submit ``exp`` as one group and (with ``wait``) watch it; returns the interface's exit code.

    ``specs_hook`` may adjust the resolved specs (a sweep sets per-point GPUs); ``extra_config`` is merged
    into the group's stored config (a sweep stores its points under ``sweep``).
    """
    from metta_exp.backends import make_backend

    out = out or sys.stdout
    state_dir = (state_dir or default_state_dir()).absolute()
    group = exp.group or generated_group_name(name)
    instance = uuid.uuid4().hex[:12]  # this group instance's own (its W&B run ids)
    specs = _resolve(exp, group, state_dir, extra_args, specs_hook, instance)
    if exp.dry_run:
        print_dry_run(exp, specs, out)
        return 0
    backend = make_backend(backend_name(exp), state_dir, exp)
    backend.check(specs)

    store = JobStore.open(state_dir)
    config = exp.to_dict() | {"extra_args": list(extra_args)} | dict(extra_config or {})
    config["instance"] = instance
    for suffix in range(1, 1000):
        try:
            store.create_group(group, name, backend.name, config, [s.to_dict() for s in specs])
            break
        except GroupExistsError:
            if exp.group is not None or suffix == 999:
                raise
            group = f"{generated_group_name(name)}-{suffix + 1}"
            specs = _resolve(exp, group, state_dir, extra_args, specs_hook, instance)

    from metta_exp.runner import ensure_driver

    ensure_driver(store, group, cwd=Path.cwd())
    print(
        f"Group {group}: {len(specs)} job{'s' if len(specs) != 1 else ''} on {backend.name}, "
        f"state in {state_dir}",
        file=out,
    )
    if not exp.wait:
        wait_until_submitted(store, group)
        print(f"Submitted. Watch: metta-exp job monitor {group}    List: metta-exp job list", file=out)
        return 0
    from metta_exp.monitor import watch

    return watch(store, group, out=out)


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
    """Block until the group's runner made its first launch pass (or the group already ended)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if any(e.kind in ("submitted", "ended") for e in store.events(group)):
            return True
        time.sleep(0.05)
    return False


def print_dry_run(exp: Experiment, specs: list[JobSpec], out: TextIO) -> None:
    """Every job as it would be launched; for remote groups, its SkyPilot task YAML too."""
    print(
        f"Dry run: group {specs[0].group}, {len(specs)} jobs on {backend_name(exp)} (nothing submitted)",
        file=out,
    )
    for spec in specs:
        print(f"\n== {spec.run}", file=out)
        print(f"argv:       {shlex.join(spec.argv())}", file=out)
        print(f"gpus:       {spec.gpus}", file=out)
        print(f"depends_on: {', '.join(spec.depends_on) or '-'}", file=out)
        if exp.remote:  # the task carries the job's remote environment and run dir
            from metta_exp.backends.skypilot_task import task_yaml

            print("skypilot task:", file=out)
            print(task_yaml(spec, 1, exp.skypilot, exp.wandb).rstrip(), file=out)
        else:
            print(f"run_dir:    {spec.run_dir}", file=out)
            print(f"env:        {json.dumps(dict(spec.env), sort_keys=True)}", file=out)
