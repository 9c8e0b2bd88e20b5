"""TRL's fused log-prob head, on a CPU, scores the answer tokens only (as it already does on a GPU).

TRL 1.16 computes each token's log-probability through a chunked LM head (``trl.trainer.utils.add_fused_lm_head``).
On a device with Triton it feeds that head only the positions that carry a label; elsewhere it feeds every position
(prompt, answer and padding) and masks the prompt and padding out afterwards, so that compiled kernels keep one tile
shape. A CPU runs the head eagerly and has no such need, and there the wasted rows cost: SmolLM2's head projects onto
49,152 words, forward and backward, and most of a DPO row is prompt. ``enable`` makes TRL take its compact path on a
CPU too. Measured on 2 cores (6 LoRA-DPO steps of 4 re-ranked pairs, reference log-probs already computed): 37.4 s
-> 20.3 s, and bit-identical LoRA weights after the 6 steps; tests/test_align.py checks the log-probs and the loss
against TRL's own path.
"""

from __future__ import annotations

import torch
import trl.trainer.utils as trl_utils
from trl.kernels.chunked_logprob import _use_triton as _triton_device


def _answer_tokens_only(device: torch.device) -> bool:
    """TRL's test "score only the labelled positions?": yes on a CPU, and wherever TRL itself says yes."""
    return device.type == "cpu" or _triton_device(device)


def enable() -> None:
    """Make every TRL fused head in this process score only labelled positions on a CPU (idempotent)."""
    trl_utils._use_triton = _answer_tokens_only  # the one name TRL's fused head asks (trl==1.16.0, pinned)


def disable() -> None:
    """TRL's own choice again (every position on a CPU): for the comparison in the tests."""
    trl_utils._use_triton = _triton_device
