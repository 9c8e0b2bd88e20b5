"""TRL's fused log-prob head, on a CPU, scores the answer tokens only (as it already does on a GPU).

TRL 1.16 computes each token's log-probability through a chunked LM head (``trl.trainer.utils.add_fused_lm_head``).
On a device with Triton it feeds that head only the positions that carry a label; elsewhere it feeds every position
(prompt, answer and padding) and masks the prompt and padding out afterwards, so that compiled kernels keep one tile
shape. A CPU runs the head eagerly and has no such need, and there the wasted rows cost: SmolLM2's head projects onto
49,152 words, forward and backward, and most of a DPO row is prompt. ``enable`` makes TRL take its compact path on a
CPU too. On 2 cores, ``python benchmarks/bench_training.py --steps 4 --configs precompute_ref,every_position_head``
(at 4806437): 5.10 -> 3.70 s a LoRA-DPO step of 4 pairs (1.38x); notebook 04 in ``make run`` 889 -> 782 s.
tests/test_align.py checks that the loss and the gradients equal TRL's own path (to float rounding; `dpo`'s answers in
``make run`` came out the same).
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
