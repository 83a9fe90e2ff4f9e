"""A job spec becomes a SkyPilot task: pure functions, no I/O (``sky`` is imported only by ``build_task``).

One attempt of one run is one SkyPilot *managed job* (SkyPilot recovers it from preemption with its
default ``job_recovery`` strategy). The task is built as the dict a SkyPilot task YAML holds:

- ``name``: ``sky_job_name(group, run, attempt)``, ``launch_name`` made SkyPilot-valid and unambiguous,
  so a crashed runner finds its own job again by name, and only its own.
- ``resources``: ``accelerators: {ACC: gpus}`` when ``gpus > 0``. ``skypilot.accelerator`` may name one
  type (``H100``) or several separated by commas (``A100,H100``: SkyPilot's own any-of, it picks the
  cheapest it can get). Left unset, ``DEFAULT_ACCELERATORS`` is that any-of list, so ``gpus=8`` alone gets
  the cheapest 8-GPU machine of a common data-center type. ``skypilot.cloud``/``region`` become
  ``infra`` (``k8s``, ``slurm``, ``aws/us-east-1``, ``*/us-east-1``); ``use_spot`` is always written, so a
  reader sees whether the job is on spot; ``labels`` carry group, run and attempt in a form every cloud
  accepts.
- ``envs``: ``skypilot.envs``, then the job environment (which wins): ``METTA_EXP_GROUP/RUN/ATTEMPT``,
  ``METTA_EXP_RUN_DIR`` remapped to ``~/metta-exp/runs/<group>/<run>`` on the remote machine, the W&B
  settings and run id.
- ``run``: the module (``python -m MODULE``) or command and every argument, each through
  ``shlex.quote``, so no argument can break the script or inject into the shell.
- ``workdir``, ``setup``, ``file_mounts`` as configured. A remote machine has a Python, never metta-exp or
  the project a job runs, so unless ``skypilot.default_setup`` is false the task's ``setup`` starts with
  ``default_setup``: it installs the metta-exp that launched the job (its wheel, ``wheel.py``, shipped as
  a file mount) and the workdir's project, when it is one, into ``~/.metta-exp/venv``, which then comes
  first on ``PATH`` for the rest of ``setup`` (yours) and for ``run``.

The W&B API key is never part of this dict. ``task_secrets`` reads it from the environment (or from
``~/.netrc``, where ``wandb login`` keeps it) at submit time, and ``build_task`` hands it to SkyPilot as a
*secret*, which SkyPilot redacts from its own logs and YAML dumps. ``task_yaml`` (the dry run) names it
with a null value, which is also how SkyPilot's ``--secret NAME`` reads a variable from the environment.
"""

from __future__ import annotations

import functools
import hashlib
import netrc
import os
import re
import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from metta_exp.backends.base import launch_name
from metta_exp.config import SkyPilotSettings, WandbSettings
from metta_exp.errors import ConfigError
from metta_exp.records import JobSpec
from metta_exp.runs.wandb import attempt_run_id, wandb_mode

if TYPE_CHECKING:
    import sky

__all__ = [
    "DEFAULT_ACCELERATORS",
    "REMOTE_RUNS_DIR",
    "SECRET_ENV_KEYS",
    "accelerators",
    "build_task",
    "build_task_config",
    "default_setup",
    "infra",
    "label_value",
    "remote_run_dir",
    "run_script",
    "sky_job_name",
    "task_envs",
    "task_from_config",
    "task_secrets",
    "task_yaml",
    "validate_settings",
]

#: Any of these, cheapest first as SkyPilot's optimizer sees it, when ``skypilot.accelerator`` is unset.
DEFAULT_ACCELERATORS = ("L4", "A10G", "L40S", "A100", "A100-80GB", "H100")
#: Where a job's run directory lives on the remote machine (``~`` is the remote user's home).
REMOTE_RUNS_DIR = "~/metta-exp/runs"
#: Where the default setup installs metta-exp (and the workdir's project) on the remote machine.
REMOTE_VENV = "$HOME/.metta-exp/venv"
#: Where the launching metta-exp's wheel is mounted on the remote machine.
REMOTE_WHEELS = "~/.metta-exp/wheels"
#: Environment variables that are secrets: sent as SkyPilot secrets, never written anywhere.
SECRET_ENV_KEYS = ("WANDB_API_KEY",)
SKY_JOB_PREFIX = "metta-exp-"
WHEEL_NAME = "metta_exp-py3-none-any.whl"  # in a task built without the wheel (checks, tests)
DEFAULT_WANDB_BASE_URL = "https://api.wandb.ai"  # wandb/sdk/wandb_settings.py, ``base_url``

# SkyPilot's own rule for task (and managed job) names, from sky/task.py.
_SKY_NAME = re.compile(r"[a-zA-Z0-9]+(?:[._-]{1,2}[a-zA-Z0-9]+)*")
_ACCELERATOR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_LABEL_MAX = 63


def sky_job_name(group: str, run: str, attempt: int, instance: str | None = None) -> str:
    """The managed job's name: ``launch_name`` made SkyPilot-valid, plus a hash of (group, run, attempt)
    and the group's ``instance`` (a random id the store keeps per group, so a group name used again, in
    another state directory or on another machine, never adopts the old group's jobs: SkyPilot's queue
    keeps finished jobs, ``sky/jobs/state.py``).

    SkyPilot names are alphanumeric runs joined by one or two of ``._-``, starting and ending with a
    letter or digit. Our names allow three separators in a row (``a---b``); those are collapsed to one
    ``-``. The hash makes the name unambiguous, which the name alone is not (group ``a-b`` with run
    ``r`` and group ``a`` with run ``b-r`` read the same), because a crashed runner adopts the job it
    finds under this name: it must never be another group's.
    """
    name = launch_name(group, run, attempt)
    if not _SKY_NAME.fullmatch(name):
        name = "-".join(p for p in re.split(r"[^A-Za-z0-9]+", name) if p)
    key = f"{group}\0{run}\0{attempt}" + (f"\0{instance}" if instance else "")
    digest = hashlib.sha256(key.encode()).hexdigest()[:8]
    return f"{name}-{digest}"


def label_value(value: str) -> str:
    """``value`` as a label every cloud accepts (GCP and Kubernetes are the strictest).

    Lowercase letters, digits, ``-`` and ``_``; starts and ends with a letter or digit; at most 63
    characters. A longer value is cut and ends with a hash of the whole, so long names stay distinct.
    """
    clean = re.sub(r"[^a-z0-9_-]+", "-", value.lower()).strip("-_") or "x"
    if len(clean) > _LABEL_MAX:
        digest = hashlib.sha256(value.encode()).hexdigest()[:8]
        clean = clean[: _LABEL_MAX - 9].rstrip("-_") + "-" + digest
    return clean


def remote_run_dir(group: str, run: str) -> str:
    """The job's run directory on the remote machine, as ``METTA_EXP_RUN_DIR`` holds it (``~`` first)."""
    return f"{REMOTE_RUNS_DIR}/{_path_component(group)}/{_path_component(run)}"


def _path_component(value: str) -> str:
    clean = re.sub(r"[^A-Za-z0-9._-]", "_", value)
    return "_" if clean in ("", ".", "..") else clean


def accelerators(gpus: int, accelerator: str | None) -> dict[str, int] | None:
    """The ``resources.accelerators`` mapping: one entry per acceptable type, or None without GPUs."""
    if gpus <= 0:
        return None
    names = DEFAULT_ACCELERATORS if accelerator is None else _accelerator_names(accelerator)
    return {name: gpus for name in names}


def _accelerator_names(accelerator: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in accelerator.split(","))
    for name in names:
        if ":" in name:
            raise ConfigError(
                f"skypilot.accelerator: give the GPU type only, e.g. '{name.split(':')[0]}'; the number of "
                "GPUs per job comes from gpus=N"
            )
        if not _ACCELERATOR_NAME.fullmatch(name):
            raise ConfigError(
                f"skypilot.accelerator: {accelerator!r} is not a GPU type; use a name such as 'H100', or "
                "several separated by commas ('A100,H100') to accept any of them"
            )
    return names


def infra(cloud: str | None, region: str | None) -> str | None:
    """SkyPilot's ``infra`` string from ``skypilot.cloud`` and ``skypilot.region`` (None: any infra)."""
    cloud = cloud.strip().strip("/") if cloud else None
    region = region.strip().strip("/") if region else None
    if cloud and region and "/" in cloud:
        raise ConfigError(
            f"skypilot.cloud={cloud!r} already names a region or context; drop skypilot.region={region!r} "
            "or give the cloud alone"
        )
    if region:
        return f"{cloud or '*'}/{region}"
    return cloud or None


def validate_settings(settings: SkyPilotSettings, gpus: int) -> None:
    """Raise ``ConfigError`` for settings no task can be built from (call before anything is written)."""
    if settings.accelerator is not None and gpus <= 0:
        raise ConfigError(
            f"skypilot.accelerator={settings.accelerator!r} is set but gpus=0: set gpus=N for GPU jobs, or "
            "drop skypilot.accelerator for CPU jobs"
        )
    accelerators(gpus, settings.accelerator)
    infra(settings.cloud, settings.region)
    if settings.use_spot and (settings.cloud or "").strip().split("/")[0].lower() == "slurm":
        raise ConfigError(  # sky/clouds/slurm.py: SPOT_INSTANCE is unsupported
            "skypilot.use_spot=true: Slurm has no spot instances; drop skypilot.use_spot, or choose a cloud "
            "that has them (skypilot.cloud=aws, gcp, ...)"
        )
    for key in settings.envs:
        if key in SECRET_ENV_KEYS:
            raise ConfigError(
                f"skypilot.envs.{key}: secrets do not belong in a config file; export {key} in your shell "
                "and metta-exp passes it to each job as a SkyPilot secret"
            )


def task_envs(
    spec: JobSpec, attempt: int, settings: SkyPilotSettings, wandb: WandbSettings
) -> dict[str, str]:
    """The job environment on the remote machine (no secrets)."""
    envs = {str(k): str(v) for k, v in settings.envs.items() if k not in SECRET_ENV_KEYS}
    for key in ("entity", "project", "mode"):
        value = getattr(wandb, key)
        if value:
            envs[f"WANDB_{key.upper()}"] = value
    envs.update({str(k): str(v) for k, v in spec.env.items() if k not in SECRET_ENV_KEYS})
    envs.update(
        {
            "METTA_EXP_GROUP": spec.group,
            "METTA_EXP_RUN": spec.run,
            "METTA_EXP_ATTEMPT": str(attempt),
            "METTA_EXP_RUN_DIR": remote_run_dir(spec.group, spec.run),
            "WANDB_RUN_GROUP": spec.group,
            "WANDB_NAME": spec.run,
            "WANDB_RUN_ID": attempt_run_id(spec.wandb_run_id, attempt),
        }
    )
    return envs


def run_script(spec: JobSpec, venv: bool = False) -> str:
    """The task's ``run``: make the run directory, then the job's argv with every word quoted.

    ``METTA_EXP_RUN_DIR`` arrives as ``~/...`` (envs are not expanded); the first line turns a leading
    ``~`` into ``$HOME`` so the job sees an absolute path. With ``venv`` (the default setup's), its
    ``bin`` comes first on ``PATH``: ``python`` is the one metta-exp was installed into.
    """
    argv = ["python", "-m", spec.module] if spec.module else list(spec.command or ())
    if not argv:
        raise ConfigError(f"job {spec.group}/{spec.run} has neither a module nor a command to run")
    return (
        (f'export PATH="{REMOTE_VENV}/bin:$PATH"\n' if venv else "")
        + 'export METTA_EXP_RUN_DIR="${METTA_EXP_RUN_DIR/#\\~/$HOME}"\n'
        'mkdir -p "$METTA_EXP_RUN_DIR"\n'
        f"{shlex.join(argv + list(spec.args))}\n"
    )


def default_setup(wheel: str) -> str:
    """The setup that comes first on every machine of a job (unless ``skypilot.default_setup=false``): the
    metta-exp that launched it (the wheel file ``wheel``, mounted under ``REMOTE_WHEELS``) and, when the
    workdir is a Python project (``pyproject.toml`` or ``setup.py``), the project, both into ``REMOTE_VENV``
    with pip. The virtual environment sees the image's own packages (a GPU image's torch); an image whose
    ``python3`` is older than 3.11 gets a Python 3.11 from uv (SkyPilot puts one in ``~/.local/bin`` on the
    machines it sets up). Its ``bin`` stays first on ``PATH`` for the rest of ``setup``."""
    return f"""# metta-exp's default setup (skypilot.default_setup=false leaves it out): the metta-exp that launched
# this job, and this workdir's project when it is a Python project, into {REMOTE_VENV}
(
  set -e
  venv="{REMOTE_VENV}"
  if [ ! -x "$venv/bin/python" ]; then
    if python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      python3 -m venv --system-site-packages --without-pip "$venv"
    else
      uv=$(command -v uv || echo "$HOME/.local/bin/uv")
      if [ ! -x "$uv" ]; then
        echo "metta-exp needs Python 3.11+ on the machine (python3 is $(python3 -V 2>&1)), or uv to get one" >&2
        exit 1
      fi
      "$uv" venv --seed --python 3.11 "$venv"
    fi
  fi
  "$venv/bin/python" -m pip --version >/dev/null 2>&1 || "$venv/bin/python" -m ensurepip --upgrade >/dev/null
  project=""
  if [ -f pyproject.toml ] || [ -f setup.py ]; then project=.; fi
  "$venv/bin/python" -m pip install --disable-pip-version-check --quiet "$HOME/{REMOTE_WHEELS[2:]}/{wheel}" $project
) || {{ echo "metta-exp's default setup failed (above); skypilot.default_setup=false leaves it out" >&2; exit 1; }}
export PATH="{REMOTE_VENV}/bin:$PATH"
"""


def build_task_config(
    spec: JobSpec,
    attempt: int,
    settings: SkyPilotSettings,
    wandb: WandbSettings,
    instance: str | None = None,
    wheel: str | None = None,
) -> dict[str, Any]:
    """The SkyPilot task YAML of one attempt, as a dict (no secrets in it, ever). ``wheel`` is the local path
    of the launching metta-exp's wheel, which the default setup installs (None: the setup says so, and the
    file mount names the wheel only)."""
    validate_settings(settings, spec.gpus)
    resources: dict[str, Any] = {}
    where = infra(settings.cloud, settings.region)
    if where:
        resources["infra"] = where
    acc = accelerators(spec.gpus, settings.accelerator)
    if acc:
        resources["accelerators"] = acc
    resources["use_spot"] = bool(settings.use_spot)
    resources["labels"] = {
        "metta-exp-group": label_value(spec.group),
        "metta-exp-run": label_value(spec.run),
        "metta-exp-attempt": str(attempt),
    }
    config: dict[str, Any] = {"name": sky_job_name(spec.group, spec.run, attempt, instance)}
    if settings.workdir:
        config["workdir"] = settings.workdir
    config["resources"] = resources
    config["num_nodes"] = int(settings.num_nodes)
    mounts = {str(k): str(v) for k, v in settings.file_mounts.items()}
    setup = [settings.setup] if settings.setup else []
    if settings.default_setup:
        name = Path(wheel).name if wheel else WHEEL_NAME
        mounts[f"{REMOTE_WHEELS}/{name}"] = wheel or f"<the launching metta-exp, packed at submit: {name}>"
        setup.insert(0, default_setup(name))
    if mounts:
        config["file_mounts"] = mounts
    config["envs"] = task_envs(spec, attempt, settings, wandb)
    if setup:
        config["setup"] = "\n".join(setup)
    config["run"] = run_script(spec, venv=settings.default_setup)
    return config


def task_secrets(
    wandb: WandbSettings,
    environ: Mapping[str, str] | None = None,
    netrc_path: str | None = None,
    job_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The secrets a job gets: the W&B API key from the environment or netrc, unless W&B is off.

    ``job_env`` is the job's recorded environment (``JobSpec.env``): its ``WANDB_MODE``,
    ``WANDB_DISABLED`` and ``WANDB_BASE_URL`` are the ones the job will run with (without it, ``environ``'s
    are used). The netrc entry is the one for that base URL's host and port, as wandb itself looks it up
    (wandb/sdk/lib/wbauth/wbnetrc.py: ``authenticators(urlsplit(url).netloc)``), so a self-hosted W&B
    user's job never gets the public host's key, nor the public host another one's.
    Read at submit time and handed to SkyPilot only; never stored, logged or written to a file.
    """
    environ = os.environ if environ is None else environ
    settings = environ if job_env is None else job_env
    mode = wandb_mode({**settings, **({"WANDB_MODE": wandb.mode} if wandb.mode else {})})
    if mode != "online":
        return {}
    key = environ.get("WANDB_API_KEY")
    if not key:
        base_url = settings.get("WANDB_BASE_URL") or DEFAULT_WANDB_BASE_URL
        key = _netrc_wandb_key(base_url, environ, netrc_path)
    return {"WANDB_API_KEY": key} if key else {}


def _netrc_wandb_key(base_url: str, environ: Mapping[str, str], path: str | None) -> str | None:
    """The password of ``base_url``'s ``host[:port]`` in ``$NETRC``, else ``~/.netrc``, else ``~/_netrc``
    (wandb/sdk/lib/wbauth/wbnetrc.py, ``_get_netrc_file_path``)."""
    base_url = base_url.strip()
    netloc = urlsplit(base_url if "://" in base_url else f"https://{base_url}").netloc
    if not netloc:
        return None
    home = environ.get("HOME") or os.path.expanduser("~")
    candidates = [path] if path else [environ["NETRC"]] if environ.get("NETRC") else [
        os.path.join(home, ".netrc"), os.path.join(home, "_netrc")]  # fmt: skip
    for candidate in candidates:
        try:
            entry = netrc.netrc(os.path.expanduser(candidate)).authenticators(netloc)
        except (OSError, netrc.NetrcParseError):
            continue
        return entry[2] if entry and entry[2] else None
    return None


def task_from_config(config: Mapping[str, Any], secrets: Mapping[str, str] | None = None) -> sky.Task:
    """A ``sky.Task`` from a task dict, with ``secrets`` attached as SkyPilot secrets."""
    import copy

    import sky

    task = sky.Task.from_yaml_config(copy.deepcopy(dict(config)))
    if secrets:
        task.update_secrets(dict(secrets))
    return task


def build_task(
    spec: JobSpec,
    attempt: int,
    settings: SkyPilotSettings,
    wandb: WandbSettings,
    secrets: Mapping[str, str] | None = None,
) -> sky.Task:
    """The ``sky.Task`` of one attempt; ``secrets`` default to ``task_secrets(wandb)`` (read now)."""
    config = build_task_config(spec, attempt, settings, wandb)
    return task_from_config(config, task_secrets(wandb, job_env=spec.env) if secrets is None else secrets)


def task_yaml(
    spec: JobSpec,
    attempt: int,
    settings: SkyPilotSettings,
    wandb: WandbSettings,
    secret_names: Iterable[str] | None = None,
    wheel: str | None = None,
) -> str:
    """The task as YAML, for the dry run. Secrets appear by name only, with a null value.

    ``secret_names`` default to the names ``task_secrets`` would send right now; ``wheel`` to where the
    submit would write the launching metta-exp's wheel (``wheel.wheel_path``: nothing is written now).
    """
    import yaml

    if wheel is None and settings.default_setup:
        from metta_exp.backends.skypilot.wheel import wheel_path
        from metta_exp.paths import default_state_dir

        wheel = str(wheel_path(default_state_dir() / "skypilot" / "wheels"))
    config = build_task_config(spec, attempt, settings, wandb, wheel=wheel)
    names = sorted(task_secrets(wandb, job_env=spec.env) if secret_names is None else set(secret_names))
    header = ""
    if names:
        config["secrets"] = {name: None for name in names}
        flags = " ".join(f"--secret {name}" for name in names)
        header = (
            "# secrets are read from your environment when the job is submitted and never written here\n"
            f"# (to launch this file by hand: sky jobs launch FILE {flags})\n"
        )
    return header + yaml.dump(config, Dumper=_dumper(), sort_keys=False, allow_unicode=True, width=10_000)


@functools.lru_cache(maxsize=1)
def _dumper() -> type:
    import yaml

    class TaskDumper(yaml.SafeDumper):
        """Multi-line strings (scripts) as literal blocks; everything else as SafeDumper does."""

    def represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    TaskDumper.add_representer(str, represent_str)
    return TaskDumper
