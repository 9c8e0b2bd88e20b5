"""Benchmark: a LoRA-DPO training step's real (non-padding) tokens per second against its limit.

    python benchmarks/bench_training.py [--steps 2] [--out results.json]

Pairs are fixed and seeded, no network: the human-labelled pyrit (prompt, response) rows as the rejected
answers and a written refusal (``data/refusals.jsonl``, seeded choice) as the chosen one: short chosen, long
rejected, as re-ranked safety pairs are. LoRA r16 on all linear layers, ``--batch-size`` pairs per step,
``--max-length`` tokens, the rest of ``align.dpo_config``'s defaults; ``method="dpo"`` (TRL's loss).
Compared, on the tokens of the same batches:

  limit:           a bare LoRA forward + backward of the policy over the same batches' real tokens packed in
                   one row (no padding, no reference), TRL's fused head on the completion tokens;
  every_position_head: ``precompute_ref`` with TRL's fused head scoring every position (prompt and padding too),
                   as TRL does on a CPU without ``reprank.method.answer_head``;
  <config>:        ``trainer.train()`` with that config, a step timed by a callback (first step left out as
                   warm-up); tokens = the batch's attention-mask sum (real tokens, chosen and rejected rows).

For each config: the step's share spent in the reference forward (a forward of the model with gradients
off, timed by hooks), the padding share of the batch, and, with ``precompute_ref_log_probs``, the one-off
time of the reference pass before training (``precompute``) and the tokens/s with it amortized over the
timed steps' pairs. The machine should be idle; numbers from a shared machine are preliminary.
"""

from __future__ import annotations

import argparse
import json
import random
import time

import torch
from datasets import Dataset
from transformers import TrainerCallback

from reprank.data import sources as data
from reprank.method import align, answer_head
from reprank.method.conservative import ConfidenceDPOTrainer
from reprank.lm.models import DEFAULT_MODEL, load_model, model_device


def make_pairs(n: int, seed: int = 0) -> Dataset:
    human = data.load_human_labelled("objective").to_pandas()
    human = human[human.response.str.len() > 0].sample(n, random_state=seed)
    refusals = data.load_refusals()
    rng = random.Random(seed)
    return Dataset.from_dict({"prompt": list(human.prompt), "chosen": [rng.choice(refusals) for _ in range(n)],
                              "rejected": list(human.response)})


class StepTimer(TrainerCallback):
    """Wall time of each optimizer step, and of the gradient-free forwards (the reference) inside it."""

    def __init__(self, model):
        self.steps, self.ref, self._ref_now = [], [], 0.0
        self._started = None
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        base.register_forward_pre_hook(self._pre)
        base.register_forward_hook(self._post)

    def _pre(self, *_):
        self._forward_start = time.perf_counter()

    def _post(self, *_):
        if not torch.is_grad_enabled():
            self._ref_now += time.perf_counter() - self._forward_start

    def on_step_begin(self, args, state, control, **kwargs):
        self._started, self._ref_now = time.perf_counter(), 0.0

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(time.perf_counter() - self._started)
        self.ref.append(self._ref_now)


def run_config(name, args, **overrides):
    # Fresh pairs per config: same rows, a new in-memory fingerprint, so TRL's cache of precomputed reference
    # log-probs (keyed by dataset fingerprint and model hash) does not carry over from one config to the next.
    pairs = make_pairs(args.pairs)
    (answer_head.enable if overrides.pop("answer_head", True) else answer_head.disable)()
    loaded = load_model(args.model_id)
    torch.manual_seed(0)
    config = align.dpo_config(f"/tmp/bench_training/{name}", max_steps=args.steps + 1, disable_tqdm=True,
                              per_device_train_batch_size=args.batch_size, max_length=args.max_length, **overrides)
    precompute = []
    original = ConfidenceDPOTrainer._precompute_ref_logps

    def timed_precompute(self, *a, **k):  # the one-off reference pass before training
        start = time.perf_counter()
        result = original(self, *a, **k)
        precompute.append(time.perf_counter() - start)
        return result

    ConfidenceDPOTrainer._precompute_ref_logps = timed_precompute
    try:
        trainer = align.make_trainer(loaded.model, loaded.tokenizer, pairs, method="dpo", config=config)
    finally:
        ConfidenceDPOTrainer._precompute_ref_logps = original
    batches, collator = [], trainer.data_collator

    def recording_collator(examples):
        batch = collator(examples)
        batches.append({k: batch[k].clone() for k in ("input_ids", "attention_mask", "completion_mask")})
        return batch

    trainer.data_collator = recording_collator
    timer = StepTimer(trainer.model)
    trainer.add_callback(timer)
    trainer.train()
    answer_head.enable()  # the package's default again
    steps, timed = timer.steps[1:], batches[1: args.steps + 1]  # step 0: warm-up
    real = sum(int(b["attention_mask"].sum()) for b in timed)
    padded = sum(b["attention_mask"].numel() for b in timed)
    result = {"seconds_per_step": sum(steps) / len(steps), "tokens_per_second": real / sum(steps),
              "ref_forward_share": sum(timer.ref[1:]) / sum(steps), "padding_share": 1 - real / padded,
              "real_tokens_per_step": real / len(steps)}
    if precompute:
        pairs_seen = len(timed) * args.batch_size
        amortized = sum(steps) + precompute[0] * min(pairs_seen / len(pairs), 1.0)
        result.update(precompute_seconds=precompute[0], tokens_per_second_amortized=real / amortized)
    return result, timed, trainer.model


def limit(model, batches) -> float:
    """Real tokens/s of a bare policy forward + backward over each batch's real tokens packed in one row.

    No padding and no reference: the batch's sequences, padding removed, side by side in one row with positions
    restarting at each, through TRL's fused LM head (the head runs only where a completion token is predicted,
    as in the DPO step). Attention spans the whole row, a little more work than per sequence: a fair upper bound.
    """
    model.train()
    device = model_device(model)
    total, seconds = 0, 0.0
    for warm_up, batch in [(True, batches[0])] + [(False, b) for b in batches]:  # a first call of a shape is slow
        keep = batch["attention_mask"].bool()
        ids = batch["input_ids"][keep][None].to(device)
        positions = torch.cat([torch.arange(int(n)) for n in keep.sum(1)])[None].to(device)
        labels = ids.masked_fill(batch["completion_mask"][keep][None].to(device) == 0, -100)
        start = time.perf_counter()
        out = model(input_ids=ids, position_ids=positions, labels=labels, fused_lm_head=True, use_cache=False)
        out.log_probs.sum().backward()
        model.zero_grad(set_to_none=True)
        if not warm_up:
            seconds += time.perf_counter() - start
            total += ids.shape[1]
    return total / seconds


CONFIGS = {
    "ref_in_step": {"precompute_ref_log_probs": False},  # TRL's default: the reference forward inside every step
    "precompute_ref": {"precompute_ref_log_probs": True},  # align.dpo_config's default
    # TRL's own CPU path (reprank.method.answer_head switched off): its log-prob head scores every position
    "every_position_head": {"precompute_ref_log_probs": True, "answer_head": False},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-id", default=DEFAULT_MODEL)
    parser.add_argument("--pairs", type=int, default=None,
                        help="default (steps + 1) x batch size: one pass over the pairs, so precompute stays on")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per config (after one warm-up step)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset of " + ", ".join(CONFIGS))
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    args.pairs = args.pairs or (args.steps + 1) * args.batch_size

    results, model, batches = {}, None, None
    for name in args.configs.split(","):
        results[name], timed, trained = run_config(name, args, **CONFIGS[name])
        print(name, json.dumps(results[name]), flush=True)  # partial results survive a timeout
        if model is None:
            model, batches = trained, timed
    limit_tps = limit(model, batches)
    report = {"pairs": args.pairs, "steps": args.steps, "batch_size": args.batch_size, "max_length": args.max_length,
              "threads": torch.get_num_threads(), "limit_tokens_per_second": round(limit_tps, 1), "configs": {}}
    print(f"limit (policy fwd+bwd, real tokens packed, no reference): {limit_tps:8.1f} real tokens/s")
    print(f"{'config':22s} {'s/step':>7s} {'tok/s':>8s} {'x limit':>8s} {'ref share':>9s} {'padding':>8s} "
          f"{'precompute s':>12s} {'amortized x':>11s}")
    for name, r in results.items():
        r = {k: round(v, 4) for k, v in r.items()}
        r["ratio_vs_limit"] = round(r["tokens_per_second"] / limit_tps, 3)
        if "tokens_per_second_amortized" in r:
            r["ratio_vs_limit_amortized"] = round(r["tokens_per_second_amortized"] / limit_tps, 3)
        report["configs"][name] = r
        print(f"{name:22s} {r['seconds_per_step']:7.2f} {r['tokens_per_second']:8.1f} {r['ratio_vs_limit']:8.3f} "
              f"{r['ref_forward_share']:9.1%} {r['padding_share']:8.1%} {r.get('precompute_seconds', 0):12.2f} "
              f"{r.get('ratio_vs_limit_amortized', r['ratio_vs_limit']):11.3f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
