"""How much the runner reads to find the W&B URL each job prints in its log.

The runner looks for the ``[metta-exp] wandb url=...`` line of every active job whose URL it has not
recorded yet, at most every 5 s per job, and reads only what a log wrote since its last look (the head
once, then the tail). This prints the time and bytes of a first look at N large logs and of a later look
after each grew a little, beside reading every log whole.

    uv run python bench/bench_wandb_urls.py [--jobs 200] [--log-mb 4] [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from metta_exp.logs.lines import WandbRef, format_wandb_line, last_wandb
from metta_exp.logs.tail import scan_wandb_ref


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--log-mb", type=float, default=4.0)
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: tiny sizes, once (the test suite runs it)"
    )
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.log_mb = 3, 0.2
    chatter = ("[metta-exp] progress step=4096 total=20000 sps=3100.5 overview/reward=21.5\n" * 1000).encode()
    with tempfile.TemporaryDirectory() as tmp:
        logs = []
        for i in range(args.jobs):
            path = Path(tmp) / f"attempt-{i}.log"
            ref = WandbRef(f"https://wandb.example.com/e/p/runs/r{i}", "e", "p", f"r{i}")
            with path.open("wb") as f:
                f.write(b"setup output\n" + format_wandb_line(ref).encode() + b"\n")
                while f.tell() < args.log_mb * 1e6:
                    f.write(chatter)
            logs.append(path)
        total = sum(p.stat().st_size for p in logs)

        start = time.perf_counter()
        offsets = {}
        for path in logs:
            found, offsets[path] = scan_wandb_ref(path)
            assert found is not None
        first = time.perf_counter() - start
        for path in logs:
            with path.open("ab") as f:
                f.write(chatter[:10_000])
        start = time.perf_counter()
        for path in logs:
            scan_wandb_ref(path, offsets[path])
        later = time.perf_counter() - start
        start = time.perf_counter()
        for path in logs:
            assert last_wandb(path.read_text()) is not None
        whole = time.perf_counter() - start
        print(f"{args.jobs} logs of {total / args.jobs / 1e6:.1f} MB ({total / 1e6:.0f} MB in all)")
        print(f"first look (head + tail, <= 512 KB a log): {first * 1000:.0f} ms")
        print(f"later look after each log grew 10 KB:      {later * 1000:.0f} ms")
        print(f"reading every log whole, for comparison:   {whole * 1000:.0f} ms")


if __name__ == "__main__":
    main()
