"""The online baseline: sample from the *current* policy every round, score, pair, train a few steps.

This is what re-ranking avoids: every round pays for sampling (and scoring) again. The loop is kept short and
plain so its compute can be counted stage by stage in the same ``ComputeLedger`` as the offline method.

Only the data differ from an offline run of ``rounds * steps_per_round`` steps: each round's pairs are fresh
samples of the policy as it stands, scored by the reward model on that policy's own hidden states. The rest is
the offline run's: one LoRA adapter (``align.lora_config()``) trained through all rounds; the reference is the
untuned model (the adapter disabled) in every round, not the policy as the round starts; one optimizer and one
LR schedule for the whole run (``align.shared_optimizer``, handed to every round's trainer), so step k has the
LR and optimizer state of step k of the offline run; the config's loss (``loss_type``/``loss_weights``, e.g. the
NLL term), batch size and every other training field pass through unchanged. A round that yields no pairs
trains no steps (the schedule does not advance; the run ends short of its total).
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field
from typing import Sequence

import pandas as pd
from peft import PeftModel, get_peft_model

from reprank.measure import compute
from reprank.method import align, rerank
from reprank.data.pairs import validate_pairs
from reprank.lm.generation import SamplingConfig
from reprank.method.reward import HybridRewardModel


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
    (``align.lora_config()``), or keeps training its own if it is a ``PeftModel``. ``config`` is the training
    config of the whole run; each round runs it for ``steps_per_round`` steps.
    """
    ledger = ledger if ledger is not None else compute.ComputeLedger()
    extract_kwargs = {**(extract_kwargs or {}), "cache_dir": None, "progress": progress}
    rng = random.Random(seed)
    policy = model if isinstance(model, PeftModel) else get_peft_model(model, align.lora_config())
    trainable = [p for p in policy.parameters() if p.requires_grad]
    optimizers = align.shared_optimizer(policy, config, rounds * steps_per_round)
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
        round_config = copy.deepcopy(config)  # every field passes through; only the length and folder change
        round_config.max_steps, round_config.output_dir = steps_per_round, f"{config.output_dir}/round{round_index}"
        flops = compute.dpo_training_flops(current, align.mean_pair_tokens(tokenizer, dataset, round_config.max_length),
                                           steps_per_round, round_config.per_device_train_batch_size)
        with ledger.timed("online training", items=steps_per_round * round_config.per_device_train_batch_size,
                          flops=flops):
            trainer = align.make_trainer(policy, tokenizer, dataset, method=method, config=round_config,
                                         optimizers=optimizers)
            _check_same_parameters(trainer.model, policy, trainable)
            trainer.train()
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        history.append({"round": round_index, "pairs": len(pairs), "mean_chosen_reward": pairs.chosen_reward.mean(),
                        "mean_rejected_reward": pairs.rejected_reward.mean(), "last_loss": losses[-1] if losses else None})
    return OnlineResult(policy, pd.DataFrame(history), ledger)


def _check_same_parameters(trained, policy, trainable) -> None:
    """The shared optimizer holds the adapter's parameter objects: the trainer must train those, not a re-wrap."""
    live = [p for p in trained.parameters() if p.requires_grad]
    if trained is not policy or {id(p) for p in live} != {id(p) for p in trainable}:
        raise RuntimeError("The round's trainer does not train the adapter's own parameters (re-wrapped?); "
                           "the shared optimizer would not update the policy.")
