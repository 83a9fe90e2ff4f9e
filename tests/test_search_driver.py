"""The runner's part of a search, on a real store and a real Optuna study: the pruner judges curves
still under way, never one that reached its last step (a trial that completed its training is told
complete, with its value)."""

from __future__ import annotations

from pathlib import Path

from search_records import SPACE, _p, make_search_group

from metta_exp.search.driver import SearchDriver
from metta_exp.status import JobStatus
from metta_exp.store import JobStore
from metta_exp.trials import TrialState

TOTAL = 20_000
STEPS = [TOTAL * k // 20 for k in range(1, 21)]  # the pruner's checkpoints: every twentieth


def progress_log(path: Path, steps: list[int], value: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"[metta-exp] progress step={s} total={TOTAL} sps=100 overview/reward={value}" for s in steps]
    path.write_text("\n".join(lines) + "\n")


def test_a_trial_whose_progress_reached_its_last_step_is_never_pruned(tmp_path: Path) -> None:
    store = JobStore.open(tmp_path)
    good = [(s, 1.0) for s in STEPS]
    trials = [
        (0, _p(0.001, 0.01, 256), "complete", 1.0, good),
        (1, _p(0.002, 0.01, 256), "complete", 1.0, good),
        (2, _p(0.003, 0.01, 256), "complete", 1.0, good),
        (3, _p(0.004, 0.01, 256), "running", None, []),  # finished its training, far behind the others
        (4, _p(0.005, 0.01, 256), "running", None, []),  # half way, as far behind
    ]
    runs = make_search_group(store, "s", trials, n_trials=5, parallel=2)
    finished, halfway = store.job("s", runs[3]), store.job("s", runs[4])
    progress_log(Path(str(finished.log_path)), STEPS, 0.1)
    progress_log(Path(str(halfway.log_path)), STEPS[:10], 0.1)
    cancelled: list[str] = []
    driver = SearchDriver(store, "s", "host:1:test", lambda job: cancelled.append(job.run))

    driver.step(store.group("s"), store.jobs("s"))

    by_number = {t.number: t for t in store.trials("s")}
    assert by_number[4].state == TrialState.PRUNED, "a curve under way and behind is still pruned"
    assert by_number[3].state == TrialState.RUNNING, by_number[3].reason
    assert cancelled == [runs[4]] and store.job("s", runs[3]).status == JobStatus.RUNNING

    assert store.finish_attempt("s", runs[3], 1, JobStatus.SUCCEEDED, 0)  # its job ends as it would
    driver.step(store.group("s"), store.jobs("s"))
    told = {t.number: t for t in store.trials("s")}[3]
    assert (told.state, told.value, told.reason) == (TrialState.COMPLETE, 0.1, None)
    assert told.run == SPACE.run_name(3, _p(0.004, 0.01, 256))
