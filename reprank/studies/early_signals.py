"""Signals that move before refusal rates do: what a trained policy prefers, measured against its reference.

A refusal rate changes only when a greedy answer crosses from complying to refusing; the log-probabilities
under it move from the first step. Both measures here compare the policy with its reference, the same model
with the LoRA adapter disabled (the untuned model, as in training), through
``generation.response_log_likelihood`` (batched, no sampling, no judge):

* ``implicit_reward_accuracy``: DPO's implicit reward ``beta * z``, ``z = [log pi(y_c) - log ref(y_c)] -
  [log pi(y_r) - log ref(y_r)]`` (whole-response log-probabilities), on held-out pairs with *clean* labels: the
  share with ``beta * z > 0``. The untuned policy has z = 0 on every pair, so it starts at 0 (ties count as
  wrong, as in TRL's ``rewards/accuracies``), not at 0.5.
* ``refusal_margins``: on harmful prompts, ``log pi(refusal) - log pi(own answer)``, and the benign mirror
  ``log pi(own answer) - log pi(refusal)``, where "own answer" is what the untuned policy itself answered; per
  token (length-neutral: a written refusal is far shorter than an answer) and averaged over prompts, for the
  policy and for the reference. Higher is safer (harmful) and more helpful (benign); ``shift`` is the change
  training made.

Unlike TRL's training-time numbers these score the response text without the chat template's end-of-turn
marker, and cut nothing unless ``max_response_tokens`` is given (TRL cuts prompt + answer at ``max_length``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from reprank.lm.generation import response_log_likelihood


def policy_and_reference_log_likelihood(policy, tokenizer, prompts: Sequence[str], responses: Sequence[str], *,
                                        reduction: str = "mean", max_response_tokens: int | None = None,
                                        batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """``response_log_likelihood`` of each response under ``policy`` (a ``PeftModel``) and under its reference,
    the same model with the adapter disabled; in eval mode, the policy's mode restored after."""
    if not hasattr(policy, "disable_adapter"):
        raise TypeError(f"policy must be a PeftModel (its reference is the model with the adapter disabled); "
                        f"got {type(policy).__name__}")
    prompts, responses = list(prompts), list(responses)
    kwargs = dict(reduction=reduction, max_response_tokens=max_response_tokens, batch_size=batch_size)
    was_training = policy.training
    policy.eval()
    try:
        mine = response_log_likelihood(policy, tokenizer, prompts, responses, **kwargs)
        with policy.disable_adapter():
            reference = response_log_likelihood(policy, tokenizer, prompts, responses, **kwargs)
    finally:
        policy.train(was_training)
    return np.asarray(mine), np.asarray(reference)


def implicit_rewards(policy, tokenizer, pairs, *, beta: float, max_response_tokens: int | None = None,
                     batch_size: int = 16) -> np.ndarray:
    """``beta * z`` of each plain-string (prompt, chosen, rejected) pair (a DataFrame, a Dataset or a list of
    mappings), in their order."""
    frame = pairs.to_pandas() if hasattr(pairs, "to_pandas") else pd.DataFrame(pairs)  # a Dataset, or rows
    n = len(frame)
    texts = list(frame.chosen) + list(frame.rejected)
    mine, reference = policy_and_reference_log_likelihood(
        policy, tokenizer, list(frame.prompt) * 2, texts, reduction="sum", max_response_tokens=max_response_tokens,
        batch_size=batch_size)
    ratio = mine - reference
    return beta * (ratio[:n] - ratio[n:])


def accuracy_from_log_probs(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float) -> float:
    """Share of pairs with ``beta * z > 0``, z from each answer's summed log-probability under the policy and the
    reference; a tie (z = 0, as for the untuned policy) counts as wrong. Raises ValueError without pairs."""
    z = ((np.asarray(policy_chosen, dtype=float) - np.asarray(ref_chosen, dtype=float))
         - (np.asarray(policy_rejected, dtype=float) - np.asarray(ref_rejected, dtype=float)))
    if z.size == 0:
        raise ValueError("the implicit-reward accuracy needs at least one pair")
    return float(np.mean(beta * z > 0))


def implicit_reward_accuracy(policy, tokenizer, pairs, *, beta: float, **kwargs) -> dict:
    """Share of ``pairs`` with ``beta * z > 0`` (the policy prefers the labelled-better answer more than its
    reference does), their mean ``beta * z``, and n. Give it held-out pairs whose labels are clean."""
    rewards = implicit_rewards(policy, tokenizer, pairs, beta=beta, **kwargs)
    if len(rewards) == 0:
        raise ValueError("implicit_reward_accuracy needs at least one pair")
    return {"accuracy": float(np.mean(rewards > 0)), "mean_margin": float(np.mean(rewards)), "n": len(rewards)}


def _one_per_prompt(refusals: str | Sequence[str], n: int) -> list[str]:
    if isinstance(refusals, str):
        return [refusals] * n
    if len(refusals) != n:
        raise ValueError(f"Got {len(refusals)} refusals for {n} prompts: give one string, or one per prompt")
    return list(refusals)


def preference_margin(policy, tokenizer, prompts: Sequence[str], preferred: Sequence[str],
                      dispreferred: Sequence[str], **kwargs) -> dict:
    """Mean over prompts of ``log pi(preferred) - log pi(dispreferred)`` (per token unless ``reduction="sum"``)
    under the policy and under its reference, their difference ``shift``, and n."""
    n = len(prompts)
    if not len(preferred) == len(dispreferred) == n:
        raise ValueError(f"Got {n} prompts, {len(preferred)} preferred and {len(dispreferred)} dispreferred answers")
    if n == 0:
        return {"policy": float("nan"), "reference": float("nan"), "shift": float("nan"), "n": 0}
    mine, reference = policy_and_reference_log_likelihood(policy, tokenizer, list(prompts) * 2,
                                                          list(preferred) + list(dispreferred), **kwargs)
    policy_margin, reference_margin = float(np.mean(mine[:n] - mine[n:])), float(np.mean(reference[:n] - reference[n:]))
    return {"policy": policy_margin, "reference": reference_margin, "shift": policy_margin - reference_margin, "n": n}


def refusal_margins(policy, tokenizer, *, harmful_prompts: Sequence[str], harmful_answers: Sequence[str],
                    benign_prompts: Sequence[str], benign_answers: Sequence[str],
                    refusals: str | Sequence[str], **kwargs) -> dict:
    """``{"harmful": preference_margin(refusal over own answer), "benign": preference_margin(own answer over
    refusal)}``. ``*_answers``: the untuned policy's own answers to those prompts (e.g. its greedy answers from the
    untuned evaluation); ``refusals``: one written refusal for every prompt, or one per prompt (harmful first, then
    benign). Keyword arguments go to ``response_log_likelihood`` (``reduction``, ``max_response_tokens``, ...)."""
    n_harmful = len(harmful_prompts)
    refusals = _one_per_prompt(refusals, n_harmful + len(benign_prompts))
    return {
        "harmful": preference_margin(policy, tokenizer, harmful_prompts, refusals[:n_harmful], harmful_answers,
                                     **kwargs),
        "benign": preference_margin(policy, tokenizer, benign_prompts, benign_answers, refusals[n_harmful:],
                                    **kwargs),
    }
