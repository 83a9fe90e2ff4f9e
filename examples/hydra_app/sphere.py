"""Hydra's Optuna sweeper example (a sphere function), run by metta-exp's plugins.

    python examples/hydra_app/sphere.py -m     # the study in conf/config.yaml: 20 trials, one group
    python examples/hydra_app/sphere.py --config-name grid -m hydra/launcher=metta_exp x=1,2 y=-5,0,5
    python examples/hydra_app/sphere.py --config-name grid -m hydra/launcher=metta_exp \
        hydra/sweeper=metta_exp_grid 'x=range(-5,6)' y=-5,0,5

The first runs the study its config describes with ``hydra/sweeper: metta_exp`` (the only change from
Hydra's own example, which uses ``optuna``): one metta-exp search group, each trial a job of it, the value
a trial returns its objective; the best parameters are logged and written to
``multirun/DATE/TIME/optimization_results.yaml``. The others are grid sweeps of ``conf/grid.yaml`` (the
same values without the study's sweeper settings), each point a run of one metta-exp group, each job's
return value back in Hydra's ``JobReturn``: through Hydra's basic sweeper, which composes every point's
config before launching, and through ``metta_exp_grid``, which leaves that to each job (fast for large
grids).
"""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base=None, config_path="conf", config_name="config")
def sphere(cfg: DictConfig) -> float:
    x: float = cfg.x
    y: float = cfg.y
    if cfg.get("error", False):
        raise RuntimeError("cfg.error is True")
    return x**2 + y**2


if __name__ == "__main__":
    sphere()
