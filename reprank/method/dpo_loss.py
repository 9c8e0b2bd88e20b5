"""The pieces of DPO's loss, written out: log pi(y|x) of an answer, the margin z, the NLL term on chosen answers,
and the paper's conservative loss. The trainer in ``reprank.method.conservative`` uses them; notebook 04's exercises
check a student's against them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sequence_log_probs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``log pi(y|x)`` of each row: the log-probabilities of its counted tokens, summed; shape ``(batch,)``.

    ``logits`` (batch, T, vocab) at position t predict the token at t + 1; ``labels`` (batch, T) are the tokens,
    -100 where a token does not count (the prompt, padding). A row with no counted token sums to 0.
    """
    logits, labels = logits[:, :-1].float(), labels[:, 1:]
    counted = labels != -100
    token = logits.log_softmax(-1).gather(-1, labels.masked_fill(~counted, 0)[..., None])[..., 0]
    return torch.where(counted, token, 0.0).sum(1)


def dpo_margin(policy_chosen, policy_rejected, ref_chosen, ref_rejected) -> torch.Tensor:
    """DPO's implicit reward margin per pair from summed log-probs: ``z = [log pi(y_c) - log ref(y_c)]
    - [log pi(y_r) - log ref(y_r)]``."""
    return (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)


def chosen_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The NLL term on the chosen answers: ``-log pi`` averaged over all their counted tokens in the batch (a
    token mean, as TRL's "sft" loss; not a mean of per-answer means). Arguments as ``sequence_log_probs``."""
    return -sequence_log_probs(logits, labels).sum() / (labels[:, 1:] != -100).sum()


def conservative_dpo_loss(z: torch.Tensor, p: torch.Tensor | float, beta: float) -> torch.Tensor:
    """The paper's loss as written, averaged over pairs: ``-p log s(beta z) - (1 - p) log s(-beta z)``.

    ``z`` is the DPO margin of each pair, ``p`` the confidence that its label is right. ``conservative.ConfidenceDPOTrainer``
    computes the same value as TRL's ``-log s(beta z)`` plus ``(1 - p) beta z`` (a test checks they agree).
    """
    p = torch.as_tensor(p, dtype=z.dtype)
    return (-p * F.logsigmoid(beta * z) - (1 - p) * F.logsigmoid(-beta * z)).mean()
