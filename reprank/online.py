"""The online baseline: sample from the *current* policy every round, score, pair, train a few steps.

This is what re-ranking avoids: every round pays for sampling (and scoring) again. The loop is kept short and
plain so its compute can be counted stage by stage in the same ``ComputeLedger`` as the offline method.

One LoRA adapter (``align.lora_config()``) is trained through all rounds; its reference is the untuned model
(the adapter disabled) in every round, as in the offline runs, not the policy as the round starts. Each round
builds a fresh ``ConfidenceDPOTrainer`` over that adapter (the optimizer state and LR schedule restart each
round; the adapter's weights carry over).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Sequence

import pandas as pd
from peft import PeftModel, get_peft_model

from . import align, compute, rerank
from .pairs import validate_pairs
from .generation import SamplingConfig
from .reward import HybridRewardModel


@dataclass
class OnlineResult:
    policy: object  # the PeftModel after the last round (its LoRA layers are injected into the model given)
    rounds: pd.DataFrame  # one row per round: pairs, mean chosen / rejected reward, loss
    ledger: compute.ComputeLedger = field(default_factory=compute.ComputeLedger)


def online_dpo(
    model,
    tokenizer,
    prompts: Sequence[str],
    reward_model: HybridRewardModel,
    *,
    rounds: int,
    prompts_per_round: int,
    steps_per_round: int,
    sampling: SamplingConfig,
    config,
    method: str = "dpo",
    references: Sequence[str] = (),
    references_for: Sequence[str] = (),
    pairing: str = "best_worst",
    seed: int = 0,
    batch_size: int = 16,
    extract_kwargs: dict | None = None,
    ledger: compute.ComputeLedger | None = None,
    progress: bool = True,
) -> OnlineResult:
    """Run ``rounds`` rounds of sample -> score -> pair -> ``steps_per_round`` DPO steps.

    ``references`` (e.g. written refusals) are mixed into the pools of the prompts in ``references_for``,
    as the offline pool does, so both methods see the same kinds of candidates. ``model`` gets a new LoRA adapter
    (``align.lora_config()``), or keeps training its own if it is a ``PeftModel``.
    """
    ledger = ledger if ledger is not None else compute.ComputeLedger()
    extract_kwargs = {**(extract_kwargs or {}), "cache_dir": None, "progress": progress}
    rng = random.Random(seed)
    policy = model if isinstance(model, PeftModel) else get_peft_model(model, align.lora_config())
    history = []
    for round_index in range(rounds):
        chosen_prompts = rng.sample(list(prompts), min(prompts_per_round, len(prompts)))
        current = policy.get_base_model()  # the adapter is active: samples and hidden states are the policy's
        current.eval()
        flops = compute.sampling_flops(current, tokenizer, chosen_prompts, sampling.max_new_tokens,
                                       sampling.num_return_sequences)
        with ledger.timed("online sampling", items=len(chosen_prompts) * sampling.num_return_sequences, flops=flops):
            pool = rerank.sample_candidates(current, tokenizer, chosen_prompts, sampling, seed=seed + round_index,
                                            batch_size=batch_size, progress=progress)
        with_refs = [p for p in chosen_prompts if p in set(references_for)]
        if references and with_refs:
            pool = rerank.add_reference_responses(pool, with_refs, references, 1, seed=seed + round_index)
        flops = compute.scoring_flops(current, tokenizer, pool.prompt, pool.response, len(reward_model.layers))
        with ledger.timed("online scoring", items=len(pool), flops=flops):
            pool["reward"] = rerank.score_candidates(current, tokenizer, reward_model, list(pool.prompt),
                                                     list(pool.response), **extract_kwargs)
        pairs = rerank.build_ranked_pairs(pool, mode=pairing)
        if pairs.empty:
            history.append({"round": round_index, "pairs": 0})
            continue
        dataset = validate_pairs(pairs[["prompt", "chosen", "rejected"]].to_dict("records"), origin=f"online round {round_index}")
        round_config = align.dpo_config(f"{config.output_dir}/round{round_index}", **{
            k: getattr(config, k) for k in ("learning_rate", "per_device_train_batch_size", "max_length", "beta",
                                            "loss_type", "loss_weights", "seed")}, max_steps=steps_per_round)
        flops = compute.dpo_training_flops(current, align.mean_pair_tokens(tokenizer, dataset, round_config.max_length),
                                           steps_per_round, round_config.per_device_train_batch_size)
        with ledger.timed("online training", items=steps_per_round * round_config.per_device_train_batch_size,
                          flops=flops):
            trainer, policy = align.train_dpo(policy, tokenizer, dataset, method=method, config=round_config)
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        history.append({"round": round_index, "pairs": len(pairs), "mean_chosen_reward": pairs.chosen_reward.mean(),
                        "mean_rejected_reward": pairs.rejected_reward.mean(), "last_loss": losses[-1] if losses else None})
    return OnlineResult(policy, pd.DataFrame(history), ledger)

