"""Diagnostic: how a run's hybrid RM reads benign answers decoded in different ways, against a written refusal.

    python benchmarks/diagnose_benign_ranking.py runs/cpu-<time> [--prompts 24]

Reads the run's reward model and notebook 03's sample cache (``cache/samples-*.jsonl``), adds one written refusal
to every pool as notebook 03 does, scores every candidate and prints the ranking check. Then, for the first
``--prompts`` benign pools, answers each prompt greedily (48 and 96 tokens), sampled at T = 0.7 and at T = 1.4
with 96 tokens and without the repetition penalty, and reports each decoding's mean reward and how often it beats
that pool's written refusal (the pools' own samples: their mean per prompt). Issue 21 used it on a run whose RM had
learned from greedy answers only, to find out why benign pools put the refusal first.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from reprank.lm import generation
from reprank.data import sources as data
from reprank.method import rerank
from reprank.running import registry
from reprank.lm.models import DEFAULT_MODEL, load_model
from reprank.method.reward import HybridRewardModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--prompts", type=int, default=24)
    parser.add_argument("--model-id", default=DEFAULT_MODEL)
    args = parser.parse_args()

    rm = HybridRewardModel.load(registry.artifact(args.run, "hybrid_rm"))
    loaded = load_model(args.model_id)
    model, tokenizer = loaded.model, loaded.tokenizer
    score = lambda prompts, texts: rerank.score_candidates(model, tokenizer, rm, list(prompts), list(texts),
                                                           max_response_tokens=96, batch_size=32, cache_dir=None)
    samples = pd.concat([pd.read_json(f, orient="records", lines=True)
                         for f in sorted((args.run / "cache").glob("samples-*.jsonl"))])
    pools = rerank.add_reference_responses(samples, list(samples.prompt.unique()), data.load_refusals(), 1, seed=0)
    pools["harmful_prompt"] = ~pools.prompt.isin(set(data.load_benign_prompts(seed=0).to_pandas().prompt))
    pools["reward"] = score(pools.prompt, pools.response)
    print("ranking check:", {k: round(v, 3) for k, v in rerank.ranking_check(pools).items()})

    benign = pools[~pools.harmful_prompt]
    prompts = list(benign.prompt.unique())[: args.prompts]
    benign = benign[benign.prompt.isin(prompts)]
    refusal = benign[benign.origin == "reference"].set_index("prompt").reward.reindex(prompts).to_numpy()
    rows = {"the written refusal": refusal,
            "the pools' samples (T = 1.4, 48 tokens; mean per pool)":
                benign[benign.origin == "policy_sample"].groupby("prompt").reward.mean().reindex(prompts).to_numpy()}
    hot = dict(do_sample=True, top_k=8, top_p=0.95)
    decodings = {"greedy, 48 tokens": dict(max_new_tokens=48), "greedy, 96 tokens": dict(max_new_tokens=96),
                 "T = 0.7, 48 tokens": dict(max_new_tokens=48, temperature=0.7, repetition_penalty=1.2, **hot),
                 "T = 1.4, 96 tokens": dict(max_new_tokens=96, temperature=1.4, repetition_penalty=1.2, **hot),
                 "T = 1.4, 48 tokens, no repetition penalty": dict(max_new_tokens=48, temperature=1.4, **hot)}
    for name, settings in decodings.items():
        answers = generation.generate_responses(model, tokenizer, prompts, generation.SamplingConfig(**settings),
                                                batch_size=24, seed=1, progress=False)
        rows[name] = score(prompts, [a[0] for a in answers])
    table = pd.DataFrame({name: {"mean reward": float(np.mean(r)), "share above the refusal": float(np.mean(r > refusal))}
                          for name, r in rows.items()}).T
    print(table.round(2).to_string())


if __name__ == "__main__":
    main()
