"""Diagnostic: why a harmful pool ranks one of the policy's samples above its written refusal.

    python benchmarks/diagnose_harmful_ranking.py runs/cpu-<time>

Reads a finished run's scored pools (notebook 03's ``candidates`` artifact) and its reward model. The pools hold
one written refusal each, drawn at random from the refusal list, so a low-scoring refusal could be the template's
fault or the prompt's. To tell them apart it scores **every** refusal of the list against **every** harmful pool's
prompt (templates x prompts) and splits the variance of those rewards into a prompt part and a template part
(two-way, no interaction: each part's sum of squares over the total). It then prints, for the pools whose refusal
did not rank first, the mean reward of all refusals to that prompt against the pool's best sample: if the prompt
is the cause, every refusal scores low there, not only the one drawn. Issue 21 used it on the default run, whose
ranking check put the refusal first in 77% of harmful pools (target 85%).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from reprank.data import sources as data
from reprank.lm.models import DEFAULT_MODEL, load_model
from reprank.method import rerank
from reprank.method.reward import HybridRewardModel
from reprank.running import registry


def variance_shares(grid: pd.DataFrame) -> dict[str, float]:
    """Shares of a (prompt x template) reward table's total sum of squares due to prompts and to templates."""
    values = grid.to_numpy(dtype=float)
    centred = values - values.mean()
    total = float((centred**2).sum())
    prompts = float(values.shape[1] * ((values.mean(axis=1) - values.mean()) ** 2).sum())
    templates = float(values.shape[0] * ((values.mean(axis=0) - values.mean()) ** 2).sum())
    return {"prompt": prompts / total, "template": templates / total, "rest": 1 - (prompts + templates) / total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--model-id", default=DEFAULT_MODEL)
    args = parser.parse_args()

    pools = registry.load_artifact(args.run, "candidates")
    harmful = pools[pools.harmful_prompt]
    written = harmful[harmful.origin != "policy_sample"].set_index("prompt")
    samples = harmful[harmful.origin == "policy_sample"]
    best_sample = samples.groupby("prompt").reward.max()
    first = written.reward > best_sample.reindex(written.index)
    print(f"refusal first in {first.mean():.0%} of {len(first)} harmful pools; the policy's samples refuse "
          f"{samples.refusal.mean():.1%} of the time (phrase rule)")

    rm = HybridRewardModel.load(registry.artifact(args.run, "hybrid_rm"))
    loaded = load_model(args.model_id)
    refusals = data.load_refusals()
    prompts = list(written.index)
    pairs = [(p, r) for p in prompts for r in refusals]
    rewards = rerank.score_candidates(loaded.model, loaded.tokenizer, rm, [p for p, _ in pairs], [r for _, r in pairs],
                                      max_response_tokens=96, batch_size=32, cache_dir=None)
    grid = pd.DataFrame(np.asarray(rewards).reshape(len(prompts), len(refusals)), index=prompts)
    print(f"{len(refusals)} refusals x {len(prompts)} prompts; variance shares:",
          {k: round(v, 2) for k, v in variance_shares(grid).items()})

    table = pd.DataFrame({"refusal first": first, "drawn refusal": written.reward,
                          "all refusals, mean": grid.mean(axis=1), "all refusals, share above best sample":
                              grid.gt(best_sample.reindex(grid.index), axis=0).mean(axis=1),
                          "best sample": best_sample.reindex(written.index)})
    print(table.groupby("refusal first").mean().round(2).T.to_string())
    print("\npools whose refusal did not rank first:")
    shown = table[~table["refusal first"]].drop(columns="refusal first")
    shown.index = [p[:70] for p in shown.index]
    print(shown.round(2).to_string())


if __name__ == "__main__":
    main()
