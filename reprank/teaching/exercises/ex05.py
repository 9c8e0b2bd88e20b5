"""Notebook 05's exercises: making labels wrong on purpose, reading what training on them did, and how sure we can be.

05.1-05.2 inject the noise the notebook trains on: 05.1 which pairs flip (an exact, seeded share), 05.2 (hard)
the flipped copy, in which everything that belongs to a side moves with it (``noise.flip_mask`` and
``noise.swap_labels``, the two steps of ``noise.flip_labels``). 05.3 is the implicit-reward accuracy on held-out
clean pairs (a signal that moves before refusal rates do); 05.4 the mean of a metric over seeds with its 95%
t-interval, which every comparison of arms in the notebook and the README goes through; 05.5 the d' of an arm's
refusals (does it refuse better, or only more?); 05.6 the paired difference of two arms over seeds, section 6's
verdict.
"""

from __future__ import annotations

import functools
import math
import zlib
from statistics import NormalDist

import numpy as np
import pandas as pd
from scipy import stats
from scipy.stats import norm

from reprank.measure import discrimination, intervals
from reprank.method import confidence
from reprank.studies import early_signals, noise
from reprank.teaching.exercises.checking import Case, Exercise, describe, register, what

NAN = float("nan")
T_975_DF1, T_975_DF2 = 12.706204736174707, 4.302652729749464  # Student's t quantiles of 0.975, 1 and 2 df (a table)


def _accuracy_cases() -> list[Case]:
    rng = np.random.default_rng(0)
    logps = [-40 - 30 * rng.random(10) for _ in range(4)]  # summed log-probabilities: large and negative
    same = -50 * rng.random(5)
    return [
        Case("10 pairs", (*logps, 0.1)),
        Case("the untuned policy (policy = reference): every z = 0, a tie counts as wrong", (same, same + 3, same,
                                                                                             same + 3, 0.1), expected=0.0),
        Case("the policy prefers the rejected answer everywhere, more than the reference does",
             (same - 5, same, same, same, 0.1), expected=0.0),
        # By hand: z = (2 - 1, 1 - 2, 3 - 1, 0.5 - 1, 4 - 1) = (1, -1, 2, -0.5, 3): 3 of 5 positive.
        Case("a policy that likes every answer more (both log-ratios up, z mixed): 3 of 5",
             (same + np.array([2.0, 1, 3, 0.5, 4]), same + np.array([1.0, 2, 1, 1, 1]), same, same, 0.5), expected=0.6),
        Case("no pairs", (np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0), 0.1), raises=ValueError),
    ]


def _flip_mask_cases() -> list[Case]:
    return [
        Case("8 pairs, a quarter: exactly 2", (8, 0.25, 0)),
        Case("7 pairs at 0.25: round(1.75) = 2, not int(1.75) = 1", (7, 0.25, 2)),
        Case("9 pairs at 0.25: round(2.25) = 2, not ceil(2.25) = 3", (9, 0.25, 4)),
        Case("20 pairs, seeded as flip_mask seeds a group: seed = [0, crc32(name)]",
             (20, 0.25, [0, zlib.crc32(b"rerank_harmful")])),
        Case("76 pairs at 0.25, seed 1: 19 flipped", (76, 0.25, 1)),
        Case("fraction 0: no pair flips", (6, 0.0, 0), expected=np.zeros(6, dtype=bool)),
        Case("fraction 1: every pair flips", (6, 1.0, 3), expected=np.ones(6, dtype=bool)),
        Case("no pairs: an empty mask", (0, 0.25, 0), expected=np.zeros(0, dtype=bool)),
        Case("fraction 1.5: not a share", (8, 1.5, 0), raises=ValueError),
    ]


def _pairs(**columns) -> pd.DataFrame:
    index = columns.pop("index", None)
    return pd.DataFrame(columns, index=index)


def _swap_cases() -> list[Case]:
    rng = np.random.default_rng(5)
    n = 12
    sides = _pairs(prompt=[f"prompt {i}" for i in range(n)], chosen=[f"refusal {i}" for i in range(n)],
                   rejected=[f"answer {i}" for i in range(n)], chosen_reward=np.round(rng.normal(1, 1, n), 2),
                   rejected_reward=np.round(rng.normal(-1, 1, n), 2), chosen_origin=["reference"] * n,
                   rejected_origin=["policy_sample"] * n, confidence=np.round(rng.random(n), 2),
                   source=rng.choice(["rerank_harmful", "rerank_benign"], n))
    # By hand: rows 0 and 2 swap their answers; the columns are kept, `flipped` added last.
    three = _pairs(prompt=["p0", "p1", "p2"], chosen=["no0", "no1", "no2"], rejected=["yes0", "yes1", "yes2"])
    three_flipped = _pairs(prompt=["p0", "p1", "p2"], chosen=["yes0", "no1", "yes2"], rejected=["no0", "yes1", "no2"],
                           flipped=[True, False, True])
    # By hand, on a filtered frame (index 10-13, the flags by position): rows 11 and 13 swap answers, rewards and
    # origins; their confidence p becomes 1 - p (0.8 -> 0.2, 0.6 -> 0.4); `source` belongs to the pair, not a side.
    four = _pairs(index=[10, 11, 12, 13], prompt=["a", "b", "c", "d"], chosen=["c0", "c1", "c2", "c3"],
                  rejected=["r0", "r1", "r2", "r3"], chosen_reward=[2.0, 1.5, 0.5, 3.0],
                  rejected_reward=[-1.0, 0.5, 0.0, -2.0], chosen_origin=["reference", "policy_sample", "reference",
                                                                          "reference"],
                  rejected_origin=["policy_sample"] * 4, confidence=[0.9, 0.8, 0.7, 0.6],
                  source=["rerank_harmful", "rerank_harmful", "rerank_benign", "rerank_benign"])
    four_flipped = _pairs(index=[10, 11, 12, 13], prompt=["a", "b", "c", "d"], chosen=["c0", "r1", "c2", "r3"],
                          rejected=["r0", "c1", "r2", "c3"], chosen_reward=[2.0, 0.5, 0.5, -2.0],
                          rejected_reward=[-1.0, 1.5, 0.0, 3.0],
                          chosen_origin=["reference", "policy_sample", "reference", "policy_sample"],
                          rejected_origin=["policy_sample", "policy_sample", "policy_sample", "reference"],
                          confidence=[0.9, 0.2, 0.7, 0.4],
                          source=["rerank_harmful", "rerank_harmful", "rerank_benign", "rerank_benign"],
                          flipped=[False, True, False, True])
    none_flipped = four.assign(flipped=False)
    return [
        Case("by hand: 3 pairs, the first and last flipped", (three, np.array([True, False, True])),
             expected=three_flipped),
        Case("by hand: rewards, origins and confidence move with their side; index 10-13", (four, np.array(
            [False, True, False, True])), expected=four_flipped),
        Case("no pair flipped: the same pairs, flipped all False", (four, np.zeros(4, dtype=bool)),
             expected=none_flipped),
        Case("12 pairs as notebook 03 stores them, 3 flipped", (sides, confidence.flip_pairs(n, 0.25, seed=0))),
        Case("every pair flipped", (sides, np.ones(n, dtype=bool))),
        Case("pairs flipped already (a 'flipped' column): flip the clean pairs, once",
             (three_flipped, np.array([False, True, False])), raises=ValueError),
        Case("3 flags for 4 pairs", (four, np.array([True, False, True])), raises=ValueError),
    ]


def _same_frame(got, expected) -> str | None:
    """None when ``got`` is a DataFrame with ``expected``'s columns (in order), index, dtypes and values; else what
    differs, in words: the first column and row that do."""
    if not isinstance(got, pd.DataFrame):
        return f"expected a pandas DataFrame, got {what(got)}"
    if list(got.columns) != list(expected.columns):
        if set(got.columns) == set(expected.columns):
            return f"expected the columns in the order {list(expected.columns)}, got {list(got.columns)}"
        return f"expected the columns {list(expected.columns)}, got {list(got.columns)}"
    if not got.index.equals(expected.index):
        return (f"expected the index {describe(list(expected.index))}, got {describe(list(got.index))} "
                f"(keep the pairs' own index)")
    for column in expected.columns:
        want, have = expected[column], got[column]
        if have.dtype != want.dtype:
            return f"column {column!r}: expected dtype {want.dtype}, got dtype {have.dtype}"
        if want.dtype.kind in "biuf":
            differ = ~np.isclose(have.to_numpy(dtype=float), want.to_numpy(dtype=float), atol=1e-9, equal_nan=True)
        else:
            differ = have.to_numpy() != want.to_numpy()
        if differ.any():
            row = int(np.flatnonzero(differ)[0])
            return f"column {column!r}, row {row}: expected {want.iloc[row]!r}, got {have.iloc[row]!r}"
    return None


def _pairs_left_as_they_were(yours: tuple, reference: tuple) -> str | None:
    problem = _same_frame(yours[0], reference[0])  # the reference leaves its pairs as they were given
    if problem:
        return (f"your function changed the pairs it was given ({problem}, after the call): work on a copy, "
                f"`pairs.copy()`; the clean arm trains on those very pairs")
    return None


def _dprime_cases() -> list[Case]:
    z = NormalDist().inv_cdf  # the inverse normal CDF of Python's standard library, not scipy's
    return [
        # By hand: (30 + 0.5) / 61 = 0.5 and (20 + 0.5) / 41 = 0.5; z(0.5) = 0.
        Case("half of each refused: (30.5 / 61, 20.5 / 41) = (0.5, 0.5), d' = 0", (0.5, 0.5, 60, 40), expected=0.0),
        # H = 60 / 60 -> 60.5 / 61 = 0.9918, z = 2.4000; F = 20 / 40 -> 20.5 / 41 = 0.5, z = 0.
        Case("every harmful prompt refused: 60.5 / 61, not z(1) = inf", (1.0, 0.5, 60, 40),
             expected=z(60.5 / 61)),
        # H = 30 / 60 -> 0.5, z = 0; F = 0 / 40 -> 0.5 / 41 = 0.0122, z = -2.2509.
        Case("no benign prompt refused: 0.5 / 41, not z(0) = -inf", (0.5, 0.0, 60, 40), expected=-z(0.5 / 41)),
        # 2.4000 + 2.2509 = 4.6510.
        Case("all harmful, no benign refused: the largest d' 60 and 40 prompts allow", (1.0, 0.0, 60, 40),
             expected=z(60.5 / 61) - z(0.5 / 41)),
        Case("50 of 60 hits, 10 of 40 false alarms", (50 / 60, 10 / 40, 60, 40)),
        Case("the same rate, other n: not exactly 0", (0.3, 0.3, 60, 40)),
        Case("refuses the benign prompts more than the harmful ones: d' < 0", (0.2, 0.6, 60, 40)),
    ]


def _interval_cases() -> list[Case]:
    return [
        # By hand: mean 0.5, s = 0.1 (n - 1 = 2), s / sqrt(3) * t(0.975, 2 df).
        Case("by hand: 0.4, 0.5, 0.6: 0.5 +- 4.303 * 0.1 / sqrt(3)", ([0.4, 0.5, 0.6],),
             expected=(0.5, 0.5 - T_975_DF2 * 0.1 / math.sqrt(3), 0.5 + T_975_DF2 * 0.1 / math.sqrt(3))),
        Case("3 seeds", ([0.42, 0.55, 0.48],)),
        Case("5 seeds", ([0.10, 0.25, 0.18, 0.30, 0.22],)),
        # By hand: mean 0.5, s = 0.1414, s / sqrt(2) = 0.1, times t(0.975, 1 df) = 12.706.
        Case("2 seeds: the t quantile is 12.7, not 1.96", ([0.40, 0.60],),
             expected=(0.5, 0.5 - T_975_DF1 * 0.1, 0.5 + T_975_DF1 * 0.1)),
        Case("3 equal values: an interval of width 0", ([0.5, 0.5, 0.5],), expected=(0.5, 0.5, 0.5)),
        Case("1 seed: a mean, and no interval (nan, nan)", ([0.7],), expected=(0.7, NAN, NAN)),
        Case("no seeds", ([],), raises=ValueError),
    ]


def _paired_cases() -> list[Case]:
    rng = np.random.default_rng(2)
    a, b = rng.random(5), rng.random(5)
    return [
        # By hand: d = (0.05, 0.04, 0.06), mean 0.05, s = 0.01, half = 4.303 * 0.01 / sqrt(3) = 0.0248. The arms'
        # own intervals (0.6 +- 0.25, 0.55 +- 0.26) overlap almost wholly: pairing removes what the seeds share.
        Case("by hand: 0.05, 0.04, 0.06 better on every seed: 0.05 +- 4.303 * 0.01 / sqrt(3)",
             ([0.50, 0.70, 0.60], [0.45, 0.66, 0.54]),
             expected=(0.05, 0.05 - T_975_DF2 * 0.01 / math.sqrt(3), 0.05 + T_975_DF2 * 0.01 / math.sqrt(3))),
        # By hand: seeds 0 and 3 have both arms: d = (0.1, 0.2), mean 0.15, s / sqrt(2) = 0.05, times 12.706.
        Case("by hand: a seed missing in each arm (nan): 2 shared seeds, d = 0.1 and 0.2",
             ([0.6, NAN, 0.4, 0.5], [0.5, 0.3, NAN, 0.3]),
             expected=(0.15, 0.15 - T_975_DF1 * 0.05, 0.15 + T_975_DF1 * 0.05)),
        Case("one shared seed: a difference, and no interval", ([0.6, NAN], [0.4, 0.5]), expected=(0.2, NAN, NAN)),
        Case("the same values in both arms: (0, 0, 0)", ([0.3, 0.5, 0.4], [0.3, 0.5, 0.4]), expected=(0.0, 0.0, 0.0)),
        Case("5 seeds", (a, b)),
        Case("pandas Series by seed, as section 6 passes them", (pd.Series(a[:3], index=[0, 1, 2]),
                                                                  pd.Series(b[:3], index=[0, 1, 2]))),
        Case("no shared seed", ([0.5, NAN], [NAN, 0.4]), raises=ValueError),
        Case("3 values against 2: not aligned by seed", ([0.5, 0.6, 0.7], [0.4, 0.5]), raises=ValueError),
    ]


register(Exercise(id="05.1", title="which pairs flip", function="my_flip_mask",
                  reference=confidence.flip_pairs, cases=_flip_mask_cases))
register(Exercise(id="05.2", title="the flipped copy", function="my_swap_labels", reference=noise.swap_labels,
                  cases=_swap_cases, compare=_same_frame, points=3, effects=_pairs_left_as_they_were))
register(Exercise(id="05.3", title="the implicit-reward accuracy", function="my_reward_accuracy",
                  reference=early_signals.accuracy_from_log_probs, cases=_accuracy_cases))
register(Exercise(id="05.4", title="a mean over seeds and its interval", function="my_seed_interval",
                  reference=intervals.mean_interval, cases=_interval_cases, atol=1e-6))
register(Exercise(id="05.5", title="d': refusing better, or only more", function="my_dprime",
                  reference=discrimination.dprime, cases=_dprime_cases, atol=1e-6, points=2))
register(Exercise(id="05.6", title="the paired difference over seeds", function="my_paired_difference",
                  reference=intervals.paired_difference, cases=_paired_cases, atol=1e-6, points=2))


def _z(pc, pr, rc, rr):
    return (np.asarray(pc) - rc) - (np.asarray(pr) - rr)


def _normal_interval(values):  # mean +- 1.96 sd / sqrt(n): too narrow for a handful of seeds
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        raise ValueError("no values")
    if values.size == 1:
        return float(values[0]), NAN, NAN
    half = 1.96 * values.std(ddof=1) / math.sqrt(values.size)
    return float(values.mean()), float(values.mean() - half), float(values.mean() + half)


def _t_interval(values, ddof=1, spread="sem"):
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        raise ValueError("no values")
    if values.size == 1:
        return float(values[0]), NAN, NAN
    sd = values.std(ddof=ddof)
    half = stats.t.ppf(0.975, values.size - 1) * (sd / math.sqrt(values.size) if spread == "sem" else sd)
    return float(values.mean()), float(values.mean() - half), float(values.mean() + half)


def _mask(n, k, seed):
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng(seed).choice(n, size=k, replace=False)] = True
    return mask


def _legacy_mask(n, fraction, seed):  # numpy's old global generator: other draws, and seed lists mean other seeds
    np.random.seed(int(np.sum(seed)) % 2**32)
    mask = np.zeros(n, dtype=bool)
    mask[np.random.choice(n, size=int(round(n * fraction)), replace=False)] = True
    return mask


def _swap(pairs, flipped, *, sides=True, confidence=True, copy=True, flag_dtype=bool, check=True, reset=False):
    """05.2 with one mistake switched on: a side's columns left behind, the confidence kept, the pairs changed in
    place, the flags stored as 0/1, no check of a frame flipped already, the index reset."""
    flipped = np.asarray(flipped, dtype=bool)
    if check and "flipped" in pairs:
        raise ValueError("flipped already")
    if len(flipped) != len(pairs):
        raise ValueError("one flag per pair")
    frame = pairs.copy() if copy else pairs
    for column in [c for c in frame.columns if c == "chosen" or (sides and c.startswith("chosen_"))]:
        other = "rejected" + column.removeprefix("chosen")
        if other in frame:
            chosen, rejected = frame[column].to_numpy(copy=True), frame[other].to_numpy(copy=True)
            frame.loc[flipped, column], frame.loc[flipped, other] = rejected[flipped], chosen[flipped]
    if confidence and "confidence" in frame:
        frame.loc[flipped, "confidence"] = 1.0 - frame.loc[flipped, "confidence"]
    frame["flipped"] = flipped.astype(flag_dtype)
    return frame.reset_index(drop=True) if reset else frame


def _swap_aligned(pairs, flipped):  # pandas aligns the right side's columns by name: nothing moves
    flipped, frame = np.asarray(flipped, dtype=bool), pairs.copy()
    if "flipped" in frame or len(flipped) != len(frame):
        raise ValueError("flip the clean pairs, once, one flag per pair")
    for column in [c for c in frame.columns if c == "chosen" or c.startswith("chosen_")]:
        other = "rejected" + column.removeprefix("chosen")
        if other in frame:
            frame.loc[flipped, [column, other]] = frame.loc[flipped, [other, column]]
    if "confidence" in frame:
        frame.loc[flipped, "confidence"] = 1.0 - frame.loc[flipped, "confidence"]
    frame["flipped"] = flipped
    return frame


def _z_rate(rate, n):
    return norm.ppf((np.asarray(rate, dtype=float) * n + 0.5) / (n + 1))


def _half_n_rule(rate, n):  # the other common correction: 1/(2n) only at 0 and 1, every other rate as it is
    return norm.ppf(min(max(rate, 0.5 / n), 1 - 0.5 / n))


def _welch(a, b):  # the arms' means and an unpaired interval: ignores that a seed is shared
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError("not aligned")
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if not a.size or not b.size:
        raise ValueError("no seeds")
    mean = float(a.mean() - b.mean())
    if a.size < 2 or b.size < 2:
        return mean, NAN, NAN
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1)) if va + vb > 0 else a.size + b.size - 2
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    return mean, mean - half, mean + half


def _paired(a, b, interval=_t_interval, drop=True, separately=False):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError("not aligned")
    if separately:  # each arm's missing seeds dropped on its own: the rest shift and pair with other seeds
        a, b = a[~np.isnan(a)], b[~np.isnan(b)]
        n = min(a.size, b.size)
        return interval(a[:n] - b[:n])
    d = a - b
    return interval(d[~np.isnan(d)] if drop else d)


# Answers a checker must reject (tests/test_exercises.py): each is a mistake a student makes. An entry is the
# answer, or (answer, a regular expression the checker's message must match: rejected for the right reason).
WRONG_ANSWERS = {
    "05.1": [
        lambda n, fraction, seed: np.random.default_rng(seed).random(n) < fraction,  # a coin per pair: the count varies
        lambda n, fraction, seed: _mask(n, int(n * fraction), seed),  # int() floors 1.75 to 1
        lambda n, fraction, seed: _mask(n, math.ceil(n * fraction), seed),  # ceil: 2.25 -> 3 (at least one flip)
        _legacy_mask,  # np.random.seed / np.random.choice: not the generator the package seeds
        lambda n, fraction, seed: np.isin(np.arange(n),  # a permutation's first k: other draws of the same generator
                                          np.random.default_rng(seed).permutation(n)[:round(n * fraction)]),
        (lambda n, fraction, seed: np.random.default_rng(seed).choice(n, size=round(n * fraction), replace=False),
         r"expected a numpy array of shape \(8,\).*got shape"),  # the positions, not a mask
        (lambda n, fraction, seed: _mask(n, round(n * fraction), seed).astype(int), "dtype bool, got dtype int64"),
    ],
    "05.2": [
        (_swap_aligned, r"column 'chosen', row 0: expected 'yes0', got 'no0'"),
        (functools.partial(_swap, sides=False), "column 'chosen_reward'"),  # only the answers swapped
        (functools.partial(_swap, confidence=False), "column 'confidence'"),  # p kept: it vouches for the old label
        (functools.partial(_swap, copy=False), "changed the pairs it was given"),
        (functools.partial(_swap, flag_dtype=int), "column 'flipped': expected dtype bool"),
        (functools.partial(_swap, check=False), "expected a ValueError"),  # flips a flipped frame back
        (functools.partial(_swap, reset=True), "expected the index"),
        lambda pairs, flipped: _swap(pairs, ~np.asarray(flipped, dtype=bool)),  # the unflipped pairs swapped
    ],
    "05.3": [
        lambda pc, pr, rc, rr, beta: float(np.mean(beta * _z(pc, pr, rc, rr) >= 0)),  # a tie counted right
        lambda pc, pr, rc, rr, beta: float(np.mean(np.asarray(pc) > np.asarray(pr))),  # no reference
        lambda pc, pr, rc, rr, beta: float(np.sum(beta * _z(pc, pr, rc, rr) > 0)),  # a count, not a share
        lambda pc, pr, rc, rr, beta: float(np.mean(beta * _z(pc, pr, rc, rr) > 0)) if len(pc) else NAN,  # no error
        lambda pc, pr, rc, rr, beta: float(np.mean(beta * -_z(pc, pr, rc, rr) > 0)) if len(pc) else NAN,  # sign
        (lambda pc, pr, rc, rr, beta: beta * _z(pc, pr, rc, rr) > 0, r"expected a number .*got a numpy array"),
    ],
    "05.4": [
        _normal_interval,
        lambda values: _t_interval(values, ddof=0),  # the population std
        lambda values: _t_interval(values, spread="sd"),  # the spread of the seeds, not of their mean
        lambda values: (float(np.mean(values)), 0.0, 1.0) if len(values) == 1 else _t_interval(values),  # n = 1
        lambda values: _t_interval(values)[1:] if len(values) > 1 else (NAN, NAN),  # (low, high) without the mean
    ],
    "05.5": [
        (lambda h, f, nh, nb: float(norm.ppf(h) - norm.ppf(f)), "expected 2.4000, got inf"),  # no correction
        lambda h, f, nh, nb: float(_half_n_rule(h, nh) - _half_n_rule(f, nb)),  # 1/(2n) at 0 and 1 only
        lambda h, f, nh, nb: float(norm.ppf((h + 0.5) / (nh + 1)) - norm.ppf((f + 0.5) / (nb + 1))),  # rate, not k
        lambda h, f, nh, nb: float(_z_rate(f, nb) - _z_rate(h, nh)),  # z(F) - z(H)
        lambda h, f, nh, nb: float(_z_rate(h, nb) - _z_rate(f, nh)),  # each rate corrected with the other's n
        lambda h, f, nh, nb: float(norm.cdf((h * nh + 0.5) / (nh + 1)) - norm.cdf((f * nb + 0.5) / (nb + 1))),  # cdf
    ],
    "05.6": [
        _welch,  # the difference of the means with an unpaired interval
        functools.partial(_paired, separately=True),  # each arm's nan dropped apart: seeds paired with other seeds
        functools.partial(_paired, drop=False),  # a missing seed makes the mean nan
        functools.partial(_paired, interval=_normal_interval),  # 1.96, not t
        lambda a, b: _paired(b, a),  # control minus arm
    ],
}
