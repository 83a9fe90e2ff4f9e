"""What a run reports, read in one place: ``run.json`` with one attempt rule (``metta_exp.runs.state``), and
a run's W&B identity (``metta_exp.runs.wandb``): mode, run id, URL and API path."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from metta_exp.logs.tail import LogReader
from metta_exp.notebook.cells import run_info
from metta_exp.paths import RunDir
from metta_exp.records import JobRecord, JobSpec
from metta_exp.runs.state import RunState, read_run_state
from metta_exp.runs.wandb import WandbIdentity, job_wandb, wandb_identity, wandb_link, wandb_mode
from metta_exp.status import JobStatus

PACKAGE = Path(__file__).resolve().parent.parent / "metta_exp"
URL1 = "https://wandb.example.com/team/proj/runs/abc"
URL2 = "https://wandb.example.com/team/proj/runs/abc-a2"


def write_run_json(run_dir: Path, data: dict[str, object]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    RunDir(run_dir).run_json.write_text(json.dumps(data))


def job_at(
    run_dir: Path, attempt: int, env: dict[str, str] | None = None, url: str | None = None
) -> JobRecord:
    spec = JobSpec("g", "r", (), env or {}, 0, str(run_dir), "abc", module="m")
    return JobRecord(
        "g", "r", 0, JobStatus.SUCCEEDED, spec, str(run_dir), attempts=attempt, wandb_url=url,
        log_path=str(RunDir(run_dir).log(attempt)),
    )  # fmt: skip


def test_run_json_is_read_only_for_the_attempt_that_wrote_it(tmp_path: Path) -> None:
    write_run_json(tmp_path / "two", {"attempt": 2, "wandb_url": URL2, "checkpoint": "/c2", "finished": True})
    write_run_json(tmp_path / "old", {"wandb_url": URL1})  # no attempt: attempt 1 wrote it
    (tmp_path / "bad").mkdir()
    RunDir(tmp_path / "bad").run_json.write_text("{not json")

    two = RunState(attempt=2, checkpoint="/c2", wandb_url=URL2, finished=True)
    assert read_run_state(tmp_path / "two", 2) == two
    assert read_run_state(tmp_path / "two", None) == two  # the attempt not known: whichever wrote it
    assert read_run_state(tmp_path / "two", 1) is None
    assert read_run_state(tmp_path / "two", 3) is None
    assert read_run_state(tmp_path / "old", 1) == RunState(attempt=1, wandb_url=URL1)
    assert read_run_state(tmp_path / "old", 2) is None
    assert read_run_state(tmp_path / "bad", None) is None
    assert read_run_state(tmp_path / "missing", None) is None
    assert read_run_state(None, None) is None


def test_run_json_round_trips_and_reads_wrong_types_as_missing() -> None:
    state = RunState(3, "r", "g", 100, "/ck", URL1, "online", None, True)
    assert RunState.from_dict(state.to_dict()) == state
    assert list(state.to_dict()) == [  # the file's keys, in the order tracking has always written them
        "run", "group", "attempt", "total_steps", "checkpoint", "wandb_url", "wandb_mode", "wandb_dir", "finished",
    ]  # fmt: skip
    odd = {"attempt": "2", "total_steps": True, "wandb_url": 5, "checkpoint": "", "finished": "yes"}
    assert RunState.from_dict(odd) == RunState()


def test_a_retried_job_shows_no_earlier_attempts_wandb_run(tmp_path: Path) -> None:
    """Regression: the notebook took an attempt-less run.json (written by attempt 1) as the current
    attempt's, so a retried job linked attempt 1's W&B run; the runner's rule said attempt 1. One rule now."""
    write_run_json(tmp_path, {"wandb_url": URL1, "wandb_mode": "online"})
    info = run_info(job_at(tmp_path, 2))
    assert (info.wandb_url, info.wandb_path) == (None, None)
    assert run_info(job_at(tmp_path, 1)).wandb_url == URL1


def test_a_succeeded_retry_shows_its_own_checkpoint(tmp_path: Path) -> None:
    """Regression: the monitor showed ``run.json``'s checkpoint whichever attempt wrote it; a retry
    whose trainer printed its own checkpoint line showed attempt 1's."""
    write_run_json(tmp_path, {"attempt": 1, "checkpoint": "/ckpt/attempt1.pt"})
    log = RunDir(tmp_path).log(2)
    log.write_text("[metta-exp] checkpoint path=/ckpt/attempt2.pt\n")
    reader = LogReader()
    assert reader.read(str(log), str(tmp_path), JobStatus.SUCCEEDED, 2).checkpoint == "/ckpt/attempt2.pt"
    assert reader.read(str(log), str(tmp_path), JobStatus.SUCCEEDED, 1).checkpoint == "/ckpt/attempt1.pt"


@pytest.mark.parametrize(
    ("env", "mode"),
    [
        ({}, "online"),
        ({"WANDB_MODE": "run"}, "online"),
        ({"WANDB_MODE": " Online "}, "online"),
        ({"WANDB_MODE": "dryrun"}, "offline"),
        ({"WANDB_MODE": "OFFLINE"}, "offline"),
        ({"WANDB_MODE": "disabled"}, "disabled"),
        ({"WANDB_MODE": "online", "WANDB_DISABLED": "true"}, "disabled"),
        ({"WANDB_DISABLED": "false"}, "online"),
        ({"WANDB_MODE": "shared"}, "shared"),
    ],
)
def test_the_wandb_mode_of_a_jobs_settings(env: dict[str, str], mode: str) -> None:
    assert wandb_mode(env) == mode


def test_a_runs_wandb_identity_exactly() -> None:
    env = {"WANDB_ENTITY": "team", "WANDB_PROJECT": "proj", "WANDB_BASE_URL": "https://wandb.example.com"}
    told = wandb_identity(env, "abc", 3)
    assert told == WandbIdentity("online", "abc-a3", None, "team/proj/abc-a3", "https://wandb.example.com")
    assert told.link is None  # no URL reported yet: nothing to link
    reported = wandb_identity(env, "abc", 2, URL2)
    assert reported == WandbIdentity(
        "online", "abc-a2", URL2, "team/proj/abc-a2", "https://wandb.example.com"
    )
    assert reported.link == URL2
    from_file = wandb_identity({}, "abc", 1, None, RunState(wandb_url=URL1, wandb_mode="online"))
    assert (from_file.url, from_file.path, from_file.link) == (URL1, "team/proj/abc", URL1)
    offline = wandb_identity(
        env, "abc", 1, None, RunState(wandb_mode="offline", wandb_dir="/r/wandb/offline-1")
    )
    assert offline == WandbIdentity(
        "offline", "abc", None, None, "https://wandb.example.com", "/r/wandb/offline-1"
    )
    # what the attempt did wins over what it was told: online without credentials is off
    assert wandb_identity(env, "abc", 1, None, RunState(wandb_mode="disabled")).path is None
    assert wandb_identity(env | {"WANDB_MODE": "disabled"}, "abc", 1, URL1).link is None
    assert wandb_identity({"WANDB_RUN_ID": "xyz"}, None, 2) == WandbIdentity("online", "xyz-a2", None, None)
    assert wandb_identity({}, None, None) == WandbIdentity("online", None, None, None)
    cases = [(URL1, "online"), (URL1, None), ("file:///x", "online"), (URL1, "offline"), (None, "online")]
    assert [wandb_link(url, mode) for url, mode in cases] == [URL1, URL1, None, None, None]


def test_a_jobs_wandb_identity_is_its_current_attempts(tmp_path: Path) -> None:
    env = {"WANDB_ENTITY": "team", "WANDB_PROJECT": "proj"}
    write_run_json(tmp_path, {"attempt": 2, "wandb_url": URL2, "wandb_mode": "online"})
    assert job_wandb(job_at(tmp_path, 2, env)) == WandbIdentity("online", "abc-a2", URL2, "team/proj/abc-a2")
    assert job_wandb(job_at(tmp_path, 3, env)) == WandbIdentity("online", "abc-a3", None, "team/proj/abc-a3")
    recorded = "https://wandb.example.com/other/place/runs/abc-a3"
    assert job_wandb(job_at(tmp_path, 3, env, recorded)).path == "other/place/abc-a3"


def _modules_naming(attr: str) -> set[str]:
    found = set()
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        if any(isinstance(n, ast.Attribute) and n.attr == attr for n in ast.walk(tree)):
            found.add(str(path.relative_to(PACKAGE)))
    return found


def test_run_json_has_one_reader_one_writer() -> None:
    """``runs/state.py`` reads it (``RunState.from_dict``), ``tracking`` writes it, the monitor's log
    reader only looks at its size and time (to know when to read it again)."""
    assert _modules_naming("run_json") == {"runs/state.py", "tracking/__init__.py", "logs/tail.py"}
    assert _modules_naming("from_dict") >= {"runs/state.py"}
    readers = {
        str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if "RunState.from_dict(" in p.read_text()
    }
    assert readers == {"runs/state.py"}


def test_the_wandb_mode_is_derived_in_one_function() -> None:
    """``WANDB_MODE`` is read from a job's settings by ``runs.wandb.wandb_mode`` alone; elsewhere it is
    only quoted back in a message (``tracking``: an unknown mode; the SkyPilot backend: a refusal)."""
    readers = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            key = None
            if isinstance(node, ast.Subscript):
                key = node.slice
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "get"
            ):
                key = node.args[0] if node.args else None
            if isinstance(key, ast.Constant) and key.value in ("WANDB_MODE", "WANDB_DISABLED"):
                readers.add((str(path.relative_to(PACKAGE)), key.value))
    assert readers == {
        ("runs/wandb.py", "WANDB_MODE"),
        ("runs/wandb.py", "WANDB_DISABLED"),
        ("tracking/wandb.py", "WANDB_MODE"),  # "W&B off: unknown WANDB_MODE 'x'"
        ("backends/skypilot/check.py", "WANDB_MODE"),  # "WANDB_MODE=offline (from your shell)"
    }
