"""The runner with real processes and a real store: parallelism, failures, dependencies, GPU packing,
max_parallel, timeouts, retries, and taking over from a runner killed with SIGKILL."""

from __future__ import annotations

import io
import json
import os
import signal
import textwrap
import time
from collections.abc import Iterable
from pathlib import Path

import pytest
from conftest import PY, wait_for, wait_group_end

from metta_exp.backends.local import LocalBackend
from metta_exp.config import Experiment
from metta_exp.errors import BackendError
from metta_exp.records import GroupConfig
from metta_exp.status import JobStatus
from metta_exp.store import JobStore
from metta_exp.submit import launch_experiment

# A job that records when it ran, its argv and its environment, then sleeps and exits with a code
# taken from its arguments: `sleep=S`, `exit=N`, `fail_first=K` (fail the first K attempts).
# `together=N`: a barrier from below. The job does not go on (nor end) before N jobs of its group have
# started, so the first N ran at once; if that does not happen within 60 s it fails. It also records
# the most jobs it saw running at once ("seen"): each job marks itself running from before its start
# is recorded to just before its end, so "seen" never counts a job that was not alive.
JOB = textwrap.dedent(
    """
    import json, os, pathlib, sys, time
    opts = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
    rd = pathlib.Path(os.environ["METTA_EXP_RUN_DIR"])
    rd.mkdir(parents=True, exist_ok=True)
    (rd / "running").write_text("")
    start = time.time()
    with open(rd / "starts.txt", "a") as f:
        f.write(f"{start}\\n")
    running = lambda: len(list(rd.parent.glob("*/running")))
    started = lambda: len(list(rd.parent.glob("*/starts.txt")))
    want = int(opts.get("together", 0))
    seen = running()
    while started() < want and time.time() < start + 60:
        time.sleep(0.02)
        seen = max(seen, running())
    together = started() >= want
    hold = time.time() + float(opts.get("sleep", 0))
    while True:
        seen = max(seen, running())
        if time.time() >= hold:
            break
        time.sleep(0.02)
    (rd / "running").unlink()
    record = {"start": start, "end": time.time(), "argv": sys.argv[1:], "seen": seen,
              "env": {k: v for k, v in os.environ.items() if k.startswith(("METTA_EXP", "WANDB", "CUDA"))}}
    (rd / "record.tmp").write_text(json.dumps(record))
    (rd / "record.tmp").replace(rd / "record.json")
    attempt = int(os.environ["METTA_EXP_ATTEMPT"])
    if attempt <= int(opts.get("fail_first", 0)) or not together:
        sys.exit(5)
    sys.exit(int(opts.get("exit", 0)))
    """
)


def experiment(runs: list[str], **kw: object) -> Experiment:
    kw.setdefault("gpus", 0)
    return Experiment(
        command=[PY, "-c", JOB], runs=runs, remote=False, wait=False, generate_notebook=False, **kw
    )  # type: ignore[arg-type]


def launch(state_dir: Path, exp: Experiment, group: str) -> list:
    exp.group = group
    assert launch_experiment(exp, name="test", state_dir=state_dir, out=io.StringIO()) == 0
    return wait_group_end(state_dir, group)


def record(state_dir: Path, group: str, run: str) -> dict:
    return json.loads((state_dir / "runs" / group / run / "record.json").read_text())


def starts(state_dir: Path, group: str, run: str) -> int:
    return len((state_dir / "runs" / group / run / "starts.txt").read_text().split())


def test_all_independent_jobs_run_in_parallel(state_dir: Path) -> None:
    runs = ["a", "b", "c", "d"]
    jobs = launch(state_dir, experiment(runs, args=["together=4"]), "par")
    assert [j.status for j in jobs] == [JobStatus.SUCCEEDED] * 4, "no job may end before all four started"
    recs = [record(state_dir, "par", r) for r in runs]
    assert max(r["start"] for r in recs) < min(r["end"] for r in recs), "run intervals must overlap"
    env = recs[0]["env"]
    assert env["METTA_EXP_GROUP"] == "par" and env["METTA_EXP_RUN"] == "a"
    assert env["METTA_EXP_RUN_DIR"] == str(state_dir / "runs" / "par" / "a")
    assert env["WANDB_RUN_GROUP"] == "par" and env["WANDB_NAME"] == "a" and len(env["WANDB_RUN_ID"]) == 16
    assert env["METTA_EXP_ATTEMPT"] == "1"
    assert "METTA_EXP_RUNNER_OWNER" not in env, "the runner's lease id must not leak into jobs"


def test_failing_run_is_recorded_with_its_reason(state_dir: Path) -> None:
    exp = experiment(["good", "bad"], args_per_run={"bad": ["exit=3"]})
    jobs = {j.run: j for j in launch(state_dir, exp, "fails")}
    assert jobs["good"].status == JobStatus.SUCCEEDED and jobs["good"].exit_code == 0
    assert jobs["bad"].status == JobStatus.FAILED
    assert jobs["bad"].exit_code == 3 and jobs["bad"].reason == "exit code 3"


def test_dependent_waits_and_is_skipped_when_its_dependency_fails(state_dir: Path) -> None:
    exp = experiment(
        ["first", "second", "third", "other"],
        args_per_run={"first": ["sleep=0.5"]},
        depends_on={"second": ["first"], "third": ["second"]},
    )
    launch(state_dir, exp, "deps")
    assert record(state_dir, "deps", "second")["start"] >= record(state_dir, "deps", "first")["end"]
    assert record(state_dir, "deps", "third")["start"] >= record(state_dir, "deps", "second")["end"]

    exp = experiment(
        ["first", "second", "third", "other"],
        args_per_run={"first": ["exit=1"]},
        depends_on={"second": ["first"], "third": ["second"]},
    )
    jobs = {j.run: j for j in launch(state_dir, exp, "deps-fail")}
    assert jobs["first"].status == JobStatus.FAILED
    assert jobs["second"].status == JobStatus.SKIPPED and jobs["second"].reason == "dependency 'first' failed"
    assert jobs["third"].status == JobStatus.SKIPPED and jobs["third"].reason == "dependency 'second' skipped"
    assert jobs["other"].status == JobStatus.SUCCEEDED
    assert jobs["second"].attempts == 0 and not (state_dir / "runs" / "deps-fail" / "second").exists()


def test_gpu_packing_gives_each_job_its_own_devices(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """4 devices, 2 per job, 5 jobs: two jobs run at once (proven by the barrier, not by timing), each on
    its own pair; never a third, so the others waited for a free pair. g1 runs longest, so the jobs after
    g2 start while g1 still holds devices 0,1: they must get the pair g1 does not hold."""
    monkeypatch.setenv("METTA_EXP_LOCAL_GPUS", "0,1,2,3")
    runs = ["g1", "g2", "g3", "g4", "g5"]
    exp = experiment(runs, gpus=2, args=["together=2", "sleep=0.3"], args_per_run={"g1": ["sleep=2"]})
    jobs = launch(state_dir, exp, "gpus")
    assert [j.status for j in jobs] == [JobStatus.SUCCEEDED] * 5, [j.reason for j in jobs]
    recs = {r: record(state_dir, "gpus", r) for r in runs}
    devices = {r: rec["env"]["CUDA_VISIBLE_DEVICES"].split(",") for r, rec in recs.items()}
    for run, ids in devices.items():
        assert len(ids) == 2 and set(ids) <= {"0", "1", "2", "3"}, (run, ids)
    assert max_overlap(recs.values()) == 2, "two jobs at once (the barrier), never three"
    assert max(rec["seen"] for rec in recs.values()) <= 2
    overlapping = [
        (a, b) for a in runs for b in runs if a < b and overlap(recs[a], recs[b])
    ]  # fmt: skip
    assert overlapping, "the barrier let no two jobs run at once"
    for a, b in overlapping:
        assert not set(devices[a]) & set(devices[b]), f"{a} and {b} ran at once on the same GPU"


def overlap(a: dict, b: dict) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]


def max_overlap(recs: Iterable[dict]) -> int:
    """The most recorded intervals that held one instant (each start instant is checked)."""
    recs = list(recs)
    return max(sum(1 for o in recs if o["start"] <= r["start"] < o["end"]) for r in recs)


def test_zero_gpu_jobs_see_no_devices(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METTA_EXP_LOCAL_GPUS", "0,1")
    launch(state_dir, experiment(["cpu"], gpus=0), "cpu")
    assert record(state_dir, "cpu", "cpu")["env"]["CUDA_VISIBLE_DEVICES"] == ""


def test_max_parallel_caps_running_jobs(state_dir: Path) -> None:
    """max_parallel=2: two jobs run at once (the barrier proves it), never three."""
    runs = [f"r{i}" for i in range(5)]
    exp = experiment(runs, max_parallel=2, args=["together=2", "sleep=0.3"], args_per_run={"r0": ["sleep=2"]})
    jobs = launch(state_dir, exp, "capped")
    assert [j.status for j in jobs] == [JobStatus.SUCCEEDED] * 5, [j.reason for j in jobs]
    recs = [record(state_dir, "capped", r) for r in runs]
    assert max_overlap(recs) == 2, "two jobs at once (the barrier), never three"
    assert max(rec["seen"] for rec in recs) <= 2


def test_timeout_ends_the_job_and_fails_it(state_dir: Path) -> None:
    jobs = launch(
        state_dir, experiment(["slow", "quick"], timeout_s=1, args_per_run={"slow": ["sleep=60"]}), "timeouts"
    )
    slow = next(j for j in jobs if j.run == "slow")
    assert slow.status == JobStatus.FAILED and slow.reason == "timed out after 1 s"
    pid = int((Path(slow.log_path).with_suffix(".pid")).read_text().split()[0])
    wait_for(lambda: not _alive(pid), timeout=20, what="the timed-out job to be gone")
    assert next(j for j in jobs if j.run == "quick").status == JobStatus.SUCCEEDED


def test_max_retries_relaunches_failed_jobs(state_dir: Path) -> None:
    exp = experiment(
        ["flaky", "broken"], max_retries=2, args_per_run={"flaky": ["fail_first=2"], "broken": ["exit=7"]}
    )
    jobs = {j.run: j for j in launch(state_dir, exp, "retries")}
    assert jobs["flaky"].status == JobStatus.SUCCEEDED and jobs["flaky"].attempts == 3
    assert starts(state_dir, "retries", "flaky") == 3
    assert jobs["broken"].status == JobStatus.FAILED and jobs["broken"].attempts == 3
    with JobStore.open(state_dir) as store:
        history = store.attempts("retries", "broken")
    assert [a.status for a in history] == [JobStatus.FAILED] * 3
    assert [a.exit_code for a in history] == [7, 7, 7]
    assert all(Path(a.log_path).name == f"attempt-{a.number}.log" for a in history)
    # the last attempt's W&B run is its own (a resumed run would drop the steps a retry logs again)
    env = record(state_dir, "retries", "flaky")["env"]
    assert env["METTA_EXP_ATTEMPT"] == "3"
    assert env["WANDB_RUN_ID"] == f"{jobs['flaky'].spec.wandb_run_id}-a3"


def test_same_run_names_in_a_new_group(state_dir: Path) -> None:
    launch(state_dir, experiment(["a"]), "one")
    jobs = launch(state_dir, experiment(["a"]), "two")
    assert jobs[0].status == JobStatus.SUCCEEDED and jobs[0].group == "two"


def test_killed_runner_is_taken_over_with_nothing_lost_or_launched_twice(state_dir: Path) -> None:
    from metta_exp.backends.procs import pid_alive
    from metta_exp.supervise.drive import ensure_driver

    exp = experiment(["a", "b", "c", "after"], args=["sleep=3"], depends_on={"after": ["a"]})
    exp.group = "takeover"
    launch_experiment(exp, name="test", state_dir=state_dir, out=io.StringIO())
    with JobStore.open(state_dir) as store:
        wait_for(
            lambda: all(j.status == JobStatus.RUNNING for j in store.jobs("takeover")[:3]),
            what="three running jobs",
        )
        old = store.group("takeover").runner_pid
        assert old and pid_alive(old)
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: not pid_alive(old), what="the runner to die")
        assert ensure_driver(store, "takeover")
        assert not ensure_driver(store, "takeover"), "a second command must not start a second runner"
        jobs = {j.run: j for j in wait_group_end(state_dir, "takeover")}
        assert store.group("takeover").runner_pid is None
    assert all(j.status == JobStatus.SUCCEEDED for j in jobs.values())
    assert all(j.attempts == 1 for j in jobs.values())
    for run in jobs:
        assert starts(state_dir, "takeover", run) == 1, f"{run} was launched twice"


def test_claimed_but_never_submitted_job_is_launched_by_the_next_runner(state_dir: Path) -> None:
    """A runner that died between claiming a job and submitting it: the job never started, so the next
    runner launches it (once)."""
    from metta_exp.resolve import resolve
    from metta_exp.supervise.drive import ensure_driver

    exp = experiment(["only"])
    with JobStore.open(state_dir) as store:
        specs = resolve(exp, "crashed", state_dir)
        store.create_group("crashed", "test", "local", GroupConfig(exp), specs)
        assert store.acquire_lease("crashed", "host:1:dead", ttl=0.2, pid=2**22 + 1)
        assert (
            store.claim("crashed", "only", "host:1:dead", (), str(Path(specs[0].run_dir) / "attempt-1.log"))
            == 1
        )
        wait_for(
            lambda: store.group("crashed").lease_expires < __import__("time").time(), what="lease expiry"
        )
        assert ensure_driver(store, "crashed")
        jobs = wait_group_end(state_dir, "crashed")
        history = store.attempts("crashed", "only")
    assert jobs[0].status == JobStatus.SUCCEEDED and jobs[0].attempts == 2
    assert history[0].status == JobStatus.CANCELLED and "never started" in (history[0].reason or "")
    assert starts(state_dir, "crashed", "only") == 1


def test_a_launch_pass_commits_a_few_times_whatever_its_size(state_dir: Path) -> None:
    """Each commit waits for the disk (an fsync, milliseconds on a busy one): the first pass over 40
    ready jobs claims them all in one transaction and records them all running in another, instead of
    two commits per job (a 100-point sweep waited over a second for them)."""
    from metta_exp.resolve import resolve
    from metta_exp.runner import Runner

    runs = [f"r{i:02d}" for i in range(40)]
    exp = Experiment(command=["true"], runs=runs, gpus=0, remote=False, wait=False, generate_notebook=False)
    with JobStore.open(state_dir) as store:
        store.create_group("pass", "test", "local", GroupConfig(exp), resolve(exp, "pass", state_dir))
        backend = LocalBackend(grace_s=1.0)
        runner = Runner(store, "pass", backend, tick=0.05)
        assert runner.acquire()
        commits: list[str] = []
        store._db.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
        assert not runner.step()
        store._db.set_trace_callback(None)
        jobs = store.jobs("pass")
        assert all(j.attempts == 1 and j.started_at is not None for j in jobs)
        assert len({j.started_at for j in jobs}) == 1
        assert len(commits) <= 5, commits  # lease renewals, the claims, the starts, "submitted"
        assert runner.drive() == 0
        assert all(j.status == JobStatus.SUCCEEDED for j in store.jobs("pass"))
    # the wrappers are this process's children: collect them all (a runner process exits instead), or
    # their Popen objects warn when a later test collects them
    wait_for(lambda: backend.poll([]) == {} and not backend._children, what="the wrappers to be collected")


STARTED_AT = (
    "import os, pathlib, time; "
    "pathlib.Path(os.environ['METTA_EXP_RUN_DIR'], 'at').write_text(repr(time.time()))"
)


def test_a_batch_is_recorded_running_before_its_jobs_begin(state_dir: Path) -> None:
    """The runner records a batch running (handles and all, one transaction) while its processes wait at
    the start gate: a job that looks at the store finds itself running, and the record does not compete
    for the CPU with a hundred jobs starting up (it did: it followed them)."""
    from metta_exp.resolve import resolve
    from metta_exp.runner import Runner

    runs = ["a", "b", "c"]
    exp = Experiment(
        command=[PY, "-S", "-c", STARTED_AT],
        runs=runs,
        gpus=0,
        remote=False,
        wait=False,
        generate_notebook=False,
    )
    with JobStore.open(state_dir) as store:
        store.create_group("gate", "test", "local", GroupConfig(exp), resolve(exp, "gate", state_dir))
        backend = LocalBackend(grace_s=1.0)
        runner = Runner(store, "gate", backend, tick=0.05)
        recorded: list[float] = []
        mark = store.mark_running_many

        def slow_mark(group: str, started: list[tuple[str, int, str | None]]) -> set[str]:
            time.sleep(0.5)  # a commit on a busy disk
            marked = mark(group, started)
            recorded.append(time.time())
            return marked

        store.mark_running_many = slow_mark  # type: ignore[method-assign]
        assert runner.drive() == 0
        jobs = store.jobs("gate")
    assert [j.status for j in jobs] == [JobStatus.SUCCEEDED] * 3 and len(recorded) == 1
    for job in jobs:
        began = float((state_dir / "runs" / "gate" / job.run / "at").read_text())
        assert began > recorded[0], f"{job.run} began its work before it was recorded running"
    wait_for(lambda: backend.poll([]) == {} and not backend._children, what="the wrappers to be collected")


def test_a_batch_the_store_failed_to_record_runs_once_and_is_recorded_later(state_dir: Path) -> None:
    """A store error while recording the batch running (a locked or full disk): its jobs, spawned, go on
    (the gate opens) and the next cycle finds them by their pid files; none is launched twice."""
    import sqlite3

    from metta_exp.resolve import resolve
    from metta_exp.runner import Runner

    runs = ["a", "b", "c"]
    exp = Experiment(
        command=[PY, "-c", JOB], runs=runs, gpus=0, remote=False, wait=False, generate_notebook=False
    )
    with JobStore.open(state_dir) as store:
        store.create_group("lost", "test", "local", GroupConfig(exp), resolve(exp, "lost", state_dir))
        backend = LocalBackend(grace_s=1.0)
        runner = Runner(store, "lost", backend, tick=0.05)
        mark = store.mark_running_many
        failures: list[str] = []

        def failing_mark(group: str, started: list[tuple[str, int, str | None]]) -> set[str]:
            if not failures:
                failures.append(group)
                raise sqlite3.OperationalError("database is locked")
            return mark(group, started)

        store.mark_running_many = failing_mark  # type: ignore[method-assign]
        assert runner.drive() == 0
        jobs = store.jobs("lost")
        events = [e for e in store.events("lost") if e.kind == "runner_error"]
    assert failures and [e.detail for e in events] == ["OperationalError: database is locked"]
    assert [(j.status, j.attempts) for j in jobs] == [(JobStatus.SUCCEEDED, 1)] * 3
    assert all(j.handle for j in jobs)
    assert [starts(state_dir, "lost", run) for run in runs] == [1, 1, 1]
    wait_for(lambda: backend.poll([]) == {} and not backend._children, what="the wrappers to be collected")


def _alive(pid: int) -> bool:
    from metta_exp.backends.procs import pid_alive

    return pid_alive(pid)


class FlakyBackend(LocalBackend):
    """A local backend whose first polls fail, as a backend API that hiccups does."""

    def __init__(self, failures: int) -> None:
        super().__init__(grace_s=1.0)
        self.failures = failures

    def poll(self, launches):  # noqa: ANN001, ANN201
        if self.failures > 0:
            self.failures -= 1
            raise BackendError("the API did not answer")
        return super().poll(launches)


def test_runner_carries_on_through_backend_errors(state_dir: Path) -> None:
    from metta_exp.resolve import resolve
    from metta_exp.runner import Runner

    exp = experiment(["x", "y"], args=["sleep=0.3"])
    with JobStore.open(state_dir) as store:
        specs = resolve(exp, "flaky", state_dir)
        store.create_group("flaky", "test", "local", GroupConfig(exp), specs)
        assert Runner(store, "flaky", FlakyBackend(3), tick=0.05).drive() == 0
        errors = [e for e in store.events("flaky") if e.kind == "runner_error"]
        assert [j.status for j in store.jobs("flaky")] == [JobStatus.SUCCEEDED] * 2
        assert store.group("flaky").ended_at is not None
    assert len(errors) == 3 and errors[0].detail == "BackendError: the API did not answer"


# Reports a W&B run per attempt the way metta_exp.tracking does (`marker`), or only in run.json (`json`).
REPORTS_WANDB = textwrap.dedent(
    """
    import json, os, sys, time
    attempt, how = int(os.environ["METTA_EXP_ATTEMPT"]), sys.argv[1]
    run_id = os.environ["WANDB_RUN_ID"]
    url = f"https://wandb.example.com:8443/team/proj/runs/{run_id}"
    if how == "marker":
        print(f"[metta-exp] wandb url={url} entity=team project=proj id={run_id}", flush=True)
        print("chatter\\n" * 50000, flush=True)  # the marker is far from the end of the log
    else:
        with open(os.path.join(os.environ["METTA_EXP_RUN_DIR"], "run.json"), "w") as f:
            json.dump({"attempt": attempt, "wandb_url": url}, f)
    time.sleep(0.5)
    sys.exit(3 if attempt == 1 and how == "marker" else 0)
    """
)


def test_wandb_url_is_read_from_the_jobs_log_and_is_the_latest_attempts(state_dir: Path) -> None:
    exp = Experiment(command=[PY, "-c", REPORTS_WANDB], runs=["m", "j"], args_per_run={"m": ["marker"],
                     "j": ["json"]}, gpus=0, remote=False, wait=False, generate_notebook=False,
                     max_retries=1)  # fmt: skip
    jobs = {j.run: j for j in launch(state_dir, exp, "urls")}
    assert jobs["m"].status == jobs["j"].status == JobStatus.SUCCEEDED and jobs["m"].attempts == 2
    base = "https://wandb.example.com:8443/team/proj/runs/"
    assert jobs["m"].wandb_url == base + jobs["m"].spec.wandb_run_id + "-a2"
    assert jobs["j"].wandb_url == base + jobs["j"].spec.wandb_run_id, "run.json stays a fallback"


def test_a_group_name_used_again_elsewhere_gets_new_wandb_runs(state_dir: Path, tmp_path: Path) -> None:
    """Another state directory (or machine) may reuse a group name; resuming the old group's W&B runs
    would drop every step the new jobs log below the old runs' last one."""
    first = launch(state_dir, experiment(["a"]), "same")
    elsewhere = tmp_path / "other state"
    second = launch(elsewhere, experiment(["a"]), "same")
    try:
        ids = [first[0].spec.wandb_run_id, second[0].spec.wandb_run_id]
        assert ids[0] != ids[1] and all(len(i) == 16 for i in ids)
        assert record(elsewhere, "same", "a")["env"]["WANDB_RUN_ID"] == ids[1]
    finally:
        from conftest import kill_everything

        kill_everything(elsewhere)


def test_watching_heals_only_through_the_callable_it_is_given(state_dir: Path) -> None:
    """The monitor receives "heal this group" as a callable: with a no-op it only watches (nobody starts
    a runner for a group nobody drives); ``supervise.Healer`` starts one, through a writable store of
    its own although the watcher's store is read-only."""
    from metta_exp.monitor.live import watch
    from metta_exp.resolve import resolve
    from metta_exp.supervise.drive import Healer
    from metta_exp.supervise.lease import needs_driver

    exp = experiment(["only"])
    with JobStore.open(state_dir) as store:
        specs = resolve(exp, "undriven", state_dir)
        store.create_group("undriven", "test", "local", GroupConfig(exp), specs)
    calls: list[float] = []

    def count_then_stop() -> None:
        calls.append(time.monotonic())
        if len(calls) == 3:
            raise KeyboardInterrupt  # what Ctrl+C does to a watcher

    with JobStore.open(state_dir, readonly=True) as reader:
        assert watch(reader, "undriven", out=io.StringIO(), refresh=0.05, heal=count_then_stop) == 130
        assert len(calls) == 3 and needs_driver(reader.group("undriven"))
        Healer(reader, "undriven")()
        assert not needs_driver(reader.group("undriven"))
    jobs = wait_group_end(state_dir, "undriven")
    assert jobs[0].status == JobStatus.SUCCEEDED and starts(state_dir, "undriven", "only") == 1


def test_a_started_runner_is_nobodys_child_and_leaves_nothing_to_collect(state_dir: Path) -> None:
    """The command that starts a runner (a launch, a monitor that heals, ``job retry``) may live for days
    or end at once: the runner is not its child, so no ``Popen`` is left behind to warn about
    (``ResourceWarning: subprocess ... is still running``) and no zombie stays when the runner ends."""
    import gc
    import warnings

    from metta_exp.backends.procs import read_stat

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        exp = experiment(["a"], args=["sleep=1"])
        exp.group = "detached"
        assert launch_experiment(exp, name="test", state_dir=state_dir, out=io.StringIO()) == 0
        with JobStore.open(state_dir) as store:
            runner = store.group("detached").runner_pid
            assert runner is not None
            info = read_stat(runner)
            assert info is not None and info.ppid != os.getpid(), "the runner must not be our child"
            assert info.sid == runner, "the runner leads a session of its own (it outlives a terminal)"
        wait_group_end(state_dir, "detached")
        wait_for(lambda: read_stat(runner) is None, what="the runner to be gone (not left a zombie)")
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
