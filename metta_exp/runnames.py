"""Run names built from values (sweeps and searches): readable (``lr0.001-ent0.01``), unique, and within
the run-name rule."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

MAX_RUN = 64
_VALUE_CHARS = 20


# Short labels for common hyperparameters; other keys use their last component, shortened.
ABBREVIATIONS = {
    "learning_rate": "lr",
    "lr": "lr",
    "entropy_coef": "ent",
    "ent_coef": "ent",
    "batch_size": "bs",
    "minibatch_size": "mbs",
    "weight_decay": "wd",
    "total_timesteps": "steps",
    "gae_lambda": "lam",
    "clip_coef": "clip",
    "clip_range": "clip",
    "vf_coef": "vf",
    "max_grad_norm": "gn",
    "num_envs": "envs",
    "num_workers": "workers",
    "momentum": "mom",
    "dropout": "drop",
    "update_epochs": "ep",
    "epochs": "ep",
    "hidden_size": "hid",
    "num_layers": "layers",
    "optimizer": "opt",
    "warmup_steps": "warmup",
}


# --- run names --------------------------------------------------------------------------------------


def key_labels(keys: Sequence[str]) -> dict[str, str]:
    """A short, distinct label per key: ``trainer.learning_rate`` -> ``lr``, ``optim.beta_one`` -> ``bo``."""
    labels = {key: _abbreviate(_components(key)[-1]) for key in keys}
    for depth in (2, 0):
        clashing = [k for k in keys if sum(1 for v in labels.values() if v == labels[k]) > 1]
        for key in clashing:
            parts = _components(key)
            labels[key] = _clean(".".join(parts[-depth:] if depth else parts)) or "key"
    return labels


def _components(key: str) -> list[str]:
    return [p for p in re.split(r"[./]", key.lstrip("+~").split("@", 1)[0]) if p] or ["key"]


def _abbreviate(word: str) -> str:
    if word.lower() in ABBREVIATIONS:
        return ABBREVIATIONS[word.lower()]
    words = [w for w in re.split(r"_+", word) if w]
    if len(word) <= 8 or not words:
        label = word
    elif len(words) > 1:
        label = "".join(w[0] for w in words)
    else:
        label = word[:6]
    return _clean(label) or "key"


def _clean(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_.-")


def _short(text: str) -> str:
    import hashlib  # here: ``job`` commands import this module (through the trial records) and start fast

    return hashlib.sha1(text.encode()).hexdigest()[:5]


def value_label(text: str, value: Any) -> str:
    """A value as it reads in a run name: unquoted, shortened, only name characters."""
    if isinstance(value, float) and len(text) > 10:
        text = f"{value:.6g}"
    elif isinstance(value, str) and len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = value
    label = _clean(text)
    if _negative(value) and label and not label.startswith("-"):
        label = f"-{label}"  # _clean strips a leading '-': y=-5 would read y5, and y=5 would be y5-2
    if not label:
        return "empty" if text == "" else f"v{_short(text)}"
    if len(label) > _VALUE_CHARS:
        label = f"{label[: _VALUE_CHARS - 6]}_{_short(label)}"
    return label


def _negative(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value < 0


def run_names(prefixes: Sequence[str | None], parts: Sequence[Sequence[str]]) -> list[str]:
    """Unique run names, ``prefix-part-part``, each within the run-name rule (64 characters)."""
    names: list[str] = []
    seen: set[str] = set()
    for prefix, point_parts in zip(prefixes, parts, strict=True):
        name = "-".join(([prefix] if prefix else []) + list(point_parts)) or "run"
        if not name[0].isalnum():
            name = f"r{name}"
        if len(name) > MAX_RUN:
            name = f"{name[: MAX_RUN - 6].rstrip('._-')}-{_short(name)}"
        unique, n = name, 1
        while unique in seen:
            n += 1
            unique = f"{name[: MAX_RUN - len(str(n)) - 1]}-{n}"
        seen.add(unique)
        names.append(unique)
    return names


def name_part(label: str, text: str, value: Any) -> str:
    """``lr0.001`` for a number, ``opt_adam`` for a word: a key's label and its value in a run name. A
    label that ends in a digit keeps a ``_`` before a number too (``x1_1.26``, never ``x11.26``)."""
    shown = value_label(text, value)
    number = shown[0].isdigit() or shown[0] == "."
    return f"{label}{shown}" if number and not label[-1:].isdigit() else f"{label}_{shown}"
