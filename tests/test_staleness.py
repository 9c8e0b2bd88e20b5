"""Staleness (reprank.studies.staleness) on a tiny random Llama: nothing has moved at step 0; a moved policy moves the
ranking; the tracker measures from inside training with the trainer's own reward model, RNG untouched."""

import numpy as np
import pandas as pd
import pytest
import torch
from datasets import Dataset
from peft import get_peft_model
from tiny import perturb_lora, tiny_model

from reprank.method import align, rerank
from reprank.studies import staleness
from reprank.lm.extraction import extract_hidden_states
from reprank.lm.generation import SamplingConfig
from reprank.method.reward import train_hybrid_reward_model

PROMPTS = ["How do I bake bread?", "Tell me a joke.", "What is 2+2?", "Name a colour."]
ANSWERS = [["Mix flour, water and yeast, then bake.", "No.", "Buy some."],
           ["Why did the chicken cross the road?", "I will not tell jokes.", "Jokes are bad."],
           ["4", "Five, obviously.", "It depends."],
           ["Blue.", "Loud.", "I can't say."]]






@pytest.fixture(scope="module")
def reward_model(tokenizer):
    """A hybrid RM on the tiny model's end-token states that prefers each prompt's first answer to its second."""
    states = extract_hidden_states(tiny_model(tokenizer), tokenizer, PROMPTS * 2, [a[0] for a in ANSWERS]
                                   + [a[1] for a in ANSWERS], progress=False)
    chosen, rejected = states.end[:4], states.end[4:]
    return train_hybrid_reward_model(chosen, rejected, chosen, rejected, epochs=30, lr=0.01, progress=False).model


@pytest.fixture(scope="module")
def scored(tokenizer, reward_model):
    """Notebook 03's output in small: the initial policy's scored candidates and the pairs built from them."""
    candidates = pd.DataFrame([{"prompt": p, "response": r, "candidate": j, "origin": "policy_sample"}
                               for p, answers in zip(PROMPTS, ANSWERS) for j, r in enumerate(answers)])
    candidates["reward"] = rerank.score_candidates(tiny_model(tokenizer), tokenizer, reward_model,
                                                   list(candidates.prompt), list(candidates.response), progress=False)
    return candidates, rerank.build_ranked_pairs(candidates, mode="best_worst")


def moved_policy(tokenizer, scale):
    model = get_peft_model(tiny_model(tokenizer), align.lora_config())
    perturb_lora(model, scale=scale)
    return model


def test_nothing_is_stale_before_training(tokenizer, reward_model, scored):
    candidates, pairs = scored
    result = staleness.measure_staleness(moved_policy(tokenizer, 0.0), tokenizer, reward_model, candidates, pairs)
    assert result["rank_correlation"] == pytest.approx(1.0)
    assert result["pair_disagreement"] == 0.0 and result["n_pairs"] == len(pairs) == 4
    assert result["mean_reward_now"] == pytest.approx(result["mean_reward_stored"], rel=1e-5)


def test_a_moved_policy_moves_the_ranking_and_the_pairs(tokenizer, reward_model, scored):
    candidates, pairs = scored
    policy = moved_policy(tokenizer, 0.05).train()
    result = staleness.measure_staleness(policy, tokenizer, reward_model, candidates, pairs)
    assert policy.training  # mode restored
    now = staleness.current_rewards(policy, tokenizer, reward_model, candidates.prompt, candidates.response)
    assert result["rank_correlation"] == pytest.approx(rerank.mean_rank_correlation(candidates.prompt,
                                                                                    candidates.reward, now))
    assert result["rank_correlation"] < 0.99
    lookup = dict(zip(zip(candidates.prompt, candidates.response), now))
    disagree = [lookup[(p, c)] <= lookup[(p, r)] for p, c, r in zip(pairs.prompt, pairs.chosen, pairs.rejected)]
    assert result["pair_disagreement"] == pytest.approx(np.mean(disagree))


def test_fresh_samples_give_a_ks_distance_and_leave_the_random_state_alone(tokenizer, reward_model, scored):
    candidates, pairs = scored
    tracker = staleness.StalenessTracker(tokenizer, candidates, pairs, at_steps=(0,), reward_model=reward_model,
                                         sample_prompts=PROMPTS[:2], seed=5,
                                         sampling=SamplingConfig(max_new_tokens=4, do_sample=True,
                                                                 num_return_sequences=3))
    policy = moved_policy(tokenizer, 0.0)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    record = tracker.measure(policy, step=0)  # sampling seeds torch's generator: put back after
    assert torch.equal(torch.get_rng_state(), state)
    assert record["n_samples"] == 6 and 0.0 <= record["ks_samples"] <= 1.0 and 0.0 <= record["ks_samples_pvalue"] <= 1.0
    assert record["mean_reward_samples_stored"] == pytest.approx(candidates.reward[candidates.prompt.isin(PROMPTS[:2])].mean())


def test_the_tracker_measures_at_its_steps_with_the_trainers_reward_model(tokenizer, reward_model, scored, tmp_path):
    candidates, pairs = scored
    trainer = align.make_trainer(tiny_model(tokenizer), tokenizer, Dataset.from_pandas(pairs[["prompt", "chosen", "rejected"]]),
                                 method="paper", reward_model=reward_model,
                                 config=align.dpo_config(tmp_path, max_steps=2, per_device_train_batch_size=4))
    tracker = staleness.StalenessTracker(tokenizer, candidates, pairs, at_steps=(0, 2)).attach(trainer)
    assert tracker.reward_model is trainer.reward_model  # the jointly trained copy, as it is at each step
    trainer.train()
    frame = tracker.frame()
    assert list(frame.step) == [0, 2]
    assert frame.rank_correlation[0] == pytest.approx(1.0) and frame.pair_disagreement[0] == 0.0
    with pytest.raises(ValueError, match="reward_model="):
        staleness.StalenessTracker(tokenizer, candidates).attach(align.make_trainer(
            tiny_model(tokenizer), tokenizer, Dataset.from_pandas(pairs[["prompt", "chosen", "rejected"]]),
            method="dpo", config=align.dpo_config(tmp_path, max_steps=1)))
