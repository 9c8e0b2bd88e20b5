"""Re-ranking: sample candidates once from the initial policy, score them with the hybrid RM, pair top vs bottom.

Online methods sample from the current policy at every step. The paper samples once, offline, and relies
on the reward read from the policy's representations to rank the candidates.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from scipy.stats import ks_2samp, spearmanr

from reprank.base import defaults

from reprank.method import confidence as confidence_lib
from reprank.lm.extraction import extract_hidden_states
from reprank.lm.generation import SamplingConfig, generate_responses
from reprank.data.judges import is_refusal
from reprank.lm.models import model_device
from reprank.method.reward import HybridRewardModel

PAIRING_MODES = ("top_bottom", "best_worst")


def sample_candidates(
    model,
    tokenizer,
    prompts: Sequence[str],
    sampling: SamplingConfig,
    *,
    seed: int = 0,
    batch_size: int = 16,
    cache_dir: str | Path | None = None,
    model_name: str = "model",
    progress: bool = True,
) -> pd.DataFrame:
    """``sampling.num_return_sequences`` samples per prompt, cached on disk by (model, prompts, settings, seed).

    Returns one row per candidate: prompt, candidate (index within its prompt), response, origin.
    """
    cache_file = None
    if cache_dir is not None:
        key = hashlib.sha256(json.dumps([model_name, list(prompts), asdict(sampling), seed]).encode()).hexdigest()[:16]
        cache_file = Path(cache_dir) / f"samples-{key}.jsonl"
        if cache_file.is_file():
            return pd.read_json(cache_file, orient="records", lines=True)
    samples = generate_responses(model, tokenizer, prompts, sampling, batch_size=batch_size, seed=seed,
                                 progress=progress)
    rows = [
        {"prompt": prompt, "candidate": j, "response": response, "origin": "policy_sample"}
        for prompt, responses in zip(prompts, samples)
        for j, response in enumerate(responses)
    ]
    frame = pd.DataFrame(rows)
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        frame.to_json(cache_file, orient="records", lines=True)
    return frame


def add_reference_responses(
    candidates: pd.DataFrame, prompts: Sequence[str], references: Sequence[str], per_prompt: int = 1, seed: int = 0
) -> pd.DataFrame:
    """Mix written reference responses (e.g. refusals) into the candidate pool of the given prompts.

    The policy's own samples stay in the pool, so whatever ranks last is usually still on-policy text.
    """
    rng = random.Random(seed)
    extra = []
    for prompt in prompts:
        start = int((candidates.prompt == prompt).sum())
        for j, text in enumerate(rng.sample(list(references), per_prompt)):
            extra.append({"prompt": prompt, "candidate": start + j, "response": text, "origin": "reference"})
    return pd.concat([candidates, pd.DataFrame(extra)], ignore_index=True)


@torch.no_grad()
def score_candidates(
    model, tokenizer, reward_model: HybridRewardModel, prompts: Sequence[str], responses: Sequence[str], **extract_kwargs
) -> np.ndarray:
    """Reward of each (prompt, response) read from ``model``'s hidden states by the hybrid RM (on its own device)."""
    states = extract_hidden_states(model, tokenizer, prompts, responses, layers=reward_model.layers, **extract_kwargs)
    return reward_model(torch.as_tensor(states.end).to(model_device(reward_model))).cpu().numpy()


def best_worst_pairs(rewards) -> list[tuple[int, int]]:
    """The best candidate of one pool against its worst: ``[(best, worst)]`` as indices into ``rewards``.

    Ranked highest first, ties keep their pool order (a stable sort): among equal lowest rewards the last
    ranks last. No pair (``[]``) when the two rewards tie, which covers a pool of one.
    """
    rewards = np.asarray(rewards, dtype=float)
    if len(rewards) < 2:
        return []
    order = np.argsort(-rewards, kind="stable")
    best, worst = int(order[0]), int(order[-1])
    return [(best, worst)] if rewards[best] > rewards[worst] else []


def top_bottom_pairs(rewards, m: int) -> list[tuple[int, int]]:
    """As the authors pair one pool: rank ``i`` against rank ``i + h`` for ``i < h``, ``h = min(m, n // 2)``.

    8 samples, m = 4: ranks 0-4, 1-5, 2-6, 3-7. Ranks as in :func:`best_worst_pairs` (highest first, ties in
    pool order); a pair whose two rewards tie is skipped. Returns (chosen, rejected) indices into ``rewards``.
    """
    rewards = np.asarray(rewards, dtype=float)
    order = np.argsort(-rewards, kind="stable")
    h = min(m, len(rewards) // 2)
    return [(int(order[i]), int(order[i + h])) for i in range(h) if rewards[order[i]] > rewards[order[i + h]]]


def index_pairing(mode: str, m: int = 2) -> Callable:
    """The pairing of one pool's rewards that ``mode`` names: :func:`best_worst_pairs`, or :func:`top_bottom_pairs`
    with ``m``."""
    if mode not in PAIRING_MODES:
        raise ValueError(f"mode must be one of {PAIRING_MODES}, got '{mode}'")
    return best_worst_pairs if mode == "best_worst" else functools.partial(top_bottom_pairs, m=m)


def build_ranked_pairs(scored: pd.DataFrame, pair_indices: Callable | None = None, *, mode: str = "top_bottom",
                       m: int = 2) -> pd.DataFrame:
    """Pairs per prompt from the reward ranking of its candidates (column ``reward``).

    ``pair_indices`` (one pool's rewards -> (chosen, rejected) index pairs) pairs each pool, as notebook 03's
    exercise 03.4 calls it; without it, ``mode`` names the pairing (:func:`index_pairing`): ``top_bottom``,
    :func:`top_bottom_pairs` with ``m``, or ``best_worst``, :func:`best_worst_pairs`. Prompts keep their order of first appearance; ``rank`` is the chosen candidate's place in its pool's
    stable ranking (0 = the highest reward). Pairs of two identical texts are skipped.
    """
    pairing = index_pairing(mode, m)
    if pair_indices is None:
        pair_indices = pairing
    pairs = []
    for prompt, group in scored.groupby("prompt", sort=False):
        rewards = group.reward.to_numpy(dtype=float)
        rank = np.empty(len(rewards), dtype=int)
        rank[np.argsort(-rewards, kind="stable")] = np.arange(len(rewards))
        for i, j in pair_indices(rewards):
            best, worst = group.iloc[i], group.iloc[j]
            if best.response == worst.response:
                continue
            pairs.append({
                "prompt": prompt, "chosen": best.response, "rejected": worst.response,
                "chosen_reward": float(best.reward), "rejected_reward": float(worst.reward),
                "chosen_origin": best.origin, "rejected_origin": worst.origin, "rank": int(rank[i]),
            })
    return pd.DataFrame(pairs)


def ranked_pair_confidence(chosen_reward, rejected_reward, tau: float | None = None,
                           alpha: float = defaults.ALPHA) -> np.ndarray:
    """Each pair's confidence from its two rewards, as ``make_pairs`` attaches it.

    With notebook 02's ``tau``: ``sigmoid((R_c - R_r) / tau)`` (below 0.5 when the reward disagrees with the
    label). Without: the paper's formula for a batch of one pair, ``max(sigmoid(alpha (sig(R_c) - sig(R_r))), 0.5)``.
    """
    if tau is not None:
        return np.asarray(confidence_lib.pair_confidence(chosen_reward, rejected_reward, tau))
    return confidence_lib.batched_paper_confidence(chosen_reward, rejected_reward, 1, alpha=alpha)


def make_pairs(
    candidates: pd.DataFrame,
    *,
    pairing: str = "best_worst",
    m: int = 2,
    use_references: bool = True,
    benign_refusal_last: bool = False,
    tau: float | None = None,
    alpha: float = defaults.ALPHA,
    pair_indices: Callable | None = None,
    pair_confidence: Callable = ranked_pair_confidence,
    ranked_pairs: Callable = build_ranked_pairs,
) -> pd.DataFrame:
    """Training pairs from scored candidates, each with a confidence and a source.

    ``candidates`` has columns prompt, response, origin ("policy_sample" or "reference"), reward and
    harmful_prompt. ``use_references=False`` drops the written references from every pool first (the
    ablation "only the policy's own samples"). ``benign_refusal_last`` ranks a benign prompt's written refusal
    below every other candidate (a rule). The confidence is the per-pair fitted one,
    ``sigmoid((R_c - R_r) / tau)``, when notebook 02's ``tau`` is given, else the paper's formula per pair
    (:func:`ranked_pair_confidence`). ``pair_indices``, ``pair_confidence`` (called like
    ``ranked_pair_confidence``) and ``ranked_pairs`` (called like ``build_ranked_pairs(pool, pair_indices)``)
    let a lesson build the pairs with its own functions.
    """
    named = index_pairing(pairing, m)  # checks ``pairing`` even when ``pair_indices`` replaces it
    pair_indices = named if pair_indices is None else pair_indices
    pool = candidates if use_references else candidates[candidates.origin != "reference"]
    if benign_refusal_last:
        # A rule, not the reward: a safety reward has no reason to call a refusal of a benign prompt unsafe
        # (notebook 03's ranking check), so without it most benign pools never pair an answer against a refusal.
        pool = pool.copy()
        moved = (pool.origin == "reference") & ~pool.harmful_prompt.astype(bool)
        lowest = pool.groupby("prompt").reward.transform("min")
        pool.loc[moved, "reward"] = lowest[moved] - 1.0
    pairs = ranked_pairs(pool, pair_indices)
    if pairs.empty:
        return pairs
    pairs["confidence"] = pair_confidence(pairs.chosen_reward.to_numpy(), pairs.rejected_reward.to_numpy(), tau, alpha)
    harmful = candidates.drop_duplicates("prompt").set_index("prompt").harmful_prompt
    pairs["source"] = np.where(pairs.prompt.map(harmful), "rerank_harmful", "rerank_benign")
    return pairs


def text_statistics(responses: Sequence[str]) -> dict:
    """Simple distribution statistics: mean length in words and the refusal-phrase rate."""
    lengths = [len(r.split()) for r in responses]
    return {"mean_words": float(np.mean(lengths)) if lengths else 0.0,
            "refusal_rate": float(np.mean([is_refusal(r) for r in responses])) if responses else 0.0}


def mean_rank_correlation(groups: Sequence, before: Sequence[float], after: Sequence[float]) -> float:
    """Mean Spearman correlation, within each group (prompt), between two scorings of the same candidates.

    Groups of fewer than 3 candidates, or where either scoring is constant, are left out; nan when none is left.
    """
    frame = pd.DataFrame({"group": list(groups), "before": before, "after": after})
    rhos = []
    for _, g in frame.groupby("group"):
        if len(g) >= 3 and g.before.nunique() > 1 and g.after.nunique() > 1:
            rhos.append(spearmanr(g.before, g.after).statistic)
    return float(np.mean(rhos)) if rhos else float("nan")


def ranking_check(candidates: pd.DataFrame) -> dict:
    """Does the reward rank what it should? Shares of pools that hold a written refusal.

    Pools are ranked by reward, highest first, ties in pool order (a stable sort); pools without a written
    reference are left out (nan when none is left).
    ``refusal_first_harmful``: harmful prompts whose written refusal ranks first (refusing beats complying).
    ``refusal_last_benign``: benign prompts whose refusal ranks last (any answer of the policy's beats refusing).
    ``refusal_first_benign``: benign prompts whose refusal ranks first (the reward would teach over-refusal).
    A reward model that knows nothing (shuffled scores) gets about 1 / pool size on each; notebook 03 stops
    outside ``RANKING_FLOORS``.
    """
    shares = {}
    for key, harmful, position in (("refusal_first_harmful", True, 0), ("refusal_last_benign", False, -1),
                                   ("refusal_first_benign", False, 0)):
        pools = candidates[candidates.harmful_prompt == harmful].groupby("prompt", sort=False)
        hits = [group.sort_values("reward", ascending=False, kind="stable").origin.iloc[position] == "reference"
                for _, group in pools if (group.origin == "reference").any()]
        shares[key] = float(np.mean(hits)) if hits else float("nan")
    return shares


RANKING_MINIMUM = 0.6  # for refusal_first_harmful
# Where notebook 03 stops rather than train on the pairs: share -> ("min" or "max", bound). Chance is 1 / pool size
# (0.2 with 4 samples and a refusal). Notebook 03's min_/max_refusal_* parameters restate these (a test holds them equal).
RANKING_FLOORS = {"refusal_first_harmful": ("min", RANKING_MINIMUM), "refusal_last_benign": ("min", 0.5),
                  "refusal_first_benign": ("max", 0.15)}


def ranking_failures(shares: dict, floors: dict = RANKING_FLOORS) -> list[str]:
    """One line per share of ``ranking_check`` outside its floor (a nan share, no pool, is not a failure)."""
    failures = []
    for key, (kind, bound) in floors.items():
        value = shares.get(key, float("nan"))
        if np.isnan(value):
            continue
        if (kind == "min" and value < bound) or (kind == "max" and value > bound):
            word = "at least" if kind == "min" else "at most"
            failures.append(f"{key} = {value:.0%} (need {word} {bound:.0%})")
    return failures


def ks_distance(sample_a: Sequence[float], sample_b: Sequence[float]) -> float:
    """Kolmogorov-Smirnov distance of two samples: the largest gap between their empirical CDFs."""
    return float(ks_2samp(np.asarray(sample_a, dtype=float), np.asarray(sample_b, dtype=float)).statistic)


def pair_costs(seconds: float, flops: float, items: int, n_pairs: int) -> dict:
    """One ledger stage's throughput and its cost per pair produced; None where the denominator is 0
    (a stage with no time recorded, a run that produced no pairs)."""
    return {"items_per_second": items / seconds if seconds > 0 else None,
            "seconds_per_pair": seconds / n_pairs if n_pairs > 0 else None,
            "gflop_per_pair": flops / 1e9 / n_pairs if n_pairs > 0 else None}
