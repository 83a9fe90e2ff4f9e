"""Start-up of ``metta-exp run RECIPE`` beside ``metta-exp +experiment=NAME``, for the same experiment.

    .venv/bin/python bench/bench_recipe_start.py [--repeat 9] [--quick]

Both commands launch the demo as a dry run (resolve and print its three jobs, write nothing) from a
temporary directory: ``metta-exp +experiment=demo`` composes ``conf/experiment/demo.yaml`` with Hydra,
``metta-exp run metta_exp.examples.recipes.demo`` calls its Python twin. Figures: the median wall time
of ``--repeat`` runs of each (interleaved, after one unmeasured warm-up of each), command start to exit.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXE = str(Path(sys.executable).parent / "metta-exp")
COMMANDS = {
    "metta-exp +experiment=demo dry_run=true": ["+experiment=demo", "dry_run=true", "group=bench"],
    "metta-exp run metta_exp.examples.recipes.demo dry_run=true": [
        "run",
        "metta_exp.examples.recipes.demo",
        "dry_run=true",
        "group=bench",
    ],
}


def timed(args: list[str], cwd: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([EXE, *args], cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: tiny sizes, once (the test suite runs it)"
    )
    args = parser.parse_args()
    repeat = 1 if args.quick else args.repeat
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "METTA_EXP_STATE_DIR": str(Path(tmp) / "state")}
        times: dict[str, list[float]] = {name: [] for name in COMMANDS}
        for argv in COMMANDS.values() if not args.quick else ():
            timed(argv, tmp, env)  # warm-up: bytecode caches, as on a user's machine
        for _ in range(repeat):
            for name, argv in COMMANDS.items():
                times[name].append(timed(argv, tmp, env))
        assert not any(Path(tmp).iterdir()), "a dry run must write nothing"
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, median in medians.items():
        print(f"{median * 1000:7.0f} ms  median of {repeat}  {name}")
    yaml, recipe = medians.values()
    print(
        f"metta-exp run starts in {recipe / yaml:.2f}x the time of +experiment= ({(yaml - recipe) * 1000:.0f} ms less)"
    )


if __name__ == "__main__":
    main()
