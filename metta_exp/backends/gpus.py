"""The GPUs of this machine that local jobs may use: ``METTA_EXP_LOCAL_GPUS`` when it is set (a list of
ids, or ``none``), else the ones ``nvidia-smi`` lists, else none."""

from __future__ import annotations

import os
import shutil
import subprocess

from metta_exp.errors import UsageError

__all__ = ["GPUS_ENV", "detect_gpus", "local_gpus", "parse_gpu_list"]

GPUS_ENV = "METTA_EXP_LOCAL_GPUS"


def local_gpus() -> list[int]:
    """``METTA_EXP_LOCAL_GPUS`` if set, else the GPUs nvidia-smi lists, else none."""
    declared = os.environ.get(GPUS_ENV)
    return parse_gpu_list(declared) if declared is not None else detect_gpus()


def parse_gpu_list(value: str) -> list[int]:
    """``"0,1,2,3"`` -> ``[0, 1, 2, 3]``; ``""`` or ``"none"`` -> ``[]``; anything else is a UsageError."""
    text = value.strip()
    if text.lower() in ("", "none"):
        return []
    parts = [part.strip() for part in text.split(",")]
    if not all(part.isdigit() for part in parts) or len(set(map(int, parts))) != len(parts):
        raise UsageError(
            f"{GPUS_ENV}={value!r} is not a list of GPU ids: expected distinct comma-separated "
            "integers like '0,1,2,3', or 'none' for no GPUs"
        )
    return [int(part) for part in parts]


def detect_gpus() -> list[int]:
    """The GPU indices nvidia-smi reports; [] without nvidia-smi or when it fails in any way."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=5, check=True,
        )  # fmt: skip
        return [int(line) for line in out.stdout.split()]
    except (OSError, subprocess.SubprocessError, ValueError):
        return []
