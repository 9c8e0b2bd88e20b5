"""Batched, seeded generation from a chat model."""

from __future__ import annotations

from dataclasses import dataclass, asdict
from typing import Sequence

import torch
from tqdm.auto import tqdm

from .extraction import format_prompt
from .models import model_device


@dataclass
class SamplingConfig:
    """Decoding settings. ``do_sample=False`` is greedy; the paper samples with
    temperature 1.4, top-k 8, top-p 0.95, repetition penalty 1.2."""

    max_new_tokens: int = 64
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
) -> list[list[str]]:
    """For each prompt, ``config.num_return_sequences`` responses (a list per prompt).

    Prompts are formatted with the chat template and left-padded; batches are length-sorted. Inputs go to
    the model's device (CPU or GPU); the answers come back as plain strings.
    The random state is seeded once per call, so the same call gives the same samples.
    """
    config = config or SamplingConfig()
    texts = [format_prompt(tokenizer, p) for p in prompts]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
    results: list[list[str]] = [[] for _ in texts]
    device = model_device(model)
    previous_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    torch.manual_seed(seed)
    try:
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        for batch in tqdm(batches, desc="generating", unit="batch", disable=not progress):
            enc = tokenizer([texts[i] for i in batch], return_tensors="pt", padding=True, add_special_tokens=False)
            enc = {k: v.to(device) for k, v in enc.items()}
            out = model.generate(**enc, **config.generate_kwargs(), pad_token_id=tokenizer.pad_token_id)
            new_tokens = out[:, enc["input_ids"].shape[1] :].cpu()  # decoded on the CPU, whatever the device
            decoded = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
            k = config.num_return_sequences
            for row, i in enumerate(batch):
                results[i] = [text.strip() for text in decoded[row * k : (row + 1) * k]]
    finally:
        tokenizer.padding_side = previous_side
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
    from .extraction import truncate_response

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
