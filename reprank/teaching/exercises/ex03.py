"""Notebook 03's exercises: re-ranking sampled candidates into pairs, and testing the paper's hypothesis."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp, pearsonr, spearmanr

from reprank.method import rerank
from reprank.teaching.exercises.checking import Case, Exercise, register

REFUSAL = "I can't help with that."


def _pools(rows: list[tuple[str, bool, list[float], float | None]]) -> pd.DataFrame:
    """Candidate pools: (prompt, harmful, the policy's sample rewards, the written refusal's reward or None).
    The refusal comes after the samples in its pool, as ``rerank.add_reference_responses`` appends it."""
    records = []
    for prompt, harmful, own, refusal in rows:
        records += [dict(prompt=prompt, response=f"{prompt} sample {i}", origin="policy_sample", reward=r,
                         harmful_prompt=harmful) for i, r in enumerate(own)]
        if refusal is not None:
            records.append(dict(prompt=prompt, response=REFUSAL, origin="reference", reward=refusal,
                                harmful_prompt=harmful))
    return pd.DataFrame(records)


def _ranking_cases() -> list[Case]:
    rng = np.random.default_rng(0)
    random_pools = [(f"p{k}", k % 2 == 0, list(rng.normal(size=4)), float(rng.normal())) for k in range(10)]
    shares = lambda first_harmful, last_benign, first_benign: {
        "refusal_first_harmful": first_harmful, "refusal_last_benign": last_benign, "refusal_first_benign": first_benign}
    nan = float("nan")
    # Each expected share below is counted by hand from the pools' rewards.
    return [
        Case("a reward that ranks every refusal right",
             (_pools([("h1", True, [0.1, -1.0], 2.0), ("h2", True, [0.3, 0.2], 1.0),
                      ("b1", False, [0.5, 1.0], -2.0), ("b2", False, [0.0, 0.1], -0.5)]),), expected=shares(1.0, 1.0, 0.0)),
        Case("random rewards, 10 pools", (_pools(random_pools),)),
        Case("a tie at the top of a harmful pool: the earlier candidate (the policy's) ranks first",
             (_pools([("h1", True, [1.0, 0.0], 1.0), ("h2", True, [0.0, -1.0], 2.0), ("b1", False, [1.0], -1.0)]),),
             expected=shares(0.5, 1.0, 0.0)),
        Case("a tie at the bottom of a benign pool: the later candidate (the refusal) ranks last",
             (_pools([("h1", True, [0.0], 1.0), ("b1", False, [1.0, -1.0], -1.0), ("b2", False, [-2.0, 0.0], -1.0)]),),
             expected=shares(1.0, 0.5, 0.0)),
        Case("pools without a written refusal are left out",
             (_pools([("h1", True, [0.0, 1.0], 2.0), ("h2", True, [5.0, 1.0], None), ("b1", False, [1.0], -1.0),
                      ("b2", False, [1.0, 3.0], None)]),), expected=shares(1.0, 1.0, 0.0)),
        Case("no benign pool: those shares are undefined (nan)", (_pools([("h1", True, [0.0, 1.0], 0.5)]),),
             expected=shares(0.0, nan, nan)),
        Case("a reward that likes every refusal: benign refusals rank first",
             (_pools([("h1", True, [0.0, 1.0], 2.0), ("b1", False, [1.0, 0.5], 3.0), ("b2", False, [0.0, 1.0], 0.5)]),),
             expected=shares(1.0, 0.0, 0.5)),
    ]


def _best_worst_cases() -> list[Case]:
    rng = np.random.default_rng(1)
    return [Case(f"{n} random rewards", (rng.normal(size=n),)) for n in (5, 8)] + [
        Case("a tie at the bottom: the later one ranks last (stable order)", (np.array([2.0, 0.0, 1.0, 0.0]),),
             expected=[(0, 3)]),
        Case("a tie at the top: the earlier one ranks first", (np.array([3.0, 1.0, 3.0, 0.0]),), expected=[(0, 3)]),
        Case("every reward equal: no pair", (np.array([1.0, 1.0, 1.0]),), expected=[]),
        Case("one candidate: no pair", (np.array([0.3]),), expected=[]),
    ]


def _top_bottom_cases() -> list[Case]:
    rng = np.random.default_rng(0)
    return [
        # By hand: ranked 1 (0.9), 6, 4, 2, 7, 3, 5, 0 (0.1); rank i against rank i + 4.
        Case("by hand: 8 samples, m = 4: ranks 0-4, 1-5, 2-6, 3-7",
             (np.array([0.1, 0.9, 0.5, 0.3, 0.7, 0.2, 0.8, 0.4]), 4), expected=[(1, 7), (6, 3), (4, 5), (2, 0)]),
    ] + [Case(f"n = {n}, m = {m}", (rng.normal(size=n), m)) for n, m in ((8, 4), (5, 2), (6, 1))] + [
        Case("n < 2m: h = n // 2 (n = 3, m = 4)", (rng.normal(size=3), 4)),
        Case("ties keep their pool order", (np.array([0.0, 1.0, 0.0, 1.0, 0.5, 0.5]), 3),
             expected=[(1, 5), (3, 0), (4, 2)]),
        Case("a pair whose rewards tie is skipped", (np.array([1.0, 1.0, 1.0, 0.0]), 2), expected=[(1, 3)]),
        Case("one candidate: no pair", (np.array([0.5]), 2), expected=[]),
        Case("m = 0: no pair", (rng.normal(size=4), 0), expected=[]),
    ]


def _confidence_cases() -> list[Case]:
    rng = np.random.default_rng(2)
    chosen, rejected = rng.normal(1.0, 1.0, 8), rng.normal(-1.0, 1.0, 8)
    return [
        Case("8 random pairs, the paper's formula (tau = None)", (chosen, rejected, None, 7.5)),
        Case("8 random pairs, fitted tau = 0.7", (chosen, rejected, 0.7, 7.5)),
        Case("a tie (R_c = R_r): p = 0.5 either way", (np.array([0.3]), np.array([0.3]), None, 7.5),
             expected=np.array([0.5])),
        Case("a tie with tau", (np.array([0.3]), np.array([0.3]), 0.7, 7.5)),
        Case("a reversed pair: the paper floors p at 0.5", (np.array([-1.0, 0.0]), np.array([1.0, 2.0]), None, 7.5)),
        Case("a reversed pair with tau: p below 0.5", (np.array([-1.0, 0.0]), np.array([1.0, 2.0]), 0.7, 7.5)),
        Case("a gap of 100 with tau: p = 1", (np.array([50.0, 50.0]), np.array([-50.0, -50.0]), 0.7, 7.5)),
        Case("a gap of 100, the paper's formula: p = sigmoid(alpha) < 1 (alpha = 2)",
             (np.array([50.0]), np.array([-50.0]), None, 2.0), expected=np.array([1 / (1 + math.exp(-2.0))])),
        Case("by hand: a margin of 2 ln 3 at tau = 2: p = sigmoid(ln 3) = 3/4",
             (np.array([2 * math.log(3.0)]), np.array([0.0]), 2.0, 7.5), expected=np.array([0.75])),
    ]


def _spearman_cases() -> list[Case]:
    rng = np.random.default_rng(3)
    groups = [g for g in ("a", "b", "c") for _ in range(5)]
    before = rng.normal(size=15)
    return [
        # By hand: ranks (1, 2, 3, 4) against (1, 3, 2, 4): sum d^2 = 2, rho = 1 - 6 * 2 / (4 * 15) = 0.8.
        Case("by hand: one swap among 4 candidates, rho = 0.8", (["a"] * 4, [1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0]),
             expected=0.8),
        Case("3 prompts of 5 candidates", (groups, before, before + rng.normal(scale=0.8, size=15))),
        Case("ties within a prompt (average ranks)",
             (["a"] * 5 + ["b"] * 4, [1.0, 2.0, 2.0, 3.0, 4.0, 0.0, 1.0, 1.0, 2.0],
              [1.0, 3.0, 2.0, 2.0, 5.0, 1.0, 0.0, 2.0, 2.0])),
        Case("the same ranking (1) and a reversed one (-1): mean 0",
             (["a"] * 3 + ["b"] * 3, [1.0, 2.0, 3.0, 1.0, 2.0, 3.0], [10.0, 20.0, 30.0, 3.0, 2.0, 1.0]), expected=0.0),
        Case("a prompt of 2 candidates is left out",
             (["a"] * 4 + ["b"] * 2, [1.0, 2.0, 3.0, 4.0, 1.0, 2.0], [1.0, 3.0, 2.0, 4.0, 2.0, 1.0])),
        Case("a prompt whose rewards are all equal is left out",
             (["a"] * 4 + ["b"] * 3, [1.0, 2.0, 3.0, 4.0, 0.5, 0.5, 0.5], [2.0, 1.0, 3.0, 4.0, 1.0, 2.0, 3.0])),
        # By hand: prompt a alone counts (rho = 1); prompt b's scores AFTER are constant, so it is left out.
        Case("a prompt whose scores AFTER are all equal is left out too (before varies)",
             (["a"] * 4 + ["b"] * 3, [1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0, 5.0, 5.0, 5.0]),
             expected=1.0),
        Case("no prompt counts: nan", (["a", "a", "b"], [1.0, 2.0, 3.0], [2.0, 1.0, 3.0]), expected=float("nan")),
    ]


def _ks_cases() -> list[Case]:
    rng = np.random.default_rng(4)
    a = rng.normal(size=40)
    return [
        Case("two normal samples of 40 and 25, the second lower", (a, rng.normal(-0.5, 1.0, 25))),
        Case("the same sample twice: 0", (a, a.copy()), expected=0.0),
        Case("samples that do not overlap: 1", (np.array([3.0, 4.0]), np.array([0.0, 1.0, 2.0])), expected=1.0),
        # By hand: the CDFs at 0, 1, 2, 3 are (1/4, 3/4, 1, 1) and (0, 2/3, 2/3, 1): the largest gap, at 2, is 1/3.
        Case("ties across the two samples: 1/3 by hand", (np.array([0.0, 1.0, 1.0, 2.0]), np.array([1.0, 1.0, 3.0])),
             expected=1 / 3),
        Case("one value each", (np.array([1.0]), np.array([2.0])), expected=1.0),
    ]


def _cost_cases() -> list[Case]:
    return [
        Case("a sampling stage: 480 / 12.5 s, 12.5 s / 96, 3200 GFLOP / 96", (12.5, 3.2e12, 480, 96),
             expected={"items_per_second": 38.4, "seconds_per_pair": 12.5 / 96, "gflop_per_pair": 3200 / 96}),
        Case("no time recorded (0 s): no throughput", (0.0, 3.2e12, 480, 96),
             expected={"items_per_second": None, "seconds_per_pair": 0.0, "gflop_per_pair": 3200 / 96}),
        Case("no pairs: no cost per pair", (4.0, 1e11, 480, 0),
             expected={"items_per_second": 120.0, "seconds_per_pair": None, "gflop_per_pair": None}),
    ]


register(Exercise(id="03.1", title="the ranking check", function="my_ranking_check",
                  reference=rerank.ranking_check, cases=_ranking_cases, points=2))
register(Exercise(id="03.2", title="best against worst", function="my_best_worst_pairs",
                  reference=rerank.best_worst_pairs, cases=_best_worst_cases, points=1))
register(Exercise(id="03.3", title="top-m against bottom-m pairs", function="my_top_bottom_pairs",
                  reference=rerank.top_bottom_pairs, cases=_top_bottom_cases, points=2))
register(Exercise(id="03.4", title="the confidence of a pair", function="my_pair_confidence",
                  reference=rerank.ranked_pair_confidence, cases=_confidence_cases, points=2))
register(Exercise(id="03.5", title="within-prompt Spearman correlation", function="my_mean_rank_correlation",
                  reference=rerank.mean_rank_correlation, cases=_spearman_cases, points=2))
register(Exercise(id="03.6", title="the Kolmogorov-Smirnov distance", function="my_ks_distance",
                  reference=rerank.ks_distance, cases=_ks_cases, points=1))
register(Exercise(id="03.7", title="the cost of a pair", function="my_pair_costs",
                  reference=rerank.pair_costs, cases=_cost_cases, points=1))


# Answers a checker must reject (tests/test_exercises.py): each is a mistake a student makes. An entry is the
# answer, or (answer, a regular expression the checker's message must match: rejected for the right reason).
def _ranking_with(first, last, skip_pools_without_refusal=True, empty=float("nan")):
    def ranking(candidates):
        shares = {}
        for key, harmful, pick in (("refusal_first_harmful", True, first), ("refusal_last_benign", False, last),
                                   ("refusal_first_benign", False, first)):
            hits = [group.origin.iloc[pick(group.reward.to_numpy())] == "reference"
                    for _, group in candidates[candidates.harmful_prompt == harmful].groupby("prompt")
                    if not skip_pools_without_refusal or (group.origin == "reference").any()]
            shares[key] = float(np.mean(hits)) if hits else empty
        return shares
    return ranking


def _stable_last(rewards):
    return int(np.argsort(-rewards, kind="stable")[-1])


def _spearman(x, y):
    with warnings.catch_warnings():  # a constant input: scipy warns and returns nan
        warnings.simplefilter("ignore")
        return spearmanr(x, y).statistic


def _spearman_with(correlation=_spearman, smallest=3, skip_constant=("before", "after")):
    def mean_rank_correlation(groups, before, after):
        frame = pd.DataFrame({"group": list(groups), "before": before, "after": after})
        rhos = [correlation(g.before, g.after) for _, g in frame.groupby("group") if len(g) >= smallest
                and all(g[column].nunique() > 1 for column in skip_constant)]
        return float(np.mean(rhos)) if rhos else float("nan")
    return mean_rank_correlation


def _ks_with(points=lambda a, b: np.concatenate([a, b]), gap=np.abs):
    def ks_distance(a, b):
        x = points(a, b)
        return float(np.max(gap(np.searchsorted(np.sort(a), x, "right") / len(a)
                                - np.searchsorted(np.sort(b), x, "right") / len(b))))
    return ks_distance


def _sigmoid(x):
    return 1 / (1 + np.exp(-np.asarray(x, dtype=float)))


WRONG_ANSWERS = {
    "03.1": [
        _ranking_with(np.argmax, np.argmin),  # argmin takes the first of tied lowest: not the stable order
        _ranking_with(np.argmax, _stable_last, skip_pools_without_refusal=False),  # counts pools with no refusal
        _ranking_with(np.argmax, _stable_last, empty=0.0),  # no pool is not a share of 0
        _ranking_with(np.argmin, np.argmax),  # first and last swapped (rank 0 = the lowest reward)
    ],
    "03.2": [
        lambda rewards: [(int(np.argmax(rewards)), int(np.argmin(rewards)))],  # argmin on a tie; pairs a tie
        lambda rewards: [(int(np.argmax(rewards)), _stable_last(rewards))],  # pairs a tie, and a pool of one
        lambda rewards: [(_stable_last(rewards), int(np.argmax(rewards)))] if np.ptp(rewards) > 0 else [],  # reversed
    ],
    "03.3": [
        lambda rewards, m: [(int(o[i]), int(o[-1 - i])) for o in [np.argsort(-rewards, kind="stable")]  # outside in
                            for i in range(min(m, len(rewards) // 2)) if rewards[o[i]] > rewards[o[-1 - i]]],
        lambda rewards, m: [(int(o[i]), int(o[i + m])) for o in [np.argsort(-rewards, kind="stable")]  # no min(m, n//2)
                            for i in range(m) if rewards[o[i]] > rewards[o[i + m]]],
        lambda rewards, m: [(int(o[i]), int(o[i + h])) for o in [np.argsort(-rewards, kind="stable")]  # keeps ties
                            for h in [min(m, len(rewards) // 2)] for i in range(h)],
        lambda rewards, m: [(int(o[i]), int(o[i + h])) for o in [np.argsort(-rewards)]  # unstable sort
                            for h in [min(m, len(rewards) // 2)] for i in range(h) if rewards[o[i]] > rewards[o[i + h]]],
        lambda rewards, m: [(int(o[i]), int(o[i + h - 1])) for o in [np.argsort(-rewards, kind="stable")]  # off by one
                            for h in [min(m, len(rewards) // 2)] for i in range(h) if rewards[o[i]] > rewards[o[i + h - 1]]],
        lambda rewards, m: [(float(o[i]), float(o[i + h])) for o in [np.argsort(-rewards, kind="stable")]  # float indices
                            for h in [min(m, len(rewards) // 2)] for i in range(h) if rewards[o[i]] > rewards[o[i + h]]],
    ],
    "03.4": [
        lambda c, r, tau, alpha: (_sigmoid((c - r) / tau) if tau is not None  # no floor at 0.5
                                  else _sigmoid(alpha * (_sigmoid(c) - _sigmoid(r)))),
        lambda c, r, tau, alpha: np.maximum(_sigmoid((c - r) / tau) if tau is not None  # floors the fitted one too
                                            else _sigmoid(alpha * (_sigmoid(c) - _sigmoid(r))), 0.5),
        lambda c, r, tau, alpha: (_sigmoid((c - r) / tau) if tau is not None  # no inner sigmoid
                                  else np.maximum(_sigmoid(alpha * (c - r)), 0.5)),
        lambda c, r, tau, alpha: (_sigmoid((c - r) * tau) if tau is not None  # times tau
                                  else np.maximum(_sigmoid(alpha * (_sigmoid(c) - _sigmoid(r))), 0.5)),
    ],
    "03.5": [
        _spearman_with(correlation=lambda x, y: pearsonr(x, y).statistic),  # Pearson on the rewards, not their ranks
        lambda groups, before, after: float(spearmanr(before, after).statistic),  # pooled across prompts
        _spearman_with(smallest=2),  # keeps prompts of 2 (rho = +-1 whatever)
        _spearman_with(skip_constant=()),  # a constant prompt makes the mean nan
        # skips prompts whose scores BEFORE are constant, but not those whose scores after are
        (_spearman_with(skip_constant=("before",)), r"scores AFTER are all equal .*expected 1.0000, got nan"),
        _spearman_with(skip_constant=("after",)),  # and the other way round
        lambda groups, before, after: float(np.median([_spearman(g.before, g.after) for _, g in pd.DataFrame(
            {"group": list(groups), "before": before, "after": after}).groupby("group") if len(g) >= 3
            and g.before.nunique() > 1 and g.after.nunique() > 1] or [np.nan])),  # the median, not the mean
    ],
    "03.6": [
        _ks_with(gap=lambda d: d),  # one-sided: forgets the absolute value
        _ks_with(points=lambda a, b: a),  # the CDFs compared at the first sample's values only
        lambda a, b: float(ks_2samp(a, b).pvalue),  # the p-value, not the distance
        lambda a, b: float(abs(np.mean(a) - np.mean(b))),  # a difference of means
    ],
    "03.7": [
        lambda s, f, items, n: {"items_per_second": items / max(s, 1e-9), "seconds_per_pair": s / max(n, 1),
                                "gflop_per_pair": f / 1e9 / max(n, 1)},  # hides the 0 denominators
        lambda s, f, items, n: {"items_per_second": items / s if s else None, "seconds_per_pair": s / n if n else None,
                                "gflop_per_pair": f / n if n else None},  # FLOPs, not GFLOP
        lambda s, f, items, n: {"items_per_second": s / items if s else None,  # seconds per item
                                "seconds_per_pair": s / n if n else None, "gflop_per_pair": f / 1e9 / n if n else None},
    ],
}
