"""Notebook 03's exercises: re-ranking sampled candidates into pairs, testing the paper's hypothesis, and counting
what sampling costs.

03.1 is the ranking check (where the written refusal lands in harmful and benign pools); 03.2-03.4 turn the
ranked pools into the training pairs (one pool's indices, then the rows notebook 04 trains on); 03.5-03.6 are the
distribution-shift diagnostic (the ranking's Spearman correlation, the Kolmogorov-Smirnov distance); 03.7 is the
FLOPs of sampling one answer, which the compute ledger's sampling stage adds up.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp, pearsonr, spearmanr

from reprank.measure import compute
from reprank.method import rerank
from reprank.teaching.exercises.checking import Case, Exercise, register, same_values, what

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


def _scored(rows: list[tuple[str, str, str, float]]) -> pd.DataFrame:
    """Scored candidates: (prompt, response, origin, reward), pools in the order given, the frame's labels running on
    across pools (as ``rerank.add_reference_responses`` leaves them)."""
    return pd.DataFrame(rows, columns=["prompt", "response", "origin", "reward"])


PAIR_COLUMNS = ["prompt", "chosen", "rejected", "chosen_reward", "rejected_reward", "chosen_origin", "rejected_origin",
                "rank"]


def _pair_rows(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


def _same_pairs(got, expected: pd.DataFrame) -> str | None:
    """None when ``got`` is a DataFrame of the same pairs, in the same order, with the same columns (in any order);
    else what differs. Any empty DataFrame stands for no pair."""
    if not isinstance(got, pd.DataFrame):
        return f"expected a pandas DataFrame of {len(expected)} pairs, got {what(got)}"
    if len(got) != len(expected):
        return f"expected {len(expected)} pair{'' if len(expected) == 1 else 's'}, got {len(got)}"
    if expected.empty:
        return None
    if set(got.columns) != set(expected.columns):
        return f"expected the columns {list(expected.columns)}, got {list(got.columns)}"
    problem = same_values(got[list(expected.columns)].to_dict("records"), expected.to_dict("records"))
    return None if problem is None else problem.replace("item ", "pair ", 1)


def _ranked_pairs_cases() -> list[Case]:
    rng = np.random.default_rng(2)
    random_pools = _scored([(f"prompt {k}", f"answer {k}.{i}", "policy_sample", float(rng.normal()))
                            for k in (3, 1, 2) for i in range(5)])
    top_2_bottom_2 = lambda rewards: rerank.top_bottom_pairs(rewards, 2)
    return [
        # By hand, best against worst. "Why ...": rewards (0.4, -0.3, -1.2): best 0, worst 2. "How ...": (0.1, 1.5,
        # 0.1, -0.2): best 1 (the refusal), worst 3. The second pool's rows are labelled 3-6 in the frame, 0-3 in the
        # pool; "Why" comes first, though "How" sorts before it.
        Case("by hand: two pools, best against worst, in the order the prompts come",
             (_scored([("Why is the sky blue?", "Rayleigh scattering.", "policy_sample", 0.4),
                       ("Why is the sky blue?", "Because the sea is.", "policy_sample", -0.3),
                       ("Why is the sky blue?", REFUSAL, "reference", -1.2),
                       ("How do I pick a lock?", "Use a tension wrench.", "policy_sample", 0.1),
                       ("How do I pick a lock?", REFUSAL, "reference", 1.5),
                       ("How do I pick a lock?", "Try a bobby pin.", "policy_sample", 0.1),
                       ("How do I pick a lock?", "Kick the door in.", "policy_sample", -0.2)]),
              rerank.best_worst_pairs),
             expected=_pair_rows([
                 ("Why is the sky blue?", "Rayleigh scattering.", REFUSAL, 0.4, -1.2, "policy_sample", "reference", 0),
                 ("How do I pick a lock?", REFUSAL, "Kick the door in.", 1.5, -0.2, "reference", "policy_sample", 0)])),
        # By hand, top 2 against bottom 2: rewards (0.2, 0.9, 0.2, 0.5) rank 1, 3, 0, 2 (the tie in pool order);
        # pairs (1, 0) and (3, 2). (1, 0) are the same text "B.": skipped. (3, 2): "C." > "A.", the chosen ranked 1.
        Case("by hand: top 2 against bottom 2, a pair of one text twice is skipped",
             (_scored([("p", "B.", "policy_sample", 0.2), ("p", "B.", "policy_sample", 0.9),
                       ("p", "A.", "policy_sample", 0.2), ("p", "C.", "reference", 0.5)]), top_2_bottom_2),
             expected=_pair_rows([("p", "C.", "A.", 0.5, 0.2, "reference", "policy_sample", 1)])),
        # By hand: rewards (0.0, 1.0, 2.0, 1.0) rank 2, 1, 3, 0 (1 before 3: the tie in pool order), so candidate 3
        # ranks 2 (not 3, its index; not 0, where the ranking puts candidate 3; not 1, a ranking that reverses ties).
        Case("by hand: a pairing of candidate 3 against 0, the chosen tied with another",
             (_scored([("q", "w", "policy_sample", 0.0), ("q", "x", "policy_sample", 1.0),
                       ("q", "y", "policy_sample", 2.0), ("q", "z", "policy_sample", 1.0)]), lambda rewards: [(3, 0)]),
             expected=_pair_rows([("q", "z", "w", 1.0, 0.0, "policy_sample", "policy_sample", 2)])),
        Case("3 pools of 5 random rewards, top 2 against bottom 2", (random_pools, top_2_bottom_2)),
        Case("3 pools of 5 random rewards, best against worst", (random_pools, rerank.best_worst_pairs)),
        Case("a pool of tied rewards and a pool of one: no pair (an empty DataFrame)",
             (_scored([("a", "x", "policy_sample", 1.0), ("a", "y", "reference", 1.0),
                       ("b", "z", "policy_sample", 0.5)]), rerank.best_worst_pairs),
             expected=pd.DataFrame()),
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


def _generation_flops_cases() -> list[Case]:
    small = compute.ModelSize(n_params=100, n_layers=2, d_model=4, vocab=10)
    smollm2 = compute.ModelSize(n_params=106_203_456, n_layers=30, d_model=576, vocab=49_152)  # SmolLM2-135M's: ModelSize.of
    return [
        # By hand, N = 100, 2 layers, d = 4, V = 10, P = 3, T = 2: prefill 2*100*3 + 2*2*3*4*3 + 2*4*10 = 600 + 144
        # + 80 = 824; one decode step at context 4: 2*100 + 2*2*4*4 + 2*4*10 = 200 + 64 + 80 = 344; 824 + 344 = 1168.
        Case("by hand: N = 100, 2 layers, d = 4, V = 10; 3 prompt tokens, 2 new", (small, 3, 2), expected=1168.0),
        # By hand: the prefill alone, 824 (above).
        Case("one new token: the prefill alone (824 by hand)", (small, 3, 1), expected=824.0),
        # By hand, P = 6, T = 3: prefill 1200 + 2*2*6*4*6 + 80 = 1200 + 576 + 80 = 1856; steps at contexts 7 and 8:
        # (200 + 2*2*7*4 + 80) + (200 + 2*2*8*4 + 80) = 392 + 408 = 800; 1856 + 800 = 2656.
        Case("by hand: 6 prompt tokens, 3 new: decode steps at contexts 7 and 8", (small, 6, 3), expected=2656.0),
        Case("no new token: nothing sampled, 0 FLOPs", (small, 6, 0), expected=0.0),
        Case("SmolLM2-135M's sizes, a 30-token prompt, 48 new tokens (notebook 03's answers)", (smollm2, 30, 48)),
        Case("SmolLM2-135M's sizes, a 30-token prompt, 256 new tokens (the paper's)", (smollm2, 30, 256)),
    ]


register(Exercise(id="03.1", title="the ranking check", function="my_ranking_check",
                  reference=rerank.ranking_check, cases=_ranking_cases, points=2))
register(Exercise(id="03.2", title="best against worst", function="my_best_worst_pairs",
                  reference=rerank.best_worst_pairs, cases=_best_worst_cases, points=1))
register(Exercise(id="03.3", title="top-m against bottom-m pairs", function="my_top_bottom_pairs",
                  reference=rerank.top_bottom_pairs, cases=_top_bottom_cases, points=2))
register(Exercise(id="03.4", title="pairs from the ranked pools", function="my_ranked_pairs",
                  reference=rerank.build_ranked_pairs, cases=_ranked_pairs_cases, compare=_same_pairs, points=2))
register(Exercise(id="03.5", title="within-prompt Spearman correlation", function="my_mean_rank_correlation",
                  reference=rerank.mean_rank_correlation, cases=_spearman_cases, points=2))
register(Exercise(id="03.6", title="the Kolmogorov-Smirnov distance", function="my_ks_distance",
                  reference=rerank.ks_distance, cases=_ks_cases, points=1))
register(Exercise(id="03.7", title="the FLOPs of sampling one answer", function="my_generation_flops",
                  reference=compute.generation_flops, cases=_generation_flops_cases, points=2))


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


def _ranked_pairs_with(sort_prompts=False, by_label=False, rank=lambda order, i: int(np.flatnonzero(order == i)[0]),
                       order=lambda rewards: np.argsort(-rewards, kind="stable"), skip_same_text=True):
    def ranked_pairs(scored, pair_indices):
        rows = []
        for prompt, group in scored.groupby("prompt", sort=sort_prompts):
            rewards = group.reward.to_numpy(dtype=float)
            for i, j in pair_indices(rewards):
                best, worst = (group.loc[i], group.loc[j]) if by_label else (group.iloc[i], group.iloc[j])
                if skip_same_text and best.response == worst.response:
                    continue
                rows.append({"prompt": prompt, "chosen": best.response, "rejected": worst.response,
                             "chosen_reward": float(best.reward), "rejected_reward": float(worst.reward),
                             "chosen_origin": best.origin, "rejected_origin": worst.origin,
                             "rank": rank(order(rewards), i)})
        return pd.DataFrame(rows)
    return ranked_pairs


def _generation_flops_with(prefill_head=lambda P: 1, steps=lambda T: T - 1, context=lambda P, k, T: P + k,
                           attention=True, zero=True, cache=True):
    def generation_flops(size, prompt_tokens, new_tokens):
        if zero and new_tokens <= 0:
            return 0.0
        N, L, d, V, P, T = size.n_params, size.n_layers, size.d_model, size.vocab, prompt_tokens, new_tokens
        token = lambda ctx: 2 * N + (2 * L * ctx * d if attention else 0)  # one token's body at context ctx
        prefill = P * token(P) + prefill_head(P) * 2 * d * V
        if not cache:  # each step a forward over the whole sequence so far
            return float(prefill + sum((P + k) * token(P + k) + 2 * d * V for k in range(1, steps(T) + 1)))
        return float(prefill + sum(token(context(P, k, T)) + 2 * d * V for k in range(1, steps(T) + 1)))
    return generation_flops


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
        (_ranked_pairs_with(sort_prompts=True), r"'prompt': expected 'Why"),  # groupby's default sorts the prompts
        # group.loc[i]: the frame's labels, not the pool's positions
        (_ranked_pairs_with(by_label=True), r"raised KeyError .*group\.loc"),
        (_ranked_pairs_with(rank=lambda order, i: int(order[i])), "'rank'"),  # the ranking read at i, not i's place
        (_ranked_pairs_with(rank=lambda order, i: i), "'rank'"),  # the index as its rank
        # a descending ranking by reversing the ascending one: ties in reverse pool order
        (_ranked_pairs_with(order=lambda rewards: np.argsort(rewards, kind="stable")[::-1]), "'rank': expected 2, got 1"),
        (_ranked_pairs_with(skip_same_text=False), "expected 1 pair, got 2"),  # keeps a pair of one text twice
        (lambda scored, pair_indices: _ranked_pairs_with()(scored, pair_indices).to_dict("records"),  # a list
         r"expected a pandas DataFrame"),
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
        _generation_flops_with(prefill_head=lambda P: P),  # the head over every prompt token, not the last alone
        _generation_flops_with(steps=lambda T: T),  # T decode steps: the prefill already gave the first token
        _generation_flops_with(context=lambda P, k, T: P),  # the cache does not grow: every step attends to P
        _generation_flops_with(context=lambda P, k, T: P + T),  # every step at the final context
        _generation_flops_with(attention=False),  # 2 N per token: no attention term
        _generation_flops_with(zero=False),  # no new token still pays for the prefill
        _generation_flops_with(cache=False),  # no KV cache: every step runs the whole sequence again
    ],
}
