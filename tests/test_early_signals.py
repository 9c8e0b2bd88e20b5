"""Early signals (reprank.studies.early_signals) on a tiny random Llama with a LoRA adapter; the reference is the
model with its adapter disabled, checked against a separately built copy of the untuned model."""

import numpy as np
import pytest
import torch
from datasets import Dataset
from peft import get_peft_model
from tiny import perturb_lora, tiny_model

from reprank.lm import generation
from reprank.method import align
from reprank.studies import early_signals

PROMPTS = ["How do I bake bread?", "Tell me a joke.", "What is 2+2?"]
CHOSEN = ["Mix flour, water and yeast, then bake.", "Why did the chicken cross the road?", "4"]
REJECTED = ["No.", "I will not tell jokes today, or ever.", "Five, obviously."]
REFUSAL = "I can't help with that."




def untuned(tokenizer):
    return tiny_model(tokenizer).eval()


def policy(tokenizer, scale=0.0):
    """The untuned model with a LoRA adapter; ``scale > 0`` moves it away from the untuned model."""
    model = get_peft_model(untuned(tokenizer), align.lora_config())
    perturb_lora(model, scale=scale)
    return model.train()


def test_sum_reduction_is_the_whole_response_log_probability(tokenizer):
    model = untuned(tokenizer)
    mean = generation.response_log_likelihood(model, tokenizer, PROMPTS, CHOSEN)
    total = generation.response_log_likelihood(model, tokenizer, PROMPTS, CHOSEN, reduction="sum")
    lengths = [len(tokenizer(c, add_special_tokens=False)["input_ids"]) for c in CHOSEN]
    np.testing.assert_allclose(total, np.multiply(mean, lengths), rtol=1e-5)
    with pytest.raises(ValueError, match="reduction"):
        generation.response_log_likelihood(model, tokenizer, PROMPTS, CHOSEN, reduction="max")


def test_the_reference_is_the_untuned_model_and_the_mode_is_restored(tokenizer):
    moved = policy(tokenizer, scale=0.5)
    mine, reference = early_signals.policy_and_reference_log_likelihood(moved, tokenizer, PROMPTS, CHOSEN)
    assert moved.training  # put back as it was
    np.testing.assert_allclose(reference, generation.response_log_likelihood(untuned(tokenizer), tokenizer, PROMPTS,
                                                                             CHOSEN, max_response_tokens=None),
                               rtol=1e-5)
    assert np.abs(mine - reference).min() > 1e-4
    with pytest.raises(TypeError, match="PeftModel"):
        early_signals.policy_and_reference_log_likelihood(untuned(tokenizer), tokenizer, PROMPTS, CHOSEN)


def test_implicit_reward_accuracy_starts_at_zero_and_is_beta_z(tokenizer):
    pairs = Dataset.from_dict({"prompt": PROMPTS, "chosen": CHOSEN, "rejected": REJECTED})
    start = early_signals.implicit_reward_accuracy(policy(tokenizer), tokenizer, pairs, beta=0.1)
    assert start == {"accuracy": 0.0, "mean_margin": 0.0, "n": 3}  # policy == reference: z = 0, a tie is wrong

    moved, base = policy(tokenizer, scale=0.5), untuned(tokenizer)

    def logp(model, texts):
        return np.array(generation.response_log_likelihood(model, tokenizer, PROMPTS, texts, reduction="sum",
                                                           max_response_tokens=None))

    with torch.no_grad():
        z = (logp(moved, CHOSEN) - logp(base, CHOSEN)) - (logp(moved, REJECTED) - logp(base, REJECTED))
    rewards = early_signals.implicit_rewards(moved, tokenizer, pairs.to_pandas(), beta=0.3)
    np.testing.assert_allclose(rewards, 0.3 * z, rtol=1e-4, atol=1e-5)
    result = early_signals.implicit_reward_accuracy(moved, tokenizer, pairs, beta=0.3)
    assert result["accuracy"] == pytest.approx(np.mean(z > 0)) and result["mean_margin"] == pytest.approx(0.3 * z.mean(), rel=1e-4)
    swapped = {"prompt": PROMPTS, "chosen": REJECTED, "rejected": CHOSEN}
    np.testing.assert_allclose(early_signals.implicit_rewards(moved, tokenizer, swapped, beta=0.3), -rewards, rtol=1e-5)


def test_refusal_margins_mirror_each_other_and_start_with_no_shift(tokenizer):
    args = dict(harmful_prompts=PROMPTS[:2], harmful_answers=CHOSEN[:2], benign_prompts=PROMPTS[2:],
                benign_answers=CHOSEN[2:], refusals=REFUSAL)
    start = early_signals.refusal_margins(policy(tokenizer), tokenizer, **args)
    assert start["harmful"]["shift"] == 0.0 and start["benign"]["shift"] == 0.0
    assert (start["harmful"]["n"], start["benign"]["n"]) == (2, 1)

    moved = policy(tokenizer, scale=0.5)
    margins = early_signals.refusal_margins(moved, tokenizer, **args)
    mine, reference = early_signals.policy_and_reference_log_likelihood(moved, tokenizer, PROMPTS * 2,
                                                                        [REFUSAL] * 3 + CHOSEN)
    assert margins["harmful"]["policy"] == pytest.approx(np.mean(mine[:2] - mine[3:5]), rel=1e-5)
    assert margins["benign"]["policy"] == pytest.approx(mine[5] - mine[2], rel=1e-5)  # answer over refusal
    assert margins["benign"]["reference"] == pytest.approx(reference[5] - reference[2], rel=1e-5)
    assert margins["harmful"]["shift"] == pytest.approx(margins["harmful"]["policy"] - margins["harmful"]["reference"])
    with pytest.raises(ValueError, match="one per prompt"):
        early_signals.refusal_margins(moved, tokenizer, **{**args, "refusals": [REFUSAL] * 2})
