"""The sweeper Hydra instantiates: it keeps its settings; ``_core`` (imported on sweep) does the work."""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class MettaExpSweeper(Sweeper):
    """Runs a Hydra app's study as one metta-exp search group (``hydra/sweeper=metta_exp``)."""

    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.task_function = task_function
        self.hydra_context = hydra_context

    def sweep(self, arguments: list[str]) -> None:
        from hydra_plugins.metta_exp_sweeper import _core

        assert self.config is not None and self.hydra_context is not None, "setup() first"
        _core.sweep(self.settings, self.config, self.hydra_context, self.task_function, arguments)
