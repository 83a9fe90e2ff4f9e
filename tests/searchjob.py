"""A training job for search tests: its objective rises to the value of ``x`` over ``n`` checkpoints.

Arguments are ``key=value``: ``x`` (the final objective, default 0.5), ``n`` (progress lines, default 10),
``sleep`` (seconds between lines, default 0.05). What it does may also depend on its trial, named by
its run (``t004-...``): ``slow=t003`` sleeps ``slow_sleep`` between lines instead, ``bad=t004`` stays
at 1% of its value, ``fail=t001`` exits 3 halfway, ``quiet=t002`` prints no objective.
"""

import os
import sys
import time

opts = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
trial = os.environ.get("METTA_EXP_RUN", "").split("-", 1)[0]


def chosen(key: str) -> bool:
    return trial in opts.get(key, "").split("+")


x = float(opts.get("x", "0.5"))
n = int(opts.get("n", "10"))
pause = float(opts.get("slow_sleep" if chosen("slow") else "sleep", "0.05"))
scale = 0.01 if chosen("bad") else 1.0
for k in range(1, n + 1):
    time.sleep(pause)
    metric = "" if chosen("quiet") else f" overview/reward={x * scale * k / n:.6g}"
    print(f"[metta-exp] progress step={k * 100} total={n * 100} sps=100{metric}", flush=True)
    if chosen("fail") and k >= n // 2:
        sys.exit(3)
