"""The notebook a real demo group gets when it ends, executed top to bottom with nbclient."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest
from conftest import run_cli
from test_notebook import expected_summary

from metta_exp.store import JobStore

pytestmark = pytest.mark.slow


def test_real_demo_group_notebook_executes_with_plots_and_exact_summary(
    state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from metta_exp.notebook.report import execute_notebook

    result = run_cli("+experiment=demo", "group=nb-demo", "trainer.total_timesteps=4000")
    assert result.returncode == 0, result.stdout + result.stderr
    path = Path("experiments/notebooks/nb-demo.ipynb")
    assert f"Notebook: {path.absolute()}\n" in result.stdout
    with JobStore.open(state_dir) as store:
        jobs = store.jobs("nb-demo")

    nb = nbformat.read(path, as_version=4)
    nb.cells.append(
        nbformat.v4.new_code_cell(
            "print('SUMMARY=' + summary.reset_index().to_json(orient='records', double_precision=15))"
        )
    )
    for key in ("IPYTHONDIR", "MPLCONFIGDIR", "JUPYTER_RUNTIME_DIR"):
        monkeypatch.setenv(key, str(tmp_path / key.lower()))
    monkeypatch.setenv("MPLBACKEND", "Agg")  # kernels inherit it: the notebook must pick inline itself
    elsewhere = tmp_path / "another dir"
    elsewhere.mkdir()
    execute_notebook(nb, elsewhere)  # the reports' own kernel (on sockets of its own)

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert [o for o in outputs if "image/png" in o.get("data", {})], "the plots must render as images"
    printed = "".join(o.text for o in nb.cells[-1].outputs if o.output_type == "stream")
    rows = {r["run"]: r for r in json.loads(printed.split("SUMMARY=", 1)[1])}
    assert list(rows) == ["lr_low", "lr_mid", "lr_high"]
    for job in jobs:
        for key, value in expected_summary(Path(job.run_dir)).items():
            assert value is not None
            assert rows[job.run][key] == pytest.approx(value, rel=1e-12), (job.run, key)
        assert rows[job.run]["status"] == "succeeded"
    title = nb.cells[0].source
    assert re.search(r"nb\\?-demo", title)
