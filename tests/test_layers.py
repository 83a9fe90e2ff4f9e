"""The layers hold: import-linter's contracts (pyproject.toml) and no import cycle in metta_exp."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from import_graph import find_cycle, import_graph

REPO = Path(__file__).resolve().parent.parent


def test_import_linter_contracts_are_kept() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run(
        [str(lint), "--no-cache", "--config", str(REPO / "pyproject.toml")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout
    for contract in (
        "no-cycles",
        "layers",
        "backends-below",
        "nothing-imports-the-cli",
        "fake-behind-one-door",
    ):
        assert contract in (REPO / "pyproject.toml").read_text()


def test_no_import_cycle_in_metta_exp_lazy_and_type_time_imports_included() -> None:
    graph = import_graph(REPO / "metta_exp")
    assert "metta_exp.supervise" in graph and "metta_exp.runner" in graph
    assert find_cycle(graph) is None


def _package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root / "pkg"


def test_the_cycle_finder_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    pkg = _package(
        tmp_path,
        {
            "__init__.py": "",
            "low.py": "def f():\n    from pkg.sub import high\n",  # lazy, inside a function
            "sub/__init__.py": "",
            "sub/high.py": "from .. import low\n",  # relative
            "alone.py": "import pkg.low\n",
        },
    )
    graph = import_graph(pkg)
    assert graph["pkg.low"] == {"pkg.sub", "pkg.sub.high"}  # `from pkg.sub import` runs pkg/sub/__init__
    assert graph["pkg.sub.high"] == {"pkg", "pkg.low"}
    assert find_cycle(graph) == ["pkg.low", "pkg.sub.high", "pkg.low"]


def test_the_cycle_finder_counts_type_checking_imports(tmp_path: Path) -> None:
    pkg = _package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "import pkg.b\n",
            "b.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from pkg.a import X\nelse:\n    import pkg.c\n"
            ),
            "c.py": "",
        },
    )
    graph = import_graph(pkg)
    assert graph["pkg.b"] == {"pkg.a", "pkg.c"}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.a"]
