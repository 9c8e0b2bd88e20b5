"""Benchmark: greedy answers for judging (notebooks 04-06), the way ``Arms`` judged them before and now.

    python benchmarks/bench_judging.py [--harmful 64] [--benign 64] [--max-new-tokens 48] [--repeats 2]
        [--output results.json]

Prompts: test-split harmful and benign prompts (what notebook 04 judges). Policy: the default model with a LoRA
adapter (r 16, every linear layer) whose B matrices are seeded random values (scale 0.01), standing in for a trained
adapter; no training runs here. Every configuration answers the same prompts with ``generate_responses`` (greedy,
``--max-new-tokens``) and is timed round-robin, best of ``--repeats``, so load from other processes hits them alike;
only ratios within one run mean anything on a shared machine.

  before:        the adapter through PEFT, a DynamicCache, 32 prompts a batch (``Arms.judge`` until 24fda86);
  static:        the same with a StaticCache (``generate_responses`` on a CPU now);
  static_merged: the same with the adapter merged into the weights (``Arms.train`` now merges before judging);
  now:           static_merged at 64 prompts a batch (``evaluate.evaluate_model``'s default now);
  batch_128:     now at 128 prompts a batch.

``same_answers`` says whether a configuration's answers equal ``before``'s, prompt by prompt.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import time

import torch
from peft import get_peft_model

from reprank.data import sources as data
from reprank.lm import generation
from reprank.lm.models import DEFAULT_MODEL, load_model
from reprank.method.align import lora_config


def test_prompts(n_harmful: int, n_benign: int) -> list[str]:
    picked = []
    for frame, n in ((data.load_harmful_prompts(seed=0).to_pandas(), n_harmful),
                     (data.load_benign_prompts(seed=0).to_pandas(), n_benign)):
        picked += list(frame[frame.split == "test"].prompt[:n])
    return picked


@contextlib.contextmanager
def dynamic_cache():
    """``generate_responses`` as before 24fda86: no cache argument for one answer a prompt (a DynamicCache)."""
    original = generation._shared_prompt_cache
    generation._shared_prompt_cache = lambda model, enc, copies, n: {} if copies <= 1 else original(model, enc, copies, n)
    try:
        yield
    finally:
        generation._shared_prompt_cache = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-id", default=DEFAULT_MODEL)
    parser.add_argument("--harmful", type=int, default=64)
    parser.add_argument("--benign", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--output", default="")
    args = parser.parse_args()

    loaded = load_model(args.model_id)
    tokenizer = loaded.tokenizer
    torch.manual_seed(0)
    policy = get_peft_model(loaded.model, lora_config())
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in policy.named_parameters():
            if "lora_B" in name:
                parameter.copy_(0.01 * torch.randn(parameter.shape, generator=generator))
    policy.eval()
    merged = copy.deepcopy(policy).merge_and_unload().eval()
    prompts = test_prompts(args.harmful, args.benign)
    config = generation.SamplingConfig(max_new_tokens=args.max_new_tokens)

    def answers(model, batch_size, dynamic=False):
        with dynamic_cache() if dynamic else contextlib.nullcontext():
            return generation.generate_responses(model, tokenizer, prompts, config, batch_size=batch_size,
                                                 progress=False)

    runs = {"before": lambda: answers(policy, 32, dynamic=True), "static": lambda: answers(policy, 32),
            "static_merged": lambda: answers(merged, 32), "now": lambda: answers(merged, 64),
            "batch_128": lambda: answers(merged, 128)}
    best, outputs = {}, {}
    for _ in range(args.repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            outputs[name] = run()
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - start)
    report = {
        "args": vars(args), "prompts": len(prompts), "torch_threads": torch.get_num_threads(),
        "weights": "the default model + a LoRA adapter with seeded random B (scale 0.01), not a trained one",
        "results": [{"run": name, "seconds": round(best[name], 2), "speedup_over_before": round(best["before"] / best[name], 3),
                     "same_answers": outputs[name] == outputs["before"],
                     "answers_differing": sum(a != b for a, b in zip(outputs[name], outputs["before"]))}
                    for name in runs],
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
