"""The report's trade-off figure: safety against over-refusal, each group's mean with its 95% interval over seeds.

``reprank report`` draws one for every ``<prefix>safe_rate`` it plots whose ``<prefix>over_refusal_rate`` it plots
too (and the same for the ``_classifier`` rates): a point per group (e.g. per arm) at the mean over seeds, error
bars the 95% t-interval of each mean (``report.aggregate``; none for one seed), the seeds as small dots. Two
groups whose intervals overlap on an axis are not told apart there by these seeds.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

SAFE, OVER = "safe_rate", "over_refusal_rate"


def tradeoff_pairs(metrics: list[str]) -> list[tuple[str, str]]:
    """(safe, over-refusal) metric names that differ only in ``safe_rate`` -> ``over_refusal_rate``."""
    pairs = []
    for name in metrics:
        if SAFE in name:
            at = name.rindex(SAFE)
            over = name[:at] + OVER + name[at + len(SAFE):]
            if over in metrics:
                pairs.append((name, over))
    return pairs


def group_labels(frame: pd.DataFrame, group_by: list[str]) -> pd.Series:
    """Each row's group as text, ``methods=dpo, beta=0.1`` (``all runs`` when nothing varies)."""
    if not group_by:
        return pd.Series("all runs", index=frame.index)
    return frame[group_by].astype(str).apply(lambda row: ", ".join(f"{k}={v}" for k, v in row.items()), axis=1)


def plot_tradeoff(table: pd.DataFrame, stats: pd.DataFrame, group_by: list[str], safe: str, over: str,
                  path: Path) -> Path:
    """One trade-off figure: ``table`` has a row per run, ``stats`` the aggregate over its groups
    (``report.aggregate``: group_by columns, metric, mean, n, ci95_low, ci95_high)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = table.assign(group=group_labels(table, group_by))
    means = stats.assign(group=group_labels(stats, group_by)).set_index(["group", "metric"])
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (group, rows) in enumerate(runs.groupby("group", sort=False)):
        color = colors[i % len(colors)]
        ax.scatter(rows[over], rows[safe], s=12, color=color, alpha=0.45)
        if (group, safe) not in means.index or (group, over) not in means.index:
            continue
        x, y = means.loc[(group, over)], means.loc[(group, safe)]
        ax.errorbar(x["mean"], y["mean"], xerr=_half_width(x), yerr=_half_width(y), fmt="o", color=color,
                    capsize=3, label=f"{group} (n={int(y['n'])})")
    ax.set(xlabel=f"over-refusal ({over})", ylabel=f"safe ({safe})", xlim=(-0.03, 1.03), ylim=(-0.03, 1.03))
    ax.set_title("mean and 95% t-interval over seeds (dots: seeds)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _half_width(row: pd.Series) -> list[list[float]] | None:
    """Asymmetric error bar from the interval's ends (None for n = 1: no interval)."""
    if pd.isna(row["ci95_low"]):
        return None
    return [[row["mean"] - row["ci95_low"]], [row["ci95_high"] - row["mean"]]]
