"""Notebook 02's exercises: the paper's batch confidence, a fitted per-pair confidence, and how to grade them."""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from reprank.method import confidence
from reprank.teaching.exercises.checking import Case, Exercise, describe, kind_problem, register

LN3 = math.log(3.0)  # sigmoid(ln 3) = 3/4, sigmoid(-ln 3) = 1/4: confidences worked out by hand


def _paper_confidence_cases() -> list[Case]:
    generator = torch.Generator().manual_seed(0)

    def scores(mean: float, n: int = 4) -> torch.Tensor:
        return mean + torch.randn(n, generator=generator, dtype=torch.float64)

    t = lambda *values: torch.tensor(values, dtype=torch.float64)
    p = lambda value: torch.tensor(value, dtype=torch.float64)
    sig = lambda x: 1.0 / (1.0 + math.exp(-x))
    return [
        # By hand: sigmoid(ln 3) - sigmoid(-ln 3) = 1/2, times alpha = 2 ln 3 is ln 3: p = sigmoid(ln 3) = 3/4.
        Case("by hand: s_c = ln 3, s_r = -ln 3, alpha = 2 ln 3: p = 3/4", (t(LN3, LN3), t(-LN3, -LN3), 2 * LN3),
             expected=p(0.75)),
        Case("a batch whose reward agrees with its labels", (scores(1.0), scores(-1.0), 7.5)),
        Case("a mixed batch of 8, alpha = 2", (scores(0.3, 8), scores(0.0, 8), 2.0)),
        Case("a batch of one pair", (t(0.4), t(0.1), 7.5)),
        Case("a tie (s_c = s_r): p = 0.5 exactly", (t(0.3, -1.0, 2.0), t(0.3, -1.0, 2.0), 7.5), expected=p(0.5)),
        Case("a batch whose reward disagrees: floored at p = 0.5", (scores(-1.0), scores(1.0), 7.5)),
        Case("the mean of sigma, not sigma of the mean (by hand)", (t(5.0, -3.0), t(0.0, 0.0), 7.5),
             expected=p(sig(7.5 * ((sig(5.0) + sig(-3.0)) / 2 - 0.5)))),
        Case("huge alpha, agreeing: p = 1", (t(3.0, 2.0), t(-2.0, -3.0), 1e6), expected=p(1.0)),
        Case("huge alpha, disagreeing: p = 0.5, not nan", (t(-3.0, -2.0), t(2.0, 3.0), 1e6), expected=p(0.5)),
        Case("an empty batch has no mean: ValueError, not nan", (t(), t(), 7.5), raises=ValueError),
    ]


def _pair_confidence_cases() -> list[Case]:
    rng = np.random.default_rng(1)
    return [
        Case("by hand: margins 2 ln 3, 0 and -2 ln 3 at tau = 2: p = 3/4, 1/2, 1/4",
             (np.array([2 * LN3, 1.0, 0.0]), np.array([0.0, 1.0, 2 * LN3]), 2.0), expected=np.array([0.75, 0.5, 0.25])),
        Case("20 random pairs, tau = 1", (rng.normal(0, 2, 20), rng.normal(0, 2, 20), 1.0)),
        Case("20 random pairs, tau = 2.5", (rng.normal(0, 2, 20), rng.normal(0, 2, 20), 2.5)),
        Case("a reward against the label: p < 0.5 (no floor here)", (np.array([-1.0]), np.array([1.0]), 1.0)),
        Case("ties: p = 0.5", (np.array([0.7, -2.0]), np.array([0.7, -2.0]), 0.3), expected=np.array([0.5, 0.5])),
        Case("margins of +-1000 at tau = 0.05: p = 1 and p = 0, not nan",
             (np.array([500.0, -500.0]), np.array([-500.0, 500.0]), 0.05), expected=np.array([1.0, 0.0])),
    ]


def _label_nll_cases() -> list[Case]:
    rng = np.random.default_rng(2)
    c, r = rng.normal(0, 2, 30), rng.normal(0, 2, 30)
    right = rng.random(30) < 0.8
    return [
        # By hand: p = sigmoid(ln 3) = 3/4 for both pairs; the first label is right, the second wrong.
        Case("by hand: p = 3/4, one label right and one wrong: (-log 3/4 - log 1/4) / 2",
             (np.array([LN3, LN3]), np.array([0.0, 0.0]), np.array([True, False]), 1.0),
             expected=(-math.log(0.75) - math.log(0.25)) / 2),
        Case("30 pairs, a fifth of the labels wrong, tau = 1", (c, r, right, 1.0)),
        Case("the same pairs, tau = 4", (c, r, right, 4.0)),
        Case("every label right", (c, r, np.ones(30, dtype=bool), 0.5)),
        Case("ties cost log 2 each, whatever tau", (np.zeros(3), np.zeros(3), np.array([True, False, True]), 0.2),
             expected=math.log(2.0)),
        # By hand: -log sigmoid(-20000) = 20000 (to 1e-8), -log sigmoid(20) = 2e-9: their mean is 10000.
        Case("a confident wrong label (margin 1000, tau = 0.05): large, not inf",
             (np.array([1000.0, 1.0]), np.array([0.0, 0.0]), np.array([False, True]), 0.05), expected=10000.0),
    ]


def _fit_temperature_cases() -> list[Case]:
    rng = np.random.default_rng(3)
    c, r = rng.normal(0, 3, 400), rng.normal(0, 3, 400)
    simulated = rng.random(400) < 1 / (1 + np.exp(-(c - r) / 1.7))  # labels right with probability sigma(m / 1.7)
    small_c, small_r = rng.normal(0, 2, 30), rng.normal(0, 2, 30)
    positive = np.abs(rng.normal(0, 2, 20)) + 0.1
    small_right = rng.random(30) < 0.8
    # No case of ties only: there the likelihood is flat in tau and every tau is a minimiser.
    return [
        Case("400 pairs simulated with tau = 1.7 (sklearn's logistic regression of the labels on m / tau)",
             (c, r, simulated), expected=_logistic_tau(c - r, simulated)),
        Case("30 pairs, a fifth of the labels wrong (sklearn's logistic regression)", (small_c, small_r, small_right),
             expected=_logistic_tau(small_c - small_r, small_right)),
        Case("every label right (margins > 0): tau at the lower bound 0.05",
             (positive, np.zeros(20), np.ones(20, bool)), expected=0.05),
        Case("every label wrong (margins > 0): tau at the upper bound 100",
             (positive, np.zeros(20), np.zeros(20, bool)), expected=100.0),
    ]


def _logistic_tau(margin: np.ndarray, label_right: np.ndarray) -> float:
    """tau from an independent fit: P(label right) = sigmoid(m / tau) is a logistic regression of the labels on the
    margin without intercept nor penalty, whose coefficient is 1 / tau (sklearn's solver, not the reference's)."""
    fit = LogisticRegression(C=np.inf, fit_intercept=False, tol=1e-12, max_iter=10_000)
    return float(1.0 / fit.fit(margin[:, None], label_right).coef_[0, 0])


def _same_tau(got, expected) -> str | None:
    """Within 1% of the expected tau: the likelihood is flat near its minimum, so a fine grid is right too."""
    problem = kind_problem(got, expected)
    if problem:
        return problem
    try:
        ratio = float(got) / float(expected)
    except (TypeError, ValueError):
        return f"expected a number, got {describe(got)}"
    return None if ratio > 0 and abs(math.log(ratio)) < 0.01 else f"expected tau = {expected:.4f}, got {describe(got)}"


def _floor_share_cases() -> list[Case]:
    return [
        Case("10 pairs in batches of 4, 4 and 2: count batches, not pairs (1 of 3)",
             (np.array([0.9] * 4 + [0.7] * 4 + [0.5] * 2), np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2])), expected=1 / 3),
        Case("batch ids in shuffled order", (np.array([0.5, 0.8, 0.5, 0.8, 0.5, 0.5]), np.array([2, 0, 2, 0, 1, 1])),
             expected=2 / 3),
        # By hand: batch 0 holds p = 0.5 and 0.9 (not at the floor), batch 1 only 0.5 (at it), batch 2 none.
        Case("several p per batch: a batch is at the floor when all its pairs are, not any (1 of 3)",
             (np.array([0.5, 0.9, 0.5, 0.4, 0.8, 0.7]), np.array([0, 0, 1, 1, 2, 2])), expected=1 / 3),
        Case("p = 0.5 exactly is at the floor; 0.5000001 is not", (np.array([0.5, 0.5000001, 1.0]), np.arange(3)),
             expected=1 / 3),
        Case("no batch at the floor", (np.full(6, 0.97), np.array([0, 0, 1, 1, 2, 2])), expected=0.0),
        Case("every batch at the floor", (np.full(5, 0.5), np.array([0, 0, 0, 1, 1])), expected=1.0),
    ]


def _ece_cases() -> list[Case]:
    rng = np.random.default_rng(4)
    conf = rng.random(50)
    return [
        Case("50 random predictions, 10 bins", (conf, rng.random(50) < conf, 10)),
        Case("calibrated (1 of 4 right at 0.25, 3 of 4 at 0.75): ECE 0",
             (np.array([0.25] * 4 + [0.75] * 4), np.array([1, 0, 0, 0, 1, 1, 1, 0], bool), 10), expected=0.0),
        # By hand: each p alone in its bin, so ECE = (0.25 + |1 - 0.3| + 0.65 + |1 - 0.7|) / 4 = 1.9 / 4.
        # np.linspace(0, 1, 11)'s edges 0.30000000000000004 and 0.7000000000000001 (np.digitize on them) would
        # put 0.3 with 0.25 and 0.7 with 0.65 instead: 0.2.
        Case("p = 0.3 and 0.7 open the bins [0.3, 0.4) and [0.7, 0.8), which np.linspace's edges miss: 0.475",
             (np.array([0.3, 0.25, 0.7, 0.65]), np.array([1, 0, 1, 0], bool), 10), expected=0.475),
        Case("p = 1 exactly belongs to the last bin",
             (np.array([1.0, 1.0, 0.95, 0.2]), np.array([1, 0, 1, 0], bool), 10)),
        Case("p = 0.5 exactly (the paper's floor) opens the bin [0.5, 0.6)",
             (np.array([0.5, 0.5, 0.5, 0.59, 0.45]), np.array([1, 0, 0, 1, 1], bool), 10)),
        Case("p = 0 and bin edges with 4 bins, most bins empty",
             (np.array([0.0, 0.25, 0.25, 0.75]), np.array([0, 1, 0, 1], bool), 4)),
        Case("one prediction, 3 bins: |0 - 0.9|", (np.array([0.9]), np.array([False]), 3), expected=0.9),
    ]


def _auroc_cases() -> list[Case]:
    rng = np.random.default_rng(5)
    flipped = confidence.flip_pairs(40, 0.25, seed=5)
    noisy = np.clip(np.where(flipped, 0.45, 0.8) + rng.normal(0, 0.2, 40), 0, 1)
    batch = np.repeat([0.9, 0.5, 0.7, 0.5, 0.99], 4)  # a batch confidence: four pairs share each p
    return [
        Case("40 pairs, a quarter flipped, noisy p", (noisy, flipped)),
        Case("perfect: every flipped pair below every clean one",
             (np.array([0.1, 0.2, 0.8, 0.9]), np.array([1, 1, 0, 0], bool)), expected=1.0),
        Case("backwards: AUROC 0", (np.array([0.9, 0.8, 0.2]), np.array([1, 1, 0], bool)), expected=0.0),
        Case("every p tied at the floor: AUROC 0.5", (np.full(6, 0.5), np.array([1, 0, 0, 1, 0, 0], bool)),
             expected=0.5),
        # By hand, doubts 1 - p: flipped 0.5 and 0.3 against clean 0.5 and 0.1: 1/2 + 1 + 0 + 1 of 4 = 0.625.
        Case("by hand: one tie among 4 comparisons, 2.5 / 4", (np.array([0.5, 0.5, 0.9, 0.7]),
                                                               np.array([1, 0, 0, 1], bool)), expected=0.625),
        Case("ties within batches of 4 count one half",
             (batch, np.array([0, 0, 0, 1, 1, 0, 1, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1], bool))),
        Case("no flipped pair: nothing to find, ValueError", (np.array([0.6, 0.9]), np.zeros(2, bool)),
             raises=ValueError),
    ]


PAPER_CONFIDENCE = register(Exercise(
    id="02.1", title="the paper's batch confidence", function="my_paper_confidence",
    reference=confidence.paper_batch_confidence, cases=_paper_confidence_cases, points=2))
PAIR_CONFIDENCE = register(Exercise(
    id="02.2", title="the per-pair confidence", function="my_pair_confidence",
    reference=confidence.pair_confidence, cases=_pair_confidence_cases))
LABEL_NLL = register(Exercise(
    id="02.3", title="the negative log-likelihood of the labels", function="my_label_nll",
    reference=confidence.label_nll, cases=_label_nll_cases, atol=1e-6, points=2))
FIT_TEMPERATURE = register(Exercise(
    id="02.4", title="fitting tau by likelihood", function="my_fit_temperature",
    reference=confidence.fit_temperature, cases=_fit_temperature_cases, compare=_same_tau, points=2))
FLOOR_SHARE = register(Exercise(
    id="02.5", title="the share of batches at the floor", function="my_floor_share",
    reference=confidence.floor_share, cases=_floor_share_cases))
ECE = register(Exercise(
    id="02.6", title="the expected calibration error", function="my_ece",
    reference=confidence.expected_calibration_error, cases=_ece_cases, points=2))
DETECTION_AUROC = register(Exercise(
    id="02.7", title="the flip-detection AUROC", function="my_detection_auroc",
    reference=confidence.detection_auroc, cases=_auroc_cases, points=2))


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _softplus(x):  # -log sigmoid(-x), stably
    return np.logaddexp(0, x)


def _ece_without_the_last_edge(conf, correct, n_bins):  # p = 1 falls past the last bin and is dropped
    index = np.floor(conf * n_bins).astype(int)
    kept = index < n_bins
    total = 0.0
    for b in np.unique(index[kept]):
        members = kept & (index == b)
        total += members.sum() * abs(correct[members].mean() - conf[members].mean())
    return total / len(conf)


def _ece_unweighted(conf, correct, n_bins):  # the plain mean over non-empty bins, not weighted by n_b / n
    index = np.minimum(np.floor(conf * n_bins).astype(int), n_bins - 1)
    return float(np.mean([abs(correct[index == b].mean() - conf[index == b].mean()) for b in np.unique(index)]))


def _ece_linspace_digitize(conf, correct, n_bins):  # edges 0.30000000000000004 ...: 0.3 falls in [0.2, 0.3)
    index = np.clip(np.digitize(conf, np.linspace(0, 1, n_bins + 1)) - 1, 0, n_bins - 1)
    return float(sum((index == b).sum() * abs(correct[index == b].mean() - conf[index == b].mean())
                     for b in np.unique(index)) / len(conf))


def _ece_rounded_bins(conf, correct, n_bins):  # bins by rounding: 0.5 and 0.45 share a bin
    index = np.round(conf * n_bins).astype(int)
    return sum((index == b).sum() * abs(correct[index == b].mean() - conf[index == b].mean())
               for b in np.unique(index)) / len(conf)


def _auroc(conf, flipped, tie: float, by: str = "1 - p"):
    score = 1 - conf if by == "1 - p" else conf
    f, c = score[flipped], score[~flipped]
    return float(((f[:, None] > c[None, :]) + tie * (f[:, None] == c[None, :])).mean())


def _grid_fit(s_c, s_r, label_correct, grid, pick=np.argmin, labels=None):
    y = label_correct if labels is None else labels(label_correct)
    nll = [confidence.label_nll(s_c, s_r, y, tau) for tau in grid]
    return float(grid[pick(nll)])


# Answers a checker must reject (tests/test_exercises.py): each is a mistake a student makes. An entry is the
# answer, or (answer, a regular expression the checker's message must match: rejected for the right reason).
_gap = lambda c, r: torch.sigmoid(c).mean() - torch.sigmoid(r).mean()  # the right batch gap

WRONG_ANSWERS = {
    "02.1": [
        lambda c, r, a: torch.sigmoid(a * _gap(c, r)),  # no floor
        lambda c, r, a: torch.sigmoid(a * (c.mean() - r.mean())).clamp(min=0.5),  # no inner sigmoid
        # sigma of the mean, not the mean of sigma
        lambda c, r, a: torch.sigmoid(a * (torch.sigmoid(c.mean()) - torch.sigmoid(r.mean()))).clamp(min=0.5),
        # each pair's p, then their mean
        lambda c, r, a: torch.sigmoid(a * (torch.sigmoid(c) - torch.sigmoid(r))).clamp(min=0.5).mean(),
        # a Python float, not the tensor (and no check for an empty batch)
        (lambda c, r, a: max(float(torch.sigmoid(a * _gap(c, r))), 0.5), r"expected a tensor .* got a float"),
        lambda c, r, a: torch.sigmoid(a * -_gap(c, r)).clamp(min=0.5),  # sign flipped
        (lambda c, r, a: torch.sigmoid(a * _gap(c, r)).clamp(min=0.5).float(),  # float32 where the scores are float64
         r"dtype torch.float64, got dtype torch.float32"),
    ],
    "02.2": [
        lambda c, r, tau: _sigmoid((c - r) * tau),  # multiplies by tau
        lambda c, r, tau: np.maximum(_sigmoid((c - r) / tau), 0.5),  # the paper's floor, which this one has not
        lambda c, r, tau: _sigmoid((r - c) / tau),  # the rejected side
        (lambda c, r, tau: torch.sigmoid(torch.as_tensor((c - r) / tau)), r"expected a numpy array"),  # a tensor
    ],
    "02.3": [
        lambda c, r, y, tau: -np.mean(np.where(y, np.log(_sigmoid((c - r) / tau)),
                                               np.log(1 - _sigmoid((c - r) / tau)))),  # log(sigmoid): inf
        # the sum, not the mean
        lambda c, r, y, tau: np.sum(y * _softplus(-(c - r) / tau) + (1 - y) * _softplus((c - r) / tau)),
        lambda c, r, y, tau: np.mean(y * _softplus(-(c - r) / tau)),  # forgets the wrong labels' term
        # the sign of the margin flipped in both terms
        lambda c, r, y, tau: np.mean(y * _softplus((c - r) / tau) + (1 - y) * _softplus(-(c - r) / tau)),
    ],
    "02.4": [
        lambda c, r, y: _grid_fit(c, r, y, np.geomspace(0.05, 100, 1001), pick=np.argmax),  # maximises the NLL
        lambda c, r, y: _grid_fit(c, r, y, np.linspace(0.05, 100, 100)),  # a linear grid: steps of 1 near tau = 1.7
        lambda c, r, y: _grid_fit(c, r, y, np.geomspace(0.05, 100, 1001), labels=np.ones_like),  # ignores the labels
        lambda c, r, y: 1 / _grid_fit(c, r, y, np.geomspace(0.05, 100, 1001)),  # 1 / tau, the logistic coefficient
    ],
    "02.5": [
        lambda p, batch: float(np.mean(p <= 0.5)),  # pairs, not batches
        lambda p, batch: float(np.mean([np.all(p[batch == b] < 0.5) for b in np.unique(batch)])),  # misses p = 0.5
        lambda p, batch: float(np.mean([np.all(np.isclose(p[batch == b], 0.5, atol=1e-6))
                                        for b in np.unique(batch)])),  # near the floor is not at it
        # a batch at the floor when ANY of its pairs is
        (lambda p, batch: float(np.mean([np.any(p[batch == b] <= 0.5) for b in np.unique(batch)])), r"not any"),
        lambda p, batch: float(np.mean([np.all(p[batch == b] >= 0.5) for b in np.unique(batch)])),  # above it
    ],
    "02.6": [_ece_without_the_last_edge, _ece_unweighted, _ece_rounded_bins,
             (_ece_linspace_digitize, r"np.linspace's edges miss: 0.475': expected 0.4750, got 0.2000")],
    "02.7": [
        lambda p, f: _auroc(p, f, tie=0.0),  # ties count as misses
        lambda p, f: _auroc(p, f, tie=1.0),  # ties count as hits
        lambda p, f: _auroc(p, f, tie=0.5, by="p"),  # ranks by p: high p first finds clean pairs
    ],
}
