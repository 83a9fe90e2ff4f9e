"""The group notebook: hostile names, escaping, validity, stable bytes, and a real execution."""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import html
import json
import math
import os
import random
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import nbformat
import pytest
from IPython.core.inputtransformer2 import TransformerManager
from markdown_it import MarkdownIt

from metta_exp.notebook.cells import (
    CELLS,
    RunInfo,
    _environment,
    md_code,
    md_escape,
    md_url,
    py_literal,
    py_rows,
    render_notebook,
    run_info,
    shell_quote,
    templates_dir,
    write_group_notebook,
)
from metta_exp.records import GroupRecord, JobRecord, JobSpec, SweepRecord
from metta_exp.status import JobStatus

HOSTILE = [
    "quote'single",
    'quote"double',
    "'''triple'''",
    'x"""y',
    "new\nline",
    "cr\r\nlf",
    "**bold** _it_ [link](http://evil.example) ![img](x.png)",
    "# heading",
    "{{ jinja }} {% raw %} {# c #}",
    "{braces} {0} %s",
    "</script><script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "back\\slash\\",
    "\\n not a newline",
    "pipe | cell",
    "`tick` ``two``",
    "$math$ $$x$$",
    "tab\there",
    "line\u2028sep",
    "bidi\u202eevil",
    "nul\x00byte",
    "émoji 🙂",
    "-- dash",
    "1. list",
    "&amp; entity",
]


def group(name: str = "demo.20251127", experiment: str = "cartpole", **config: Any) -> GroupRecord:
    base = {
        "module": "metta_exp.examples.cartpole",
        "metrics_to_track": ["overview/sps", "overview/reward"],
        "extra_args": [],
    }
    base.update(config)
    return GroupRecord(
        name=name,
        experiment=experiment,
        backend="local",
        stored_config=base,
        created_at=1764250000.0,
        ended_at=1764253600.0,
        cancel_requested=False,
        lease_owner=None,
        lease_expires=None,
        runner_pid=None,
    )


def job(
    run: str,
    run_dir: Path | str,
    position: int,
    status: JobStatus = JobStatus.SUCCEEDED,
    args: list[str] | None = None,
    env: dict[str, str] | None = None,
    wandb_url: str | None = None,
    exit_code: int | None = 0,
    reason: str | None = None,
    group_name: str = "demo.20251127",
) -> JobRecord:
    spec = {
        "group": group_name,
        "run": run,
        "args": args or [],
        "env": env or {},
        "run_dir": str(run_dir),
        "wandb_run_id": "0123456789abcdef",
    }
    return JobRecord(
        group=group_name,
        run=run,
        position=position,
        status=status,
        stored_spec=JobSpec.from_dict(spec),
        attempts=1,
        exit_code=exit_code,
        reason=reason,
        run_dir=str(run_dir),
        wandb_url=wandb_url,
    )


def cells(text: str) -> dict[str, nbformat.NotebookNode]:
    nb = nbformat.reads(text, as_version=4)
    return {c.id.split("-")[0]: c for c in nb.cells}


def literals(source: str) -> dict[str, Any]:
    """The values of the top-level ``NAME = <literal>`` assignments of a code cell."""
    out = {}
    for node in ast.parse(TransformerManager().transform_cell(source)).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            with contextlib.suppress(ValueError):
                out[node.targets[0].id] = ast.literal_eval(node.value)
    return out


def visible(text: str) -> str:
    """How a markdown cell must show ``text``: control characters as escapes."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)


def rendered_text(markdown: str) -> tuple[str, str]:
    """(HTML, its text) as CommonMark with GFM tables renders the markdown."""
    out = MarkdownIt("commonmark").enable("table").render(markdown)
    return out, html.unescape(re.sub(r"<[^>]+>", "", out))


@pytest.fixture
def hostile_jobs(tmp_path: Path) -> tuple[GroupRecord, list[JobRecord]]:
    jobs = []
    for i, name in enumerate(HOSTILE):
        run_dir = tmp_path / "runs" / name.replace("/", "_").replace("\x00", "0")
        run_dir.mkdir(parents=True)
        url = f"https://wandb.ai/ent/proj/runs/id{i}?q=({name})" if i % 3 == 0 else None
        env = {"WANDB_MODE": "offline"} if i % 3 == 1 else {"WANDB_MODE": "disabled"} if i % 3 == 2 else {}
        status = [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED][i % 3]
        jobs.append(
            job(
                name,
                run_dir,
                i,
                status=status,
                args=[f"trainer.x={name}", name, "--", ""],
                env=env,
                wandb_url=url,
                exit_code=1 if status == JobStatus.FAILED else 0,
                reason=name if status == JobStatus.FAILED else None,
                group_name=HOSTILE[6],
            )
        )
    g = group(
        name=HOSTILE[6],
        experiment=HOSTILE[9],
        metrics_to_track=["overview/reward", "overview/sps", *HOSTILE[:5]],
        module=None,
        command=["python", HOSTILE[0], HOSTILE[4]],
    )
    return g, jobs


# --- hostile names ------------------------------------------------------------------------------


def test_every_code_cell_parses_and_names_round_trip(
    hostile_jobs: tuple[GroupRecord, list[JobRecord]],
) -> None:
    g, jobs = hostile_jobs
    by_kind = cells(render_notebook(g, [run_info(j) for j in jobs]))
    for kind, cell in by_kind.items():
        if cell.cell_type == "code":
            ast.parse(TransformerManager().transform_cell(cell.source), filename=kind)

    fetch = literals(by_kind["fetch"].source)
    assert [r["run"] for r in fetch["RUNS"]] == HOSTILE
    assert [r["run_dir"] for r in fetch["RUNS"]] == [j.run_dir for j in jobs]
    assert fetch["STATUSES"] == {j.run: str(j.status) for j in jobs}
    assert fetch["METRICS"] == g.exp.metrics_to_track
    assert [r["wandb_path"] for r in fetch["RUNS"]][:4] == ["ent/proj/id0", None, None, "ent/proj/id3"]
    assert literals(by_kind["plots"].source)["PLOT_METRICS"] == g.exp.metrics_to_track
    summary_call = ast.parse(by_kind["summary"].source).body[0].value  # type: ignore[attr-defined]
    assert {k.arg: ast.literal_eval(k.value) for k in summary_call.keywords if k.arg != "statuses"} == {
        "reward": "overview/reward",
        "sps": "overview/sps",
    }


def test_markdown_cells_escape_everything(hostile_jobs: tuple[GroupRecord, list[JobRecord]]) -> None:
    g, jobs = hostile_jobs
    by_kind = cells(render_notebook(g, [run_info(j) for j in jobs]))

    title_html, title_text = rendered_text(by_kind["title"].source)
    assert title_html.count("<h1>") == 1 and "<h2>" not in title_html
    for tag in ("<script", "<img", "<a ", "<em>", "<strong>", "<code>", "<ol", "<ul", "<br"):
        assert tag not in title_html, tag
    assert title_html.count("<tr>") == len(HOSTILE) + 1  # no name added or broke a table row
    assert all(row.count("<td") == 4 for row in re.findall(r"<tr>.*?</tr>", title_html, re.S)[1:])
    assert f"{visible(HOSTILE[9])}: group {visible(HOSTILE[6])}" in title_text
    for j in jobs:
        assert visible(j.run) in title_text

    links_html, links_text = rendered_text(by_kind["wandb"].source)
    for tag in ("<script", "<img", "<em>", "<strong>", "<h1>", "<ol"):
        assert tag not in links_html, tag
    hrefs = [unquote(html.unescape(h)) for h in re.findall(r'<a href="([^"]*)"', links_html)]
    assert hrefs == [j.wandb_url for j in jobs if j.wandb_url]
    assert links_html.count("<li>") == len(HOSTILE)
    for j in jobs:
        assert visible(j.run) in links_text
    offline = [j for j in jobs if j.spec.env.get("WANDB_MODE") == "offline"]
    assert links_text.count("logged to W&B offline; upload it with wandb sync") == len(offline)
    code_spans = [html.unescape(c) for c in re.findall(r"<code>(.*?)</code>", links_html, re.S)]
    assert visible(os.path.join(jobs[2].run_dir, "metrics.jsonl")) in code_spans


def test_valid_stable_and_atomic(hostile_jobs: tuple[GroupRecord, list[JobRecord]], tmp_path: Path) -> None:
    g, jobs = hostile_jobs
    path = tmp_path / "out" / "nb.ipynb"
    assert write_group_notebook(g, jobs, path) == path
    first = path.read_bytes()
    assert write_group_notebook(g, list(reversed(jobs)), path).read_bytes() == first
    assert [p.name for p in path.parent.iterdir()] == ["nb.ipynb"]  # no temporary file left
    nb = nbformat.reads(first.decode(), as_version=4)
    nbformat.validate(nb)
    assert [c.id.split("-")[0] for c in nb.cells] == list(CELLS)
    assert [c.cell_type for c in nb.cells] == ["markdown", "code", "markdown", "code", "code", "code"]
    assert all(re.fullmatch(r"[a-z]+-[0-9a-f]{12}", c.id) for c in nb.cells)
    other = render_notebook(group(name="another"), [run_info(jobs[0])])
    assert {c.id for c in nb.cells}.isdisjoint(c.id for c in cells(other).values())
    assert nb.metadata.kernelspec.name == "python3"


def test_unfiltered_values_are_refused(tmp_path: Path) -> None:
    (tmp_path / "bad.j2").write_text("RUNS = {{ runs }}\n")
    (tmp_path / "good.j2").write_text("RUNS = {{ runs | py }}\n")
    env = _environment(str(tmp_path))
    with pytest.raises(TypeError, match="without a filter"):
        env.get_template("bad.j2").render(runs=["x"])
    assert env.get_template("good.j2").render(runs=["x"]) == "RUNS = ['x']"


def test_shipped_templates_print_only_filtered_values() -> None:
    for path in sorted((templates_dir() / "notebook").glob("*.j2")):
        for expression in re.findall(r"\{\{(.*?)\}\}", path.read_text()):
            filters = re.findall(r"\|\s*(\w+)", expression)
            assert filters and filters[-1] in {"py", "py_rows", "md", "md_code", "md_url", "badge"}, (
                path.name,
                expression,
            )


def test_py_rows_writes_one_row_a_line_and_round_trips_hostile_values() -> None:
    rows = [[i, name, None, 1.5e-4, True] for i, name in enumerate(HOSTILE)]
    text = py_rows(rows)
    assert text.count("\n") == len(rows) + 1 and ast.literal_eval(text) == rows
    assert py_rows([]) == "[]"
    with pytest.raises(ValueError):
        py_rows([[float("nan")]])


# --- the filters --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -5,
        2.5,
        1e-300,
        "",
        *HOSTILE,
        ["a", ["b", {"c": None}]],
        {"k'": [1, 2.0, "v\n"]},
        [f"run-{i}-{'x' * 30}" for i in range(10)],
        {f"key{i}": "v" * 40 for i in range(5)},
    ],
)
def test_py_literal_round_trips(value: Any) -> None:
    text = py_literal(value)
    assert ast.literal_eval(text) == value
    # one line when it fits in 100 columns (or cannot be split: a scalar), else one item per line, each fitting
    flat = py_literal(value, width=10**9)
    assert "\n" not in flat
    split = isinstance(value, list | dict) and len(flat) > 100
    assert text == flat if not split else max(len(line) for line in text.splitlines()) <= 100
    assert ("\n" in text) == split


def test_py_literal_is_multiline_when_long_and_refuses_the_rest() -> None:
    text = py_literal({"runs": [{"run": f"r{i}", "run_dir": "/a" * 20} for i in range(3)]})
    assert text.count("\n") >= 4 and ast.literal_eval(text)["runs"][2]["run"] == "r2"
    assert py_literal(("a", "b")) == "['a', 'b']"
    for bad in (math.nan, math.inf, object(), {1: "x"}, b"bytes"):
        with pytest.raises((TypeError, ValueError)):
            py_literal(bad)


def test_md_helpers() -> None:
    assert md_escape("a_b *c* <d> & $e$") == r"a\_b \*c\* &lt;d&gt; &amp; \$e\$"
    assert md_escape("x\ny") == r"x\\ny"
    for text in HOSTILE:
        assert rendered_text(md_escape(text))[1].strip() == visible(text).strip()
        assert (
            html.unescape(re.sub(r"</?(p|code)>", "", rendered_text(md_code(text))[0])).strip()
            == visible(text).strip()
        )
    assert md_code("a`b") == "``a`b``" and md_code("`x`") == "`` `x` ``"
    assert md_url("https://h/a b/(c)<d>'\"\\é") == "https://h/a%20b/%28c%29%3Cd%3E%27%22%5C%C3%A9"
    assert md_url("https://h/?a=1&b=%zz&c=%41") == "https://h/?a=1&amp;b=%25zz&amp;c=%41"
    for bad in ("javascript:alert(1)", "file:///etc/passwd", "wandb.ai/x"):
        with pytest.raises(ValueError):
            md_url(bad)
    assert shell_quote("a b") == "'a b'" and shell_quote("x'y\nz") == "$'x\\'y\\nz'"


# --- the cells ----------------------------------------------------------------------------------


def test_wandb_cell_per_mode_and_run_json(tmp_path: Path) -> None:
    online = tmp_path / "online"
    offline = tmp_path / "offline"
    local = tmp_path / "local"
    for d in (online, offline, local):
        d.mkdir()
    (online / "run.json").write_text(
        json.dumps({"wandb_url": "https://wandb.ai/e/p/runs/abc", "wandb_mode": "online"})
    )
    (offline / "run.json").write_text(
        json.dumps({"wandb_mode": "offline", "wandb_dir": str(offline / "wandb" / "offline-run-1")})
    )
    jobs = [
        job("on", online, 0, env={"WANDB_ENTITY": "e", "WANDB_PROJECT": "p"}),
        job("off", offline, 1),
        job("loc", local, 2, env={"WANDB_MODE": "disabled"}),
    ]
    infos = [run_info(j) for j in jobs]
    assert (infos[0].wandb_url, infos[0].wandb_mode, infos[0].wandb_path) == (
        "https://wandb.ai/e/p/runs/abc",
        "online",
        "e/p/abc",
    )
    assert (infos[1].wandb_mode, infos[1].wandb_path) == ("offline", None)
    by_kind = cells(render_notebook(group(), infos))
    text = by_kind["wandb"].source
    assert "- on: [open in W&amp;B](https://wandb.ai/e/p/runs/abc)" in text
    assert (
        f"- off: logged to W&amp;B offline; upload it with `wandb sync {offline / 'wandb' / 'offline-run-1'}`"
        in text
    )
    assert f"- loc: no W&amp;B run; local metrics in `{local / 'metrics.jsonl'}`" in text
    assert literals(by_kind["fetch"].source)["RUNS"][0] == {
        "run": "on",
        "run_dir": str(online),
        "wandb_path": "e/p/abc",
    }
    title = by_kind["title"].source
    assert (
        "3 runs on the local backend" in title
        and "Command: python \\-m metta\\_exp\\.examples\\.cartpole" in title
    )


def test_the_latest_attempts_wandb_run_is_shown(tmp_path: Path) -> None:
    """Each attempt is its own W&B run: neither attempt 1's run.json nor its id stand for attempt 2."""
    (tmp_path / "run.json").write_text(
        json.dumps(
            {"attempt": 1, "wandb_url": "https://w.example.com/e/p/runs/first", "wandb_mode": "online"}
        )
    )
    retried = dataclasses.replace(
        job("r", tmp_path, 0, env={"WANDB_ENTITY": "e", "WANDB_PROJECT": "p"}), attempts=2
    )
    info = run_info(retried)
    assert info.wandb_url is None
    assert info.wandb_path == "e/p/0123456789abcdef-a2"
    reported = dataclasses.replace(
        retried, wandb_url="https://w.example.com:8443/e/p/runs/0123456789abcdef-a2"
    )
    info = run_info(reported)
    assert (info.wandb_url, info.wandb_path) == (reported.wandb_url, "e/p/0123456789abcdef-a2")
    hosted = dataclasses.replace(
        reported,
        stored_spec=dataclasses.replace(reported.spec, env={"WANDB_BASE_URL": "https://w.example.com:8443"}),
    )
    runs = literals(cells(render_notebook(group(), [run_info(hosted)]))["fetch"].source)["RUNS"]
    assert runs[0]["wandb_base_url"] == "https://w.example.com:8443", "fetched from the W&B server it used"


def test_templates_dir() -> None:
    assert (templates_dir() / "notebook" / "title.md.j2").is_file()


def test_relative_run_dirs_become_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    info = run_info(job("r", "job_state/runs/g/r", 0))
    assert info.run_dir == str(tmp_path / "job_state" / "runs" / "g" / "r")


# --- executing the notebook ---------------------------------------------------------------------


def write_metrics(run_dir: Path, n: int, seed: int, attempts: int = 1, stop_at: int | None = None) -> None:
    """A CartPole-like training curve: rising noisy reward, steady SPS, falling loss."""
    rnd = random.Random(seed)
    lines = []
    t = 1764250000.0
    for attempt in range(1, attempts + 1):
        last = n if attempt == attempts else n // 3
        for i in range(last if stop_at is None else min(last, stop_at)):
            t += 0.6 + rnd.random() * 0.1
            reward = 500 / (1 + math.exp(-(i - n * 0.45) / (n * 0.12))) * (0.6 + 0.1 * seed) + rnd.gauss(
                0, 12
            )
            record = {
                "_step": (i + 1) * 1024,
                "_time": t,
                "_attempt": attempt,
                "overview/reward": round(reward, 3),
                "overview/sps": round(3000 + rnd.gauss(0, 150), 1),
                "trainer/loss": round(math.exp(-i / (n / 3)) + rnd.random() * 0.05, 5),
            }
            lines.append(json.dumps(record) + "\n")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.jsonl").write_text("".join(lines))
    (run_dir / "run.json").write_text(
        json.dumps(
            {
                "run": run_dir.name,
                "group": "demo",
                "attempt": attempts,
                "total_steps": n * 1024,
                "checkpoint": None,
                "wandb_url": None,
                "wandb_mode": "disabled",
                "wandb_dir": None,
                "finished": stop_at is None,
            }
        )
    )


def expected_summary(run_dir: Path) -> dict[str, Any]:
    """Final/max/mean reward, mean SPS and last step of a metrics file, read independently."""
    if not (run_dir / "metrics.jsonl").exists():
        return dict.fromkeys(("final_reward", "max_reward", "mean_reward", "avg_sps", "steps"))
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    latest = max(r.get("_attempt", 1) for r in records)
    records = [r for r in records if r.get("_attempt", 1) == latest]
    assert len(records) <= 1000, "exact comparison needs at most samples=1000 points per run"
    reward = [r["overview/reward"] for r in records if r.get("overview/reward") is not None]
    sps = [r["overview/sps"] for r in records if r.get("overview/sps") is not None]
    return {
        "final_reward": reward[-1] if reward else None,
        "max_reward": max(reward) if reward else None,
        "mean_reward": sum(reward) / len(reward) if reward else None,
        "avg_sps": sum(sps) / len(sps) if sps else None,
        "steps": max(r["_step"] for r in records),
    }


def records_for_run_dirs(run_dirs: list[Path], metrics: list[str]) -> tuple[GroupRecord, list[JobRecord]]:
    """Records for finished run directories: the run name and outcome from each ``run.json``."""
    jobs = []
    for i, d in enumerate(run_dirs):
        state = json.loads((d / "run.json").read_text()) if (d / "run.json").exists() else {}
        status = JobStatus.SUCCEEDED if state.get("finished", True) else JobStatus.FAILED
        jobs.append(
            job(
                state.get("run") or d.name,
                d,
                i,
                status=status,
                args=[f"trainer.seed={i}"],
                exit_code=0 if status == JobStatus.SUCCEEDED else 1,
                reason=None if status == JobStatus.SUCCEEDED else "RuntimeError: stopped",
            )
        )
    return group(metrics_to_track=metrics), jobs


def execute_group_notebook(
    run_dirs: list[Path], metrics: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from metta_exp.notebook.report import execute_notebook

    g, jobs = records_for_run_dirs(run_dirs, metrics)
    path = write_group_notebook(g, jobs, tmp_path / "nb" / "group.ipynb")
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(
        nbformat.v4.new_code_cell(
            "import json\nprint('SUMMARY=' + summary.reset_index().to_json(orient='records'))"
        )
    )
    elsewhere = tmp_path / "some other dir"
    elsewhere.mkdir()
    for key in ("IPYTHONDIR", "MPLCONFIGDIR", "JUPYTER_RUNTIME_DIR"):
        monkeypatch.setenv(key, str(tmp_path / key.lower()))
    monkeypatch.setenv("MPLBACKEND", "Agg")  # what nbclient kernels inherit; the setup cell must override it
    execute_notebook(nb, elsewhere)  # the reports' own kernel (on sockets of its own)

    executed = {c.id.split("-")[0]: c for c in nb.cells if "-" in c.get("id", "")}
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert not [o for o in outputs if o.output_type == "stream" and "Traceback" in o.text]
    fetch_stderr = "".join(o.text for o in executed["fetch"].outputs if o.get("name") == "stderr")
    reported = re.findall(r"fetch_metrics: run '(.*)' not fetched", fetch_stderr)
    assert reported == [
        j.run for j, d in zip(jobs, run_dirs, strict=True) if not (d / "metrics.jsonl").exists()
    ]
    images = [o for o in executed["plots"].outputs if "image/png" in o.get("data", {})]
    assert len(images) == 1
    assert "text/html" in executed["summary"].outputs[0]["data"]

    printed = "".join(o.text for o in nb.cells[-1].outputs if o.output_type == "stream")
    rows = {r["run"]: r for r in json.loads(printed.split("SUMMARY=", 1)[1])}
    assert list(rows) == [j.run for j in jobs]
    for j, d in zip(jobs, run_dirs, strict=True):
        row = rows[j.run]
        for key, value in expected_summary(d).items():
            assert row[key] == (pytest.approx(value, rel=1e-12) if value is not None else None), (j.run, key)
        assert row["status"] == str(j.status)
        assert row["failed"] == (j.status == JobStatus.FAILED)


@pytest.mark.slow
def test_executed_notebook_has_plots_and_exact_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "state with 'quotes' and $HOME {{x}}"
    run_dirs = [root / "lr_0.003", root / "lr_0.01", root / 'odd "name" $x$ {y}', root / "lr_0.1"]
    write_metrics(run_dirs[0], 300, seed=0)
    write_metrics(run_dirs[1], 300, seed=1, attempts=2)  # retried: only the second attempt counts
    write_metrics(run_dirs[2], 300, seed=2)
    write_metrics(run_dirs[3], 300, seed=3, stop_at=120)  # failed part-way
    crashed = root / "crashed"  # failed before logging anything
    crashed.mkdir()
    (crashed / "run.json").write_text(
        json.dumps({"run": "crashed", "finished": False, "wandb_mode": "disabled"})
    )
    run_dirs.append(crashed)
    execute_group_notebook(
        run_dirs, ["overview/sps", "overview/reward", "trainer/loss"], tmp_path, monkeypatch
    )


BADGE = (
    "display:inline-block;padding:0 0.6em;border-radius:0.8em;font-size:0.85em;font-weight:600;"
    "line-height:1.6;white-space:nowrap"
)
SUCCEEDED_BADGE = f'<span style="{BADGE};background-color:#d1e7dd;color:#0f5132">succeeded</span>'
FAILED_BADGE = f'<span style="{BADGE};background-color:#f8d7da;color:#842029">failed</span>'


def test_exact_cells_for_a_small_group() -> None:
    runs = [
        RunInfo(
            run="lr_0.01",
            position=0,
            status="succeeded",
            args=("trainer.learning_rate=0.01",),
            exit_code=0,
            reason=None,
            run_dir="/state/runs/g/lr_0.01",
            wandb_url="https://wandb.ai/team/metta/runs/1a2b",
            wandb_mode="online",
            wandb_dir=None,
            wandb_path="team/metta/1a2b",
        ),
        RunInfo(
            run="lr_0.1",
            position=1,
            status="failed",
            args=("trainer.learning_rate=0.1", "trainer.note=a b"),
            exit_code=1,
            reason="RuntimeError: diverged",
            run_dir="/state/runs/g/lr_0.1",
            wandb_url=None,
            wandb_mode="offline",
            wandb_dir="/state/runs/g/lr_0.1/wandb/offline-run-x",
            wandb_path=None,
        ),
    ]
    by_kind = cells(render_notebook(group(), list(reversed(runs)), package_root="/src"))
    assert by_kind["title"].source == "\n".join(
        [
            r"# cartpole: group demo\.20251127",
            "",
            r"2 runs on the local backend\, created 2025\-11\-27T13\:26\:40\+00\:00\: "
            r"1 succeeded\, 1 failed\.",
            "",
            r"Command: python \-m metta\_exp\.examples\.cartpole",
            "",
            "| # | run | status | arguments |",
            "|--:|:----|:-------|:----------|",
            f"| 1 | lr\\_0\\.01 | {SUCCEEDED_BADGE} | trainer\\.learning\\_rate\\=0\\.01 |",
            f"| 2 | lr\\_0\\.1 | {FAILED_BADGE} exit 1\\; RuntimeError\\: diverged | "
            r"trainer\.learning\_rate\=0\.1 \'trainer\.note\=a b\' |",
        ]
    )
    assert by_kind["wandb"].source == "\n".join(
        [
            "## W&amp;B runs",
            "",
            r"- lr\_0\.01: [open in W&amp;B](https://wandb.ai/team/metta/runs/1a2b)",
            r"- lr\_0\.1: logged to W&amp;B offline; upload it with "
            r"`wandb sync /state/runs/g/lr_0.1/wandb/offline-run-x`",
        ]
    )
    assert by_kind["fetch"].source == "\n".join(
        [
            "# Each run's local metrics file is read when it exists (exact values); "
            "otherwise its W&B run, if any.",
            "RUNS = [",
            "    {'run': 'lr_0.01', 'run_dir': '/state/runs/g/lr_0.01', 'wandb_path': 'team/metta/1a2b'},",
            "    {'run': 'lr_0.1', 'run_dir': '/state/runs/g/lr_0.1', 'wandb_path': None},",
            "]",
            "STATUSES = {'lr_0.01': 'succeeded', 'lr_0.1': 'failed'}",
            "METRICS = ['overview/sps', 'overview/reward']",
            "",
            "df = fetch_metrics(RUNS, METRICS, samples=1000)",
            "fetched_text(df, samples=1000)  # what was fetched, in one sentence",
        ]
    )
    assert "    sys.path.append('/src')" in by_kind["setup"].source.splitlines()
    assert by_kind["setup"].source.splitlines()[2] == "%matplotlib inline"
    assert "PLOT_METRICS = ['overview/reward', 'overview/sps']" in by_kind["plots"].source
    assert by_kind["summary"].source.splitlines()[1:] == [
        "summary = summary_table(df, statuses=STATUSES, reward='overview/reward', sps='overview/sps')",
        "style_summary(summary)",
    ]


def test_a_pruned_runs_status_says_pruned_once_with_its_reason() -> None:
    pruned = RunInfo(
        run="t001",
        position=0,
        status="pruned",
        args=(),
        exit_code=None,
        reason="pruned at step 2000: value 0.12 below the median (0.5) of 3 trials",
        run_dir="/state/runs/g/t001",
        wandb_url=None,
        wandb_mode="disabled",
        wandb_dir=None,
        wandb_path=None,
    )
    title = cells(render_notebook(group(), [pruned], package_root="/src"))["title"].source
    badge = f'<span style="{BADGE};background-color:#e2d9f3;color:#432874">pruned</span>'
    assert title.splitlines()[-1] == (
        f"| 1 | t001 | {badge} at step 2000\\: value 0\\.12 below the median \\(0\\.5\\) of 3 trials | – |"
    )


def test_no_dead_link_for_runs_that_never_reached_wandb(tmp_path: Path) -> None:
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(json.dumps({"wandb_url": None, "wandb_mode": "disabled"}))
    info = run_info(job("r", run_dir, 0, wandb_url="https://wandb.ai/e/p/runs/predicted"))
    assert (info.wandb_mode, info.wandb_path) == ("disabled", None)
    text = cells(render_notebook(group(), [info]))["wandb"].source
    assert "predicted" not in text and "no W&amp;B run; local metrics in" in text


def test_a_sweep_group_labels_its_runs_by_their_swept_values(tmp_path: Path) -> None:
    from metta_exp.notebook.cells import run_info, run_labels

    sweep = {
        "keys": ["trainer.learning_rate", "trainer.entropy_coef"],
        "labels": {"trainer.learning_rate": "lr", "trainer.entropy_coef": "ent"},
        "points": {
            "lr0.001-ent0.01": {"trainer.learning_rate": 0.001, "trainer.entropy_coef": 0.01},
            "lr0.003-ent0.01": {"trainer.learning_rate": 0.003, "trainer.entropy_coef": 0.01},
        },
        "base_runs": {"lr0.001-ent0.01": "main", "lr0.003-ent0.01": "main"},
    }
    runs = list(sweep["points"])
    record = SweepRecord.from_dict(sweep)
    assert run_labels(record, runs) == {
        "lr0.001-ent0.01": "lr=0.001, ent=0.01",
        "lr0.003-ent0.01": "lr=0.003, ent=0.01",
    }
    several = record._replace(base_runs={"lr0.001-ent0.01": "a", "lr0.003-ent0.01": "b"})
    assert run_labels(several, runs)["lr0.003-ent0.01"] == "b: lr=0.003, ent=0.01"
    assert run_labels(None, runs) == {r: r for r in runs}

    g = group(sweep=sweep)
    text = render_notebook(g, [run_info(job(r, tmp_path / r, i)) for i, r in enumerate(runs)])
    nb = nbformat.reads(text, as_version=4)
    plots = next(c.source for c in nb.cells if c.id.startswith("plots"))
    namespace: dict[str, Any] = {}
    exec(next(line for line in plots.splitlines() if line.startswith("LABELS = ")), namespace)
    assert namespace["LABELS"] == run_labels(record, runs)
    assert "| swept values |" in nb.cells[0].source
    assert "| lr0\\.001\\-ent0\\.01 | lr\\=0\\.001\\, ent\\=0\\.01 |" in nb.cells[0].source


def test_the_fetch_is_told_in_one_sentence_naming_runs_without_points() -> None:
    import pandas as pd

    from metta_exp.metrics import fetched_text

    df = pd.DataFrame(
        {"run": ["a", "a", "b"], "step": [1, 2, 1], "metric": ["r", "s", "r"], "value": [1.0, 2.0, 3.0]}
    )
    df["run"] = pd.Categorical(df["run"], categories=["a", "b", "broken"])
    df["metric"] = pd.Categorical(df["metric"], categories=["s", "r"])
    text = fetched_text(df, samples=1000)
    assert text == (
        "Fetched 3 points of s and r for 3 runs (at most 1000 a run and metric, spread evenly over its steps); "
        "none for broken."
    )
    assert repr(text) == str(text) and text._repr_html_() == f"<p>{text}</p>"  # shown as text, not a string
    assert fetched_text(df.iloc[0:0]).startswith(
        "Fetched 0 points of s and r for 3 runs; none for a, b, broken"
    )


def test_gpu_hours_are_summarised_only_for_runs_that_held_gpus(tmp_path: Path) -> None:
    infos = [run_info(job(r, tmp_path / r, i)) for i, r in enumerate(["a", "b"])]

    def summary(hours: dict[str, float]) -> str:
        return cells(render_notebook(group(), infos, gpu_hours=hours))["summary"].source

    assert "GPU_HOURS = {'a': 0.5, 'b': 0.0}" in summary({"a": 0.5})
    cpu_only = summary({"a": 0.0, "b": 0.0})  # a column of zeros says nothing: the demo runs on the CPU
    assert "GPU_HOURS" not in cpu_only and "gpu_hours=" not in cpu_only
