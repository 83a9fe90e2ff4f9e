"""Summaries of several groups side by side, from a frame of :func:`~metta_exp.metrics.fetch_metrics` with
a ``group`` column (what the ``job compare`` notebook shows).

    df = fetch_metrics(group=["baseline", "variant"])
    group_summary(df, statuses, gpu_hours)   # one row per group
    run_summary(df, statuses, gpu_hours)     # one row per (group, run)

``statuses`` and ``gpu_hours`` are by group, then by run. Part of :mod:`metta_exp.metrics`; pandas is
imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from metta_exp.config import REWARD, SPS
from metta_exp.metrics import FAILED_STATUSES, fmt_number, summary_table

if TYPE_CHECKING:
    import pandas as pd
    from pandas.io.formats.style import Styler

__all__ = ["group_summary", "run_summary", "style_group_summary"]


def run_summary(
    df: pd.DataFrame,
    statuses: Mapping[str, Mapping[str, Any]],
    gpu_hours: Mapping[str, Mapping[str, float]] | None = None,
    *,
    reward: str = REWARD,
    sps: str = SPS,
) -> pd.DataFrame:
    """:func:`~metta_exp.metrics.summary_table` of each group (its runs in the order of ``statuses``,
    runs without data included), one frame indexed by (group, run)."""
    import pandas as pd

    tables = []
    for group, runs in statuses.items():
        sub = df[df["group"] == group].copy()
        sub["run"] = sub["run"].cat.set_categories(list(runs))
        prefix = f"{group}/"
        sub.attrs = {
            "errors": {
                k[len(prefix) :]: v for k, v in df.attrs.get("errors", {}).items() if k.startswith(prefix)
            }
        }
        hours = (gpu_hours or {}).get(group, {}) if gpu_hours is not None else None
        tables.append(summary_table(sub, statuses=runs, reward=reward, sps=sps, gpu_hours=hours))
    if not tables:
        return pd.DataFrame()
    return pd.concat(tables, keys=list(statuses), names=["group", "run"])


def group_summary(
    df: pd.DataFrame,
    statuses: Mapping[str, Mapping[str, Any]],
    gpu_hours: Mapping[str, Mapping[str, float]] | None = None,
    *,
    reward: str = REWARD,
    sps: str = SPS,
) -> pd.DataFrame:
    """One row per group, in the order of ``statuses``: ``runs``, ``succeeded``, ``failed`` (failed,
    cancelled or skipped), ``best_run`` and ``best_final_reward`` (the highest final reward),
    ``mean_final_reward`` and ``mean_max_reward`` (over its runs with data), ``avg_sps``, ``steps`` (the
    most any run reached) and ``gpu_hours`` (all its runs')."""
    import numpy as np
    import pandas as pd

    runs = run_summary(df, statuses, gpu_hours, reward=reward, sps=sps)
    rows = []
    for group, status in statuses.items():
        sub = (
            runs.xs(group, level="group") if group in runs.index.get_level_values("group") else runs.iloc[0:0]
        )
        finals = sub["final_reward"].astype(float) if len(sub) else pd.Series(dtype=float)
        best = finals.idxmax() if finals.notna().any() else None
        done = [str(s) for s in status.values()]
        rows.append(
            {
                "group": group,
                "runs": len(done),
                "succeeded": done.count("succeeded"),
                "failed": sum(s in FAILED_STATUSES for s in done),
                "best_run": best if best is not None else "",
                "best_final_reward": finals.max() if best is not None else np.nan,
                "mean_final_reward": finals.mean() if finals.notna().any() else np.nan,
                "mean_max_reward": sub["max_reward"].astype(float).mean() if len(sub) else np.nan,
                "avg_sps": sub["avg_sps"].astype(float).mean() if len(sub) else np.nan,
                "steps": sub["steps"].max() if len(sub) and sub["steps"].notna().any() else pd.NA,
                "gpu_hours": float(sum((gpu_hours or {}).get(group, {}).values())),
            }
        )
    table = pd.DataFrame(rows).set_index("group")
    table["steps"] = table["steps"].astype("Int64")
    return table


def style_group_summary(summary: pd.DataFrame) -> Styler:
    """``summary`` for display: every number in one format (:func:`~metta_exp.metrics.fmt_number`), the
    best final reward of all groups in bold."""
    numbers = [c for c in summary.columns if c not in ("best_run", "runs", "succeeded", "failed")]
    styler = summary.style.format(dict.fromkeys(numbers, fmt_number), na_rep="–")
    if "best_final_reward" in summary and summary["best_final_reward"].notna().any():
        styler = styler.highlight_max(subset=["best_final_reward"], props="font-weight: bold")
    return styler
