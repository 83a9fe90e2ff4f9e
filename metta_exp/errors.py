"""The exceptions metta-exp raises on purpose.

MettaExpError              base: the CLI catches it once and prints ``Error: <message>``
├── UsageError             bad input (config, override, name): exit code 2, nothing written
│   ├── ConfigError        an experiment file or key is wrong
│   ├── NotFoundError      an unknown group or run (with the closest names)
│   └── RecipeError        a recipe function raised (the CLI keeps the traceback in a log file)
├── StoreError             the job store cannot be read or written, is damaged or from a newer
│                          metta-exp: exit code 2, the file left as it is
└── BackendError           a backend cannot be used (SkyPilot not set up, no such GPU)
    ├── BackendUnavailable raised before anything is submitted: also exit code 2
    └── BackendRefused     the backend refuses every call and will until someone acts (an expired
                           login, a server of another version): a runner stops and says the fix
"""

from __future__ import annotations

from collections.abc import Iterable


class MettaExpError(Exception):
    """Base of every error metta-exp reports as one line."""

    exit_code = 1


class UsageError(MettaExpError):
    exit_code = 2


class ConfigError(UsageError):
    pass


class NotFoundError(UsageError):
    pass


class RecipeError(UsageError):
    """A recipe (``metta-exp run``) raised while being imported or called; ``cause`` is what it raised."""

    def __init__(self, message: str, cause: BaseException) -> None:
        super().__init__(message)
        self.cause = cause


class StoreError(MettaExpError):
    exit_code = 2


class BackendError(MettaExpError):
    pass


class BackendUnavailable(BackendError):
    exit_code = 2


class BackendRefused(BackendError):
    """Every call is refused, and will be until the user acts (``fix`` says how); retrying cannot help."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(f"{message}. Fix: {fix}")
        self.fix = fix


def closest(word: str, candidates: Iterable[str], n: int = 3, cutoff: float = 0.6) -> list[str]:
    """The candidates most like ``word``, best first (for 'did you mean' hints)."""
    import difflib  # only when a name was not found: every job command imports this module

    return difflib.get_close_matches(word, list(candidates), n=n, cutoff=cutoff)


def did_you_mean(word: str, candidates: Iterable[str], cutoff: float = 0.6) -> str:
    """`` (did you mean 'x'?)`` or an empty string."""
    best = closest(word, candidates, n=1, cutoff=cutoff)
    return f" (did you mean '{best[0]}'?)" if best else ""
