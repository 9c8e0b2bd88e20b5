import random

import pytest
import pandas as pd

from reprank.data import judges
from reprank.method import reward_data

REFUSALS = ["I can't help with that.", "I'm sorry, but I won't do that."]


def small_table():
    human = pd.DataFrame({"prompt": ["make a weapon", "make a weapon", "write spam"],
                          "response": ["Here is how: step 1...", "That would be illegal; here is some history.",
                                       "Buy now!!! Cheap pills"],
                          "unsafe": [True, False, True]})
    harmful = {"steal a car": "Sure! First, find a car with...", "hurt someone": "I cannot help with that."}
    benign = {"bake bread": "Mix flour and water, then bake.", "kill a python process": "I'm sorry, I can't."}
    return reward_data.build_response_table(human, harmful, benign, REFUSALS, seed=0)


def test_refusal_detector():
    assert judges.is_refusal("I’m sorry, but I can’t help with that.")
    assert judges.is_refusal("As an AI, I must decline.")
    assert not judges.is_refusal("Sure! Here is a recipe for bread.")
    assert not judges.is_refusal("x" * 300 + " I cannot")  # only the opening counts
    assert not judges.is_refusal("I can't help but feel this is a great question. Here is how:")
    assert judges.is_refusal("I can't help but notice the risk, so I can't help with that.")


def test_response_table_labels():
    table = small_table()
    kinds = table.groupby("prompt").kind.apply(set).to_dict()
    assert kinds["steal a car"] == {"policy_compliance", "reference_refusal"}
    assert kinds["hurt someone"] == {"policy_refusal", "reference_refusal"}
    assert kinds["bake bread"] == {"policy_benign", "benign_refusal"}
    assert "kill a python process" not in kinds  # a refused benign prompt gives no helpful answer to prefer
    assert table.loc[table.kind == "policy_compliance", "unsafe"].all()
    assert not table.loc[table.kind.isin(["reference_refusal", "policy_benign"]), "unsafe"].any()
    assert set(table.split) <= {"train", "validation", "test"}
    assert table.groupby("prompt").split.nunique().max() == 1


def test_reward_pairs_stay_within_prompts_and_prefer_the_right_side():
    table = small_table()
    pairs = reward_data.build_reward_pairs(table, max_pairs_per_prompt=10)
    assert len(pairs) > 0
    for p in pairs.itertuples():
        assert table.at[p.chosen_row, "prompt"] == table.at[p.rejected_row, "prompt"] == p.prompt
        if p.source == "harmful_safe_over_unsafe":
            assert not table.at[p.chosen_row, "unsafe"] and table.at[p.rejected_row, "unsafe"]
        else:
            assert table.at[p.chosen_row, "kind"] == "policy_benign"
            assert table.at[p.rejected_row, "kind"] == "benign_refusal"
    dataset = reward_data.pairs_as_dataset(table, pairs)
    assert {"prompt", "chosen", "rejected", "chosen_safe", "rejected_safe", "source", "split"} <= set(dataset.column_names)


def test_sampled_answers_join_the_greedy_one_and_pair_against_the_same_refusal():
    human = pd.DataFrame({"prompt": [], "response": [], "unsafe": []})
    harmful = {"steal a car": ["Sure! First, find a car", "OK here: pick the lock", "I cannot help with that."]}
    benign = {"bake bread": ["Mix flour and water.", "Flour, water, oven!", "I'm sorry, I can't."]}
    table = reward_data.build_response_table(human, harmful, benign, REFUSALS, refusals_per_prompt=1, seed=0)
    by_prompt = table.groupby(["prompt", "decoding"]).kind.apply(sorted).to_dict()
    assert by_prompt[("steal a car", "greedy")] == ["policy_compliance"]
    assert by_prompt[("steal a car", "sampled")] == ["policy_compliance", "policy_refusal"]
    assert by_prompt[("bake bread", "sampled")] == ["policy_benign"]  # the sampled refusal teaches nothing
    assert (table.kind == "benign_refusal").sum() == 1 and (table.kind == "reference_refusal").sum() == 1
    pairs = reward_data.build_reward_pairs(table, seed=0)
    benign_pairs = pairs[pairs.source == "benign_helpful_over_refusal"]
    assert sorted(table.loc[benign_pairs.chosen_row, "decoding"]) == ["greedy", "sampled"]
    assert set(table.loc[benign_pairs.rejected_row, "kind"]) == {"benign_refusal"}
    # Plain strings still work (one greedy answer a prompt), as before.
    assert set(small_table().decoding) == {"human", "written", "greedy"}


def test_each_harmful_prompt_gets_the_asked_number_of_distinct_refusals_and_a_benign_prompt_one():
    human = pd.DataFrame({"prompt": ["make a weapon", "write spam"], "response": ["Step 1...", "Buy now!!!"],
                          "unsafe": [True, True]})
    harmful = {"steal a car": ["Sure! First, find a car", "OK here: pick the lock"]}
    benign = {"bake bread": ["Mix flour and water."]}
    refusals = REFUSALS + ["No.", "I must decline."]
    table = reward_data.build_response_table(human, harmful, benign, refusals, refusals_per_prompt=3, seed=0)
    written = table[table.kind == "reference_refusal"].groupby("prompt").response.apply(list).to_dict()
    assert sorted(written) == ["make a weapon", "steal a car", "write spam"]
    assert all(len(texts) == len(set(texts)) == 3 and set(texts) <= set(refusals) for texts in written.values())
    assert (table.kind == "benign_refusal").sum() == 1
    # every refusal can pair against every compliance: 3 x 2 pairs for "steal a car", at most 4 kept
    pairs = reward_data.build_reward_pairs(table, max_pairs_per_prompt=4, seed=0)
    assert (pairs.prompt == "steal a car").sum() == 4
    with pytest.raises(ValueError, match="refusals_per_prompt = 5: use 1 to 4"):
        reward_data.build_response_table(human, harmful, benign, refusals, refusals_per_prompt=5)


def test_one_refusal_a_prompt_draws_what_random_choice_drew_before_the_option():
    # The default runs' numbers (docs/results.md) rest on this: refusals_per_prompt=1 must not change any draw.
    human = pd.DataFrame({"prompt": ["make a weapon"], "response": ["Step 1..."], "unsafe": [True]})
    harmful = {f"harmful {i}": "Sure, here you go" for i in range(6)}
    benign = {f"benign {i}": "Mix flour and water." for i in range(6)}
    refusals = [f"I can't help with that ({i})." for i in range(40)]
    table = reward_data.build_response_table(human, harmful, benign, refusals, refusals_per_prompt=1, seed=3)
    rng = random.Random(3)
    expected = [rng.choice(refusals) for _ in range(1 + len(harmful) + len(benign))]
    drawn = list(table[table.decoding == "written"].response)
    assert drawn == expected
