"""Training pairs from scored candidate pools: pairing modes, the reference-free ablation, confidence, source."""

import numpy as np
import pandas as pd
import pytest

from reprank.method import confidence, rerank


def pools() -> pd.DataFrame:
    rows = []
    # A harmful prompt: three compliant samples and one written refusal that the reward ranks first.
    for i, (text, origin, reward) in enumerate([("sure, step 1", "policy_sample", -2.0), ("ok here", "policy_sample", -1.0),
                                                ("fine", "policy_sample", 0.5), ("I can't help with that.", "reference", 3.0)]):
        rows.append(dict(prompt="harm", candidate=i, response=text, origin=origin, reward=reward, harmful_prompt=True))
    # A benign prompt: the refusal ranks last.
    for i, (text, origin, reward) in enumerate([("an answer", "policy_sample", 2.0), ("another", "policy_sample", 1.0),
                                                ("I can't help with that.", "reference", -3.0)]):
        rows.append(dict(prompt="ok", candidate=i, response=text, origin=origin, reward=reward, harmful_prompt=False))
    return pd.DataFrame(rows)


def test_best_worst_pairs_refusal_against_own_compliance_and_answer_against_refusal():
    pairs = rerank.make_pairs(pools(), pairing="best_worst", tau=1.0)
    by_prompt = pairs.set_index("prompt")
    assert by_prompt.loc["harm", "chosen"] == "I can't help with that." and by_prompt.loc["harm", "rejected"] == "sure, step 1"
    assert by_prompt.loc["ok", "chosen"] == "an answer" and by_prompt.loc["ok", "rejected"] == "I can't help with that."
    assert list(by_prompt.source) == ["rerank_harmful", "rerank_benign"]
    expected = confidence.pair_confidence(pairs.chosen_reward.to_numpy(), pairs.rejected_reward.to_numpy(), 1.0)
    np.testing.assert_allclose(pairs.confidence, expected)


def test_top_bottom_and_reference_free_pools():
    top_bottom = rerank.make_pairs(pools(), pairing="top_bottom", m=2)
    assert len(top_bottom) == 3  # 2 for the 4-candidate pool (ranks 0-2, 1-3), 1 for the 3 (ranks 0-1)
    harm = pools().query("prompt == 'harm'").sort_values("reward", ascending=False).response.tolist()
    assert top_bottom.query("prompt == 'harm'")[["chosen", "rejected"]].values.tolist() == [harm[0:3:2], harm[1:4:2]]
    own_only = rerank.make_pairs(pools(), use_references=False)
    assert (own_only.chosen_origin == "policy_sample").all() and (own_only.rejected_origin == "policy_sample").all()
    assert own_only.set_index("prompt").loc["harm", "chosen"] == "fine"


def test_paper_confidence_when_no_tau_and_bad_mode():
    pairs = rerank.make_pairs(pools(), tau=None, alpha=7.5)
    assert ((pairs.confidence >= 0.5) & (pairs.confidence <= 1)).all()
    with pytest.raises(ValueError, match="mode must be one of"):
        rerank.make_pairs(pools(), pairing="random")


def test_ranking_check_passes_a_reward_that_knows_and_fails_a_shuffled_one():
    rng = np.random.default_rng(0)
    rows = []
    for k in range(30):  # pools of 4 own samples + 1 written refusal, rewarded as a working RM would
        harmful = k % 2 == 0
        for i in range(4):
            rows.append(dict(prompt=f"p{k}", response=f"own {i}", origin="policy_sample", harmful_prompt=harmful,
                             reward=rng.normal()))
        rows.append(dict(prompt=f"p{k}", response="I can't help with that.", origin="reference",
                         harmful_prompt=harmful, reward=3.0 if harmful else -3.0))
    scored = pd.DataFrame(rows)
    good = rerank.ranking_check(scored)
    assert good == {"refusal_first_harmful": 1.0, "refusal_last_benign": 1.0, "refusal_first_benign": 0.0}
    assert rerank.ranking_failures(good) == []
    shuffled = scored.assign(reward=scored.groupby("prompt").reward.transform(lambda r: rng.permutation(r.to_numpy())))
    bad = rerank.ranking_check(shuffled)
    assert bad["refusal_first_harmful"] < rerank.RANKING_MINIMUM
    assert any(line.startswith("refusal_first_harmful") for line in rerank.ranking_failures(bad))


def test_ranking_failures_names_each_side_outside_its_floor():
    # A reward that calls every refusal good: harmful pools pass, benign pools teach over-refusal.
    shares = {"refusal_first_harmful": 0.9, "refusal_last_benign": 0.1, "refusal_first_benign": 0.8}
    failures = rerank.ranking_failures(shares)
    assert [line.split(" =")[0] for line in failures] == ["refusal_last_benign", "refusal_first_benign"]
    assert "need at most 15%" in failures[1]
    assert rerank.ranking_failures({**shares, "refusal_last_benign": float("nan"),
                                    "refusal_first_benign": float("nan")}) == []  # no benign pool: nothing to judge


def test_benign_refusal_last_pairs_an_answer_against_the_refusal_whatever_the_reward():
    scored = pools()
    scored.loc[(scored.prompt == "ok") & (scored.origin == "reference"), "reward"] = 5.0  # the RM likes the refusal
    plain = rerank.make_pairs(scored, tau=1.0).set_index("prompt")
    assert plain.loc["ok", "chosen"] == "I can't help with that."
    ruled = rerank.make_pairs(scored, benign_refusal_last=True, tau=1.0).set_index("prompt")
    assert ruled.loc["ok", "rejected"] == "I can't help with that." and ruled.loc["ok", "chosen"] == "an answer"
    assert ruled.loc["harm", "chosen"] == plain.loc["harm", "chosen"]  # harmful pools are left to the reward


def test_pair_indices_rank_highest_first_keep_pool_order_on_ties_and_skip_tied_pairs():
    assert rerank.best_worst_pairs([2.0, 0.0, 1.0, 0.0]) == [(0, 3)]  # the later of the tied lowest ranks last
    assert rerank.best_worst_pairs([1.0, 1.0]) == [] and rerank.best_worst_pairs([0.3]) == []
    assert rerank.top_bottom_pairs([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], 4) == [(7, 3), (6, 2), (5, 1), (4, 0)]
    assert rerank.top_bottom_pairs([3.0, 2.0, 1.0], 4) == [(0, 1)]  # n < 2m: h = n // 2
    assert rerank.top_bottom_pairs([1.0, 1.0, 1.0, 0.0], 2) == [(1, 3)]  # ranks 0-2 tie: skipped
    assert rerank.top_bottom_pairs([1.0, 0.0], 0) == []


def test_make_pairs_uses_the_lessons_own_functions_when_given():
    calls = []

    def worst_first(rewards):  # a deliberately odd pairing: the pool's worst as chosen
        calls.append(len(rewards))
        return [(int(np.argmin(rewards)), int(np.argmax(rewards)))]

    pairs = rerank.make_pairs(pools(), pair_indices=worst_first, pair_confidence=lambda c, r, tau, alpha: np.full(len(c), 0.7))
    assert calls == [4, 3]
    assert (pairs.chosen_reward < pairs.rejected_reward).all() and (pairs.confidence == 0.7).all()
    assert list(pairs["rank"]) == [3, 2]  # the chosen one's rank in its pool

    seen = []

    def ranked_pairs(pool, pair_indices):  # notebook 03's exercise 03.4, called as build_ranked_pairs is
        seen.append(pair_indices)
        return rerank.build_ranked_pairs(pool, pair_indices).iloc[:1]

    one = rerank.make_pairs(pools(), pairing="best_worst", tau=1.0, pair_indices=worst_first, ranked_pairs=ranked_pairs)
    assert seen == [worst_first] and len(one) == 1 and one.confidence.iloc[0] < 0.5
    rerank.make_pairs(pools(), pairing="top_bottom", m=1, ranked_pairs=ranked_pairs)  # no pair_indices: the mode's
    assert seen[1](np.array([0.0, 2.0, 1.0])) == [(1, 2)]  # top 1 against bottom 1: ranks 0 and 1
    with pytest.raises(ValueError, match="mode must be one of"):  # a wrong pairing fails even beside pair_indices
        rerank.make_pairs(pools(), pairing="random", pair_indices=worst_first)


def test_ranked_pair_confidence_floors_the_papers_formula_but_not_the_fitted_one():
    c, r = np.array([0.0, 1.0]), np.array([1.0, 1.0])  # reversed, tied
    np.testing.assert_allclose(rerank.ranked_pair_confidence(c, r, None, 7.5), [0.5, 0.5])
    fitted = rerank.ranked_pair_confidence(c, r, 0.5)
    assert fitted[0] < 0.5 and fitted[1] == 0.5


def test_ks_distance_and_pair_costs():
    assert rerank.ks_distance([0.0, 1.0], [0.0, 1.0]) == 0 and rerank.ks_distance([0.0], [1.0, 2.0]) == 1
    assert rerank.ks_distance([0.0, 1.0, 1.0, 2.0], [1.0, 1.0, 3.0]) == pytest.approx(1 / 3)
    assert rerank.pair_costs(2.0, 4e9, 10, 4) == {"items_per_second": 5.0, "seconds_per_pair": 0.5, "gflop_per_pair": 1.0}
    assert rerank.pair_costs(0.0, 4e9, 10, 0) == {"items_per_second": None, "seconds_per_pair": None, "gflop_per_pair": None}


def test_notebook_03_floor_parameters_are_the_packages_floors():
    from reprank.running import parameters, runner

    notebook = next(nb for nb in runner.list_notebooks() if nb.name.startswith("03"))
    defaults = parameters.parameter_defaults(notebook)
    declared = {"refusal_first_harmful": ("min", defaults["min_refusal_first_harmful"]),
                "refusal_last_benign": ("min", defaults["min_refusal_last_benign"]),
                "refusal_first_benign": ("max", defaults["max_refusal_first_benign"])}
    assert declared == rerank.RANKING_FLOORS
