"""A search's space: the dimensions it samples (``search.space`` of an experiment), as stored with its
group, and each trial's run name from its values.

Pure data, standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from metta_exp.runnames import key_labels, name_part, run_names

__all__ = ["Dimension", "SearchSpace"]


@dataclass(frozen=True)
class Dimension:
    """One searched key: a float or int interval (``log`` for ``tag(log, ...)``, ``step`` for a range)
    or a categorical choice (``choices``, with ``texts`` as the user wrote them)."""

    key: str  # as written before '=', prefixes included ('+trainer.x')
    kind: str  # "float", "int" or "categorical"
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()
    texts: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The config key, without '+', '++' or '~'."""
        return self.key.lstrip("+~")

    def describe(self) -> str:
        """``float in [0.0001, 0.01], log``; ``int in [1, 9] step 2``; ``one of 256, 512, 1024``."""
        if self.kind == "categorical":
            return "one of " + ", ".join(self.texts or map(str, self.choices))
        text = f"{self.kind} in [{_num(self.low)}, {_num(self.high)}]"
        if self.step is not None and not (self.kind == "int" and self.step == 1):
            text += f" step {_num(self.step)}"
        return text + (", log" if self.log else "")

    def text(self, value: Any) -> str:
        """A value as it goes into the job's argv (the choice as written; floats exactly)."""
        if self.kind == "categorical":
            for choice, text in zip(self.choices, self.texts, strict=False):
                if type(choice) is type(value) and choice == value:
                    return text
            return str(value)
        if self.kind == "int":
            return str(int(value))
        return repr(float(value))

    def label(self, value: Any) -> str:
        """A value as it reads in a run name: floats to 3 significant digits."""
        if self.kind == "float":
            return f"{float(value):.3g}"
        return self.text(value)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "kind": self.kind,
            "low": self.low,
            "high": self.high,
            "log": self.log,
            "step": self.step,
            "choices": list(self.choices),
            "texts": list(self.texts),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Dimension:
        return cls(
            key=str(data["key"]),
            kind=str(data["kind"]),
            low=data.get("low"),
            high=data.get("high"),
            log=bool(data.get("log")),
            step=data.get("step"),
            choices=tuple(data.get("choices") or ()),
            texts=tuple(str(t) for t in data.get("texts") or ()),
        )


@dataclass(frozen=True)
class SearchSpace:
    """What a search group searches: its dimensions, and the run of the experiment each trial runs
    (its arguments come first, then the trial's values)."""

    dims: tuple[Dimension, ...]
    base_run: str
    base_args: tuple[str, ...] = ()  # the base run's own arguments (``args_per_run``)
    fixed: tuple[str, ...] = ()  # overrides given with the search that are not searched (``a=1``)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dims": [d.to_dict() for d in self.dims],
            "base_run": self.base_run,
            "base_args": list(self.base_args),
            "fixed": list(self.fixed),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchSpace:
        return cls(
            tuple(Dimension.from_dict(d) for d in data.get("dims") or ()),
            str(data.get("base_run")),
            tuple(str(a) for a in data.get("base_args") or ()),
            tuple(str(a) for a in data.get("fixed") or ()),
        )

    def args(self, params: Mapping[str, Any]) -> list[str]:
        """A trial's arguments after the experiment's own: the base run's, the fixed overrides given with
        the search, then the trial's values in the order of the dimensions."""
        return [*self.base_args, *self.fixed, *(f"{d.key}={d.text(params[d.name])}" for d in self.dims)]

    def run_name(self, number: int, params: Mapping[str, Any]) -> str:
        """``t007-lr0.00231-ent0.0123-bs512``: the trial number, then each value (within the run-name rule)."""
        labels = key_labels([d.name for d in self.dims])
        parts = [name_part(labels[d.name], d.label(params[d.name]), params[d.name]) for d in self.dims]
        return run_names([f"t{number:03d}"], [parts])[0]


def _num(value: float | None) -> str:
    if value is None:
        return "?"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return f"{value:.1f}"
    return f"{value:g}" if isinstance(value, float) else str(value)
