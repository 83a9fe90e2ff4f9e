"""What a job leaves running when it ends: its outcome waits until nothing of it is left.

A job's main process may end while processes it started live on (a data loader's workers, a helper in a
session of its own, a child that ignores SIGTERM). They may still hold the job's GPUs, so the attempt is
recorded ended only once they are gone: until then it stays running in the store, where every runner
(of this group or any other) sees its GPUs taken and its group open. The backend ends them (SIGTERM,
SIGKILL after the grace) and lists the attempt in ``still_ending`` meanwhile.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from metta_exp.backends.base import Backend, Launch, Observation
from metta_exp.status import JobStatus

if TYPE_CHECKING:
    from metta_exp.records import JobRecord
    from metta_exp.store import JobStore


def hold_leftovers(
    store: JobStore,
    group: str,
    backend: Backend,
    jobs: Sequence[JobRecord],
    launches: Sequence[Launch],
    observed: Mapping[str, Observation],
) -> dict[str, Observation]:
    """``observed`` with each ended attempt that left processes running seen as still running; the
    ending of those processes is started (once: an attempt being ended is not looked at again), with an
    event that says so."""
    ending = {launch.name for launch in backend.still_ending()}
    done = [launch for launch in launches if ended(observed.get(launch.name)) and launch.name not in ending]
    left = backend.end_leftovers(done) if done else {}
    for job, launch in zip(jobs, launches, strict=True):
        count = left.get(launch.name)
        obs = observed.get(launch.name)
        if count and obs is not None:
            how = obs.reason or f"exit code {obs.exit_code}"
            what = "1 process running; ending it" if count == 1 else f"{count} processes running; ending them"
            store.add_event(group, "leftovers", f"ended ({how}), leaving {what}", run=job.run)
    held = ending | left.keys()
    return {
        name: Observation(JobStatus.RUNNING, handle=obs.handle) if name in held and ended(obs) else obs
        for name, obs in observed.items()
    }


def ended(obs: Observation | None) -> bool:
    """Whether the backend saw the attempt end (an observation with a terminal status)."""
    return obs is not None and obs.status is not None and obs.status.is_terminal()
