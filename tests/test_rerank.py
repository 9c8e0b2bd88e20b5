"""Training pairs from scored candidate pools: pairing modes, the reference-free ablation, confidence, source."""

import numpy as np
import pandas as pd
import pytest

from reprank import confidence, rerank


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
    assert good == {"refusal_first_harmful": 1.0, "refusal_last_benign": 1.0}
    shuffled = scored.assign(reward=scored.groupby("prompt").reward.transform(lambda r: rng.permutation(r.to_numpy())))
    bad = rerank.ranking_check(shuffled)
    assert bad["refusal_first_harmful"] < rerank.RANKING_MINIMUM


def test_benign_refusal_last_pairs_an_answer_against_the_refusal_whatever_the_reward():
    scored = pools()
    scored.loc[(scored.prompt == "ok") & (scored.origin == "reference"), "reward"] = 5.0  # the RM likes the refusal
    plain = rerank.make_pairs(scored, tau=1.0).set_index("prompt")
    assert plain.loc["ok", "chosen"] == "I can't help with that."
    ruled = rerank.make_pairs(scored, benign_refusal_last=True, tau=1.0).set_index("prompt")
    assert ruled.loc["ok", "rejected"] == "I can't help with that." and ruled.loc["ok", "chosen"] == "an answer"
    assert ruled.loc["harm", "chosen"] == plain.loc["harm", "chosen"]  # harmful pools are left to the reward
