"""The launcher Hydra instantiates: it keeps its inputs; ``_core`` (imported on launch) does the work."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class MettaExpLauncher(Launcher):
    """Submits every job of a Hydra sweep as a run of one metta-exp job group."""

    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.task_function = task_function
        self.hydra_context = hydra_context

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from hydra_plugins.metta_exp_launcher import _core

        assert self.config is not None and self.hydra_context is not None, "setup() first"
        return _core.launch(
            self.settings, self.config, self.hydra_context, self.task_function, job_overrides, initial_job_idx
        )
