"""Fault injection, YAML: every malformed experiment file is one ``Error:`` line naming the file and
the line, exit code 2, nothing written; an alias bomb is refused before Hydra expands it."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_cli

BOMB = """module: x
runs: [a]
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
"""

CASES = {
    # name: (file bytes, line the message names, words of the fix)
    "tab": (b"module: x\nruns: [a]\nargs:\n\t- y\n", 4, "spaces, not tabs"),
    "duplicate": (b"module: x\nruns: [a]\nmodule: y\n", 3, "duplicate key module"),
    "python_tag": (b'module: !!python/object/apply:os.system ["echo hi"]\nruns: [a]\n', 1, "remove the tag"),
    "nul": (b"module: x\nruns: [a]\nargs: [b\x00]\n", 3, "remove the character"),
    "deep": (b"module: x\nruns: [a]\nargs: " + b"[" * 3000 + b"]" * 3000 + b"\n", 3, "flatten"),
    "unclosed": (b"module: x\nruns: [a\n", 3, "fix the YAML syntax"),
    "undefined_alias": (b"module: x\nruns: *nope\n", 2, "define the anchor"),
    "not_utf8": (b"module: x\nruns: [\xff]\n", 2, "save the file as UTF-8"),
    "bomb": (BOMB.encode(), 8, "billion laughs"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_yaml_is_one_error_line(case: str, state_dir: Path) -> None:
    content, line, fix = CASES[case]
    conf = state_dir.parent / "conf"
    (conf / "experiment").mkdir(parents=True)
    (conf / "experiment" / f"{case}.yaml").write_bytes(content)
    # a bomb must be refused at once: with aliases expanded by Hydra it takes minutes of CPU
    result = run_cli("--config-dir", str(conf), f"+experiment={case}", timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"Error: conf/experiment/{case}.yaml, line {line}: "), lines[0]
    assert fix in lines[0]
    assert not state_dir.exists()  # nothing written
    assert sorted(p.name for p in state_dir.parent.iterdir()) == ["conf"]


@pytest.mark.parametrize("included", ["bomb", "tab"])
def test_a_broken_file_in_the_defaults_list_is_one_error_line(included: str, state_dir: Path) -> None:
    conf = state_dir.parent / "conf"
    (conf / "experiment").mkdir(parents=True)
    (conf / "experiment" / f"{included}.yaml").write_bytes(CASES[included][0])
    (conf / "experiment" / "outer.yaml").write_text(
        f"# @package _global_\ndefaults:\n  - /experiment/{included}\nmodule: x\nruns: [a]\n"
    )
    result = run_cli("--config-dir", str(conf), "+experiment=outer", timeout=60)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"Error: {conf / 'experiment' / included}.yaml, line {CASES[included][1]}: ")
    assert CASES[included][2] in lines[0]
    assert not state_dir.exists()
