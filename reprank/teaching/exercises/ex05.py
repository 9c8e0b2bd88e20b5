"""Notebook 05's exercises: reading what training on noisy labels did, and how sure we can be.

05.1 is the implicit-reward accuracy on held-out clean pairs (a signal that moves before refusal rates do);
05.2 how well a confidence finds the pairs we flipped; 05.3 the mean of a metric over seeds with its 95%
t-interval, which every comparison of arms in the notebook and the README goes through.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats
from sklearn.metrics import roc_auc_score

from reprank.measure import intervals
from reprank.method import confidence
from reprank.studies import early_signals
from reprank.teaching.exercises.checking import Case, Exercise, register

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


def _flip_auroc_cases() -> list[Case]:
    rng = np.random.default_rng(1)
    flipped = np.array([True, False, False, True, False, False, False, True])
    return [
        Case("every flipped pair has the lowest p: 1.0", (np.where(flipped, 0.3, 0.9), flipped), expected=1.0),
        Case("one p for every pair (a batch p within its batch): 0.5", (np.full(8, 0.7), flipped), expected=0.5),
        Case("the flipped pairs have the highest p: 0.0", (np.where(flipped, 0.95, 0.6), flipped), expected=0.0),
        # By hand: flipped p 0.4 and 0.6 against clean 0.6 and 0.9: 1 + 1 + 1/2 (a tie) + 1 of 4.
        Case("by hand: one tie among 4 comparisons, 3.5 / 4", (np.array([0.4, 0.6, 0.6, 0.9]),
                                                               np.array([True, True, False, False])), expected=0.875),
        Case("20 pairs, p rounded so that several tie", (np.round(rng.random(20), 1), rng.random(20) < 0.3)),
        Case("no flipped pair: undefined", (np.full(4, 0.7), np.zeros(4, dtype=bool)), raises=ValueError),
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


register(Exercise(id="05.1", title="the implicit-reward accuracy", function="my_reward_accuracy",
                  reference=early_signals.accuracy_from_log_probs, cases=_accuracy_cases))
register(Exercise(id="05.2", title="finding the flipped pairs", function="my_flip_auroc",
                  reference=confidence.detection_auroc, cases=_flip_auroc_cases, atol=1e-6))
register(Exercise(id="05.3", title="a mean over seeds and its interval", function="my_seed_interval",
                  reference=intervals.mean_interval, cases=_interval_cases, atol=1e-6))


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


# Answers a checker must reject (tests/test_exercises.py): each is a mistake a student makes. An entry is the
# answer, or (answer, a regular expression the checker's message must match: rejected for the right reason).
WRONG_ANSWERS = {
    "05.1": [
        lambda pc, pr, rc, rr, beta: float(np.mean(beta * _z(pc, pr, rc, rr) >= 0)),  # a tie counted right
        lambda pc, pr, rc, rr, beta: float(np.mean(np.asarray(pc) > np.asarray(pr))),  # no reference
        lambda pc, pr, rc, rr, beta: float(np.sum(beta * _z(pc, pr, rc, rr) > 0)),  # a count, not a share
        lambda pc, pr, rc, rr, beta: float(np.mean(beta * _z(pc, pr, rc, rr) > 0)) if len(pc) else NAN,  # no error
        lambda pc, pr, rc, rr, beta: float(np.mean(beta * -_z(pc, pr, rc, rr) > 0)) if len(pc) else NAN,  # sign
        (lambda pc, pr, rc, rr, beta: beta * _z(pc, pr, rc, rr) > 0, r"expected a number .*got a numpy array"),
    ],
    "05.2": [
        lambda p, flipped: float(roc_auc_score(flipped, p)),  # AUROC of p, not of 1 - p
        lambda p, flipped: float(np.mean(np.asarray(p)[flipped].mean() < np.asarray(p)[~flipped].mean())),  # means
        lambda p, flipped: float(np.mean([a < b for a in np.asarray(p)[flipped]
                                          for b in np.asarray(p)[~flipped]])),  # ties counted as misses
    ],
    "05.3": [
        _normal_interval,
        lambda values: _t_interval(values, ddof=0),  # the population std
        lambda values: _t_interval(values, spread="sd"),  # the spread of the seeds, not of their mean
        lambda values: (float(np.mean(values)), 0.0, 1.0) if len(values) == 1 else _t_interval(values),  # n = 1
        lambda values: _t_interval(values)[1:] if len(values) > 1 else (NAN, NAN),  # (low, high) without the mean
    ],
}
