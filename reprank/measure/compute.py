"""Compute accounting: approximate FLOPs per stage and a ledger of what each stage actually cost.

FLOPs follow Kaplan et al. (2020, "Scaling Laws for Neural Language Models", Table 1): a forward pass
costs ``2 N`` per token for the ``N`` non-embedding parameters plus ``2 n_layers n_ctx d_model`` per token
for attention over the context. They are estimates for comparing stages (generation vs. extraction vs.
reward scoring vs. training), not measured counts; the ledger records measured wall time beside them.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import pandas as pd
import torch

from reprank.lm.extraction import format_conversation, format_prompt


def _embedding_parameters(model: torch.nn.Module) -> set[int]:
    """ids of the vocabulary parameters: every nn.Embedding and the output head (often tied to the input one)."""
    ids = {id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None:
        ids |= {id(p) for p in head.parameters()}
    return ids


def count_parameters(model: torch.nn.Module, include_embeddings: bool = False) -> int:
    """Parameters of ``model``, each shared tensor counted once.

    ``include_embeddings=False`` gives Kaplan's ``N``: it leaves out every ``nn.Embedding`` *and* the
    vocabulary head, tied or not, because ``forward_flops`` adds the head's cost separately (and only
    where it runs). With ``include_embeddings=True`` a head tied to the input embeddings is the same
    tensor, so it counts once.
    """
    skip = set() if include_embeddings else _embedding_parameters(model)
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)  # parameters() already dedups


@dataclass(frozen=True)
class ModelSize:
    """What the FLOPs model needs of a model: Kaplan's ``N`` (non-embedding parameters, as
    ``count_parameters``), layers, hidden size and vocabulary. The FLOPs functions take one in place of a
    model, so a configuration can be costed without loading it (``compute_ratios``)."""

    n_params: float
    n_layers: int
    d_model: int
    vocab: int

    @classmethod
    def of(cls, model: torch.nn.Module) -> "ModelSize":
        config = model.config
        return cls(count_parameters(model), config.num_hidden_layers, config.hidden_size, config.vocab_size)


def _size(model: "torch.nn.Module | ModelSize") -> ModelSize:
    return model if isinstance(model, ModelSize) else ModelSize.of(model)


def forward_flops(
    model: "torch.nn.Module | ModelSize", n_tokens: int, context: float | None = None, include_head: bool = True
) -> float:
    """Approximate FLOPs of a forward pass over ``n_tokens`` tokens (Kaplan et al. 2020).

    ``2 N tokens + 2 n_layers context d_model tokens``, plus ``2 d_model vocab tokens`` for the vocabulary
    head when ``include_head`` (generation, log-probs). Hidden-state extraction runs only the body: pass
    ``include_head=False``. ``context`` is the number of positions each token attends to; it defaults to
    ``n_tokens`` (one sequence, Kaplan's ``n_ctx``). For a batch, pass the total tokens and the per-sequence
    context. ``model`` may be a ``ModelSize``.
    """
    size = _size(model)
    context = n_tokens if context is None else context
    flops = 2 * size.n_params * n_tokens + 2 * size.n_layers * context * size.d_model * n_tokens
    if include_head:
        flops += 2 * size.d_model * size.vocab * n_tokens
    return float(flops)


def generation_flops(model: "torch.nn.Module | ModelSize", prompt_tokens: int, new_tokens: int) -> float:
    """Approximate FLOPs to sample ``new_tokens`` after a ``prompt_tokens`` prompt, one sequence, with a KV cache.

    The prefill runs the body over the prompt and the head at its last position only (as ``generate`` does)
    and yields the first new token; each of the ``new_tokens - 1`` decode steps then runs one token
    attending to the prompt plus everything generated so far. Padding in a batch is not counted.
    """
    if new_tokens <= 0:
        return 0.0
    size = _size(model)
    prefill = forward_flops(size, prompt_tokens, include_head=False) + 2 * size.d_model * size.vocab
    # Decode step k (1..new_tokens-1) attends to prompt_tokens + k positions; the cost is linear in the
    # context, so all steps together cost (new_tokens - 1) tokens at the mean context.
    decode = forward_flops(size, new_tokens - 1, context=prompt_tokens + new_tokens / 2)
    return prefill + decode


def _templated_lengths(tokenizer, texts: Iterable[str]) -> list[int]:
    return [len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts]


def sampling_flops(model: torch.nn.Module, tokenizer, prompts: Iterable[str], new_tokens: int,
                   samples_per_prompt: int = 1, generation: Callable = generation_flops) -> float:
    """FLOPs of sampling ``samples_per_prompt`` answers of ``new_tokens`` to each prompt.

    Prompts are counted as the model sees them, wrapped in its chat template (about 30 tokens on
    SmolLM2), and every answer at the full token budget (an upper bound when answers stop early).
    ``generation`` (called like :func:`generation_flops`, with a ``ModelSize``) counts one answer: a lesson
    passes its own.
    """
    lengths = _templated_lengths(tokenizer, (format_prompt(tokenizer, p) for p in prompts))
    size = ModelSize.of(model)  # counted once, not per prompt
    return float(samples_per_prompt * sum(generation(size, n, new_tokens) for n in lengths))


def scoring_flops(model: torch.nn.Module, tokenizer, prompts: Iterable[str], responses: Iterable[str],
                  rm_layers: int = 0) -> float:
    """FLOPs of scoring each (prompt, response) with the hybrid RM: one body forward (no vocabulary head)
    over the chat-template conversation, plus the RM itself when ``rm_layers`` is given."""
    lengths = _templated_lengths(tokenizer, (format_conversation(tokenizer, p, r) for p, r in zip(prompts, responses)))
    size = ModelSize.of(model)
    rm = rm_flops(rm_layers, size.d_model) if rm_layers else 0.0
    return float(sum(forward_flops(size, n, include_head=False) + rm for n in lengths))


def training_flops(forward: float) -> float:
    """Forward plus backward: ``3 x`` the forward FLOPs (the backward pass costs about twice the forward).

    With LoRA or frozen layers the weight-gradient half of the backward is smaller, so this is an upper
    bound there; we keep the simple rule so stages stay comparable.
    """
    return 3.0 * forward


def dpo_training_flops(model: "torch.nn.Module | ModelSize", mean_sequence_tokens: float, steps: int, pairs_per_step: int) -> float:
    """Approximate FLOPs of ``steps`` DPO steps of ``pairs_per_step`` pairs, sequences of the given mean length.

    Each pair is two sequences (prompt + chosen, prompt + rejected); each sequence costs a policy forward and
    backward (``training_flops``) plus a reference forward (the adapter switched off), all with the LM head.
    """
    per_sequence = forward_flops(model, int(round(mean_sequence_tokens)))
    return float(steps * pairs_per_step * 2 * (training_flops(per_sequence) + per_sequence))


def rm_flops(n_layers: int, hidden_size: int) -> float:
    """FLOPs of the hybrid reward model on one response's precomputed hidden states (~36k on SmolLM2-135M).

    ``2 L d`` for the per-layer probes, ``2 L^2`` for the gate, ``4 L`` for biases, sigmoids and the gated
    sum. The feature standardization folds into the probe weights at inference, so it is not counted.
    """
    return float(2 * n_layers * hidden_size + 2 * n_layers * n_layers + 4 * n_layers)


@dataclass
class LedgerEntry:
    stage: str
    flops: float = 0.0
    seconds: float = 0.0
    items: int = 0
    note: str = ""


@dataclass
class ComputeLedger:
    """What each stage of a run cost, in estimated FLOPs and measured seconds, saved beside its results."""

    entries: list[LedgerEntry] = field(default_factory=list)

    def add(self, stage: str, flops: float, seconds: float, items: int = 0, note: str = "") -> LedgerEntry:
        entry = LedgerEntry(stage, float(flops), float(seconds), int(items), note)
        self.entries.append(entry)
        return entry

    @contextmanager
    def timed(self, stage: str, items: int = 0, flops: float = 0.0, note: str = "") -> Iterator[LedgerEntry]:
        """Time the ``with`` block and record it; set ``entry.items`` / ``entry.flops`` inside if known only then.

        A block that raises is not recorded: a half-run stage would distort the per-item costs.
        """
        entry = LedgerEntry(stage, float(flops), 0.0, int(items), note)
        start = time.perf_counter()
        yield entry
        entry.seconds = time.perf_counter() - start
        self.entries.append(entry)

    def to_frame(self) -> pd.DataFrame:
        """One row per stage (entries of a stage summed), in the order stages first appeared."""
        columns = ["stage", "flops", "seconds", "items"]
        raw = pd.DataFrame([asdict(e) for e in self.entries], columns=columns + ["note"])
        frame = raw.groupby("stage", sort=False)[columns[1:]].sum().reset_index()
        per_item = frame["items"].where(frame["items"] > 0)  # NaN, not inf, where a stage counted no items
        frame["flops_per_item"] = frame["flops"] / per_item
        frame["seconds_per_item"] = frame["seconds"] / per_item
        return frame

    def _stages(self, stages: str | Iterable[str] | None) -> set[str]:
        known = {e.stage for e in self.entries}
        if stages is None:
            return known
        wanted = {stages} if isinstance(stages, str) else set(stages)
        if unknown := wanted - known:
            raise ValueError(f"No ledger entries for stage(s) {sorted(unknown)}; known: {sorted(known)}")
        return wanted

    def total(self, stages: str | Iterable[str] | None = None, by: str = "flops") -> float:
        """Sum of ``by`` ("flops" or "seconds") over ``stages`` (all when None); an unknown stage is an error, not 0."""
        if by not in ("flops", "seconds"):
            raise ValueError(f"by must be 'flops' or 'seconds'; got {by!r}")
        wanted = self._stages(stages)
        return float(sum(getattr(e, by) for e in self.entries if e.stage in wanted))

    def ratio(
        self, numerator_stages: str | Iterable[str], denominator_stages: str | Iterable[str], by: str = "flops"
    ) -> float:
        """``total(numerator) / total(denominator)``, e.g. reward-model cost relative to generation."""
        denominator = self.total(denominator_stages, by)
        if denominator == 0:
            raise ZeroDivisionError(f"The denominator stages {denominator_stages!r} total 0 {by}.")
        return self.total(numerator_stages, by) / denominator

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it.")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"entries": [asdict(e) for e in self.entries]}, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "ComputeLedger":
        saved = json.loads(Path(path).read_text())
        return cls([LedgerEntry(**e) for e in saved["entries"]])
