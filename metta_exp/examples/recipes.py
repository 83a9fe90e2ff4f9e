"""Recipes shipped with metta-exp: ``demo`` is the Python twin of ``conf/experiment/demo.yaml``.

    metta-exp run metta_exp.examples.recipes.demo                   the same three jobs as +experiment=demo
    metta-exp run metta_exp.examples.recipes.demo 'learning_rates={slow:0.005,fast:0.2}' total_timesteps=20000
    metta-exp run metta_exp.examples.recipes.demo 'runs=[lr_low,lr_high]' dry_run=true

Copy it to ``experiments/recipes/cartpole.py`` to start a recipe of your own
(``metta-exp run cartpole.demo``).
"""

from __future__ import annotations

from metta_exp import Experiment

LEARNING_RATES = {"lr_low": 0.01, "lr_mid": 0.03, "lr_high": 0.1}


def demo(
    runs: list[str] | None = None,
    learning_rates: dict[str, float] | None = None,
    total_timesteps: int = 150000,
    group: str | None = None,
) -> Experiment:
    """CartPole on this machine's CPU, one run per learning rate (about 15 s each).

    ``learning_rates`` maps run names to learning rates (default: lr_low 0.01, lr_mid 0.03, lr_high 0.1);
    ``runs`` picks some of them.
    """
    rates = learning_rates or LEARNING_RATES
    return Experiment(
        module="metta_exp.examples.cartpole",
        runs=runs or list(rates),
        args=[f"trainer.total_timesteps={total_timesteps}"],
        args_per_run={run: [f"trainer.learning_rate={lr}"] for run, lr in rates.items()},
        group=group,
        gpus=0,
        remote=False,
    )
