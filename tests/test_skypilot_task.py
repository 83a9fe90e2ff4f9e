"""Task building: exact YAML (golden files), quoting run for real with bash, and the real ``sky`` package.

Everything that needs ``sky`` runs in ONE subprocess per module (``sky_probe``) with HOME in a temporary
directory and SkyPilot's local API server and usage collection off, so importing sky writes nothing
outside the test's directory and no server starts. Set ``METTA_EXP_UPDATE_GOLDEN=1`` to rewrite the
golden files after an intended change: each rewritten file fails its test (review the diff, run again).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from metta_exp.backends.skypilot.task import (
    DEFAULT_ACCELERATORS,
    SECRET_ENV_KEYS,
    accelerators,
    build_task_config,
    infra,
    label_value,
    remote_run_dir,
    run_script,
    sky_job_name,
    task_secrets,
    task_yaml,
)
from metta_exp.config import Experiment, SkyPilotSettings, WandbSettings
from metta_exp.errors import ConfigError
from metta_exp.records import JobSpec
from metta_exp.resolve import resolve

GOLDEN = Path(__file__).parent / "golden" / "skypilot"
NASTY_ARGS = [
    "trainer.lr=1e-3",
    'msg=it\'s a "test"',
    "two words",
    "$(touch pwned)",
    "`touch pwned2`",
    "line1\nline2",
    "semi;colon && echo injected",
    "glob*?[a]",
    "$HOME ~ \\ !",
    "",
]
SECRET = "sk-test-0123456789abcdef-SECRET"


def specs_of(exp: Experiment, group: str) -> list[JobSpec]:
    return resolve(exp, group, Path("/local/state"))


CONFIGS: dict[str, tuple[Experiment, str]] = {
    "module_defaults": (
        Experiment(runs=["baseline"], module="metta_exp.examples.cartpole",
                   wandb={"entity": "team", "project": "arena", "mode": "online"}),
        "arena-20250101-120000",
    ),
    "command_nasty_args": (
        Experiment(
            runs=["r1"], command=["python", "train.py"], args=NASTY_ARGS, gpus=8,
            skypilot={
                "accelerator": "H100", "cloud": "k8s", "region": "my-context", "use_spot": True,
                "num_nodes": 2, "workdir": ".", "setup": "pip install -e .\necho 'setup done'",
                "envs": {"NCCL_DEBUG": "INFO"},
                "file_mounts": {"~/data": "./data", "/checkpoints": "s3://bucket/ckpt"},
            },
        ),
        "sweep",
    ),
    "cpu_slurm_odd_group": (
        Experiment(runs=["Run.One", "b--"], module="pkg.train", gpus=0, skypilot={"cloud": "slurm"}),
        "Odd---Group.",
    ),
    "any_of_region": (
        Experiment(runs=["a"], module="pkg.train", gpus=2,
                   skypilot={"accelerator": "A100, H100", "region": "us-east-1"}),
        "g",
    ),
}  # fmt: skip


def all_yaml() -> dict[str, str]:
    out = {}
    for key, (exp, group) in CONFIGS.items():
        for spec in specs_of(exp, group):
            out[f"{key}-{spec.run}"] = task_yaml(
                spec, 1, exp.skypilot, exp.wandb, secret_names=["WANDB_API_KEY"]
            )
    return out


# --- pure ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(all_yaml()))
def test_golden_yaml(name: str) -> None:
    text = all_yaml()[name]
    path = GOLDEN / f"{name}.yaml"
    golden = path.read_text() if path.exists() else None
    if os.environ.get("METTA_EXP_UPDATE_GOLDEN") and text != golden:  # never compared with what it just wrote
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        pytest.fail(f"rewrote {path}: review the diff, then run again without METTA_EXP_UPDATE_GOLDEN")
    assert golden is not None, f"missing golden file {path}: run with METTA_EXP_UPDATE_GOLDEN=1"
    assert text == golden


def test_yaml_is_the_config_plus_named_secrets() -> None:
    exp, group = CONFIGS["command_nasty_args"]
    spec = specs_of(exp, group)[0]
    config = build_task_config(spec, 1, exp.skypilot, exp.wandb)
    loaded = yaml.safe_load(task_yaml(spec, 1, exp.skypilot, exp.wandb, secret_names=["WANDB_API_KEY"]))
    assert loaded.pop("secrets") == {"WANDB_API_KEY": None}
    assert loaded == config
    assert "secrets" not in yaml.safe_load(task_yaml(spec, 1, exp.skypilot, exp.wandb, secret_names=[]))


def test_envs_remap_run_dir_and_carry_the_job_environment() -> None:
    exp = Experiment(runs=["r"], module="m", wandb={"project": "p", "mode": "offline"},
                     skypilot={"envs": {"FOO": "1", "METTA_EXP_RUN": "overridden?"}})  # fmt: skip
    spec = specs_of(exp, "grp")[0]
    envs = build_task_config(spec, 3, exp.skypilot, exp.wandb)["envs"]
    assert envs["METTA_EXP_RUN_DIR"] == "~/metta-exp/runs/grp/r" == remote_run_dir("grp", "r")
    assert "/local/state" not in json.dumps(envs)
    assert envs["METTA_EXP_GROUP"] == envs["WANDB_RUN_GROUP"] == "grp"
    assert envs["METTA_EXP_RUN"] == envs["WANDB_NAME"] == "r"  # the job environment wins over settings
    assert envs["WANDB_RUN_ID"] == f"{spec.wandb_run_id}-a3" and envs["METTA_EXP_ATTEMPT"] == "3"
    assert envs["WANDB_PROJECT"] == "p" and envs["WANDB_MODE"] == "offline" and envs["FOO"] == "1"
    assert all(isinstance(v, str) for v in envs.values())


def test_run_script_executes_every_argument_verbatim(tmp_path: Path) -> None:
    """The generated script, run by bash, hands the program exactly the argv we meant; nothing injected."""
    probe = tmp_path / "probe.py"
    probe.write_text("import json, sys\njson.dump(sys.argv[1:], open(sys.argv[1], 'w'))\n")
    out = tmp_path / "argv dir 'q'" / "argv.json"
    out.parent.mkdir()
    spec = JobSpec(group="g", run="r", args=(str(out), *NASTY_ARGS), env={}, gpus=0, run_dir="/x",
                   wandb_run_id="id", command=(sys.executable, str(probe)))  # fmt: skip
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "METTA_EXP_RUN_DIR": "~/metta-exp/runs/g/r"}
    subprocess.run(["bash", "-c", run_script(spec)], cwd=tmp_path, env=env, check=True, timeout=60)
    assert json.loads(out.read_text()) == [str(out), *NASTY_ARGS]
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()
    assert (home / "metta-exp" / "runs" / "g" / "r").is_dir()  # ~ became $HOME, the run dir exists


def test_module_job_runs_python_dash_m() -> None:
    spec = specs_of(Experiment(runs=["r"], module="pkg.train", args=["a=1"]), "g")[0]
    assert run_script(spec).splitlines()[-1] == "python -m pkg.train a=1"


@pytest.mark.parametrize(
    ("group", "run", "attempt"),
    [("g", "r", 1), ("a---b", "r", 2), ("g-", "-r", 1), ("g", "r.", 1), ("x" * 100, "y" * 64, 12),
     ("G.v2_final", "Run_01", 3), ("bad name!", "r/../x", 1)],
)  # fmt: skip
def test_sky_job_name_is_valid_and_deterministic(group: str, run: str, attempt: int) -> None:
    import re

    name = sky_job_name(group, run, attempt)
    assert re.fullmatch(r"[a-zA-Z0-9]+(?:[._-]{1,2}[a-zA-Z0-9]+)*", name), name  # SkyPilot's rule
    assert name == sky_job_name(group, run, attempt) and name.startswith("metta-exp-")


def test_sky_job_names_stay_distinct() -> None:
    pairs = [("a---b", "r"), ("a--b", "r"), ("a-b", "r"), ("a", "b-r"), ("a---b", "r2"), ("a_b", "r")]
    names = {sky_job_name(g, r, a) for g, r in pairs for a in (1, 2)}
    assert len(names) == 2 * len(pairs)  # ("a-b", "r") and ("a", "b-r") share a launch_name, not this
    assert sky_job_name("g", "r", 1).startswith("metta-exp-g-r-a1-")  # readable: launch_name first


@pytest.mark.parametrize("value", ["arena", "Arena.v2_final", "x" * 100, "--a--", "ÄÖ", "a.b.c", "9"])
def test_label_values_fit_every_cloud(value: str) -> None:
    import re

    label = label_value(value)
    assert len(label) <= 63 and re.fullmatch(r"[a-z0-9]([a-z0-9_-]*[a-z0-9])?", label), label
    assert label_value("x" * 100) != label_value("x" * 99 + "y")  # long values stay distinct


def test_accelerators_and_infra() -> None:
    assert accelerators(0, None) is None
    assert accelerators(8, None) == {name: 8 for name in DEFAULT_ACCELERATORS}
    assert accelerators(4, "H100") == {"H100": 4}
    assert accelerators(2, "A100, H100") == {"A100": 2, "H100": 2}
    assert (
        infra(None, None) is None
        and infra("k8s", None) == "k8s"
        and infra("aws", "us-east-1") == "aws/us-east-1"
    )
    assert infra(None, "us-east-1") == "*/us-east-1" and infra("k8s/ctx", None) == "k8s/ctx"


@pytest.mark.parametrize(
    ("settings", "gpus", "message"),
    [
        ({"accelerator": "H100:8"}, 8, "number of GPUs per job comes from gpus=N"),
        ({"accelerator": "H100 x8"}, 8, "is not a GPU type"),
        ({"accelerator": "H100"}, 0, "gpus=0"),
        ({"cloud": "k8s/ctx", "region": "other"}, 1, "already names a region"),
        ({"envs": {"WANDB_API_KEY": "x"}}, 1, "secrets do not belong in a config file"),
    ],
)
def test_bad_settings_are_config_errors(settings: dict[str, Any], gpus: int, message: str) -> None:
    spec = specs_of(Experiment(runs=["r"], module="m", gpus=gpus), "g")[0]
    with pytest.raises(ConfigError, match=message):
        build_task_config(spec, 1, SkyPilotSettings(**settings), WandbSettings())


def test_secrets_come_from_the_environment_or_netrc(tmp_path: Path) -> None:
    online = WandbSettings(mode="online")
    assert task_secrets(online, {"WANDB_API_KEY": SECRET}) == {"WANDB_API_KEY": SECRET}
    assert task_secrets(WandbSettings(mode="disabled"), {"WANDB_API_KEY": SECRET}) == {}
    netrc = tmp_path / ".netrc"
    netrc.write_text(f"machine api.wandb.ai\n  login user\n  password {SECRET}\n")
    netrc.chmod(0o600)
    assert task_secrets(online, {"HOME": str(tmp_path)}) == {"WANDB_API_KEY": SECRET}
    assert task_secrets(online, {"HOME": str(tmp_path / "nowhere")}) == {}
    assert SECRET_ENV_KEYS == ("WANDB_API_KEY",)


def test_dry_run_yaml_names_the_secret_but_never_holds_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    exp, group = CONFIGS["module_defaults"]
    spec = specs_of(exp, group)[0]
    text = task_yaml(spec, 1, exp.skypilot, exp.wandb)  # secret names read from the environment
    assert SECRET not in text
    assert yaml.safe_load(text)["secrets"] == {"WANDB_API_KEY": None}
    assert SECRET not in json.dumps(build_task_config(spec, 1, exp.skypilot, exp.wandb))


# --- against the real sky package (one subprocess) -----------------------------------------------

PROBE = r"""
import json, os, subprocess, sys
import yaml
inp = json.load(sys.stdin)
import sky
from sky import task as task_lib
from sky.utils import registry
from metta_exp.backends.skypilot.task import task_from_config
from metta_exp.backends.skypilot.backend import SkyPilotBackend
from metta_exp.backends.skypilot.api import SdkSkyApi
from metta_exp.errors import BackendUnavailable
out = {"configs": [], "yamls": [], "names": {}, "labels": []}
out["statuses"] = [s.value for s in sky.ManagedJobStatus]
for config in inp["configs"]:
    task = task_from_config(config, inp["secrets"])
    task.validate_name(); task.validate_run()
    dumped = task.to_yaml_config(use_user_specified_yaml=True)
    out["configs"].append({
        "name": task.name, "run": task.run, "envs": task.envs, "setup": task.setup, "workdir": task.workdir,
        "num_nodes": task.num_nodes, "secret_keys": sorted(task.secrets),
        "secret_value_ok": all(v.get_secret_value() == inp["secrets"][k] for k, v in task.secrets.items()),
        "resources": sorted(repr(r) for r in task.resources),
        "use_spot": sorted({r.use_spot for r in task.resources}),
        "accelerators": sorted(json.dumps(r.accelerators, sort_keys=True) for r in task.resources),
        "labels": [r.labels for r in task.resources][0],
        "file_mounts": task.file_mounts,
        "public_text": json.dumps([dumped, task._user_specified_yaml, task.envs], default=str),
    })
for text in inp["yamls"]:
    task = sky.Task.from_yaml_config(yaml.safe_load(text))
    out["yamls"].append({"refs": sorted(r.name for r in task.managed_secret_refs), "name": task.name})
for name in inp["names"]:
    out["names"][name] = task_lib._is_valid_name(name)
for key, value in inp["labels"]:
    bad = []
    for cloud_name in registry.CLOUD_REGISTRY.keys():
        cloud = registry.CLOUD_REGISTRY.from_str(cloud_name)
        ok, err = cloud.is_label_valid(key, value)
        if not ok:
            bad.append(f"{cloud_name}: {err}")
    out["labels"].append(bad)
try:
    SkyPilotBackend(SdkSkyApi(), state_dir=None).check([])
    out["check"] = "no error"
except BackendUnavailable as exc:
    out["check"] = str(exc)
ps = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
# a server SkyPilot started runs its API_SERVER_CMD module (sky/server/common.py); the
# needle is built so that this probe's own command line (its code), or another probe's, never matches it
needle = "-m sky." + "server.server"
out["server_running"] = [line for line in ps.splitlines() if needle in line]
print("PROBE" + json.dumps(out))
"""


@pytest.fixture(scope="module")
def sky_probe(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the probe with the real sky package; return its answers."""
    home = tmp_path_factory.mktemp("sky home")
    configs, yamls = [], []
    for exp, group in CONFIGS.values():
        for spec in specs_of(exp, group):
            configs.append(build_task_config(spec, 1, exp.skypilot, exp.wandb))
            yamls.append(task_yaml(spec, 1, exp.skypilot, exp.wandb, secret_names=["WANDB_API_KEY"]))
    names = [
        sky_job_name(g, r, 1) for g, r in [("a---b", "r"), ("g-", "-r"), ("x" * 100, "y" * 64), ("g", "r")]
    ]
    labels = [(k, v) for c in configs for k, v in c["resources"]["labels"].items()]
    labels += [("metta-exp-group", label_value(v)) for v in ("Arena.v2", "x" * 120, "--a--")]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SKYPILOT_", "WANDB_API_KEY"))}
    env.update(HOME=str(home), SKYPILOT_DISABLE_LOCAL_API_SERVER="1", SKYPILOT_DISABLE_USAGE_COLLECTION="1")
    inp = {"configs": configs, "yamls": yamls, "names": names, "labels": labels,
           "secrets": {"WANDB_API_KEY": SECRET}}  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], input=json.dumps(inp), capture_output=True, text=True, env=env,
        cwd=home, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("PROBE"))
    out = json.loads(line[len("PROBE") :])
    out["inputs"] = inp
    out["home"] = str(home)
    return out


def test_every_task_round_trips_through_sky(sky_probe: dict[str, Any]) -> None:
    for config, task in zip(sky_probe["inputs"]["configs"], sky_probe["configs"], strict=True):
        assert task["name"] == config["name"]
        assert task["run"] == config["run"] and task["envs"] == config["envs"]
        assert task["setup"] == config.get("setup") and task["workdir"] == config.get("workdir")
        assert task["num_nodes"] == config["num_nodes"]
        assert task["labels"] == config["resources"]["labels"]
        assert task["use_spot"] == [config["resources"]["use_spot"]]
        wanted = config["resources"].get("accelerators")
        got = [json.loads(a) for a in task["accelerators"]]
        assert got == ([None] if not wanted else sorted(({k: v} for k, v in wanted.items()), key=json.dumps))
    nasty = sky_probe["configs"][1]
    assert any("Kubernetes" in r for r in nasty["resources"]) and nasty["file_mounts"]["~/data"] == "./data"


def test_the_secret_reaches_the_task_but_no_yaml(sky_probe: dict[str, Any]) -> None:
    for task in sky_probe["configs"]:
        assert task["secret_keys"] == ["WANDB_API_KEY"] and task["secret_value_ok"]
        assert SECRET not in task["public_text"]
    for parsed in sky_probe["yamls"]:  # the dry-run YAML is launchable: the key is a reference by name
        assert parsed["refs"] == ["WANDB_API_KEY"]


def test_names_and_labels_are_valid_for_skypilot(sky_probe: dict[str, Any]) -> None:
    assert all(sky_probe["names"].values()), sky_probe["names"]
    assert all(bad == [] for bad in sky_probe["labels"]), sky_probe["labels"]


def test_every_managed_job_status_is_mapped(sky_probe: dict[str, Any]) -> None:
    from metta_exp.backends.skypilot.status import ACTIVE_STATUSES, FAILURE_MEANING

    known = ACTIVE_STATUSES | set(FAILURE_MEANING) | {"SUCCEEDED", "CANCELLED"}
    assert set(sky_probe["statuses"]) <= known, set(sky_probe["statuses"]) - known


def test_unusable_skypilot_is_a_clear_error_and_starts_no_server(sky_probe: dict[str, Any]) -> None:
    assert "SkyPilot is not set up on this machine" in sky_probe["check"]
    assert "sky check" in sky_probe["check"] and "remote=false" in sky_probe["check"]
    assert "Traceback" not in sky_probe["check"]
    assert not sky_probe["server_running"]
    catalogs = Path(sky_probe["home"]) / ".sky" / "catalogs"
    assert not list(catalogs.rglob("*.csv"))  # nothing was fetched from the network
