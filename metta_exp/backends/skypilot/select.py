"""The one place production code picks the SkyPilot simulator.

When ``METTA_EXP_FAKE_SKY_DIR`` names a directory (the switch that puts a whole metta-exp run, runner and
``job`` commands included, on the simulator) ``default_sky_api`` imports ``skypilot_fake`` lazily and
returns it; otherwise it returns the SDK adapter. No other production module imports the simulator: an
import-linter contract in the test suite holds this module to it.
"""

from __future__ import annotations

import os

from metta_exp.backends.skypilot.api import FAKE_DIR_ENV, SdkSkyApi, SkyApi

__all__ = ["default_sky_api"]


def default_sky_api() -> SkyApi:
    """The fake when ``METTA_EXP_FAKE_SKY_DIR`` names a directory, SkyPilot's SDK otherwise."""
    fake_dir = os.environ.get(FAKE_DIR_ENV)
    if fake_dir:
        from metta_exp.backends.skypilot.sim.api import FakeSkyApi

        return FakeSkyApi(fake_dir)
    return SdkSkyApi()
