"""The frozen reference's log-probabilities of a set of pairs, computed once per process, not once per trainer.

With ``precompute_ref_log_probs`` TRL's ``DPOTrainer`` runs the reference over every pair before training (about a
minute on 2 CPU cores for notebook 04's 96 pairs). It caches the result under a hash of the whole model, so the
LoRA adapter's random initialisation is in the key and a second arm on the same pairs (``dpo`` then ``paper``, the
matched-strength arms, notebook 06's ablations) computes the same numbers again. The reference is the base model
with the adapter disabled (or a separate ``ref_model``): here the key is its weights without the adapters, the
tokenized pairs and everything that batches them, and a later trainer gets the first one's numbers.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict

import torch
from datasets import Dataset, Features, concatenate_datasets

COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")
KEEP = 8  # sets of pairs remembered (two floats a pair): the most recent ones
_saved: OrderedDict[str, Dataset] = OrderedDict()


def weights_digest(model: torch.nn.Module) -> str:
    """A hash of a model's weights, LoRA adapters left out (they are disabled for the reference)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if "lora_" in name:
            continue
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class ReusedReferenceLogps:
    """A ``DPOTrainer`` mixin: ``_precompute_ref_logps`` returns saved numbers when the same reference has already
    scored the same tokenized pairs, batched the same way, in this process."""

    def _precompute_ref_logps(self, dataset: Dataset, name: str, batch_size: int) -> Dataset:
        token_columns = sorted(c for c in dataset.column_names if c.endswith("_ids"))
        if not token_columns:
            return super()._precompute_ref_logps(dataset, name, batch_size)
        args = self.args
        reference = self.ref_model or self.model
        key = hashlib.sha256(json.dumps([
            weights_digest(reference), dataset.select_columns(token_columns).to_dict(), batch_size,
            args.max_length, args.truncation_mode, args.padding_free, list(args.loss_type), str(reference.dtype),
        ]).encode()).hexdigest()
        if key in _saved:
            _saved.move_to_end(key)
            return concatenate_datasets([dataset, _saved[key]], axis=1)
        result = super()._precompute_ref_logps(dataset, name, batch_size)
        # A copy in memory (TRL's lives in a temporary file), float32 as TRL stores it.
        _saved[key] = Dataset.from_dict({c: result[c] for c in COLUMNS},
                                        features=Features({c: result.features[c] for c in COLUMNS}))
        while len(_saved) > KEEP:
            _saved.popitem(last=False)
        return result
