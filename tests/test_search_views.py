"""What shows a search (an adaptive sweep): ``job show`` (text and ``--json``), ``job list``'s PRUNED
column, the monitor's header and pruned jobs, the final summary, and the notebook's search cells,
over search records built directly in a real store (``search_records``) or as records in memory."""

from __future__ import annotations

import ast
import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import nbformat
import pytest
from conftest import run_cli
from rich.console import Console
from search_records import PRUNE_REASON, SPACE, make_search_group, synthetic_study, write_curve
from test_monitor import T0, group_record, job_record

from metta_exp.cli.tables import group_table
from metta_exp.monitor.live import print_summary
from metta_exp.monitor.view import Frame, render_monitor
from metta_exp.notebook.cells import CELLS, SEARCH_CELLS, render_notebook, write_group_notebook
from metta_exp.notebook.search import _thin
from metta_exp.records import GroupSummary
from metta_exp.search.text import search_line
from metta_exp.status import ALL_STATUSES, JobStatus
from metta_exp.store import JobStore
from metta_exp.trials import TrialRecord, TrialState
from metta_exp.trials.space import Dimension, SearchSpace

SEARCH_CONFIG = {
    "max_parallel": 2,
    "metrics_to_track": ["overview/sps", "overview/reward"],
    "search_space": SPACE.to_dict(),
    "search": {"n_trials": 40, "objective": "overview/reward", "direction": "maximize"},
}
P = {"trainer.learning_rate": 0.00231, "trainer.entropy_coef": 0.0123, "trainer.batch_size": 512}


def trial(number: int, state: TrialState, value: float | None = None, **kw: Any) -> TrialRecord:
    params = kw.pop("params", P)
    return TrialRecord("lr_sweep", number, SPACE.run_name(number, params), params, state, value, **kw)


# --- the search line (job show, monitor, summary) -------------------------------------------------------


def test_search_line_counts_trials_by_state_and_names_the_best() -> None:
    group = group_record(stored_config=SEARCH_CONFIG)
    low = P | {"trainer.learning_rate": 0.0005}
    trials = [
        trial(0, TrialState.COMPLETE, 0.61, params=low),
        trial(1, TrialState.PRUNED, reason=PRUNE_REASON, params=low),
        trial(2, TrialState.COMPLETE, 0.873),
        trial(3, TrialState.RUNNING, params=low),
    ]
    assert search_line(group, trials) == (
        "Search: 4 of 40 trials (1 running, 2 complete, 1 pruned, 0 failed) · maximize overview/reward · "
        "best: t002-lr0.00231-ent0.0123-bs512 = 0.873 (trial 2: trainer.learning_rate=0.00231, "
        "trainer.entropy_coef=0.0123, trainer.batch_size=512)"
    )
    minimize = group_record(
        stored_config=SEARCH_CONFIG | {"search": {"direction": "minimize", "objective": "loss"}}
    )
    assert "minimize loss · best: t000-lr0.0005" in search_line(minimize, trials)
    assert search_line(group, trials[1:2] + trials[3:]).endswith("· best: none yet")


# --- the monitor ---------------------------------------------------------------------------------------------


def search_frame() -> Frame:
    low = P | {"trainer.learning_rate": 0.0005, "trainer.batch_size": 256}
    trials = [
        trial(0, TrialState.COMPLETE, 0.61, params=low),
        trial(1, TrialState.PRUNED, reason=PRUNE_REASON, params=low | {"trainer.entropy_coef": 0.04}),
        trial(2, TrialState.COMPLETE, 0.873),
        trial(3, TrialState.RUNNING, params=low | {"trainer.entropy_coef": 0.002}),
    ]
    jobs = [
        job_record(trials[0].run, JobStatus.SUCCEEDED, 0, exit_code=0, ended_at=T0 + 40),
        job_record(trials[1].run, JobStatus.PRUNED, 1, reason=PRUNE_REASON, ended_at=T0 + 30),
        job_record(trials[2].run, JobStatus.SUCCEEDED, 2, exit_code=0, ended_at=T0 + 60),
        job_record(trials[3].run, JobStatus.RUNNING, 3, started_at=T0 + 45),
    ]
    jobs = [replace(j, group="lr_sweep") for j in jobs]
    return Frame(
        group_record(stored_config=SEARCH_CONFIG), jobs, {}, now=T0 + 75, runner_alive=True, trials=trials
    )


def render(frame: Frame, width: int, height: int) -> str:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(render_monitor(frame, width, height))
    return out.getvalue()


EXPECTED_100x20 = """\
lr_sweep · demo on local · search of 40 trials, 2 at once · 1:15 elapsed · runner pid 4242
━─────────── 3/40 done  ▶ 1 running  ✓ 2 succeeded  ✂ 1 pruned
Search 4/40 · best 0.873 t002-lr0.00231-ent0.0123-bs512 · 1 running, 2 complete, 1 pruned, 0 failed…
── Active 1 running ────────────────────────────────────────────────────────────────────────────────
  ▶ t003-lr0.0005-ent0.002-bs256    waiting for progress…  0:30
── Completed 2 succeeded, 1 pruned ─────────────────────────────────────────────────────────────────
  ✓ t002-lr0.00231-ent0.0123-bs512  succeeded   0:55
      dir /runs/lr_sweep/t002-lr0.00231-ent0.0123-bs512
  ✓ t000-lr0.0005-ent0.0123-bs256   succeeded   0:35
      dir /runs/lr_sweep/t000-lr0.0005-ent0.0123-bs256
  ✂ t001-lr0.0005-ent0.04-bs256     pruned      0:25  pruned at step 2000: value 0.12 below the med…
Ctrl+C stops watching; the jobs go on · stop them: metta-exp job kill lr_sweep
"""


def test_monitor_header_shows_the_best_trial_and_pruned_jobs_end_with_their_reason() -> None:
    assert render(search_frame(), 100, 20) == EXPECTED_100x20


EXPECTED_80x12 = """\
lr_sweep · demo on local · search of 40 trials, 2 at once · 1:15 elapsed · runn…
━───────── 3/40 done  ▶ 1 running  ✓ 2 succeeded  ✂ 1 pruned
Search 4/40 · best 0.873 t002-lr0.00231-ent0.0123-bs512 · 1 running, 2 complete…
── Active 1 running ────────────────────────────────────────────────────────────
  ▶ t003-lr0.0005-ent0.002-bs256  waiting for progress…  0:30
── Completed 2 succeeded, 1 pruned ─────────────────────────────────────────────
  ✓ t002-lr0.00231-ent0.0123-bs512  succeeded   0:55
      dir /runs/lr_sweep/t002-lr0.00231-ent0.0123-bs512
  ✓ t000-lr0.0005-ent0.0123-bs256  succeeded   0:35
      dir /runs/lr_sweep/t000-lr0.0005-ent0.0123-bs256
  ✂ t001-lr0.0005-ent0.04-bs256  pruned      0:25  pruned at step 2000: value 0…
Ctrl+C stops watching; the jobs go on · stop them: metta-exp job kill lr_sweep
"""


def test_monitor_of_a_search_on_a_narrow_terminal_keeps_the_best_trial_in_view() -> None:
    assert render(search_frame(), 80, 12) == EXPECTED_80x12


def test_monitor_of_a_search_before_any_trial_completes() -> None:
    frame = search_frame()
    frame = replace(frame, trials=[t for t in frame.trials if t.state != TrialState.COMPLETE])
    assert "Search 2/40 · best none yet · 1 running, 0 complete, 1 pruned, 0 failed" in render(frame, 120, 20)
    plain = replace(frame, group=group_record())
    assert "Search" not in render(plain, 120, 20)


def test_final_summary_of_a_search_has_its_line_and_names_the_pruned_runs(tmp_path: Path) -> None:
    with JobStore.open(tmp_path / "state") as store:
        runs = make_search_group(store)
        out = io.StringIO()
        assert print_summary(store, "search", out) == 1  # a trial failed
    lines = out.getvalue().splitlines()
    assert lines[1] == (
        "Search: 5 of 40 trials (1 running, 2 complete, 1 pruned, 1 failed) · maximize overview/reward · "
        f"best: {runs[2]} = 0.873 (trial 2: trainer.learning_rate=0.00231, trainer.entropy_coef=0.0123, "
        "trainer.batch_size=512)"
    )
    assert f"  {runs[3]} failed: exit code 1" in lines
    assert f"  1 pruned (behind the other trials; reasons: metta-exp job show search): {runs[1]}" in lines


# --- job show, job list ---------------------------------------------------------------------------------------


def test_show_of_a_search_has_its_line_and_json_has_each_jobs_trial(state_dir: Path) -> None:
    with JobStore.open(state_dir) as store:
        runs = make_search_group(store)
    text = run_cli("job", "show", "search").stdout.splitlines()
    assert text[0].endswith("5 jobs: 1 running, 2 succeeded, 1 failed, 1 pruned")
    assert text[1].startswith(
        "Search: 5 of 40 trials (1 running, 2 complete, 1 pruned, 1 failed) · maximize "
    )
    assert [line.split()[:2] for line in text[3:8]] == [
        [runs[0], "succeeded"],
        [runs[1], "pruned"],
        [runs[2], "succeeded"],
        [runs[3], "failed"],
        [runs[4], "running"],
    ]
    assert text[4].endswith(PRUNE_REASON)

    shown = json.loads(run_cli("job", "show", "search", "--json").stdout)
    assert [row["trial"] for row in shown] == [
        {
            "number": 0,
            "state": "complete",
            "value": 0.61,
            "params": {
                "trainer.learning_rate": 0.0005,
                "trainer.entropy_coef": 0.02,
                "trainer.batch_size": 512,
            },
            "reason": None,
        },
        {
            "number": 1,
            "state": "pruned",
            "value": None,
            "params": {
                "trainer.learning_rate": 0.0001,
                "trainer.entropy_coef": 0.04,
                "trainer.batch_size": 256,
            },
            "reason": PRUNE_REASON,
        },
        {
            "number": 2,
            "state": "complete",
            "value": 0.873,
            "params": {
                "trainer.learning_rate": 0.00231,
                "trainer.entropy_coef": 0.0123,
                "trainer.batch_size": 512,
            },
            "reason": None,
        },
        {
            "number": 3,
            "state": "failed",
            "value": None,
            "params": {
                "trainer.learning_rate": 0.009,
                "trainer.entropy_coef": 0.003,
                "trainer.batch_size": 1024,
            },
            "reason": "exit code 1",
        },
        {
            "number": 4,
            "state": "running",
            "value": None,
            "params": {
                "trainer.learning_rate": 0.001,
                "trainer.entropy_coef": 0.01,
                "trainer.batch_size": 256,
            },
            "reason": None,
        },
    ]
    assert [(row["run"], row["status"], row["reason"]) for row in shown][1] == (
        runs[1],
        "pruned",
        PRUNE_REASON,
    )

    listed = run_cli("job", "list").stdout.splitlines()
    assert listed[0].split()[3:] == [
        *("PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "SKIPPED", "PRUNED", "AGE", "STATE")
    ]
    assert listed[1].split()[:10] == ["search", "local", "5", "0", "1", "2", "1", "0", "0", "1"]
    assert json.loads(run_cli("job", "list", "--json").stdout)[0]["pruned"] == 1


def test_list_has_a_pruned_column_only_when_a_listed_group_has_pruned_jobs() -> None:
    t0 = 1_800_000_000.0
    counts = {s.value: 0 for s in ALL_STATUSES} | {"succeeded": 3}
    plain = GroupSummary("grid", "demo", "local", t0, t0 + 60, counts)
    search = GroupSummary("search", "demo", "local", t0, t0 + 60, counts | {"pruned": 2, "succeeded": 1})
    assert group_table([plain], {}, t0 + 120).split("\n") == [
        "GROUP  BACKEND  TOTAL  PENDING  RUNNING  SUCCEEDED  FAILED  CANCELLED  SKIPPED  AGE  STATE",
        "grid   local        3        0        0          3       0          0        0  2m   ended",
    ]
    assert group_table([search, plain], {}, t0 + 120).split("\n") == [
        "GROUP   BACKEND  TOTAL  PENDING  RUNNING  SUCCEEDED  FAILED  CANCELLED  SKIPPED  PRUNED  AGE  STATE",
        "search  local        3        0        0          1       0          0        0       2  2m   ended",
        "grid    local        3        0        0          3       0          0        0       0  2m   ended",
    ]


# --- the notebook ----------------------------------------------------------------------------------------------


def cell_sources(path: Path) -> dict[str, str]:
    nb = json.loads(path.read_text())
    return {c["id"].split("-")[0]: "".join(c["source"]) for c in nb["cells"]}


def literals(source: str) -> dict[str, Any]:
    """A cell's UPPERCASE names: the literals it was rendered with."""
    tree = ast.parse(source)
    return {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and node.targets[0].id.isupper()
    }


def test_job_notebook_of_a_search_adds_its_cells_with_the_trials_as_literals(state_dir: Path) -> None:
    with JobStore.open(state_dir) as store:
        runs = make_search_group(store)
    result = run_cli("job", "notebook", "search", "-o", "search.ipynb")
    assert result.returncode == 0, result.stderr
    cells = cell_sources(state_dir.parent / "search.ipynb")
    assert list(cells) == [*CELLS, *SEARCH_CELLS]
    assert (
        "best\\: t002" in cells["search"]
        and "trainer\\.batch\\_size\\: one of 256\\, 512\\, 1024" in cells["search"]
    )
    found = literals(cells["search_best"])
    assert found["OBJECTIVE"] == "overview/reward" and found["DIRECTION"] == "maximize"
    assert found["COLUMNS"] == [
        *("trial", "run", "state", "value", "pruned_step", "pruned_value", "reason"),
        *("trainer.learning_rate", "trainer.entropy_coef", "trainer.batch_size"),
    ]
    assert found["TRIALS"] == [
        [0, runs[0], "complete", 0.61, None, None, None, 0.0005, 0.02, 512],
        [1, runs[1], "pruned", None, 2000, 0.12, PRUNE_REASON, 0.0001, 0.04, 256],
        [2, runs[2], "complete", 0.873, None, None, None, 0.00231, 0.0123, 512],
        [3, runs[3], "failed", None, None, None, "exit code 1", 0.009, 0.003, 1024],
        [4, runs[4], "running", None, None, None, None, 0.001, 0.01, 256],
    ]
    curves = literals(cells["search_curves"])
    assert curves["BEST"] == runs[2]
    assert curves["SEEN"] == [  # what the pruner saw of the ended trials: their curves without metrics
        [0, [[1000, 0.3], [2000, 0.5]]],
        [1, [[1000, 0.1], [2000, 0.12]]],
        [2, [[1000, 0.4], [2000, 0.7]]],
    ]
    assert "'overview/reward'" in cells["fetch"]  # the objective's curves are fetched


def test_notebook_of_a_grid_sweep_has_no_search_cells_and_a_search_without_trials_renders(
    tmp_path: Path,
) -> None:
    group = group_record(stored_config=SEARCH_CONFIG | {"module": "pkg.train"})
    cells = json.loads(render_notebook(group, [], trials=[]))["cells"]
    assert [c["id"].split("-")[0] for c in cells] == [*CELLS, *SEARCH_CELLS]
    assert "No trial has completed yet." in "".join(cells[len(CELLS)]["source"])
    odd = [trial(0, TrialState.FAILED, float("nan"), steps=((10, float("inf")),))]  # no literal for NaN
    assert "[0, 't000-" in "".join(
        json.loads(render_notebook(group, [], trials=odd))["cells"][len(CELLS) + 1]["source"]
    )
    plain = group_record(stored_config={"module": "pkg.train"})
    assert [c["id"].split("-")[0] for c in json.loads(render_notebook(plain, []))["cells"]] == list(CELLS)


def test_a_trials_intermediate_values_are_thinned_to_at_most_50_keeping_the_last() -> None:
    steps = tuple((i * 10, i / 7) for i in range(1, 1001)) + ((10010, float("nan")),)
    thinned = _thin(steps)
    assert len(thinned) == 50 and thinned[0] == [10, 1 / 7] and thinned[-1] == [10000, 1000 / 7]
    assert [s for s, _ in thinned] == sorted({s for s, _ in thinned})
    assert _thin(steps[:3]) == [[10, 1 / 7], [20, 2 / 7], [30, 3 / 7]]


def execute(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run the notebook at ``path`` with nbclient as the tests of the notebook do (MPLBACKEND=Agg, which
    kernels inherit: the notebook must pick the inline backend itself); the executed notebook."""
    from metta_exp.notebook.report import execute_notebook

    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell("import json"))
    for key in ("IPYTHONDIR", "MPLCONFIGDIR", "JUPYTER_RUNTIME_DIR"):
        monkeypatch.setenv(key, str(tmp_path / key.lower()))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    execute_notebook(nb, tmp_path)  # the reports' own kernel (on sockets of its own)
    assert not [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    return nb


@pytest.mark.slow
def test_search_notebook_runs_before_any_trial_completes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with JobStore.open(tmp_path / "state") as store:
        make_search_group(store, "failed", trials=[(0, P, "failed", None, [])])
        make_search_group(store, "running", trials=[(0, P, "running", None, [(100, 0.5)])])
        make_search_group(store, "pruned", trials=[(0, P, "pruned", None, [(100, 0.5)])])
        for name in ("failed", "running", "pruned"):
            group, jobs = store.group(name), store.jobs(name)
            path = write_group_notebook(group, jobs, tmp_path / f"{name}.ipynb", store.trials(name))
            cells = {c.id.split("-")[0]: c for c in execute(path, tmp_path, monkeypatch).cells if "-" in c.id}
            # no best trial yet: an empty table with the objective and every parameter as its columns
            best = [o["data"]["text/plain"] for o in cells["search_best"].outputs]
            assert best == [
                "Empty DataFrame\nColumns: [run, overview/reward, trainer.learning_rate, trainer.entropy_coef, "
                "trainer.batch_size]\nIndex: []"
            ], name
            for kind in ("search_trials", "search_params", "search_curves"):  # each plot drawn, once
                shown = [o for o in cells[kind].outputs if "image/png" in o.get("data", {})]
                assert len(shown) == len(cells[kind].outputs) == 1, (name, kind)


@pytest.mark.slow
def test_search_notebook_executes_with_its_plots_and_the_best_trials_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from metta_exp.notebook.report import execute_notebook

    study, curves = synthetic_study()
    with JobStore.open(tmp_path / "state") as store:
        make_search_group(store, trials=study)
        jobs = store.jobs("search")
        trials = store.trials("search")
        # a complete and a pruned trial without metrics: their curves are what the pruner saw
        unfetched = {
            next(t.run for t in trials if t.state == s) for s in (TrialState.COMPLETE, TrialState.PRUNED)
        }
        for job in jobs:
            if job.run not in unfetched:
                write_curve(Path(job.run_dir), curves[int(job.run[1:4])])
        path = write_group_notebook(store.group("search"), jobs, tmp_path / "nb" / "search.ipynb", trials)
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(
        nbformat.v4.new_code_cell(
            "print('BEST=' + json.dumps(best.index.tolist()) + f' LINES={len(ax.get_lines())}')"
        )
    )
    for key in ("IPYTHONDIR", "MPLCONFIGDIR", "JUPYTER_RUNTIME_DIR"):
        monkeypatch.setenv(key, str(tmp_path / key.lower()))
    monkeypatch.setenv("MPLBACKEND", "Agg")  # kernels inherit it: the notebook must pick inline itself
    nb.cells.insert(0, nbformat.v4.new_code_cell("import json"))
    execute_notebook(nb, tmp_path)  # the reports' own kernel (on sockets of its own)

    executed = {c.id.split("-")[0]: c for c in nb.cells if "-" in c.get("id", "")}
    assert not [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    for kind in ("search_trials", "search_params", "search_curves"):
        assert [o for o in executed[kind].outputs if "image/png" in o.get("data", {})], kind
    assert "text/html" in executed["search_best"].outputs[0]["data"]
    printed = "".join(o.text for o in nb.cells[-1].outputs if o.output_type == "stream")
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    expected = sorted(complete, key=lambda t: (-(t.value or 0.0), t.number))
    best_first, lines = printed.split("BEST=", 1)[1].split(" LINES=")
    assert json.loads(best_first) == [t.number for t in expected]
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert int(lines) == len(complete) + 2 * len(pruned)  # a curve each, and a cross for each pruned one


def test_search_cells_stay_valid_python_and_markdown_with_hostile_choices_and_objective() -> None:
    from test_notebook import HOSTILE

    hostile = Dimension("+model.name", "categorical", choices=tuple(HOSTILE), texts=tuple(HOSTILE))
    space = SearchSpace((*SPACE.dims, hostile), base_run="arena")
    objective = 'it\'s "$x$" {{ y }}\n# z'
    config = SEARCH_CONFIG | {"search_space": space.to_dict(), "search": {"objective": objective}}
    group = group_record(stored_config=config)
    trials = [
        trial(
            i, TrialState.COMPLETE if i % 2 else TrialState.PRUNED, 0.1 * i, params=P | {"model.name": name}
        )
        for i, name in enumerate(HOSTILE)
    ]
    cells = json.loads(render_notebook(group, [], trials=trials))["cells"][len(CELLS) :]
    for cell in cells:
        source = "".join(cell["source"])
        if cell["cell_type"] == "code":
            ast.parse(source)
    found = literals("".join(cells[1]["source"]))
    assert found["OBJECTIVE"] == objective
    assert [row[-1] for row in found["TRIALS"]] == HOSTILE
    assert found["DIMS"][-1]["choices"] == HOSTILE
    markdown = "".join(cells[0]["source"])
    assert "\n# z" not in markdown and "{{" not in markdown


def test_monitor_lists_a_searchs_best_trials_first_among_the_completed() -> None:
    frame = search_frame()
    late = [replace(j, ended_at=T0 + 70) if j.run.startswith("t000") else j for j in frame.jobs]
    frame = replace(frame, jobs=late)

    def completed(frame: Frame) -> list[str]:
        text = render(frame, 100, 30).split("── Completed", 1)[1]
        return [
            line.split()[1] for line in text.splitlines() if line.startswith("  ✓") or line.startswith("  ✂")
        ]

    assert [r[:4] for r in completed(frame)] == ["t002", "t000", "t001"]  # by value, not by when they ended
    minimize = replace(
        frame, group=group_record(stored_config=SEARCH_CONFIG | {"search": {"direction": "minimize"}})
    )
    assert [r[:4] for r in completed(minimize)] == ["t000", "t002", "t001"]
    plain = replace(frame, group=group_record(), trials=())
    assert [r[:4] for r in completed(plain)] == ["t000", "t002", "t001"]  # other groups: the latest first


def test_the_monitors_frame_carries_a_searchs_trials_from_the_store(tmp_path: Path) -> None:
    from metta_exp.logs.tail import LogReader
    from metta_exp.monitor.live import read_frame

    with JobStore.open(tmp_path / "state") as store:
        runs = make_search_group(store)
        frame = read_frame(store, "search", LogReader())
    assert [t.run for t in frame.trials] == list(runs.values())
    assert f"best 0.873 {runs[2]}" in render(frame, 140, 30)
