"""How stale does a one-off re-ranking get? The paper's bet, measured while a policy trains.

The paper samples and ranks once, from the initial policy, and trains on those pairs. Its hypothesis: during
training the *ranking* of outputs changes (so a reward read from the current policy's states is worth having),
while their *distribution* stays close to the initial samples (so sampling once is enough). At a training step,
``measure_staleness`` reads, with the reward model of that moment:

* ``rank_correlation``: the mean within-prompt Spearman correlation between the same candidates' rewards now
  and their stored (initial) rewards; 1 = the ranking has not moved;
* ``pair_disagreement``: the share of stored pairs whose current reward orders chosen at or below rejected;
* ``ks_samples`` (with ``sampling``): the Kolmogorov-Smirnov distance between the rewards of fresh samples from
  the current policy (scored now) and the stored rewards of the initial policy's samples to the same prompts;
  at step 0 it is the distance two draws from the same policy already have (the noise floor).

Notebook 03's distribution-shift check is this, once, after a short run; ``StalenessTracker`` runs it from
inside training at chosen steps (a ``transformers`` callback). Scoring reads every candidate's hidden states
(one forward each), sampling generates: on 2 CPU cores, give it a subset of the prompts.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch
from scipy.stats import ks_2samp

from reprank.lm.generation import SamplingConfig
from reprank.method.rerank import mean_rank_correlation, sample_candidates, score_candidates


def current_rewards(model, tokenizer, reward_model, prompts: Sequence[str], responses: Sequence[str],
                    **extract_kwargs) -> np.ndarray:
    """The reward of each (prompt, response) read from ``model``'s states now (a ``PeftModel``: adapter active).

    Never cached (the model moves); in eval mode, the model's mode restored after.
    """
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model  # the LoRA layers stay in it
    was_training = model.training
    model.eval()
    try:
        return score_candidates(lm, tokenizer, reward_model, list(prompts), list(responses),
                                **{"progress": False, **extract_kwargs, "cache_dir": None})
    finally:
        model.train(was_training)


def measure_staleness(model, tokenizer, reward_model, candidates: pd.DataFrame, pairs: pd.DataFrame | None = None,
                      *, sample_prompts: Sequence[str] | None = None, sampling: SamplingConfig | None = None,
                      seed: int = 0, batch_size: int = 16, **extract_kwargs) -> dict:
    """The staleness measures of the module docstring for ``model`` and ``reward_model`` as they are now.

    ``candidates``: notebook 03's scored pool (prompt, response, reward = the stored, initial reward; ``origin``
    tells the policy's samples from written references). ``pairs`` (prompt, chosen, rejected): the stored pairs,
    e.g. the training pairs. ``sampling`` with ``sample_prompts``: draw fresh samples there (seeded by ``seed``).
    ``extract_kwargs`` go to ``extraction.extract_hidden_states`` (use the ones the stored rewards were read with,
    e.g. ``max_response_tokens``).
    """
    texts = candidates[["prompt", "response"]]
    if pairs is not None:
        sides = [pairs[["prompt", side]].rename(columns={side: "response"}) for side in ("chosen", "rejected")]
        texts = pd.concat([texts, *sides], ignore_index=True)
    texts = texts.drop_duplicates(ignore_index=True)
    texts["now"] = current_rewards(model, tokenizer, reward_model, texts.prompt, texts.response, **extract_kwargs)
    now = texts.set_index(["prompt", "response"])["now"]
    candidate_now = now.loc[list(zip(candidates.prompt, candidates.response))].to_numpy()
    result = {"rank_correlation": mean_rank_correlation(candidates.prompt, candidates.reward, candidate_now),
              "mean_reward_stored": float(candidates.reward.mean()), "mean_reward_now": float(candidate_now.mean()),
              "n_candidates": len(candidates)}
    if pairs is not None:
        chosen = now.loc[list(zip(pairs.prompt, pairs.chosen))].to_numpy()
        rejected = now.loc[list(zip(pairs.prompt, pairs.rejected))].to_numpy()
        result.update(pair_disagreement=float(np.mean(chosen <= rejected)), n_pairs=len(pairs))
    if sampling is not None and sample_prompts:
        result.update(sample_shift(model, tokenizer, reward_model, candidates, sample_prompts, sampling, seed=seed,
                                   batch_size=batch_size, **extract_kwargs))
    return result


def sample_shift(model, tokenizer, reward_model, candidates: pd.DataFrame, prompts: Sequence[str],
                 sampling: SamplingConfig, *, seed: int = 0, batch_size: int = 16, **extract_kwargs) -> dict:
    """KS distance (and p-value) between the rewards of fresh samples from ``model`` to ``prompts``, read now,
    and the stored rewards of the initial policy's samples to the same prompts (``origin == "policy_sample"``).
    Also the mean reward of each. ``seed`` should differ from the one the stored samples were drawn with."""
    before = candidates[candidates.prompt.isin(list(prompts))]
    if "origin" in before:
        before = before[before.origin == "policy_sample"]
    was_training = model.training
    model.eval()
    try:
        fresh = sample_candidates(model, tokenizer, list(prompts), sampling, seed=seed, batch_size=batch_size,
                                  progress=False)
    finally:
        model.train(was_training)
    after = current_rewards(model, tokenizer, reward_model, fresh.prompt, fresh.response, **extract_kwargs)
    ks = ks_2samp(before.reward.to_numpy(), after)
    return {"ks_samples": float(ks.statistic), "ks_samples_pvalue": float(ks.pvalue),
            "mean_reward_samples_stored": float(before.reward.mean()), "mean_reward_samples_now": float(after.mean()),
            "n_samples": len(after)}


class StalenessTracker:
    """``measure_staleness`` at the given training steps (0 = before the first step), from inside training.

    ``attach(trainer)`` adds the callback and picks the reward model: the trainer's own when it has one (for
    ``paper`` the jointly trained copy, as it is at that step; for ``confidence_policy`` the frozen one), else
    ``reward_model``. The random state (CPU and CUDA) is saved and restored around each measurement, so training
    proceeds exactly as without it. A step past the run's last is never reached (nothing is measured there).
    Results: ``records`` (one dict per step) and ``frame()``.
    """

    def __init__(self, tokenizer, candidates: pd.DataFrame, pairs: pd.DataFrame | None = None, *,
                 at_steps: Sequence[int] = (0, 40, 120), reward_model=None, **measure_kwargs):
        from transformers import TrainerCallback

        self.tokenizer, self.candidates, self.pairs = tokenizer, candidates, pairs
        self.at_steps, self.reward_model, self.measure_kwargs = set(at_steps), reward_model, measure_kwargs
        self.records: list[dict] = []
        outer = self

        class _Callback(TrainerCallback):
            def on_train_begin(self, args, state, control, model=None, **kwargs):
                if state.global_step in outer.at_steps:
                    outer.measure(model, state.global_step)

            def on_step_end(self, args, state, control, model=None, **kwargs):
                if state.global_step in outer.at_steps:
                    outer.measure(model, state.global_step)

        self.callback = _Callback()

    def attach(self, trainer) -> "StalenessTracker":
        own = getattr(trainer, "reward_model", None)
        self.reward_model = own if own is not None else self.reward_model
        if self.reward_model is None:
            raise ValueError("StalenessTracker needs a reward model: the trainer has none, so pass reward_model=")
        trainer.add_callback(self.callback)
        return self

    def measure(self, model, step: int) -> dict:
        cpu_state = torch.get_rng_state()
        cuda_state = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        try:
            record = {"step": step, **measure_staleness(model, self.tokenizer, self.reward_model, self.candidates,
                                                        self.pairs, **self.measure_kwargs)}
        finally:
            torch.set_rng_state(cpu_state)
            if cuda_state is not None:
                torch.cuda.set_rng_state_all(cuda_state)
        self.records.append(record)
        return record

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.records)
