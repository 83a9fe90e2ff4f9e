"""The one place production code picks the SkyPilot simulator, and where a group's jobs are.

When ``METTA_EXP_FAKE_SKY_DIR`` names a directory (the switch that puts a whole metta-exp run, runner and
``job`` commands included, on the simulator) ``default_sky_api`` imports the simulator lazily and returns
it; otherwise it returns the SDK adapter. No other production module imports the simulator: an
import-linter contract in the test suite holds this module to it.

A group remembers where its jobs are (``location_of``, recorded at launch): the simulator's directory, or
the SkyPilot API server (its endpoint; the local API server with the host name, since each machine's is
its own). Later commands drive the group there (``sky_api_at``): a group launched on the simulator stays
on it, whatever the shell that drives it later says; one launched on SkyPilot is driven only through the
same API server, else the command stops with the variable to set (a runner asking another API server
would see other jobs under the same ids, and a local one would be started for nothing).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from metta_exp.backends.skypilot.api import FAKE_DIR_ENV, SdkSkyApi, SkyApi
from metta_exp.backends.skypilot.setup import ENDPOINT_ENV, configured_endpoint
from metta_exp.errors import BackendUnavailable

__all__ = ["default_sky_api", "location_of", "sky_api_at"]

LOCAL_ENDPOINT = "http://127.0.0.1:46580"  # sky/server/common.py: the local API server's default


def default_sky_api() -> SkyApi:
    """The simulator when ``METTA_EXP_FAKE_SKY_DIR`` names a directory, SkyPilot's SDK otherwise."""
    fake_dir = os.environ.get(FAKE_DIR_ENV)
    if fake_dir:
        return _simulator(fake_dir)
    return SdkSkyApi()


def location_of(api: SkyApi) -> dict[str, str]:
    """Where ``api`` sends jobs: ``{"simulator": DIR}``, or ``{"api_server": ENDPOINT}`` (the local API
    server as ``local API server on HOST``)."""
    root = getattr(api, "root", None)
    if api.identity.startswith("fake:") and root is not None:
        return {"simulator": str(root)}
    return {"api_server": _endpoint_here()}


def sky_api_at(location: Mapping[str, str] | None) -> SkyApi:
    """The API for a group that recorded ``location`` (None: recorded before locations were, or a new
    group: this shell's)."""
    if not location:
        return default_sky_api()
    if location.get("simulator"):
        return _simulator(location["simulator"])
    recorded = location.get("api_server", "")
    if os.environ.get(FAKE_DIR_ENV):
        raise BackendUnavailable(
            f"this group's jobs run on SkyPilot (API server {recorded}), but {FAKE_DIR_ENV} puts this shell on "
            f"the simulator. Fix: unset {FAKE_DIR_ENV}"
        )
    here = _endpoint_here()
    if recorded and recorded != here:
        fix = (
            f"run this command on that machine (the local API server is each machine's own), or set "
            f"{ENDPOINT_ENV} to an API server that has the jobs"
            if recorded.startswith("local API server")
            else f"set {ENDPOINT_ENV}={recorded} (or `sky api login -e {recorded}`)"
        )
        raise BackendUnavailable(
            f"this group's jobs were launched through SkyPilot's {recorded}; this shell talks to {here}. Fix: {fix}"
        )
    return SdkSkyApi()


def _endpoint_here() -> str:
    endpoint = configured_endpoint()
    if endpoint and endpoint != LOCAL_ENDPOINT:
        return endpoint
    return f"local API server on {os.uname().nodename}"


def _simulator(directory: str) -> SkyApi:
    from metta_exp.backends.skypilot.sim.api import FakeSkyApi

    return FakeSkyApi(Path(directory).absolute())
