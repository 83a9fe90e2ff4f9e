"""Is SkyPilot set up on this machine? Answered from files alone, before any SDK call.

Any SkyPilot SDK call first makes sure an API server answers (``sky/server/common.py``:
``check_server_healthy_or_start``). With no API server endpoint configured, the endpoint is the local
one (``get_server_url``: ``SKYPILOT_API_SERVER_ENDPOINT``, else ``api_server.endpoint`` of the config,
else ``http://127.0.0.1:46580``), and when nothing listens there SkyPilot *starts* a local API server
(about 45 s, 1.2 GB, left running, ``~/.sky`` written) only to say that no infra is enabled. So
metta-exp asks SkyPilot nothing when:

- no API server endpoint is configured: not in ``SKYPILOT_API_SERVER_ENDPOINT``, nor under
  ``api_server.endpoint`` in the config files ``sky/skypilot_config.py`` reads (``SKYPILOT_CONFIG``,
  ``SKYPILOT_GLOBAL_CONFIG`` or ``~/.sky/config.yaml``, ``SKYPILOT_PROJECT_CONFIG`` or ``./.sky.yaml``;
  ``sky api login`` writes the global one), and
- no infra was ever enabled here: the local API server keeps what ``sky check`` found in its state
  database, ``$SKY_RUNTIME_DIR/.sky/state.db`` (default ``~/.sky/state.db``), table ``config``, keys
  ``enabled_clouds_<workspace>_<capability>`` (``sky/global_user_state.py``:
  ``get_cached_enabled_clouds``, ``sky/utils/db/db_utils.py``: ``get_engine``). Read read-only.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path

__all__ = ["configured_endpoint", "setup_problem"]

ENDPOINT_ENV = "SKYPILOT_API_SERVER_ENDPOINT"


def setup_problem(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> str | None:
    """Why a SkyPilot call would have to start a local API server for nothing; None when set up."""
    environ = os.environ if environ is None else environ
    if environ.get(ENDPOINT_ENV) or _configured_endpoint(environ, cwd or Path.cwd()):
        return None
    if _enabled_clouds_cached(environ):
        return None
    return "SkyPilot is not set up on this machine (no API server endpoint configured, no infra enabled)"


def _home(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("HOME") or os.path.expanduser("~"))


def _config_files(environ: Mapping[str, str], cwd: Path) -> list[Path]:
    home = _home(environ)
    files = []
    for env, default in (
        ("SKYPILOT_CONFIG", None),
        ("SKYPILOT_GLOBAL_CONFIG", home / ".sky" / "config.yaml"),
        ("SKYPILOT_PROJECT_CONFIG", cwd / ".sky.yaml"),
    ):
        value = environ.get(env)
        path = Path(value).expanduser() if value else default
        if path is not None:
            files.append(path)
    return files


def configured_endpoint(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> str | None:
    """The API server endpoint SkyPilot's client would use, from files and the environment alone
    (``sky/server/common.py``: ``get_server_url``); None: none configured (the local API server)."""
    environ = os.environ if environ is None else environ
    if environ.get(ENDPOINT_ENV):
        return environ[ENDPOINT_ENV].rstrip("/")
    return _configured_endpoint(environ, cwd or Path.cwd())


def _configured_endpoint(environ: Mapping[str, str], cwd: Path) -> str | None:
    import yaml

    found = None  # a later file wins, as sky/skypilot_config.py overlays them
    for path in _config_files(environ, cwd):
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError):
            continue
        server = data.get("api_server") if isinstance(data, dict) else None
        if isinstance(server, dict) and server.get("endpoint"):
            found = str(server["endpoint"]).rstrip("/")
    return found


def _enabled_clouds_cached(environ: Mapping[str, str]) -> bool:
    runtime = Path(environ.get("SKY_RUNTIME_DIR") or _home(environ)).expanduser()
    db = runtime / ".sky" / "state.db"
    if not db.is_file():
        return False
    with contextlib.suppress(sqlite3.Error):
        conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=1.0)
        try:
            query = (
                "SELECT key, value FROM config WHERE key LIKE '%enabled_clouds_%compute'"  # CloudCapability
            )
            rows = conn.execute(query).fetchall()
        finally:
            conn.close()
        for _key, value in rows:
            with contextlib.suppress(ValueError, TypeError):
                if json.loads(value):
                    return True
    return False
