"""Reading a model's hidden states at the end token of a (prompt, response) conversation.

The paper's reward model reads one vector per transformer layer at the conversation's end token. We run
only the transformer body (no vocabulary head: on SmolLM2-135M that projection is ~20% of the FLOPs and
its logits would be thrown away), batch texts of similar length together to cut padding, and gather just
the positions we need.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from reprank.lm.models import model_device

POOLS = ("end", "mean")


@dataclass
class HiddenStates:
    """Hidden states of ``n`` texts: ``end[i, j]`` is layer ``layers[j]`` at text ``i``'s end token."""

    end: np.ndarray  # (n, n_layers, d) float32
    mean: np.ndarray | None  # (n, n_layers, d) float32, mean over the response tokens, if asked for
    layers: list[int]  # hidden_states indices: 0 = embeddings, 1..L = transformer layers
    n_tokens: np.ndarray  # (n,) real (unpadded) tokens per text

    def __len__(self) -> int:
        return len(self.end)


def format_conversation(tokenizer, prompt: str, response: str) -> str:
    """The chat-template text of one user turn and one assistant answer, ending at the end-of-turn token."""
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
    # Trailing whitespace after the end-of-turn marker differs between templates: cut it so the last
    # token is the marker itself (the "end token" the paper reads).
    return tokenizer.apply_chat_template(messages, tokenize=False).rstrip()


def format_prompt(tokenizer, prompt: str) -> str:
    """The chat-template text that precedes the assistant's answer."""
    messages = [{"role": "user", "content": prompt}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def truncate_response(tokenizer, response: str, max_tokens: int | None) -> str:
    """Cut a response to ``max_tokens`` tokens (so the end token is never truncated away)."""
    if max_tokens is None:
        return response
    ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    return response if len(ids) <= max_tokens else tokenizer.decode(ids[:max_tokens])


def transformer_body(model: torch.nn.Module) -> torch.nn.Module:
    """The model without its vocabulary head (e.g. ``LlamaForCausalLM.model``)."""
    body = getattr(model, getattr(model, "base_model_prefix", ""), None)
    return body if isinstance(body, torch.nn.Module) else model


def all_layers(model: torch.nn.Module) -> list[int]:
    """Indices of every transformer layer's output (1..L); 0, the embeddings, is left out as in the paper."""
    return list(range(1, model.config.num_hidden_layers + 1))


def end_token_states(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(b, t, d) states and a (b, t) mask (1 = real token, 0 = padding) -> (b, d): each text's state at its
    last real position, under right padding (pads after the text) and left padding (pads before it) alike."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    last = (attention_mask.long() * positions).amax(-1)
    return hidden[torch.arange(len(hidden), device=hidden.device), last]


def length_sorted_batches(lengths: Sequence[int], batch_size: int, max_batch_tokens: int | None) -> list[list[int]]:
    """Indices grouped longest first, each batch within ``batch_size`` texts and ``max_batch_tokens`` padded tokens."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    batches: list[list[int]] = []
    for i in order:
        # Longest first, so a batch's padded size is its first text's length times its size.
        if batches and len(batches[-1]) < batch_size and (
            max_batch_tokens is None or (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= max_batch_tokens
        ):
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def _cache_key(model_name: str, texts: Sequence[str], layers: Sequence[int], pools: Sequence[str]) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps([model_name, list(layers), sorted(pools)]).encode())
    for text in texts:
        digest.update(hashlib.sha256(text.encode()).digest())
    return digest.hexdigest()[:24]


def _rows_read_before(cache_dir: Path, model_name: str, shas: Sequence[str], layers: Sequence[int],
                      pools: Sequence[str]) -> dict[int, tuple]:
    """{index in ``shas``: (end row, mean row or None, n_tokens)} for the texts an earlier call cached in
    ``cache_dir`` with the same model name and pools and every layer of ``layers``; the first file found wins."""
    wanted: dict[str, list[int]] = {}
    for i, sha in enumerate(shas):
        wanted.setdefault(sha, []).append(i)
    found: dict[int, tuple] = {}
    for file in sorted(cache_dir.glob("hidden-*.npz")) if cache_dir.is_dir() else []:
        with np.load(file) as saved:
            if "read_with" not in saved:
                continue  # written before texts were recorded
            name, file_layers, file_pools = json.loads(str(saved["read_with"]))
            if name != model_name or sorted(pools) != file_pools or not set(layers) <= set(file_layers):
                continue
            rows = [(i, k) for k, sha in enumerate(saved["text_sha"]) for i in wanted.get(sha, ()) if i not in found]
            if not rows:
                continue
            columns = [file_layers.index(layer) for layer in layers]
            end, mean = saved["end"], saved["mean"] if "mean" in saved else None
            for i, k in rows:
                found[i] = (end[k][columns], None if mean is None else mean[k][columns], int(saved["n_tokens"][k]))
        if len(found) == len(shas):
            break
    return found


@torch.inference_mode()
def extract_hidden_states(
    model: torch.nn.Module,
    tokenizer,
    prompts: Sequence[str],
    responses: Sequence[str],
    *,
    layers: Sequence[int] | None = None,
    pools: Sequence[str] = ("end",),
    batch_size: int = 32,
    max_batch_tokens: int | None = 2048,
    max_response_tokens: int | None = 128,
    cache_dir: str | Path | None = None,
    model_name: str | None = None,
    progress: bool = True,
    end_token_fn=end_token_states,
    reuse_rows: bool = False,
) -> HiddenStates:
    """Hidden states at the end token (and optionally the mean over response tokens) for every layer.

    Texts are formatted with the tokenizer's chat template, sorted by length, grouped into batches of at
    most ``batch_size`` texts and ``max_batch_tokens`` padded tokens (so one long text does not pad a whole
    batch), run through the transformer body under ``inference_mode``, and returned in the input order as
    float32 arrays.
    With ``cache_dir`` set, results are stored there keyed by model name, layers and the exact texts.
    With ``reuse_rows`` too, a text an earlier call in ``cache_dir`` already read (same model name, its layers
    among that call's, same pools) takes that call's row instead of a new forward: notebook 02 reads the very
    texts notebook 01 read, so it takes the states 01's reward model learned from (equal to a fresh forward up
    to float rounding, which depends on the batch a text shared). Only the texts not found are computed.
    ``end_token_fn(hidden, attention_mask)`` reads the end token (notebook 01 passes the student's own).
    """
    if len(prompts) != len(responses):
        raise ValueError(f"Got {len(prompts)} prompts but {len(responses)} responses; they must pair up.")
    unknown = set(pools) - set(POOLS)
    if unknown or "end" not in pools:
        raise ValueError(f"pools must include 'end' and be drawn from {POOLS}; got {list(pools)}")
    layers = list(layers) if layers is not None else all_layers(model)
    responses = [truncate_response(tokenizer, r, max_response_tokens) for r in responses]
    texts = [format_conversation(tokenizer, p, r) for p, r in zip(prompts, responses)]

    cache_file = None
    if cache_dir is not None:
        name = model_name or getattr(model.config, "_name_or_path", "model")
        cache_file = Path(cache_dir) / f"hidden-{_cache_key(name, texts, layers, pools)}.npz"
        if cache_file.is_file():
            with np.load(cache_file) as saved:
                return HiddenStates(saved["end"], saved["mean"] if "mean" in saved else None, layers, saved["n_tokens"])

    shas = [hashlib.sha256(text.encode()).hexdigest() for text in texts]
    found = _rows_read_before(Path(cache_dir), name, shas, layers, pools) if cache_file is not None and reuse_rows \
        else {}
    todo = [i for i in range(len(texts)) if i not in found]
    encoded = {i: tokenizer(texts[i], add_special_tokens=False)["input_ids"] for i in todo}
    want_mean = "mean" in pools
    prefix_lengths = (
        {i: len(tokenizer(format_prompt(tokenizer, prompts[i]), add_special_tokens=False)["input_ids"]) for i in todo}
        if want_mean
        else None
    )
    body = transformer_body(model)
    device = model_device(model)  # inputs go there; results come back as CPU float32 numpy
    hidden = model.config.hidden_size
    end = np.zeros((len(texts), len(layers), hidden), dtype=np.float32)
    mean = np.zeros_like(end) if want_mean else None
    n_tokens = np.zeros(len(texts), dtype=np.int64)
    for i, (end_row, mean_row, n) in found.items():
        end[i], n_tokens[i] = end_row, n
        if want_mean:
            mean[i] = mean_row
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    batches = [[todo[j] for j in batch] for batch in
               length_sorted_batches([len(encoded[i]) for i in todo], batch_size, max_batch_tokens)]
    for batch in tqdm(batches, desc="hidden states", unit="batch", disable=not progress):
        lengths = torch.tensor([len(encoded[i]) for i in batch])
        input_ids = torch.full((len(batch), int(lengths.max())), pad_id, dtype=torch.long)
        for row, i in enumerate(batch):
            input_ids[row, : lengths[row]] = torch.tensor(encoded[i])
        # Right padding and no attention mask: under causal attention a token never sees the pads after
        # it, and we only read real positions. Without a padding mask attention takes its fast causal path.
        out = body(input_ids=input_ids.to(device), output_hidden_states=True, use_cache=False)
        real = (torch.arange(input_ids.shape[1])[None, :] < lengths[:, None]).long().to(device)
        states = [out.hidden_states[layer] for layer in layers]  # each (b, t, d); gather, don't copy all
        end[batch] = torch.stack([end_token_fn(h, real) for h in states], dim=1).float().cpu().numpy()
        if want_mean:
            positions = torch.arange(input_ids.shape[1])[None, :]
            starts = torch.tensor([prefix_lengths[i] for i in batch])[:, None]
            weights = ((positions >= starts) & (positions < lengths[:, None])).float()
            weights = (weights / weights.sum(1, keepdim=True).clamp(min=1)).to(device, states[0].dtype)
            pooled = torch.stack([torch.einsum("btd,bt->bd", h, weights) for h in states], dim=1)
            mean[batch] = pooled.float().cpu().numpy()

    for i in todo:
        n_tokens[i] = len(encoded[i])
    result = HiddenStates(end, mean, layers, n_tokens)
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"end": end, "n_tokens": result.n_tokens, "text_sha": np.array(shas),
                  "read_with": np.array(json.dumps([name, list(layers), sorted(pools)]))}
        if mean is not None:
            arrays["mean"] = mean
        np.savez(cache_file, **arrays)
    return result
