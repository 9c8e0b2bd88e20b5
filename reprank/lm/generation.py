"""Batched, seeded generation from a chat model."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, asdict
from pathlib import Path
from typing import Sequence

import torch
from tqdm.auto import tqdm

from reprank.base import defaults

from reprank.lm.extraction import format_prompt
from reprank.lm.models import model_device


@dataclass
class SamplingConfig:
    """Decoding settings. ``do_sample=False`` (the default) is greedy; the candidate pools are sampled with
    ``defaults.SAMPLING`` (the paper's temperature 1.4, top-k 8, top-p 0.95, repetition penalty 1.2)."""

    max_new_tokens: int = defaults.ANSWER_MAX_NEW_TOKENS
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float = 1.0
    num_return_sequences: int = 1

    def generate_kwargs(self) -> dict:
        kwargs = asdict(self)
        if not self.do_sample:  # sampling knobs are meaningless (and warned about) when greedy
            for key in ("temperature", "top_k", "top_p"):
                kwargs.pop(key)
        return kwargs


class _TemperatureTopKTopP:
    """transformers' temperature, top-k and top-p warpers in one logits processor, the same numbers, without
    sorting the vocabulary.

    ``TopPLogitsWarper`` sorts each row's whole vocabulary (49k scores for SmolLM2) at every step, though after
    top-k only k of them are finite: on a CPU that sort is about a tenth of a sampling run. Here top-p runs on the
    k survivors, laid out as in the sorted row (ascending, after -inf scores, at the same offset modulo 64) so that
    the softmax sums the same numbers in the same order: the same kept tokens and scores, bit for bit. A step with
    a tie among the top k+1 scaled scores (top-k keeps every token tied at the k-th; a sort may order ties either
    way) goes through transformers' own warpers.
    """

    def __init__(self, temperature: float, top_k: int, top_p: float):
        from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p
        self.exact = [TopKLogitsWarper(top_k), TopPLogitsWarper(top_p)]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        vocab, k = scores.shape[-1], self.top_k
        if k < vocab:
            # dividing by a positive temperature keeps the order: the top k+1 of the scaled scores, divided as
            # TemperatureLogitsWarper divides them (the same floats), without dividing the whole vocabulary
            values, indices = scores.topk(k + 1)
            values = values / self.temperature if self.temperature != 1.0 else values
        if k >= vocab or bool((values[..., :-1] == values[..., 1:]).any()):  # a tie: sort orders may differ
            scores = scores / self.temperature if self.temperature != 1.0 else scores
            for warper in self.exact:
                scores = warper(input_ids, scores)
            return scores
        ascending, order = values[..., :k].flip(-1), indices[..., :k].flip(-1)  # strictly increasing
        width = k + (vocab - k) % 64 + 64  # the sorted row's tail: same offset modulo 64, -inf before it
        row = torch.cat([ascending.new_full((ascending.shape[0], width - k), -float("inf")), ascending], dim=-1)
        remove = row.softmax(dim=-1).cumsum(dim=-1)[..., -k:] <= (1 - self.top_p)
        remove[..., -1:] = False  # min_tokens_to_keep=1
        return torch.full_like(scores, -float("inf")).scatter_(1, order, ascending.masked_fill(remove, -float("inf")))


def _fast_sampling_kwargs(kwargs: dict, device: torch.device) -> dict:
    """``generate`` kwargs with temperature, top-k and top-p done by ``_TemperatureTopKTopP`` (CPU sampling with
    both top-k and top-p), else ``kwargs`` unchanged. The processor goes where ``generate`` puts custom ones,
    after its own (the repetition penalty) and where its warpers would be: the same order."""
    top_k, top_p, temperature = kwargs.get("top_k"), kwargs.get("top_p"), kwargs.get("temperature")
    temperature = 1.0 if temperature is None else temperature
    if (device.type != "cpu" or not kwargs.get("do_sample") or not top_k or top_p is None or not top_p < 1.0
            or not temperature > 0):  # (a bad temperature is left to generate's own check)
        return kwargs
    from transformers import LogitsProcessorList

    processor = _TemperatureTopKTopP(temperature, top_k, top_p)
    return {**kwargs, "temperature": 1.0, "top_k": 0, "top_p": 1.0,
            "logits_processor": LogitsProcessorList([processor])}


def _shared_prompt_cache(model, enc: dict, copies: int, max_new_tokens: int) -> dict:
    """``generate`` kwargs that compute each prompt's KV cache once instead of once per return sequence.

    ``generate`` repeats every prompt ``num_return_sequences`` times *before* its prefill, so the prompt forward
    (most of a short sampling run's cost on a CPU) is done ``copies`` times over identical rows. Here the prompt
    but its last token goes through the model once, with the positions ``generate`` would give it (left padding
    included); the cache is repeated like ``generate`` repeats its inputs (``repeat_interleave``), and
    ``generate`` goes on from it: its first forward is the last prompt token. Same tokens, masks, positions and
    random draws. On a CPU the cache is a ``StaticCache`` (preallocated, written in place: a ``DynamicCache``
    copies itself whole at every step, O(length^2)), also with one sequence a prompt (then ``generate`` makes it);
    on a GPU a static cache would make ``generate`` compile.
    """
    ids, mask = enc["input_ids"], enc.get("attention_mask")
    if copies <= 1 or ids.shape[1] < 2:
        # One sequence a prompt: nothing to share, but on a CPU a static cache still beats a DynamicCache: greedy
        # answers 1.2x faster, the same answers (benchmarks/bench_judging.py).
        return {"cache_implementation": "static"} if ids.device.type == "cpu" else {}
    from transformers import DynamicCache, StaticCache

    if mask is None:
        mask = torch.ones_like(ids)
    positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)  # as generate builds them
    prefix = DynamicCache(config=model.config)
    model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=positions[:, :-1], cache=prefix,
          use_cache=True, logits_to_keep=1)
    if ids.device.type != "cpu":
        prefix.batch_repeat_interleave(copies)
        return {"cache": prefix}
    cache = StaticCache(config=model.config, max_cache_len=ids.shape[1] + max_new_tokens)
    for layer, done in zip(cache.layers, prefix.layers):
        layer.update(done.keys.repeat_interleave(copies, dim=0), done.values.repeat_interleave(copies, dim=0))
    return {"cache": cache}


@torch.inference_mode()
def generate_responses(
    model,
    tokenizer,
    prompts: Sequence[str],
    config: SamplingConfig | None = None,
    *,
    batch_size: int = 16,
    seed: int = 0,
    progress: bool = True,
    cache_dir: str | Path | None = None,
    model_name: str | None = None,
) -> list[list[str]]:
    """For each prompt, ``config.num_return_sequences`` responses (a list per prompt).

    Prompts are formatted with the chat template and left-padded; batches are length-sorted. Inputs go to
    the model's device (CPU or GPU); the answers come back as plain strings.
    The random state is seeded once per call, so the same call gives the same samples.
    With ``cache_dir`` and ``model_name`` (a fingerprint of the weights: pass it only for a model that is not
    being trained), the answers are stored there keyed by everything that decides them, and the same call again
    reads them back (what makes re-running notebook 01 in its run folder take a minute, not five).
    """
    config = config or SamplingConfig()
    texts = [format_prompt(tokenizer, p) for p in prompts]
    cache_file = None
    if cache_dir is not None and model_name is not None:
        key = json.dumps([model_name, texts, asdict(config), batch_size, seed, str(model_device(model))])
        cache_file = Path(cache_dir) / f"generated-{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"
        if cache_file.is_file():
            return json.loads(cache_file.read_text())
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
    results: list[list[str]] = [[] for _ in texts]
    device = model_device(model)
    previous_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    generate_kwargs = _fast_sampling_kwargs(config.generate_kwargs(), torch.device(device))
    torch.manual_seed(seed)
    try:
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        for batch in tqdm(batches, desc="generating", unit="batch", disable=not progress):
            enc = tokenizer([texts[i] for i in batch], return_tensors="pt", padding=True, add_special_tokens=False)
            enc = {k: v.to(device) for k, v in enc.items()}
            shared = _shared_prompt_cache(model, enc, config.num_return_sequences, config.max_new_tokens)
            out = model.generate(**enc, **generate_kwargs, pad_token_id=tokenizer.pad_token_id, **shared)
            new_tokens = out[:, enc["input_ids"].shape[1] :].cpu()  # decoded on the CPU, whatever the device
            decoded = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
            k = config.num_return_sequences
            for row, i in enumerate(batch):
                results[i] = [text.strip() for text in decoded[row * k : (row + 1) * k]]
    finally:
        tokenizer.padding_side = previous_side
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        cache_file.write_text(json.dumps(results))
    return results


@torch.inference_mode()
def response_log_likelihood(model, tokenizer, prompts: Sequence[str], responses: Sequence[str], *,
                            max_response_tokens: int | None = 96, batch_size: int = 16,
                            reduction: str = "mean") -> list[float]:
    """Mean log-probability per token of each response given its prompt, under ``model``.

    How "on-policy" a text is: the policy's own samples score high, answers written by other models or
    people lower. Responses are cut to ``max_response_tokens`` tokens, as everywhere in the series.
    ``reduction="sum"`` gives the response's total log-probability instead (DPO's log pi(y|x)).
    """
    from reprank.lm.extraction import truncate_response

    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum'; got {reduction!r}")
    device = model_device(model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows = []
    for prompt, response in zip(prompts, responses):
        context = tokenizer(format_prompt(tokenizer, prompt), add_special_tokens=False)["input_ids"]
        answer = tokenizer(truncate_response(tokenizer, response, max_response_tokens), add_special_tokens=False)["input_ids"]
        rows.append((context, answer))
    # Batches of similar length (one long prompt would otherwise pad its whole batch), right-padded: the padding
    # never precedes a scored token. Scores come back in the input order.
    order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]) + len(rows[i][1]))
    scores = [0.0] * len(rows)
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        width = max(len(rows[i][0]) + len(rows[i][1]) for i in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for k, i in enumerate(batch):
            context, answer = rows[i]
            ids[k, :len(context) + len(answer)] = torch.tensor(context + answer)
            mask[k, :len(context) + len(answer)] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        for k, i in enumerate(batch):
            context, answer = rows[i]
            targets = torch.tensor(answer, device=device)[:, None]
            # log-softmax over the answer's positions only (the whole batch's would be batch x length x vocab floats)
            positions = logits[k, len(context) - 1:len(context) + len(answer) - 1].float().log_softmax(-1)
            token = positions.gather(1, targets)
            scores[i] = float(token.sum() if reduction == "sum" else token.mean())
    return scores
