"""The matched-strength frontier: is an arm safer than the baseline family at the same over-refusal?

A "family" is a set of arms that trade safety against over-refusal by one knob (the untuned model, a
baseline at several strengths, ...). Its points (x = over-refusal, y = safe rate) define an **upper
monotone envelope**: the best safe rate the family reaches without over-refusing more than x. An arm's
**advantage** A = y_arm - envelope(x_arm) is how much safer it is than the family at its own over-refusal:
A > 0 beats every family member that over-refuses as little, A = 0 is on the frontier, A < 0 below it.

The envelope, step by step (``envelope_vertices``):

1. sort the family's points by x (of points with the same x keep the highest y);
2. take the running maximum of y: more over-refusal is allowed to buy safety, never to cost it;
3. the vertices are the first point and each point that raises the running maximum;
4. between two vertices, interpolate linearly; left of the first vertex, use its y (the family's least
   over-refusing point); right of the last, the last vertex's y (the family's best safe rate).

``frontier_verdict`` puts intervals on A with the paired bootstrap of ``discrimination``: one resample of
the prompts for every arm, the envelope recomputed on each resample.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from reprank.measure.discrimination import Counts, observed_counts, percentile_interval, resampled_counts


def envelope_vertices(family_x, family_y) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of the envelope's vertices, x strictly increasing and y strictly increasing."""
    x, y = np.asarray(family_x, dtype=float), np.asarray(family_y, dtype=float)
    if x.size == 0 or x.shape != y.shape:
        raise ValueError("The family needs at least one point, with as many x as y.")
    order = np.lexsort((-y, x))  # by x, and for equal x the highest y first
    x, y = x[order], y[order]
    first_of_x = np.r_[True, x[1:] != x[:-1]]
    x, y = x[first_of_x], y[first_of_x]
    best = np.maximum.accumulate(y)
    raises = np.r_[True, best[1:] > best[:-1]]
    return x[raises], best[raises]


def envelope(x, family_x, family_y):
    """The family's upper monotone envelope at over-refusal ``x`` (a number or an array)."""
    vertex_x, vertex_y = envelope_vertices(family_x, family_y)
    value = np.interp(x, vertex_x, vertex_y)  # np.interp holds the end values outside the vertices
    return float(value) if np.ndim(value) == 0 else value


def advantage(arm_point, family_points) -> float:
    """A = y - envelope(x) of ``arm_point`` = (over_refusal, safe) against ``family_points``, a list of
    (over_refusal, safe) pairs."""
    family = np.asarray(family_points, dtype=float).reshape(-1, 2)
    x, y = arm_point
    return float(y - envelope(x, family[:, 0], family[:, 1]))


def _advantages(counts: Counts, family: list[int], arm: int) -> np.ndarray:
    """A of column ``arm`` against the ``family`` columns, on every row (resample) of ``counts``."""
    safe, over = counts.hits / counts.n_harmful, counts.false_alarms / counts.n_benign
    return np.array([safe[r, arm] - envelope(over[r, arm], over[r, family], safe[r, family])
                     for r in range(len(safe))])


def frontier_verdict(table: pd.DataFrame, family_arms: list[str], arm: str, control_arm: str, n_boot: int = 2000,
                     seed: int = 0, level: float = 0.95) -> dict:
    """Does ``arm`` beat the family's frontier, and by more than its control does?

    Returns a dict: ``advantage`` A(arm) and ``advantage_low`` / ``advantage_high``, its paired-bootstrap
    interval; ``vs_control`` A(arm) - A(control) with ``vs_control_low`` / ``vs_control_high``; and
    ``helps``: True only when both intervals lie above 0. ``table`` is one slice (one judge, one source);
    ``arm`` must not be in the family (there A <= 0 by construction).
    """
    if arm in family_arms or not family_arms:
        raise ValueError(f"The family must be non-empty and must not contain the arm {arm!r}.")
    names = list(dict.fromkeys([*family_arms, arm, control_arm]))
    missing = sorted(set(names) - set(table.arm))
    if missing:
        raise ValueError(f"Arms {missing} are not in the table.")
    table = table[table.arm.isin(names)]
    observed, boot = observed_counts(table), resampled_counts(table, n_boot, seed)
    family = [observed.arms.index(name) for name in family_arms]
    arm_at, control_at = observed.arms.index(arm), observed.arms.index(control_arm)
    point_arm, point_control = (_advantages(observed, family, at)[0] for at in (arm_at, control_at))
    boot_arm, boot_control = (_advantages(boot, family, at) for at in (arm_at, control_at))
    result = {}
    for key, point, values in [("advantage", point_arm, boot_arm),
                               ("vs_control", point_arm - point_control, boot_arm - boot_control)]:
        low, high = percentile_interval(values, level)
        result |= {key: float(point), f"{key}_low": float(low), f"{key}_high": float(high)}
    result["helps"] = bool(result["advantage_low"] > 0 and result["vs_control_low"] > 0)
    return result


def verdicts_over_seeds(verdicts: pd.DataFrame) -> pd.DataFrame:
    """One row per (judge, source): the seeds' mean A(arm) and A(arm) - A(control) with 95% t-intervals over seeds.

    ``verdicts``: one row per seed, judge and source, with the columns ``run`` (which seed), ``judge``, ``source``,
    ``advantage``, ``vs_control`` and ``helps`` (``frontier_verdict``'s, one arm). Each seed's own verdict reads
    intervals over prompts; over seeds the unit is the seed, so the interval is a t-interval of the seeds' values
    (``intervals.mean_interval``: wide with three seeds). ``helps`` is True when both means' intervals lie above 0;
    ``seeds_helping`` counts the seeds whose own verdict said so in that slice.
    """
    from reprank.measure.intervals import mean_interval

    missing = {"run", "judge", "source", "advantage", "vs_control", "helps"} - set(verdicts.columns)
    if missing:
        raise ValueError(f"The verdicts lack the columns {sorted(missing)}.")
    rows = []
    for (judge, source), part in verdicts.groupby(["judge", "source"], sort=False):
        if part.run.duplicated().any():
            raise ValueError(f"Two verdicts of one run for {judge} / {source}: give one arm's verdicts.")
        row = {"judge": judge, "source": source, "seeds": len(part), "seeds_helping": int(part.helps.sum())}
        for key in ("advantage", "vs_control"):
            mean, low, high = mean_interval(part[key])
            row |= {key: mean, f"{key}_low": low, f"{key}_high": high}
        row["helps"] = bool(row["advantage_low"] > 0 and row["vs_control_low"] > 0)
        rows.append(row)
    return pd.DataFrame(rows).set_index(["judge", "source"])


def plot_verdicts_over_seeds(verdicts: pd.DataFrame, over_seeds: pd.DataFrame):
    """A forest plot of the verdict, one row per (judge, source): left A(arm), right A(arm) - A(control), in
    points. Each seed is a dot with its bootstrap interval over prompts; the seeds' mean (``over_seeds``, from
    ``verdicts_over_seeds``) a black diamond with its t-interval over seeds. "Helps" needs both black bars right
    of 0 in every row. Returns the figure."""
    import matplotlib.pyplot as plt

    slices = list(over_seeds.index)
    ordered = verdicts.sort_values("seed", kind="stable") if "seed" in verdicts else verdicts
    runs = list(dict.fromkeys(ordered["run"]))
    fig, axes = plt.subplots(1, 2, figsize=(11, 1.1 + 0.9 * len(slices)), sharey=True)
    for ax, key, title in zip(axes, ("advantage", "vs_control"), ("A(arm): above DPO's frontier",
                                                                  "A(arm) - A(control): above its own p shuffled")):
        ax.axvline(0, color="0.4", lw=1)
        for k, run in enumerate(runs):
            part = verdicts[verdicts["run"] == run].set_index(["judge", "source"]).reindex(slices)
            y = np.arange(len(slices)) + 0.12 * (k + 1)
            ax.errorbar(100 * part[key], y, xerr=[100 * (part[key] - part[f"{key}_low"]).clip(lower=0),
                                                   100 * (part[f"{key}_high"] - part[key]).clip(lower=0)],
                        fmt="o", ms=4, capsize=2, alpha=0.8,
                        label=f"seed {part['seed'].iloc[0]}" if "seed" in part else str(run))
        mean = over_seeds[key]
        ax.errorbar(100 * mean, np.arange(len(slices)) - 0.15, fmt="D", color="black", ms=6, capsize=3,
                    xerr=[100 * (mean - over_seeds[f"{key}_low"]), 100 * (over_seeds[f"{key}_high"] - mean)],
                    label="mean over seeds (t-interval)")
        ax.set(title=title, xlabel="points")
    axes[0].set_yticks(np.arange(len(slices)), [f"{judge} | {source}" for judge, source in slices])
    axes[0].invert_yaxis()
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=len(runs) + 1, fontsize=8)
    return fig
