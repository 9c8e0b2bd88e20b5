"""Benchmark: candidate sampling (notebook 03) in new tokens/s, against bare ``generate`` and the forward limit.

    python benchmarks/bench_sampling.py [--harmful 32] [--benign 32] [--batch-size 16] [--repeats 2]
        [--threads 0] [--sweep-batch-sizes 8,32,64] [--sweep-sort tokens] [--sweep-static]
        [--ablate] [--thread-probe 1,2] [--output results.json]

Prompts: training-split harmful and benign prompts, picked as notebook 03 picks them (``sample(n,
random_state=seed)``). Sampling: notebook 03's ``SamplingConfig`` (48 new tokens, T 1.4, top-k 8, top-p 0.95,
repetition penalty 1.2, 4 samples per prompt). Compared on the same prompts, the same batches (ours: length-sorted
by characters, ``--batch-size`` prompts, so ``--batch-size`` x 4 rows) and the same lengths:

  ours:         ``reprank.lm.generation.generate_responses`` as ``rerank.sample_candidates`` calls it (on a CPU: each
                prompt prefilled once into a static cache, temperature/top-k/top-p in one logits processor);
  bare:         ``model.generate`` on the same left-padded batches (tokenized beforehand), same kwargs, seeded
                like ours, one ``batch_decode`` a batch: ``generate_responses`` as it was before those two changes,
                so its samples are checked against ours (``bare_matches_ours``);
  limit:        the forwards alone, as ``generate`` runs them: one prefill of batch x 4 rows (each prompt 4
                times) into a DynamicCache, then max_new_tokens - 1 single-token forwards (the prefill gives the
                first new token), with attention mask and positions, lm head on the last position; no sampling;
  limit_shared: the forwards ours runs: ``_shared_prompt_cache`` (the prompt but its last token once, the cache
                repeated 4 times into a StaticCache), then max_new_tokens single-token forwards; no sampling.

Tokens: ``new_tokens`` counts the new tokens each row really produced (up to and including its end token,
not the padding after it); ``slots`` counts rows x decoding steps run (what the forwards compute, finished rows
included). The limits have no samples, and the --sweep-sort and --ablate recipes are not counted: their tokens
are rows x max_new_tokens. Ratios are of seconds on the
same work (a ratio of slots/s). The methods run round-robin, best of ``--repeats``, so load from other processes
hits them alike; only ratios within one run mean anything on a shared machine.

Sweeps (each against its own baseline measured in the same rounds):
  --sweep-batch-sizes   ours at other batch sizes (prompts a batch) on all prompts;
  --sweep-sort tokens   ours' recipe with batches sorted by token count instead of characters (and ``none``:
                        unsorted), on all prompts; ``padded_prompt_tokens`` gives each order's padding;
  --sweep-static        bare with ``cache_implementation="static"`` (no auto-compile on a CPU) against bare;
  --ablate              generate_responses' changes one at a time, against bare: the prompt prefilled once
                        (DynamicCache), then into a StaticCache, then (= ours) the fused warpers;
  --thread-probe 1,2    in a child process per thread count, with the OpenMP wait policy unset and PASSIVE
                        (interleaved, best of --repeats): the shared prefill of the first batch and one decode
                        forward at batch x 4 rows (mean of --probe-steps); speed-up over torch's default threads.
End tokens: the share of rows that end before max_new_tokens and of slots computed after a row's end
(what an early exit per row could save at most; ``generate`` stops a batch only when all its rows ended).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch

from reprank.data import sources as data
from reprank.lm.extraction import format_prompt
from reprank.lm.generation import SamplingConfig, _fast_sampling_kwargs, _shared_prompt_cache, generate_responses
from reprank.lm.models import DEFAULT_MODEL, load_model


def notebook_sampling(max_new_tokens: int, samples: int) -> SamplingConfig:
    return SamplingConfig(max_new_tokens=max_new_tokens, do_sample=True, temperature=1.4, top_k=8, top_p=0.95,
                          repetition_penalty=1.2, num_return_sequences=samples)


def pick_prompts(n_harmful: int, n_benign: int, seed: int) -> list[str]:
    """Notebook 03's choice: ``n`` training-split prompts of each kind, ``sample(n, random_state=seed)``."""
    picked = []
    for frame, n in ((data.load_harmful_prompts(seed=seed).to_pandas(), n_harmful),
                     (data.load_benign_prompts(seed=seed).to_pandas(), n_benign)):
        train = frame[frame.split == "train"]
        picked += list(train.sample(n=min(n, len(train)), random_state=seed).prompt)
    return picked


def batches_of(order: list[int], size: int) -> list[list[int]]:
    return [order[i:i + size] for i in range(0, len(order), size)]


def encode(tokenizer, texts: list[str]) -> dict:
    previous, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        return dict(tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False))
    finally:
        tokenizer.padding_side = previous


def produced(new_tokens: torch.Tensor, eos: int) -> tuple[int, int, int]:
    """(new tokens really produced, rows that ended early, slots after a row's end) of a batch's new tokens."""
    is_end = new_tokens == eos
    ended = is_end.any(1)
    first_end = torch.where(ended, is_end.int().argmax(1),
                            torch.full_like(ended, new_tokens.shape[1], dtype=torch.long))
    lengths = torch.minimum(first_end + 1, torch.tensor(new_tokens.shape[1]))
    return int(lengths.sum()), int(ended.sum()), int(new_tokens.numel() - lengths.sum())


class Counter:
    """Token counts of one method's last run, from its generated ids."""

    def __init__(self, eos: int):
        self.eos = eos
        self.reset()

    def reset(self):
        self.new_tokens = self.slots = self.rows = self.ended = self.after_end = 0
        self.steps = []

    def add(self, new_tokens: torch.Tensor):
        n, ended, after = produced(new_tokens.cpu(), self.eos)
        self.new_tokens += n
        self.slots += new_tokens.numel()
        self.rows += new_tokens.shape[0]
        self.ended += ended
        self.after_end += after
        self.steps.append(new_tokens.shape[1])


def best_round_robin(methods: dict, repeats: int, after_round=None) -> dict[str, float]:
    """Best wall time of each method, the methods interleaved in each round; ``after_round(best, where)``
    after each method (where: the round and the method just done)."""
    best = {name: float("inf") for name in methods}
    for round_index in range(repeats):
        for name, fn in methods.items():
            start = time.perf_counter()
            fn()
            seconds = time.perf_counter() - start
            best[name] = min(best[name], seconds)
            print(f"round {round_index + 1}/{repeats} {name}: {seconds:.1f} s", file=sys.stderr, flush=True)
            if after_round is not None:
                after_round({k: v for k, v in best.items() if v < float("inf")}, f"{round_index + 1} ({name})")
    return best


@torch.inference_mode()
def forwards_only(model, encoded: list[dict], copies: int, steps: int, shared: bool):
    """The decoding forwards and nothing else (see the module docstring: limit, limit_shared)."""
    from transformers import DynamicCache

    for enc in encoded:
        ids, mask = enc["input_ids"], enc["attention_mask"]
        positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
        ids, mask, positions = (t.repeat_interleave(copies, 0) for t in (ids, mask, positions))
        if shared:  # ours: the prompt but its last token once, a static cache, then `steps` forwards
            cache = _shared_prompt_cache(model, enc, copies, steps)["cache"]
            width, n_forwards = ids.shape[1] - 1, steps
        else:  # generate's prefill of every copy into a DynamicCache, then steps - 1 forwards
            cache = DynamicCache(config=model.config)
            model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True,
                  logits_to_keep=1)
            width, n_forwards = ids.shape[1], steps - 1
        decode_forwards(model, cache, ids[:, -1:], mask, positions[:, -1:], width, n_forwards, first_is_prompt=shared)


def decode_forwards(model, cache, token, mask, last_position, width, n_forwards, first_is_prompt):
    """``n_forwards`` single-token forwards (the same token each time: no sampling) with a growing mask."""
    full_mask = torch.cat([mask, mask.new_ones(mask.shape[0], n_forwards + 1)], 1)
    for step in range(n_forwards):
        width += 1
        position = last_position + (step if first_is_prompt else step + 1)
        model(input_ids=token, attention_mask=full_mask[:, :width], position_ids=position, cache=cache,
              use_cache=True, logits_to_keep=1)


@torch.inference_mode()
def run_probe(args) -> None:
    """Child process of --thread-probe: seconds of ours' shared prefill and of one decode forward."""
    torch.set_num_threads(args.probe_threads)
    loaded = load_model(args.model_id)
    model, tokenizer = loaded.model, loaded.tokenizer
    prompts = pick_prompts(args.harmful, args.benign, args.seed)[: args.batch_size]
    enc = encode(tokenizer, [format_prompt(tokenizer, p) for p in prompts])
    forwards_only(model, [enc], args.samples, 2, shared=True)  # warm-up
    ids, mask = enc["input_ids"], enc["attention_mask"]
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
    start = time.perf_counter()
    cache = _shared_prompt_cache(model, enc, args.samples, args.probe_steps)["cache"]
    prefill = time.perf_counter() - start
    ids, mask, positions = (t.repeat_interleave(args.samples, 0) for t in (ids, mask, positions))
    start = time.perf_counter()
    decode_forwards(model, cache, ids[:, -1:], mask, positions[:, -1:], ids.shape[1] - 1, args.probe_steps, True)
    decode = (time.perf_counter() - start) / args.probe_steps
    print(json.dumps({"threads": torch.get_num_threads(), "prefill": prefill, "decode_forward": decode}))


def thread_probe(args, thread_counts: list[int], default_threads: int) -> dict:
    configs = [(threads, policy) for threads in thread_counts for policy in (None, "PASSIVE")]
    best: dict[str, dict[str, float]] = {}
    for _ in range(max(1, args.repeats)):
        for threads, policy in configs:
            env = dict(os.environ)
            env.pop("OMP_WAIT_POLICY", None)
            if policy:
                env["OMP_WAIT_POLICY"] = policy
            command = [sys.executable, __file__, "--probe-threads", str(threads), "--model-id", args.model_id,
                       "--harmful", str(args.harmful), "--benign", str(args.benign), "--seed", str(args.seed),
                       "--batch-size", str(args.batch_size), "--samples", str(args.samples),
                       "--probe-steps", str(args.probe_steps)]
            out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
            result = json.loads(out.strip().splitlines()[-1])
            key = f"threads={result['threads']} wait_policy={policy or 'default'}"
            for part in ("prefill", "decode_forward"):
                best.setdefault(key, {})[part] = min(best.get(key, {}).get(part, float("inf")), result[part])
    default = f"threads={default_threads} wait_policy=default"
    speedup = None
    if default in best:
        speedup = {k: {part: round(best[default][part] / v[part], 3) for part in v} for k, v in best.items()}
    return {"prefill_rows": args.batch_size, "decode_rows": args.batch_size * args.samples,
            "decode_forwards": args.probe_steps,
            "seconds": {k: {part: round(x, 3) for part, x in v.items()} for k, v in best.items()},
            "speedup_vs_this_run": speedup}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-id", default=DEFAULT_MODEL)
    parser.add_argument("--harmful", type=int, default=32, help="training-split harmful prompts")
    parser.add_argument("--benign", type=int, default=32, help="training-split benign prompts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=16, help="prompts a batch (notebook 03: 16)")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--samples", type=int, default=4, help="num_return_sequences (notebook 03: 4)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch.set_num_threads for everything (0: torch's default)")
    parser.add_argument("--sweep-batch-sizes", default="", help="e.g. 8,32,64")
    parser.add_argument("--sweep-sort", default="", help="tokens and/or none, e.g. tokens,none")
    parser.add_argument("--sweep-static", action="store_true")
    parser.add_argument("--ablate", action="store_true", help="generate_responses' changes one at a time")
    parser.add_argument("--thread-probe", default="", help="thread counts for the decode-forward probe, e.g. 1,2")
    parser.add_argument("--probe-steps", type=int, default=8)
    parser.add_argument("--probe-threads", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--skip", default="", help="main methods to leave out, e.g. limit,limit_shared")
    parser.add_argument("--output", default="", help="also write the JSON report here")
    args = parser.parse_args()
    if args.probe_threads:
        return run_probe(args)

    wall = time.perf_counter()
    torch_default_threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_model(args.model_id)
    model, tokenizer = loaded.model, loaded.tokenizer
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    config = notebook_sampling(args.max_new_tokens, args.samples)
    prompts = pick_prompts(args.harmful, args.benign, args.seed)
    texts = [format_prompt(tokenizer, p) for p in prompts]
    n_tokens = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    orders = {"chars": sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True),  # as generate_responses
              "tokens": sorted(range(len(texts)), key=lambda i: n_tokens[i], reverse=True),
              "none": list(range(len(texts)))}

    def padded_prompt_tokens(order, size):
        return sum(len(b) * max(n_tokens[i] for i in b) for b in batches_of(order, size))

    batches = batches_of(orders["chars"], args.batch_size)
    encoded = [encode(tokenizer, [texts[i] for i in b]) for b in batches]
    counters = {name: Counter(eos) for name in ("ours", "bare", "bare_static")}
    samples = {}

    def ours(batch_size=args.batch_size, counter=counters["ours"], keep=True):
        original = model.generate

        def spy(*a, **k):  # the generated ids, to count tokens; generate_responses is otherwise untouched
            out = original(*a, **k)
            counter.add(out[:, k["input_ids"].shape[1]:])
            return out

        counter.reset()
        model.generate = spy
        try:
            result = generate_responses(model, tokenizer, prompts, config, batch_size=batch_size, seed=args.seed,
                                        progress=False)
        finally:
            del model.generate
        if keep:
            samples["ours"] = result

    @torch.inference_mode()
    def bare(extra=None, counter=counters["bare"], keep=True):
        counter.reset()
        torch.manual_seed(args.seed)
        results = [None] * len(prompts)
        for batch, enc in zip(batches, encoded):
            out = model.generate(**enc, **config.generate_kwargs(), pad_token_id=pad, **(extra or {}))
            new = out[:, enc["input_ids"].shape[1]:]
            counter.add(new)
            decoded = tokenizer.batch_decode(new, skip_special_tokens=True)
            for row, i in enumerate(batch):
                results[i] = [t.strip() for t in decoded[row * args.samples:(row + 1) * args.samples]]
        if keep:
            samples["bare"] = results

    methods = {"ours": ours, "bare": bare,
               "limit": lambda: forwards_only(model, encoded, args.samples, args.max_new_tokens, shared=False),
               "limit_shared": lambda: forwards_only(model, encoded, args.samples, args.max_new_tokens, shared=True)}
    for name in filter(None, args.skip.split(",")):
        methods.pop(name)
    sweep_methods = {}
    for size in [int(s) for s in args.sweep_batch_sizes.split(",") if s]:
        counters[f"ours_batch{size}"] = Counter(eos)
        sweep_methods[f"ours_batch{size}"] = (lambda size=size: ours(size, counters[f"ours_batch{size}"], keep=False))
    fast_kwargs = _fast_sampling_kwargs(config.generate_kwargs(), model.device)

    def dynamic_shared(enc):  # _shared_prompt_cache with the DynamicCache it keeps on a GPU
        from transformers import DynamicCache

        mask = enc["attention_mask"]
        positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
        cache = DynamicCache(config=model.config)
        model(input_ids=enc["input_ids"][:, :-1], attention_mask=mask[:, :-1], position_ids=positions[:, :-1],
              cache=cache, use_cache=True, logits_to_keep=1)
        cache.batch_repeat_interleave(args.samples)
        return {"cache": cache}

    def recipe(order="chars", prefill="static", warpers="fused"):
        """generate_responses' recipe with one part changed (batch order, prefill and cache, warpers)."""
        @torch.inference_mode()
        def run():
            torch.manual_seed(args.seed)
            for batch in batches_of(orders[order], args.batch_size):
                enc = encode(tokenizer, [texts[i] for i in batch])
                shared = (_shared_prompt_cache(model, enc, args.samples, args.max_new_tokens) if prefill == "static"
                          else dynamic_shared(enc))
                kwargs = fast_kwargs if warpers == "fused" else config.generate_kwargs()
                out = model.generate(**enc, **kwargs, pad_token_id=pad, **shared)
                tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        return run

    for key in filter(None, args.sweep_sort.split(",")):
        sweep_methods[f"ours_sort_{key}"] = recipe(order=key)
    if args.ablate:  # bare -> + shared prefill (DynamicCache) -> + StaticCache -> + fused warpers (= ours)
        sweep_methods["shared_prefill_dynamic"] = recipe(prefill="dynamic", warpers="hf")
        sweep_methods["shared_prefill_static"] = recipe(prefill="static", warpers="hf")
    if args.sweep_static:
        sweep_methods["bare_static"] = lambda: bare({"cache_implementation": "static"}, counters["bare_static"],
                                                    keep=False)

    # warm-up: one small generate
    warm = encode(tokenizer, texts[:2])
    with torch.inference_mode():
        model.generate(**warm, **{**config.generate_kwargs(), "max_new_tokens": 2}, pad_token_id=pad)

    def build_report(seconds: dict[str, float], rounds) -> dict:
        rows = len(prompts) * args.samples
        limit_tokens = rows * args.max_new_tokens
        table = {}
        for name, took in seconds.items():
            counter = counters.get(name)
            new_tokens = counter.new_tokens if counter and counter.rows else limit_tokens
            slots = counter.slots if counter and counter.rows else limit_tokens
            if name.startswith("ours_sort"):
                new_tokens = slots = limit_tokens  # not counted (same recipe); rows x max_new_tokens
            table[name] = {"seconds": round(took, 2), "new_tokens": new_tokens,
                           "new_tokens_per_s": round(new_tokens / took, 1), "slots": slots,
                           "slots_per_s": round(slots / took, 1)}

        def ratio(a, b):
            return round(seconds[b] / seconds[a], 3) if a in seconds and b in seconds else None

        main_counter = counters["ours"] if counters["ours"].rows else counters["bare"]
        report = {
            "command": " ".join(sys.argv),
            "model_id": args.model_id, "prompts": len(prompts), "harmful": args.harmful, "benign": args.benign,
            "batch_size": args.batch_size, "rows_per_batch": args.batch_size * args.samples, "batches": len(batches),
            "max_new_tokens": args.max_new_tokens, "samples_per_prompt": args.samples, "repeats": args.repeats,
            "sampling": config.generate_kwargs(),
            "threads": torch.get_num_threads(), "torch_default_threads": torch_default_threads,
            "prompt_tokens": sum(n_tokens),
            "padded_prompt_tokens": {key: padded_prompt_tokens(order, args.batch_size)
                                     for key, order in orders.items()},
            "end_tokens": {"rows": main_counter.rows, "rows_ended_early": main_counter.ended,
                           "slots_after_end": main_counter.after_end, "slots": main_counter.slots,
                           "steps_per_batch": main_counter.steps},
            "table": table,
            "ratios": {"ours/bare": ratio("ours", "bare"), "ours/limit": ratio("ours", "limit"),
                       "bare/limit": ratio("bare", "limit"), "ours/limit_shared": ratio("ours", "limit_shared"),
                       "limit_shared/limit": ratio("limit_shared", "limit")},
            "sweep_speedup": {name: ratio(name, "ours") for name in sweep_methods
                              if name.startswith(("ours_batch", "ours_sort"))},
            "speedup_over_bare": {name: ratio(name, "bare") for name in ("ours", *sweep_methods)
                                  if not name.startswith(("ours_batch", "ours_sort"))},
        }
        if "ours" in samples and "bare" in samples:
            pairs = [(a, b) for xs, ys in zip(samples["ours"], samples["bare"]) for a, b in zip(xs, ys)]
            report["bare_matches_ours"] = {"identical": sum(a == b for a, b in pairs), "of": len(pairs)}
        report["rounds_done"] = rounds
        return report

    def save(report: dict) -> None:
        if args.output:
            with open(args.output, "w") as handle:
                handle.write(json.dumps(report, indent=2) + "\n")

    # a partial report after each method (a run stopped halfway still leaves what it measured)
    seconds = best_round_robin({**methods, **sweep_methods}, args.repeats,
                               lambda best, rounds: save({**build_report(best, rounds), "partial": True}))
    report = build_report(seconds, args.repeats)
    if args.thread_probe:
        report["thread_probe"] = thread_probe(args, [int(t) for t in args.thread_probe.split(",")],
                                                torch_default_threads)
    report["wall_seconds"] = round(time.perf_counter() - wall, 1)

    print(f"{'method':<24}{'seconds':>9}{'new tok':>9}{'new tok/s':>11}{'slots/s':>9}")
    for name, row in report["table"].items():
        print(f"{name:<24}{row['seconds']:>9}{row['new_tokens']:>9}{row['new_tokens_per_s']:>11}"
              f"{row['slots_per_s']:>9}")
    print(json.dumps(report, indent=2))
    save(report)


if __name__ == "__main__":
    main()
