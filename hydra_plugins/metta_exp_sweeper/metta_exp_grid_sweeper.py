"""The sweeper Hydra instantiates for ``hydra/sweeper=metta_exp_grid``: Hydra's BasicSweeper, composing
only the points that can fail differently before it launches (``_grid``)."""

from __future__ import annotations

from collections.abc import Sequence

# the module, not the class: Hydra's plugin scan collects every Sweeper class a plugin module holds
from hydra._internal.core_plugins import basic_sweeper


class MettaExpGridSweeper(basic_sweeper.BasicSweeper):
    """A grid sweep as Hydra's BasicSweeper runs it (the same grammar, points, order, job numbers,
    ``max_batch_size`` batches, ``params`` and ``multirun.yaml``), without composing every point's config
    in the app's process before the launcher gets them: each job composes its own (as the jobs of
    ``hydra/launcher=metta_exp`` do), so a 100-point sweep is submitted in a second, not ten."""

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        from hydra_plugins.metta_exp_sweeper._grid import points_to_compose

        assert self.hydra_context is not None and self.config is not None, "setup() first"
        loader = self.hydra_context.config_loader
        for overrides in points_to_compose(batch, loader):
            loader.load_sweep_config(master_config=self.config, sweep_overrides=list(overrides))
