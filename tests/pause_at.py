"""Run ``metta-exp ARGS`` with a pause at one named point, so a test can send a real signal to a real
launch at exactly that point:

    python tests/pause_at.py metta_exp.supervise.drive.ensure_driver before DIR -- +experiment=demo ...

``POINT`` is a function or method by its dotted path; ``before`` pauses when it is called, ``after``
when its first call returns. At the pause it writes ``DIR/ready`` and waits (at most 60 s) for
``DIR/go``. Nothing of this is in metta-exp itself: the wrapper lives here, in the tests.
"""

from __future__ import annotations

import functools
import importlib
import sys
import time
from pathlib import Path
from typing import Any


def pause(folder: Path) -> None:
    (folder / "ready").write_text("")
    deadline = time.monotonic() + 60
    while not (folder / "go").exists() and time.monotonic() < deadline:
        time.sleep(0.01)


def owner_and_name(dotted: str) -> tuple[Any, str]:
    """The object that holds ``dotted``'s last part (a module or a class), and that part."""
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            owner: Any = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for part in parts[cut:-1]:
            owner = getattr(owner, part)
        return owner, parts[-1]
    raise SystemExit(f"no module in {dotted}")


def install(dotted: str, when: str, folder: Path) -> None:
    owner, name = owner_and_name(dotted)
    original = getattr(owner, name)
    done: list[bool] = []

    @functools.wraps(original)
    def paused(*args: Any, **kwargs: Any) -> Any:
        if when == "before" and not done:
            done.append(True)
            pause(folder)
        result = original(*args, **kwargs)
        if when == "after" and not done:
            done.append(True)
            pause(folder)
        return result

    raw = vars(owner).get(name) if isinstance(owner, type) else None
    setattr(owner, name, staticmethod(paused) if isinstance(raw, staticmethod) else paused)


if __name__ == "__main__":
    point, when, folder, dashes, *args = sys.argv[1:]
    assert when in ("before", "after") and dashes == "--", sys.argv
    install(point, when, Path(folder))
    from metta_exp.cli import main

    sys.argv = ["metta-exp", *args]
    sys.exit(main())
