"""The ``metta-exp`` entry point: ``job ...`` and ``run ...`` go to their commands, everything else launches.

Kept tiny so that ``metta-exp job ...`` imports nothing heavy: Hydra, SkyPilot, W&B, pandas and
matplotlib are imported only by the code paths that use them.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from metta_exp.errors import MettaExpError

_hung_up: list[int] = []


def _hang_up(signum: int, frame: FrameType | None) -> None:
    """A closed terminal (SIGHUP) ends watching as Ctrl+C does: the group goes on, exit code 130."""
    _hung_up.append(signum)
    raise KeyboardInterrupt


def _quiet_exit() -> None:
    """After a hang-up the terminal may be gone: output that cannot be flushed must not change the
    exit code (Python exits 120 when it cannot flush stdout)."""
    for name in ("stdout", "stderr"):
        try:
            getattr(sys, name).flush()
        except (OSError, ValueError):
            setattr(sys, name, open(os.devnull, "w"))  # noqa: SIM115 - lives until exit


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if argv is None:  # the command itself, not a call from Python code
        signal.signal(signal.SIGHUP, _hang_up)
    try:
        if args and args[0] == "job":
            from metta_exp.cli.job_parser import parse

            parsed = parse(args[1:])  # --help and bad usage answered before the API is imported
            from metta_exp.cli.jobs import run

            return run(parsed)
        if args and args[0] == "run":
            from metta_exp.cli.run import main as run_main

            return run_main(args[1:])
        from metta_exp.cli.launch import main as app_main

        return app_main(args)
    except MettaExpError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        _quiet_exit()
        return 130
    except BrokenPipeError:
        return 0
    except OSError:
        if not _hung_up:
            raise
        _quiet_exit()  # the live view could not restore a terminal that is gone
        return 130
