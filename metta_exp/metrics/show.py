"""How a notebook shows what it fetched: the fetch told in one sentence, and status badges.

A badge is a word in a coloured, rounded box drawn with inline CSS: it reads the same in Jupyter, in the
self-contained HTML report and in a headless browser with no emoji font, where a status symbol (✅ ❌)
would be an empty box. Pure; pandas is only passed in.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["BADGE_COLORS", "Sentence", "fetched_text", "status_badge"]

BADGE_STYLE = (
    "display:inline-block;padding:0 0.6em;border-radius:0.8em;font-size:0.85em;font-weight:600;"
    "line-height:1.6;white-space:nowrap"
)
BADGE_COLORS = {  # status: (background, text), light backgrounds with dark text of the same hue
    "succeeded": ("#d1e7dd", "#0f5132"),
    "failed": ("#f8d7da", "#842029"),
    "cancelled": ("#e2e3e5", "#41464b"),
    "skipped": ("#fff3cd", "#664d03"),
    "pruned": ("#e2d9f3", "#432874"),
    "running": ("#cfe2ff", "#084298"),
    "launching": ("#cfe2ff", "#084298"),
    "pending": ("#f1f3f5", "#495057"),
}


def status_badge(status: object) -> str:
    """``status`` as an inline HTML badge (``<span style="...">failed</span>``); the text is escaped, and
    a status it does not know gets the grey of ``cancelled``."""
    text = str(status)
    background, color = BADGE_COLORS.get(text, BADGE_COLORS["cancelled"])
    return (
        f'<span style="{BADGE_STYLE};background-color:{background};color:{color}">{html.escape(text)}</span>'
    )


class Sentence(str):
    """A sentence a notebook cell shows as text, not as a quoted string in a code block: a paragraph in
    HTML (Jupyter, the report), the bare text elsewhere."""

    def _repr_html_(self) -> str:
        return f"<p>{html.escape(self)}</p>"

    def __repr__(self) -> str:
        return str(self)


def fetched_text(df: pd.DataFrame, samples: int | None = None) -> Sentence:
    """``Fetched 117 points of overview/sps and overview/reward for 3 runs (at most 1000 a run and metric,
    spread evenly over its steps).``, naming the runs that have none: what the fetch cell shows instead of
    a table of counts."""
    runs = [str(r) for r in (df["run"].cat.categories if hasattr(df["run"], "cat") else df["run"].unique())]
    metrics = [str(m) for m in (df["metric"].cat.categories if hasattr(df["metric"], "cat") else [])]
    metrics = metrics or sorted({str(m) for m in df["metric"]})
    names = (
        " and ".join([", ".join(metrics[:-1]), metrics[-1]] if len(metrics) > 1 else metrics) or "no metric"
    )
    counts = df.groupby("run", observed=False).size() if len(df) else None
    empty = [r for r in runs if counts is None or int(counts.get(r, 0)) == 0]
    text = f"Fetched {len(df):,} points of {names} for {len(runs)} run{'' if len(runs) == 1 else 's'}"
    if samples:
        text += f" (at most {samples} a run and metric, spread evenly over its steps)"
    if empty:
        text += f"; none for {', '.join(empty)}"
    return Sentence(text + ".")
