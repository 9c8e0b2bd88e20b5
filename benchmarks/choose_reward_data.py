"""Choose notebook 01's reward data on validation pools: written refusals per harmful prompt x RM epochs x RM seed.

    python benchmarks/choose_reward_data.py runs/cpu-<time> [--refusals 1 2 3] [--epochs 50 100] [--rm-seeds 0 1 2]
        [--n-harmful 96 192] [--n-benign 96 192] [--pools-from runs/cpu-wide-<time>]

Issue 21 asks for the written refusal to rank first in >= 85% of notebook 03's harmful pools; with one written
refusal per harmful prompt in the reward's data it did in 77% (benchmarks/diagnose_harmful_ranking.py says why).
Choosing a fix on those same pools would be choosing on the numbers it is reported on, so this script builds
**validation pools**: 48 harmful and 48 benign validation-split prompts that the reward's data does not hold, sampled as notebook 03 samples (4 samples and one written refusal each). For every setting it rebuilds
notebook 01's response table from the run's answers (`reward_data.build_response_table`, the notebook's own
function), trains the hybrid RM (`reward.train_hybrid_reward_model`) and prints the ranking check
(`rerank.ranking_check`) on the validation pools and, beside it, on the run's own notebook 03 pools and on the
pools of any run named with ``--pools-from`` (a pool does not depend on the reward, so a `cpu-wide` run's 160 + 160
pools score every setting on more pools than the run's 48 + 48).

Notebook 01's answers and human-labelled rows are read back from the run's response table (`responses`), so no
answer is generated again. ``--n-harmful`` / ``--n-benign`` above the run's own counts stand for notebook 01's
``n_harmful`` / ``n_benign``: the prompts it would add (its seeded pick of more, whose first ones are the run's) are
answered here as notebook 01 answers (greedy, plus one sample at the pools' settings), and the validation pools stay
outside the largest set, so every setting is scored on the same pools. The script adds to the run's cache folder
(hidden states, the added answers, the validation pools' samples), so a second call with the same largest counts takes
a few minutes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
import torch

from reprank.base.errors import UserError
from reprank.data import sources as data
from reprank.lm import extraction, generation
from reprank.lm.models import DEFAULT_MODEL, load_model, model_fingerprint
from reprank.method import reward, reward_data, rerank
from reprank.running import registry
from reprank.running.runs import read_run_record

N_POOLS = 48  # each side, as notebook 03's default


def pool_sampling(n: int) -> generation.SamplingConfig:
    return generation.SamplingConfig(max_new_tokens=48, do_sample=True, temperature=1.4, top_k=8, top_p=0.95,
                                     repetition_penalty=1.2, num_return_sequences=n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a finished run of notebooks 01-03 at the cpu profile's sizes")
    parser.add_argument("--refusals", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, nargs="+", default=[50, 100])
    parser.add_argument("--rm-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n-harmful", type=int, nargs="+", default=[], help="notebook 01's n_harmful (default: the run's)")
    parser.add_argument("--n-benign", type=int, nargs="+", default=[], help="notebook 01's n_benign (default: the run's)")
    parser.add_argument("--pools-from", type=Path, nargs="+", default=[],
                        help="other runs whose notebook 03 pools are scored too (reported beside, never chosen on)")
    parser.add_argument("--model-id", default=DEFAULT_MODEL)
    args = parser.parse_args()

    try:  # every run's pools read before any model work, so a wrong folder stops here with one line
        scored_pools = [("run's 03", registry.load_artifact(args.run, "candidates"))]
        scored_pools += [(str(run), registry.load_artifact(run, "candidates")) for run in args.pools_from]
    except UserError as error:
        raise SystemExit(str(error)) from None
    cache = args.run / "cache"
    loaded = load_model(args.model_id)
    model, tokenizer, fingerprint = loaded.model, loaded.tokenizer, model_fingerprint(args.model_id)
    layer_ids = extraction.all_layers(model)
    harmful = data.load_harmful_prompts(seed=0).to_pandas()
    benign = data.load_benign_prompts(seed=0).to_pandas()
    refusals = data.load_refusals()
    # Notebook 01's inputs, read back from the run's response table (its row order is notebook 01's order)
    responses = registry.load_artifact(args.run, "responses")
    human_01 = responses[responses.kind.str.startswith("human")].assign(unsafe=lambda f: f.kind == "human_unsafe")
    policy = lambda kinds: {prompt: list(group.sort_values("decoding", key=lambda d: d != "greedy", kind="stable")
                                         .response)
                            for prompt, group in responses[responses.kind.isin(kinds)].groupby("prompt", sort=False)}
    harmful_answers = policy(["policy_compliance", "policy_refusal"])
    benign_answers = policy(["policy_benign"])
    # Notebook 01's pick (train + validation, seeded): a larger n's first rows are a smaller n's
    pick = lambda frame, n: list(frame[frame.split != "test"].sample(n=n, random_state=0).prompt)
    ran_with = read_run_record(args.run)["parameters"]
    n_harmful, n_benign = args.n_harmful or [ran_with["n_harmful"]], args.n_benign or [ran_with["n_benign"]]
    picked_harmful, picked_benign = pick(harmful, max(n_harmful)), pick(benign, max(n_benign))
    if list(harmful_answers) != picked_harmful[:len(harmful_answers)]:
        raise SystemExit(f"{args.run}: its harmful prompts are not notebook 01's seed-0 pick; use a run of notebook 01 "
                         "at seed 0 (this script picks the added prompts as that run would have)")

    def answer_more(picked, answers):
        new = [p for p in picked if p not in answers]
        if not new:
            return answers
        greedy = generation.generate_responses(model, tokenizer, new, generation.SamplingConfig(max_new_tokens=64),
                                               batch_size=32, seed=0, cache_dir=cache, model_name=fingerprint)
        sampled = generation.generate_responses(model, tokenizer, new, pool_sampling(1), batch_size=32, seed=1,
                                                cache_dir=cache, model_name=fingerprint)
        return answers | {p: [g[0], s[0]] for p, g, s in zip(new, greedy, sampled)}

    all_harmful, all_benign = answer_more(picked_harmful, harmful_answers), answer_more(picked_benign, benign_answers)

    def states(prompts, responses):
        return extraction.extract_hidden_states(model, tokenizer, list(prompts), list(responses), layers=layer_ids,
                                                batch_size=32, max_response_tokens=96, cache_dir=cache,
                                                model_name=fingerprint, reuse_rows=True).end

    valid = lambda frame, taken: list(frame[(frame.split == "validation") & ~frame.prompt.isin(set(taken))]
                                      .sample(n=N_POOLS, random_state=1).prompt)
    val_harmful, val_benign = valid(harmful, picked_harmful), valid(benign, picked_benign)
    val_pools = rerank.sample_candidates(model, tokenizer, val_harmful + val_benign, pool_sampling(4), seed=0,
                                         cache_dir=cache, model_name=fingerprint)
    val_pools = rerank.add_reference_responses(val_pools, val_harmful + val_benign, refusals, 1, seed=0)
    val_pools["harmful_prompt"] = val_pools.prompt.isin(set(val_harmful))
    pools = {"validation": (val_pools, states(val_pools.prompt, val_pools.response))}
    for name, frame in scored_pools:
        pools[name] = (frame, states(frame.prompt, frame.response))

    rows = []
    settings = [(k, nh, nb) for k in args.refusals for nh in n_harmful for nb in n_benign]
    in_01 = lambda picked, n, answers: {p: answers[p] for p in picked[:n] if p in answers}  # 01's first n, answered
    for k, nh, nb in settings:
        table = reward_data.build_response_table(human_01, in_01(picked_harmful, nh, all_harmful),
                                                 in_01(picked_benign, nb, all_benign), refusals,
                                                 refusals_per_prompt=k, seed=0)
        x = states(table.prompt, table.response)
        pairs = reward_data.build_reward_pairs(table, seed=0)
        train, val = pairs[pairs.split == "train"], pairs[pairs.split == "validation"]
        for epochs in args.epochs:
            for rm_seed in args.rm_seeds:
                start = time.perf_counter()
                fit = reward.train_hybrid_reward_model(x[train.chosen_row], x[train.rejected_row], x[val.chosen_row],
                                                       x[val.rejected_row], layers=layer_ids, epochs=epochs,
                                                       seed=rm_seed, progress=False)
                row = {"refusals_per_prompt": k, "n_harmful": nh, "n_benign": nb, "epochs": epochs, "rm_seed": rm_seed,
                       "train_pairs": len(train), "best_epoch": fit.best_epoch, "seconds": round(time.perf_counter() - start, 1)}
                for name, (frame, pool_states) in pools.items():
                    with torch.no_grad():
                        scored = frame.assign(reward=fit.model(torch.as_tensor(pool_states)).numpy())
                    row |= {f"{name}: {key}": share for key, share in rerank.ranking_check(scored).items()}
                rows.append(row)
                print(json.dumps(row), flush=True)
    table = pd.DataFrame(rows)
    shares = [c for c in table.columns if ": refusal_" in c]
    print("\nmean over RM seeds (validation chooses; the run's 03 pools are where it is reported):")
    setting = ["refusals_per_prompt", "n_harmful", "n_benign", "epochs"]
    print(table.groupby(setting)[shares + ["best_epoch"]].mean().round(3).to_string())


if __name__ == "__main__":
    main()
