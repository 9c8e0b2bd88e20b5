"""Benchmark: hidden-state extraction throughput (tokens/s) against its limit and a naive loop.

    python benchmarks/bench_extraction.py [--texts 128] [--batch-size 32] [--repeats 2]

Texts are real (prompt, response) pairs: human-labelled pyrit responses, cut to ``--max-response-tokens``.
Compared on the same texts and the same length-sorted batches:
  (a) limit:  a bare forward of the transformer body on the same batches (no hidden states kept, no head);
  (a') masked: the same with an attention mask, as a typical padded batch forward is written;
  (b) naive:  one text at a time through the full model with ``output_hidden_states=True``;
  ours:       ``reprank.lm.extraction.extract_hidden_states`` (all layers, end token).
Run it on an idle machine; the best of ``--repeats`` runs is reported.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from reprank.data import sources as data
from reprank.lm.extraction import (
    extract_hidden_states,
    format_conversation,
    length_sorted_batches,
    transformer_body,
    truncate_response,
)
from reprank.lm.models import DEFAULT_MODEL, load_model


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-id", default=DEFAULT_MODEL)
    parser.add_argument("--texts", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-batch-tokens", type=int, default=2048)
    parser.add_argument("--max-response-tokens", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    loaded = load_model(args.model_id)
    model, tokenizer = loaded.model, loaded.tokenizer
    human = data.load_human_labelled("objective").to_pandas().head(args.texts)
    prompts, responses = list(human.prompt), list(human.response)
    cut = [truncate_response(tokenizer, r, args.max_response_tokens) for r in responses]
    encoded = [tokenizer(format_conversation(tokenizer, p, r), add_special_tokens=False)["input_ids"]
               for p, r in zip(prompts, cut)]
    n_tokens = sum(map(len, encoded))
    batches = length_sorted_batches([len(e) for e in encoded], args.batch_size, args.max_batch_tokens)
    padded = []
    for batch in batches:
        lengths = torch.tensor([len(encoded[i]) for i in batch])
        ids = torch.full((len(batch), int(lengths.max())), tokenizer.pad_token_id, dtype=torch.long)
        for row, i in enumerate(batch):
            ids[row, : lengths[row]] = torch.tensor(encoded[i])
        padded.append((ids, (torch.arange(ids.shape[1])[None] < lengths[:, None]).long()))
    body = transformer_body(model)

    @torch.inference_mode()
    def limit():
        for ids, _ in padded:
            body(input_ids=ids, use_cache=False)

    @torch.inference_mode()
    def masked():
        for ids, mask in padded:
            body(input_ids=ids, attention_mask=mask, use_cache=False)

    @torch.inference_mode()
    def naive():
        for ids in encoded:
            model(input_ids=torch.tensor([ids]), output_hidden_states=True)

    def ours():
        extract_hidden_states(model, tokenizer, prompts, responses, batch_size=args.batch_size,
                              max_batch_tokens=args.max_batch_tokens, max_response_tokens=args.max_response_tokens, progress=False)

    limit()  # warm-up
    results = {name: n_tokens / best_of(args.repeats, fn) for name, fn in
               [("limit_body_forward", limit), ("masked_body_forward", masked),
                                                               ("reprank_extract", ours), ("naive_loop", naive)]}
    report = {
        "texts": len(encoded), "real_tokens": n_tokens, "batch_size": args.batch_size,
        "max_batch_tokens": args.max_batch_tokens, "batches": len(batches),
        "padded_tokens": sum(ids.numel() for ids, _ in padded),
        "threads": torch.get_num_threads(),
        "tokens_per_second": {k: round(v, 1) for k, v in results.items()},
        "ratio_vs_limit": round(results["reprank_extract"] / results["limit_body_forward"], 3),
        "ratio_vs_naive": round(results["reprank_extract"] / results["naive_loop"], 3),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
