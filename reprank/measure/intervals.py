"""The 95% t-interval of a mean over a handful of runs (seeds): what ``reprank report`` and notebook 05 read.

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
