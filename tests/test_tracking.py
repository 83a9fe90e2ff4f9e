"""metta_exp.tracking: real run directories in tmp_path, real subprocesses for W&B and imports."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from metta_exp import tracking
from metta_exp.tracking import Progress

REPO = Path(__file__).resolve().parents[1]


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A run dir with quotes and spaces in its path; W&B off; attempt 2; no progress lines unless asked."""
    directory = tmp_path / "runs dir 'q'" / "grp" / "run-1"
    for name in list(os.environ):
        if name.startswith(("WANDB_", "METTA_EXP_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("METTA_EXP_RUN_DIR", str(directory))
    monkeypatch.setenv("METTA_EXP_RUN", "run-1")
    monkeypatch.setenv("METTA_EXP_GROUP", "grp")
    monkeypatch.setenv("METTA_EXP_ATTEMPT", "2")
    monkeypatch.setenv("METTA_EXP_PROGRESS_EVERY", "1000")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    return directory


def read_json(path: Path) -> object:
    return json.loads(path.read_text())


def subprocess_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The test's environment without W&B or metta-exp settings, HOME in tmp_path, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "METTA_EXP_", "NETRC"))}
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env.update(HOME=str(home), PYTHONPATH=str(REPO), METTA_EXP_RUN_DIR=str(tmp_path / "run"))
    env.update(extra)
    return env


# --- metrics.jsonl ---------------------------------------------------------------------------------


def test_log_appends_one_exact_line_per_call(run_dir: Path) -> None:
    run = tracking.Run(total_steps=20000, wall_clock=lambda: 1764250000.125)
    run.log({"overview/reward": 21.5, "overview/sps": 3100.0, "trainer/loss": 0.3}, step=4096)
    run.log({"eval/score": 7}, step=8192)
    run.log({"trainer/loss": 0.25})  # no step: the last step + 1
    run.finish()
    assert (run_dir / "metrics.jsonl").read_text() == (
        '{"_step": 4096, "_time": 1764250000.125, "_attempt": 2, "overview/reward": 21.5, '
        '"overview/sps": 3100.0, "trainer/loss": 0.3}\n'
        '{"_step": 8192, "_time": 1764250000.125, "_attempt": 2, "eval/score": 7}\n'
        '{"_step": 8193, "_time": 1764250000.125, "_attempt": 2, "trainer/loss": 0.25}\n'
    )


def test_lines_are_visible_before_finish_and_appended_across_runs(run_dir: Path) -> None:
    first = tracking.init()
    first.log({"a": 1.0}, step=1)
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()  # no finish: already on disk
    assert [json.loads(line)["a"] for line in lines] == [1.0]
    first.finish()
    second = tracking.init()  # a second attempt appends, it does not truncate
    second.log({"a": 2.0}, step=2)
    second.finish()
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["_step"] for line in lines] == [1, 2]
    assert isinstance(json.loads(lines[0])["_time"], float)


def test_non_finite_values_become_null_and_numbers_are_normalised(run_dir: Path) -> None:
    import numpy as np

    with tracking.init() as run:
        run.log(
            {
                "nan": float("nan"),
                "inf": float("inf"),
                "ninf": -math.inf,
                "np32": np.float32(1.5),
                "np64": np.int64(3),
                "npnan": np.float64("nan"),
                "flag": True,
                "zero_d": np.array(2.5),
            },
            step=np.int64(7),  # type: ignore[arg-type]
        )
    line = (run_dir / "metrics.jsonl").read_text()
    assert json.loads(line) | {"_time": 0} == {
        "_step": 7,
        "_time": 0,
        "_attempt": 2,
        "nan": None,
        "inf": None,
        "ninf": None,
        "np32": 1.5,
        "np64": 3,
        "npnan": None,
        "flag": 1,
        "zero_d": 2.5,
    }
    assert "NaN" not in line and "Infinity" not in line


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        ({"loss": "0.3"}, "metric 'loss' must be an int or a float, got str '0.3'"),
        ({"loss": None}, "metric 'loss' must be an int or a float, got NoneType None"),
        ({"loss": [1.0, 2.0]}, "metric 'loss' must be an int or a float, got list [1.0, 2.0]"),
        ({"loss": 1j}, "metric 'loss' must be an int or a float, got complex 1j"),
        ({"_step": 1}, "metric name '_step': names starting with '_' are reserved"),
        ({3: 1.0}, "metric names must be non-empty strings, got 3"),
    ],
)
def test_non_numeric_values_are_rejected_and_nothing_is_written(
    run_dir: Path, metrics: dict, message: str
) -> None:
    with tracking.init() as run:
        run.log({"ok": 1.0}, step=1)
        with pytest.raises(TypeError) as info:
            run.log({"fine": 2.0, **metrics}, step=2)
    assert str(info.value).startswith(message)
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 1


def test_bad_step_is_rejected(run_dir: Path) -> None:
    with tracking.init() as run:
        for step in (-1, 1.5, "3", True):
            with pytest.raises(TypeError, match="step must be a non-negative int"):
                run.log({"a": 1.0}, step=step)  # type: ignore[arg-type]


def test_concurrent_loggers_write_whole_lines(run_dir: Path) -> None:
    run = tracking.init()
    payload = {f"metric/{i}": float(i) for i in range(40)}

    def worker(offset: int) -> None:
        for i in range(300):
            run.log(payload, step=offset + i)

    threads = [threading.Thread(target=worker, args=(k * 1000,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    run.finish()
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1200
    assert all(len(json.loads(line)) == 43 for line in lines)


# --- run.json ------------------------------------------------------------------------------------


def test_run_json_on_init_checkpoint_and_finish(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expected = {
        "run": "run-1",
        "group": "grp",
        "attempt": 2,
        "total_steps": 20000,
        "checkpoint": None,
        "wandb_url": None,
        "wandb_mode": "disabled",
        "wandb_dir": None,
        "finished": False,
    }
    run = tracking.init(total_steps=20000, config={"learning_rate": 0.01})
    assert read_json(run_dir / "run.json") == expected
    ckpt = run_dir / "ckpt 1.npz"
    run.checkpoint(ckpt)
    assert read_json(run_dir / "run.json") == expected | {"checkpoint": str(ckpt)}
    run.checkpoint("s3://bucket/ckpt-2.npz")
    assert read_json(run_dir / "run.json") == expected | {"checkpoint": "s3://bucket/ckpt-2.npz"}
    run.finish()
    assert read_json(run_dir / "run.json") == expected | {
        "checkpoint": "s3://bucket/ckpt-2.npz",
        "finished": True,
    }
    assert sorted(p.name for p in run_dir.iterdir()) == ["metrics.jsonl", "run.json"]  # no temp files left
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == [
        f"[metta-exp] checkpoint path={ckpt}",
        "[metta-exp] checkpoint path=s3://bucket/ckpt-2.npz",
    ]
    assert tracking.last_checkpoint("\n".join(out)) == "s3://bucket/ckpt-2.npz"


def test_relative_paths_are_inside_the_run_directory(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # jobs start in the launching directory, shared by every run
    with tracking.init() as run:
        assert run.path("ckpt.npz") == run_dir / "ckpt.npz"
        assert run.path("sub/dir/x.pt") == run_dir / "sub" / "dir" / "x.pt"
        assert run.path(tmp_path / "abs.npz") == tmp_path / "abs.npz"
        run.path("ckpt.npz").write_bytes(b"weights")
        assert run.checkpoint("ckpt.npz") == str(run_dir / "ckpt.npz")
    assert read_json(run_dir / "run.json")["checkpoint"] == str(run_dir / "ckpt.npz")  # type: ignore[index]
    assert capsys.readouterr().err == ""


def test_a_relative_checkpoint_saved_in_the_working_directory_gets_a_hint(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ckpt.npz").write_bytes(b"weights")  # saved where every parallel run would save it
    with tracking.init() as run:
        run.checkpoint("ckpt.npz")
    assert read_json(run_dir / "run.json")["checkpoint"] == str(run_dir / "ckpt.npz")  # type: ignore[index]
    assert capsys.readouterr().err == (
        f"[metta-exp] checkpoint 'ckpt.npz' means {run_dir / 'ckpt.npz'} (relative paths are inside the "
        f"run directory), which does not exist; {tmp_path / 'ckpt.npz'} does: save to run.path('ckpt.npz')\n"
    )


def test_run_json_is_replaced_atomically(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tracking.init(total_steps=10)
    stop = threading.Event()
    seen: list[object] = []
    errors: list[Exception] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                seen.append(read_json(run_dir / "run.json"))
            except Exception as exc:  # a half-written file would land here
                errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(300):
            run.checkpoint(f"/ckpt/{'x' * (i % 50)}/{i}.npz")
    finally:
        stop.set()
        thread.join()
    run.finish()
    assert errors == []
    assert seen
    assert [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")] == []


def test_context_manager_marks_a_failed_block_unfinished(run_dir: Path) -> None:
    with pytest.raises(ZeroDivisionError), tracking.init(total_steps=5) as run:
        run.log({"a": 1.0}, step=1)
        1 / 0  # noqa: B018
    assert read_json(run_dir / "run.json")["finished"] is False  # type: ignore[index]
    with pytest.raises(RuntimeError, match=r"Run.log\(\) after finish\(\)"):
        run.log({"a": 2.0}, step=2)
    with pytest.raises(RuntimeError, match=r"Run.checkpoint\(\) after finish\(\)"):
        run.checkpoint("/x")
    run.finish()  # a second finish does nothing
    assert read_json(run_dir / "run.json")["finished"] is False  # type: ignore[index]


def test_default_run_dir_outside_metta_exp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("WANDB_", "METTA_EXP_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.chdir(tmp_path)
    with tracking.init() as run:
        run.log({"a": 1.0}, step=3)
    assert run.run_dir == tmp_path / "metta_exp_run"
    assert json.loads((tmp_path / "metta_exp_run" / "metrics.jsonl").read_text())["_attempt"] == 1
    state = read_json(tmp_path / "metta_exp_run" / "run.json")
    assert state == {
        "run": None,
        "group": None,
        "attempt": 1,
        "total_steps": None,
        "checkpoint": None,
        "wandb_url": None,
        "wandb_mode": "disabled",
        "wandb_dir": None,
        "finished": True,
    }


# --- progress lines ------------------------------------------------------------------------------


def test_progress_lines_are_throttled_and_exact(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("METTA_EXP_PROGRESS_EVERY", "2")
    clock = FakeClock(100.0)
    run = tracking.Run(total_steps=20000, clock=clock)
    for now, step, reward in [(101.0, 1000, 1.0), (102.5, 2000, 2.0), (103.0, 3000, 3.0), (105.0, 4000, 4.0)]:
        clock.now = now
        run.log({"trainer/loss": 0.5, "overview/reward": reward}, step=step)
    clock.now = 106.0
    run.log({"overview/reward": 21.5, "eval/score": float("nan")}, step=4096)
    clock.now = 107.0
    run.finish()
    assert capsys.readouterr().out.splitlines() == [
        # the first log: its point (no sps yet)
        "[metta-exp] progress step=1000 total=20000 overview/reward=1 trainer/loss=0.5",
        # 103 is the first time >= 2 s after it; sps from the first log (2000 steps in 2 s)
        "[metta-exp] progress step=3000 total=20000 sps=1000 overview/reward=3 trainer/loss=0.5",
        # 105 - 103 >= 2: 1000 steps in 2 s
        "[metta-exp] progress step=4000 total=20000 sps=500 overview/reward=4 trainer/loss=0.5",
        # at finish: 96 steps in 2 s; latest value of every metric, overview/* first
        "[metta-exp] progress step=4096 total=20000 sps=48 overview/reward=21.5 trainer/loss=0.5"
        " eval/score=nan",
    ]


def test_a_run_shorter_than_the_progress_interval_prints_its_first_and_last_point(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A remote run without W&B is plotted from its log's progress lines: a run that ends within
    ``METTA_EXP_PROGRESS_EVERY`` seconds must still give a curve (two points), not a lone last point."""
    monkeypatch.setenv("METTA_EXP_PROGRESS_EVERY", "2")
    clock = FakeClock(100.0)
    run = tracking.Run(total_steps=300, clock=clock)
    for step in (100, 200, 300):
        clock.now += 0.1
        run.log({"overview/reward": step / 100}, step=step)
    run.finish()
    assert capsys.readouterr().out.splitlines() == [
        "[metta-exp] progress step=100 total=300 overview/reward=1",
        "[metta-exp] progress step=300 total=300 sps=1000 overview/reward=3",
    ]


def test_logged_sps_is_used_and_total_omitted_when_unknown(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("METTA_EXP_PROGRESS_EVERY", "0")
    with tracking.init() as run:
        run.log({"overview/reward": 21.5, "overview/sps": 3100.5, "trainer/loss": 1.23456789e-7}, step=4096)
    line = "[metta-exp] progress step=4096 sps=3100.5 overview/reward=21.5 trainer/loss=1.23457e-07"
    assert capsys.readouterr().out.splitlines() == [line, line]


def test_finish_without_logs_prints_step_zero(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tracking.init(total_steps=50).finish()
    assert capsys.readouterr().out == "[metta-exp] progress step=0 total=50\n"


def test_parse_progress_line_exact() -> None:
    line = "[metta-exp] progress step=4096 total=20000 sps=3100.5 overview/reward=21.5"
    progress = tracking.parse_progress_line(line)
    assert progress == Progress(step=4096, total=20000, sps=3100.5, metrics={"overview/reward": 21.5})
    assert progress.fraction == pytest.approx(0.2048)
    assert tracking.format_progress_line(progress) == line


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("[metta-exp] progress step=7", Progress(7)),
        ("[metta-exp] progress step=7 sps=1e+06", Progress(7, None, 1e6)),
        ("(train, pid=4242) [metta-exp] progress step=5 total=10 x=1\r\n", Progress(5, 10, None, {"x": 1.0})),
        (
            "[metta-exp] progress step=5 total=10 a=1 bad=abc b=-2.5e-07",
            Progress(5, 10, None, {"a": 1.0, "b": -2.5e-7}),
        ),
        ("[metta-exp] progress step=5 total=4", Progress(5, 4)),
        ("[metta-exp] progress step=abc total=10", None),
        ("[metta-exp] progress total=10 step=5", None),
        ("[metta-exp] progress step=5 total=ten", None),
        ("[metta-exp] progress step=5 sps=fast", None),
        ("[metta-exp] progress step=5 loose", None),
        ("[metta-exp] progress ", None),
        ("[metta-exp] checkpoint path=/x", None),
        ("step=5 total=10", None),
        ("", None),
    ],
)
def test_parse_progress_line_cases(line: str, expected: Progress | None) -> None:
    assert tracking.parse_progress_line(line) == expected


def test_fraction() -> None:
    assert Progress(5, 10).fraction == 0.5
    assert Progress(15, 10).fraction == 1.0
    assert Progress(5, None).fraction is None
    assert Progress(5, 0).fraction is None


def test_format_round_trip_keeps_six_digits_and_skips_unparseable_keys() -> None:
    progress = Progress(12, 100, 1234.5678, {"a/b": 0.000123456789, "with space": 1.0, "k=v": 2.0, "c": -3.0})
    line = tracking.format_progress_line(progress)
    assert line == "[metta-exp] progress step=12 total=100 sps=1234.57 a/b=0.000123457 c=-3"
    assert tracking.parse_progress_line(line) == Progress(12, 100, 1234.57, {"a/b": 0.000123457, "c": -3.0})
    nan_line = tracking.format_progress_line(Progress(1, metrics={"loss": math.nan, "big": math.inf}))
    assert nan_line == "[metta-exp] progress step=1 loss=nan big=inf"
    parsed = tracking.parse_progress_line(nan_line)
    assert parsed is not None and math.isnan(parsed.metrics["loss"]) and parsed.metrics["big"] == math.inf


def test_last_progress_and_last_checkpoint_in_a_log() -> None:
    log = "\n".join(
        [
            "[cartpole] header",
            "[metta-exp] progress step=100 total=1000 sps=50",
            "[metta-exp] checkpoint path=/runs/a b/ckpt-1.npz",
            "Traceback (most recent call last):",
            "[metta-exp] progress step=200 total=1000 sps=60 overview/reward=3",
            "[metta-exp] checkpoint path=/runs/a b/ckpt-2.npz",
            "[metta-exp] progress step=2",  # a line being written when the tail was read
        ]
    )
    assert tracking.last_progress(log) == Progress(2)
    assert tracking.last_progress(log.rsplit("\n", 1)[0]) == Progress(
        200, 1000, 60.0, {"overview/reward": 3.0}
    )
    assert tracking.last_checkpoint(log) == "/runs/a b/ckpt-2.npz"
    assert tracking.last_progress("no progress here\n") is None
    assert tracking.last_checkpoint("[metta-exp] checkpoint path=") is None


# --- imports and W&B (subprocesses) --------------------------------------------------------------

REPORT_MODULES = (
    "import sys; from metta_exp import tracking\n"
    "heavy = ('wandb', 'numpy', 'pandas', 'hydra', 'sky', 'matplotlib')\n"
    "def loaded(): return sorted({m.split('.')[0] for m in sys.modules} & set(heavy))\n"
)


def test_import_is_cheap(tmp_path: Path) -> None:
    script = REPORT_MODULES + "print(loaded())"
    out = subprocess.run(
        [sys.executable, "-c", script], env=subprocess_env(tmp_path), capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "[]\n"


LOG_AND_FINISH = (
    REPORT_MODULES + "run = tracking.init(total_steps=10, config={'lr': 0.1})\n"
    "run.log({'overview/reward': 1.0}, step=5)\n"
    "run.finish()\n"
    "print('loaded', loaded())\n"
)


@pytest.mark.parametrize("mode", ["disabled", None])
def test_wandb_is_not_imported_when_off(tmp_path: Path, mode: str | None) -> None:
    env = subprocess_env(tmp_path, **({"WANDB_MODE": mode} if mode else {}))
    out = subprocess.run([sys.executable, "-c", LOG_AND_FINISH], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    no_credentials = "[metta-exp] W&B off: no credentials (set WANDB_API_KEY or wandb.mode=offline)"
    assert lines.count(no_credentials) == (1 if mode is None else 0)
    assert lines[-2:] == ["[metta-exp] progress step=5 total=10 overview/reward=1", "loaded []"]
    assert read_json(tmp_path / "run" / "run.json")["wandb_mode"] == "disabled"  # type: ignore[index]


def test_wandb_credentials_detection(tmp_path: Path) -> None:
    from metta_exp.tracking.wandb import has_wandb_credentials as _has_wandb_credentials

    home = tmp_path / "home"
    home.mkdir()
    assert not _has_wandb_credentials({"HOME": str(home)})
    assert _has_wandb_credentials({"HOME": str(home), "WANDB_API_KEY": "k"})
    assert not _has_wandb_credentials({"HOME": str(home), "WANDB_API_KEY": "  "})
    (home / ".netrc").write_text("machine github.com login me password p\n")
    assert not _has_wandb_credentials({"HOME": str(home)})
    (home / ".netrc").write_text(
        "machine github.com login me password p\nmachine api.wandb.ai\n  login user\n  password KEY\n"
    )
    assert _has_wandb_credentials({"HOME": str(home)})
    assert not _has_wandb_credentials(
        {"HOME": str(home), "WANDB_BASE_URL": "https://wandb.corp.example:8443"}
    )
    other = tmp_path / "other-netrc"
    other.write_text("machine wandb.corp.example login user password KEY\n")
    env = {"HOME": str(home), "WANDB_BASE_URL": "https://wandb.corp.example:8443", "NETRC": str(other)}
    assert not _has_wandb_credentials(env), "wandb looks up host AND port (wbauth/wbnetrc.py)"
    other.write_text("machine wandb.corp.example:8443 login user password KEY\n")
    assert _has_wandb_credentials(env)


@pytest.mark.slow
def test_wandb_offline_creates_an_offline_run_under_the_run_dir(tmp_path: Path) -> None:
    env = subprocess_env(
        tmp_path,
        WANDB_MODE="offline",
        WANDB_DIR=str(tmp_path / "wandb-dir"),
        WANDB_RUN_ID="abc123def456",
        WANDB_NAME="run-1",
        WANDB_RUN_GROUP="grp",
        WANDB_SILENT="true",
        METTA_EXP_PROGRESS_EVERY="1000",
    )
    out = subprocess.run(
        [sys.executable, "-c", LOG_AND_FINISH], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "'wandb'" in out.stdout.splitlines()[-1]
    state = read_json(tmp_path / "run" / "run.json")
    assert isinstance(state, dict)
    assert state["wandb_mode"] == "offline"
    assert state["wandb_url"] is None
    offline = Path(state["wandb_dir"])
    assert offline.parent == tmp_path / "run" / "wandb"
    assert offline.name.startswith("offline-run-") and offline.name.endswith("-abc123def456")
    assert (offline / "run-abc123def456.wandb").stat().st_size > 0


@pytest.mark.slow
def test_wandb_init_failure_is_one_line_and_training_goes_on(tmp_path: Path) -> None:
    env = subprocess_env(tmp_path, WANDB_MODE="offline", WANDB_RUN_ID="bad/id", WANDB_SILENT="true")
    out = subprocess.run(
        [sys.executable, "-c", LOG_AND_FINISH], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    failures = [line for line in out.stdout.splitlines() if line.startswith("[metta-exp] W&B off:")]
    assert len(failures) == 1
    assert failures[0].startswith("[metta-exp] W&B off: wandb.init failed: UsageError: Run ID cannot contain")
    state = read_json(tmp_path / "run" / "run.json")
    assert state["wandb_mode"] == "disabled"  # type: ignore[index]
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 1


def test_progress_line_shows_at_most_32_metrics_overview_first(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("METTA_EXP_PROGRESS_EVERY", "0")
    metrics = {f"m{i:02d}": float(i) for i in range(40)} | {"overview/reward": 5.0}
    with tracking.init() as run:
        run.log(metrics, step=1)
    progress = tracking.last_progress(capsys.readouterr().out)
    assert progress is not None
    assert list(progress.metrics) == ["overview/reward"] + [f"m{i:02d}" for i in range(31)]
    assert len(json.loads((run_dir / "metrics.jsonl").read_text())) == 3 + 41  # the file keeps them all


def test_unknown_wandb_mode_turns_wandb_off_in_one_line(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WANDB_MODE", "sometimes")
    run = tracking.init()
    assert capsys.readouterr().out == "[metta-exp] W&B off: unknown WANDB_MODE 'sometimes'\n"
    assert read_json(run_dir / "run.json")["wandb_mode"] == "disabled"  # type: ignore[index]
    run.finish()
