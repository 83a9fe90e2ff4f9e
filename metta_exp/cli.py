"""The ``metta-exp`` entry point: ``job ...`` and ``run ...`` go to their commands, everything else launches.

Kept tiny so that ``metta-exp job ...`` imports nothing heavy: Hydra, SkyPilot, W&B, pandas and
matplotlib are imported only by the code paths that use them.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from metta_exp.errors import MettaExpError


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args and args[0] == "job":
            from metta_exp.jobs_cli import main as jobs_main

            return jobs_main(args[1:])
        if args and args[0] == "run":
            from metta_exp.run_cli import main as run_main

            return run_main(args[1:])
        from metta_exp.app import main as app_main

        return app_main(args)
    except MettaExpError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
