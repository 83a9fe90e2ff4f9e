"""A synthetic training job for benchmarking searches: a learning curve that costs only sleep.

    python -m metta_exp.examples.synthetic trainer.learning_rate=0.003 trainer.entropy_coef=0.01 \\
        trainer.batch_size=512 seed=1

Overrides (``key=value``; a key given again wins, as in Hydra; anything else is an error, exit code 2):

    trainer.learning_rate   float > 0, default 0.001
    trainer.entropy_coef    float >= 0, default 0.01
    trainer.batch_size      int > 0, default 512
    trainer.total_timesteps int > 0, default 100000   steps the curve spans
    trainer.log_points      int > 0, default 20       points logged (evenly spaced over the steps)
    trainer.seconds         float >= 0, default 2.0   wall time of the whole run (slept, one slice per point)
    seed                    int >= 0, default: a hash of the three parameters above

The final reward is ``100 * exp(-u / 2)`` with ``u`` a quadratic penalty of the distance from an optimum
inside the issue's search space: learning rate 3e-3 (in decades, width 0.5), entropy coefficient 0.01
(width 0.015) and batch size 512 (in octaves, width 2.5: a mild effect). The curve rises as
``final * (1 - exp(-k * t))`` over the fraction ``t`` of training, with ``k = 1.5 + 4 * final / 100``: a
good trial also learns faster, so a bad one is visibly behind early (what a median pruner needs). Each
point gets seeded Gaussian noise (per-run offset sd 1.5, per-point sd 1.0): deterministic for the same
parameters and seed.

Every point is reported through :mod:`metta_exp.tracking` (``overview/reward``, ``overview/sps``), with
a progress line for each point (unless ``$METTA_EXP_PROGRESS_EVERY`` says otherwise), so
``metrics.jsonl`` is written in ``$METTA_EXP_RUN_DIR`` and a runner following the log sees the curve as
it rises.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from metta_exp.examples.overrides import (
    example_main,
    int_at_least,
    non_negative_float,
    parse_key_values,
    positive_float,
)

PROG = "metta_exp.examples.synthetic"
OPTIMUM_LR = 3e-3
OPTIMUM_ENTROPY = 0.01
OPTIMUM_BATCH = 512
MAX_REWARD = 100.0
RUN_NOISE = 1.5  # sd of the whole run's offset
POINT_NOISE = 1.0  # sd of each logged point


@dataclass(frozen=True)
class Settings:
    learning_rate: float = 1e-3
    entropy_coef: float = 0.01
    batch_size: int = 512
    total_timesteps: int = 100_000
    log_points: int = 20
    seconds: float = 2.0
    seed: int | None = None


KEYS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "trainer.learning_rate": ("learning_rate", positive_float),
    "trainer.entropy_coef": ("entropy_coef", non_negative_float),
    "trainer.batch_size": ("batch_size", int_at_least(1)),
    "trainer.total_timesteps": ("total_timesteps", int_at_least(1)),
    "trainer.log_points": ("log_points", int_at_least(1)),
    "trainer.seconds": ("seconds", non_negative_float),
    "seed": ("seed", int_at_least(0)),
}
assert {name for name, _ in KEYS.values()} == {f.name for f in fields(Settings)}


def parse_overrides(args: Sequence[str]) -> Settings:
    """Settings from ``key=value`` args (a leading ``+`` is allowed); UsageError naming the first bad one."""
    return replace(Settings(), **parse_key_values(args, KEYS, "trainer.learning_rate=0.003"))


def final_reward(settings: Settings) -> float:
    """The noise-free reward the run converges to: highest (100) at the optimum, falling smoothly."""
    u = (
        (math.log10(settings.learning_rate / OPTIMUM_LR) / 0.5) ** 2
        + ((settings.entropy_coef - OPTIMUM_ENTROPY) / 0.015) ** 2
        + (math.log2(settings.batch_size / OPTIMUM_BATCH) / 2.5) ** 2
    )
    return MAX_REWARD * math.exp(-u / 2)


def rate(settings: Settings) -> float:
    """How fast the curve rises (per unit fraction of training): faster for better parameters."""
    return 1.5 + 4.0 * final_reward(settings) / MAX_REWARD


def seed_of(settings: Settings) -> int:
    """The given seed, or a stable hash of the learning rate, entropy coefficient and batch size."""
    if settings.seed is not None:
        return settings.seed
    text = f"{settings.learning_rate!r} {settings.entropy_coef!r} {settings.batch_size!r}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def curve(settings: Settings) -> list[tuple[int, float]]:
    """The ``(step, reward)`` points the run logs: pure, deterministic given the settings and seed."""
    rng = random.Random(seed_of(settings))
    final, k = final_reward(settings), rate(settings)
    offset = rng.gauss(0.0, RUN_NOISE)
    points = []
    for i in range(1, settings.log_points + 1):
        step = round(settings.total_timesteps * i / settings.log_points)
        t = step / settings.total_timesteps
        points.append((step, final * (1 - math.exp(-k * t)) + t * offset + rng.gauss(0.0, POINT_NOISE)))
    return points


def train(settings: Settings, log: Callable[[int, float, float], None] | None = None) -> float:
    """Walk the curve in ``settings.seconds`` of sleep, calling ``log(step, reward, sps)`` at each point;
    the last reward."""
    points = curve(settings)
    pause = settings.seconds / len(points)
    previous, reward = 0, 0.0
    for step, reward in points:
        time.sleep(pause)
        if log is not None:
            log(step, reward, (step - previous) / pause if pause > 0 else 0.0)
        previous = step
    return reward


def main(argv: Sequence[str] | None = None) -> int:
    return example_main(argv, __doc__, PROG, run)


def run(args: list[str]) -> None:
    """Train with ``args`` under ``metta_exp.tracking``."""
    settings = parse_overrides(args)
    from metta_exp import tracking

    config = {f.name: getattr(settings, f.name) for f in fields(Settings)}
    with tracking.init(total_steps=settings.total_timesteps, config=config) as tracked:
        if not os.environ.get("METTA_EXP_PROGRESS_EVERY"):
            tracked.progress_every = 0.0  # a line per point: a short run's curve must reach the runner

        def log(step: int, reward: float, sps: float) -> None:
            tracked.log({"overview/reward": reward, "overview/sps": sps}, step=step)

        train(settings, log)


if __name__ == "__main__":
    sys.exit(main())
