"""The rules metta-exp applies in more than one place, each one pure function, pinned by exact output."""

from __future__ import annotations

import itertools

from metta_exp.launch import suffixed
from metta_exp.values import hydra_quote
from metta_exp.words import plural


def test_plural_counts_then_the_noun() -> None:
    assert [plural(n, "job") for n in (0, 1, 2)] == ["0 jobs", "1 job", "2 jobs"]
    assert plural(1, "running job") == "1 running job"
    assert plural(12, "point") == "12 points"


def test_hydra_quote_leaves_plain_paths_bare_and_quotes_the_rest() -> None:
    assert hydra_quote("/tmp/plain/0") == "/tmp/plain/0"
    assert hydra_quote("file:///home/me/conf-2.d") == "file:///home/me/conf-2.d"
    assert hydra_quote("/tmp/my dir/x'y") == "'/tmp/my dir/x\\'y'"
    assert hydra_quote("/a\\b/c\\") == "'/a\\b/c\\\\'"
    assert hydra_quote("/x,y=z/${q}") == "'/x,y=z/${q}'"


def test_taken_group_names_get_the_next_suffix() -> None:
    assert list(itertools.islice(suffixed("train-20261202-115300"), 4)) == [
        "train-20261202-115300",
        "train-20261202-115300-2",
        "train-20261202-115300-3",
        "train-20261202-115300-4",
    ]
