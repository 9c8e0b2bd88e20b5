"""The 95% t-interval of a mean over a handful of runs (seeds): what ``reprank report`` and notebook 05 read.
``paired_difference`` is the same interval on the per-seed differences of two arms (notebook 05's section 6).
``compare_intervals`` reads two intervals (or a difference's interval against zero) as a verdict.

A t-interval, not mean ± 1.96·std/√n: with 3 seeds the t quantile is 4.30, and the normal interval would be
less than half as wide as it should be.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats


def t_half_width(std, n):
    """Half the width of the 95% t-interval of a mean of ``n`` values with sample std ``std`` (nan for n < 2);
    ``std`` and ``n`` are numbers or aligned pandas Series."""
    n = n.astype(float) if isinstance(n, pd.Series) else pd.Series([n], dtype=float)
    half = stats.t.ppf(0.975, (n - 1).where(n > 1)) * std / n ** 0.5
    return half


def mean_interval(values) -> tuple[float, float, float]:
    """(mean, low, high): the mean of per-seed values and its 95% t-interval (std with n - 1); no interval
    (nan, nan) for one value. Raises ValueError for none."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        raise ValueError("a mean over seeds needs at least one value")
    mean = float(values.mean())
    if values.size == 1:
        return mean, float("nan"), float("nan")
    half = float(t_half_width(values.std(ddof=1), values.size).iloc[0])
    return mean, mean - half, mean + half


def paired_difference(a, b) -> tuple[float, float, float]:
    """(mean, low, high) of the per-seed differences ``a - b`` and their 95% t-interval (``mean_interval``).

    ``a`` and ``b``: one measure of two arms, aligned by seed (the same seed at the same position; nan where a seed
    has no run of that arm). Only the seeds both arms have count: within a seed the arms share the flips, the
    held-out prompts and the training order, and the difference cancels what they share. One shared seed: (mean,
    nan, nan). Raises ValueError when the two are not aligned (different lengths) or share no seed.
    """
    a, b = np.asarray(a, dtype=float).reshape(-1), np.asarray(b, dtype=float).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"Got {a.size} and {b.size} values: give both arms' values aligned by seed")
    differences = (a - b)[~(np.isnan(a) | np.isnan(b))]
    if differences.size == 0:
        raise ValueError("the two arms share no seed: there is no paired difference")
    return mean_interval(differences)


def compare_intervals(low_a: float, high_a: float, low_b: float, high_b: float) -> str:
    """The verdict on two rates from their intervals: "higher" when a's lies wholly above b's, "lower" when wholly
    below, else "no difference" (overlapping or touching intervals, or a missing one: nan, at n = 0)."""
    if low_a > high_b:
        return "higher"
    return "lower" if high_a < low_b else "no difference"
