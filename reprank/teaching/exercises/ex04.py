"""Notebook 04's exercises: judging with intervals, and the pieces of the conservative DPO loss.

04.1-04.2 are the rates' intervals and the verdict the results compare with; 04.3-04.6 are what the notebook's
``DPOTrainer`` subclass computes (log-probabilities of an answer, the margin z, the conservative loss, the NLL
term); 04.7 is one step of the paper's p from the current policy (the reward model's joint step included), which
a subclass of it runs; tests/test_notebook_trainer.py checks both subclasses against the package's trainer.
04.7 lives in ``ex04_policy_confidence`` (imported here: it registers 04.7, and its wrong answers join
``WRONG_ANSWERS`` below, so this module's catalogue is still all of notebook 04's).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import log_softmax

from reprank.measure import evaluate
from reprank.method import conservative
from reprank.teaching.exercises import ex04_policy_confidence
from reprank.teaching.exercises.checking import Case, Exercise, register

NAN = float("nan")
Z_975 = 1.959963984540054  # the normal quantile of 0.975, from a table
LN3 = math.log(3.0)  # softmax([0, ln 3]) = (1/4, 3/4): log-probabilities worked out by hand


def _wilson_cases() -> list[Case]:
    # Expected intervals from the textbook formula, written out below (_wilson with z = 1.959964), not from scipy.
    return [
        Case("k = 36 of n = 60 (60%: about +-12 points)", (36, 60), expected=_wilson(36, 60, Z_975)),
        Case("k = 3 of n = 7 (the formula by hand)", (3, 7), expected=_wilson(3, 7, Z_975)),
        Case("k = 0 of n = 10: not empty, [0, z^2 / (n + z^2)] = [0, 0.2775]", (0, 10),
             expected=(0.0, Z_975**2 / (10 + Z_975**2))),
        Case("k = n = 10: not empty, [0.72, 1]", (10, 10), expected=(10 / (10 + Z_975**2), 1.0)),
        Case("k = n = 1", (1, 1)),
        Case("n = 0 (no prompts): (nan, nan)", (0, 0), expected=(NAN, NAN)),
    ]


def _verdict_cases() -> list[Case]:
    return [
        Case("a wholly above b", (0.70, 0.90, 0.30, 0.55), expected="higher"),
        Case("a wholly below b", (0.05, 0.20, 0.40, 0.70), expected="lower"),
        Case("overlapping intervals", (0.40, 0.65, 0.55, 0.80), expected="no difference"),
        Case("a's interval inside b's", (0.45, 0.55, 0.30, 0.70), expected="no difference"),
        Case("touching intervals from above (a's low = b's high)", (0.50, 0.80, 0.20, 0.50), expected="no difference"),
        Case("touching intervals from below (a's high = b's low)", (0.20, 0.50, 0.50, 0.80), expected="no difference"),
        Case("b has no prompts (nan interval)", (0.70, 0.90, NAN, NAN), expected="no difference"),
    ]


def _logits_and_labels(generator, batch=3, length=7, vocab=11, scale=3.0, counted_from=(2, 3, 5)):
    """Random logits, and labels that count from a per-row position on (the prompt before it: -100)."""
    logits = torch.randn(batch, length, vocab, generator=generator) * scale
    labels = torch.randint(0, vocab, (batch, length), generator=generator)
    for row, start in enumerate(counted_from[:batch]):
        labels[row, :start] = -100
    return logits, labels


def _by_hand_logits() -> tuple[torch.Tensor, torch.Tensor]:
    """2 rows of 3 positions, vocabulary 2. Row 0: softmax([0, ln 3]) gives token 1 probability 3/4 at position 0,
    softmax([ln 3, 0]) token 0 probability 3/4 at position 1; its labels (-100, 1, 0) count both: 2 log(3/4).
    Row 1: zero logits (1/2 each), only its last token counts: log(1/2)."""
    logits = torch.tensor([[[0.0, LN3], [LN3, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])
    return logits, torch.tensor([[-100, 1, 0], [-100, -100, 1]])


def _logps_by_scipy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The summed log-probabilities with scipy's log_softmax in float64, one token at a time (independent of torch)."""
    logp, tokens = log_softmax(logits.double().numpy(), axis=-1), labels.numpy()
    sums = [sum(logp[row, t - 1, tokens[row, t]] for t in range(1, tokens.shape[1]) if tokens[row, t] != -100)
            for row in range(len(tokens))]
    return torch.tensor(np.asarray(sums, dtype=np.float64), dtype=torch.float32)


def _sequence_logps_cases() -> list[Case]:
    generator = torch.Generator().manual_seed(0)
    logits, labels = _logits_and_labels(generator)
    padded = labels.clone()
    padded[0, -2:] = -100  # right padding after the answer
    large, large_labels = _logits_and_labels(generator, scale=100.0)
    empty_row = labels.clone()
    empty_row[1] = -100
    return [
        Case("by hand: 2 log(3/4) and log(1/2)", _by_hand_logits(),
             expected=torch.tensor([2 * math.log(0.75), math.log(0.5)])),
        Case("3 answers after prompts of 2, 3 and 5 tokens (scipy's log_softmax)", (logits, labels),
             expected=_logps_by_scipy(logits, labels)),
        Case("an answer followed by padding (-100)", (logits, padded)),
        Case("logits of size 100: log(softmax) underflows to -inf", (large, large_labels)),
        Case("a row with every label -100 (an empty answer): 0", (logits, empty_row),
             expected=_logps_by_scipy(logits, empty_row)),
        Case("an empty batch", (torch.zeros(0, 7, 11), torch.zeros(0, 7, dtype=torch.long))),
    ]


def _margin_cases() -> list[Case]:
    generator = torch.Generator().manual_seed(0)
    logps = [-40 - 30 * torch.rand(8, generator=generator) for _ in range(4)]  # summed log-probs: large, negative
    same = -50 * torch.rand(4, generator=generator)
    t = torch.tensor
    return [
        # By hand: (-10 + 11) - (-12 + 12) = 1 and (-20 + 18) - (-20 + 19) = -1.
        Case("by hand: z = 1 and -1", (t([-10.0, -20.0]), t([-12.0, -20.0]), t([-11.0, -18.0]), t([-12.0, -19.0])),
             expected=t([1.0, -1.0])),
        Case("8 pairs", tuple(logps)),
        Case("policy = reference (the first step): z = 0", (same, same + 1, same, same + 1), expected=torch.zeros(4)),
        Case("an empty batch", tuple(torch.zeros(0) for _ in range(4))),
    ]


def _conservative_cases() -> list[Case]:
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(12, generator=generator) * 5
    return [
        # By hand: beta z = ln 3, log sigmoid(ln 3) = log 3/4, log sigmoid(-ln 3) = log 1/4.
        Case("by hand: beta z = ln 3, p = 0.8: -0.8 log(3/4) - 0.2 log(1/4)",
             (torch.tensor([4 * LN3]), torch.tensor([0.8]), 0.25),
             expected=torch.tensor(-0.8 * math.log(0.75) - 0.2 * math.log(0.25))),
        Case("p = 1: plain DPO", (z, torch.ones(12), 0.1)),
        Case("p = 0.5: the pair pulls neither way", (z, torch.full((12,), 0.5), 0.5)),
        Case("p between 0.5 and 1", (z, 0.5 + 0.5 * torch.rand(12, generator=generator), 1.0)),
        Case("z = 0: log 2 whatever p", (torch.zeros(4), torch.tensor([1.0, 0.9, 0.7, 0.5]), 0.1),
             expected=torch.tensor(math.log(2.0))),
        # sigmoid(-100) is 0 in float32 (exp(100) overflows): -log(sigmoid(x)) is inf unless computed stably.
        # By hand: -log sigmoid(-100) = 100 (to 1e-43); -0.5 log sigmoid(100) - 0.5 log sigmoid(-100) = 50: mean 75.
        Case("beta z = -100 and +100 (x = -100): (100 + 50) / 2",
             (torch.tensor([-1000.0, 1000.0]), torch.tensor([1.0, 0.5]), 0.1), expected=torch.tensor(75.0)),
    ]


def _nll_cases() -> list[Case]:
    generator = torch.Generator().manual_seed(1)
    logits, labels = _logits_and_labels(generator, batch=2, counted_from=(1, 5))  # answers of 6 and 2 tokens
    large, large_labels = _logits_and_labels(generator, scale=100.0)
    return [
        # By hand (the logits of 04.3's first case): tokens of -log p = -log(3/4), -log(3/4) and -log(1/2).
        Case("by hand: 3 tokens, (-2 log(3/4) - log(1/2)) / 3, not the mean of the 2 answers' means", _by_hand_logits(),
             expected=torch.tensor(-(2 * math.log(0.75) + math.log(0.5)) / 3)),
        Case("2 answers of 6 and 2 tokens: a mean over tokens, not over answers", (logits, labels)),
        Case("3 answers of 5, 4 and 2 tokens", _logits_and_labels(generator)),
        Case("logits of size 100", (large, large_labels)),
    ]



register(Exercise(id="04.1", title="the Wilson interval", function="my_wilson_interval",
                  reference=evaluate.wilson_interval, cases=_wilson_cases, atol=1e-4))
register(Exercise(id="04.2", title="the interval verdict", function="my_interval_verdict",
                  reference=evaluate.compare_intervals, cases=_verdict_cases))
# 04.3-04.6 are trained through: their checkers compare gradients too (the logits; the four log-probabilities; z).
register(Exercise(id="04.3", title="the log-probability of an answer", function="my_sequence_logps",
                  reference=conservative.sequence_log_probs, cases=_sequence_logps_cases, atol=1e-4, points=2,
                  gradients=(0,)))
register(Exercise(id="04.4", title="the DPO margin z", function="my_dpo_margin",
                  reference=conservative.dpo_margin, cases=_margin_cases, atol=1e-4, gradients=(0, 1, 2, 3)))
register(Exercise(id="04.5", title="the conservative loss", function="my_conservative_loss",
                  reference=conservative.conservative_dpo_loss, cases=_conservative_cases, points=2, gradients=(0,)))
register(Exercise(id="04.6", title="the NLL term on chosen answers", function="my_chosen_nll",
                  reference=conservative.chosen_nll, cases=_nll_cases, atol=1e-4, gradients=(0,)))


def _wald(k, n):  # the textbook normal interval: empty at k = 0 and k = n
    p, half = k / n, 1.96 * math.sqrt(k / n * (1 - k / n) / n)
    return max(p - half, 0.0), min(p + half, 1.0)


def _wilson(k, n, z=1.96):  # the textbook formula: 04.1's expected values with z = Z_975, a wrong answer with z = 1.645
    if n == 0:
        return NAN, NAN
    centre, half = (k + z * z / 2) / (n + z * z), z / (n + z * z) * math.sqrt(k * (n - k) / n + z * z / 4)
    return centre - half, centre + half


def _no_shift(logits, labels):  # the logits at t scored against the token at t, not t + 1
    counted = labels != -100
    token = logits.log_softmax(-1).gather(-1, labels.masked_fill(~counted, 0)[..., None])[..., 0]
    return (token * counted).sum(1)


def _counts_everything(logits, labels):  # -100 replaced by token 0, but still summed
    token = logits[:, :-1].log_softmax(-1).gather(-1, labels[:, 1:].clamp(min=0)[..., None])[..., 0]
    return token.sum(1)


def _naive_log_softmax(logits, labels):  # log(softmax): -inf where a probability underflows
    counted = labels[:, 1:] != -100
    probs = logits[:, :-1].softmax(-1).gather(-1, labels[:, 1:].clamp(min=0)[..., None])[..., 0]
    return torch.where(counted, torch.log(probs), 0.0).sum(1)


def _detached_normaliser(logits, labels):  # log-softmax by hand, its logsumexp detached: right values, wrong gradient
    logits, labels = logits[:, :-1].float(), labels[:, 1:]
    counted = labels != -100
    logp = logits - logits.logsumexp(-1, keepdim=True).detach()
    return torch.where(counted, logp.gather(-1, labels.clamp(min=0)[..., None])[..., 0], 0.0).sum(1)


def _no_grad(fn):  # the right values computed under torch.no_grad(): nothing to train
    def answer(*args):
        with torch.no_grad():
            return fn(*args)
    return answer


def _answer_mean_nll(logits, labels):  # the mean of per-answer means
    counted = (labels[:, 1:] != -100).sum(1)
    return (-conservative.sequence_log_probs(logits, labels) / counted).mean()



# Answers a checker must reject (tests/test_exercises.py): each is a mistake a student makes. An entry is the
# answer, or (answer, a regular expression the checker's message must match: rejected for the right reason).
WRONG_ANSWERS = {
    "04.1": [
        _wald,
        lambda k, n: _wilson(k, n, z=1.645),  # a 90% interval
        lambda k, n: _wilson(k, n) if n else (0.0, 1.0),  # n = 0 is "anything", not "unknown"
        lambda k, n: _wilson(k, n)[::-1],  # (high, low)
        lambda k, n: _wilson(k, n - 1) if n > 1 else _wilson(k, n),  # n - 1 for n
    ],
    "04.2": [
        lambda la, ha, lb, hb: "higher" if la >= hb else "lower" if ha <= lb else "no difference",  # touching
        lambda la, ha, lb, hb: "higher" if la > lb else "lower" if ha < hb else "no difference",  # low vs low
        lambda la, ha, lb, hb: "no difference" if lb <= ha and la <= hb else "higher",  # never "lower"
        # "lower" for intervals touching from below (a's high = b's low), right from above
        (lambda la, ha, lb, hb: "higher" if la > hb else "lower" if ha <= lb else "no difference",
         r"touching intervals from below .*expected 'no difference', got 'lower'"),
        lambda la, ha, lb, hb: "lower" if la > hb else "higher" if ha < lb else "no difference",  # a and b swapped
    ],
    "04.3": [
        _no_shift,
        _counts_everything,
        _naive_log_softmax,
        lambda logits, labels: conservative.sequence_log_probs(logits, labels)
        / (labels[:, 1:] != -100).sum(1).clamp(min=1),  # a mean per token, not the sum
        (_detached_normaliser, r"gradient with respect to `logits` differs"),
        (_no_grad(conservative.sequence_log_probs), r"carry no gradient"),
        (lambda logits, labels: conservative.sequence_log_probs(logits, labels)[:, None],  # keepdim: (b, 1)
         r"shape \(2,\), got shape \(2, 1\)"),
    ],
    "04.4": [
        lambda pc, pr, rc, rr: pc - pr,  # forgets the reference
        lambda pc, pr, rc, rr: (pc - rc) + (pr - rr),  # the rejected log-ratio added
        lambda pc, pr, rc, rr: ((pc - rc) - (pr - rr)).mean(),  # one number for the batch
        lambda pc, pr, rc, rr: (pr - rr) - (pc - rc),  # sign flipped
        (lambda pc, pr, rc, rr: (pc.detach() - rc) - (pr.detach() - rr), r"gradient"),  # the policy's side detached
    ],
    "04.5": [
        lambda z, p, beta: -F.logsigmoid(beta * z).mean(),  # ignores p
        lambda z, p, beta: (-p * F.logsigmoid(beta * z)).mean(),  # drops the (1 - p) term
        lambda z, p, beta: (-p * torch.log(torch.sigmoid(beta * z))
                            - (1 - p) * torch.log(torch.sigmoid(-beta * z))).mean(),  # unstable: inf at x = -100
        lambda z, p, beta: (-p * F.logsigmoid(beta * z) - (1 - p) * F.logsigmoid(-beta * z)).sum(),  # sum
        # the loss returned with .item(): a float, cut from z; the trainer would optimise the NLL term alone
        (lambda z, p, beta: (-p * F.logsigmoid(beta * z) - (1 - p) * F.logsigmoid(-beta * z)).mean().item(),
         r"got a float .*`\.item\(\)`"),
        (lambda z, p, beta: torch.tensor((-p * F.logsigmoid(beta * z)  # rebuilt from the number: no gradient
                                          - (1 - p) * F.logsigmoid(-beta * z)).mean().item()), r"carry no gradient"),
        # TRL's form -log s(beta z) + (1 - p) beta z with the second z detached: right values, wrong gradient
        (lambda z, p, beta: (-F.logsigmoid(beta * z) + (1 - p) * beta * z.detach()).mean(),
         r"gradient with respect to `z` differs"),
        lambda z, p, beta: (-p * F.logsigmoid(-beta * z) - (1 - p) * F.logsigmoid(beta * z)).mean(),  # sides swapped
    ],
    "04.6": [
        _answer_mean_nll,
        lambda logits, labels: -conservative.sequence_log_probs(logits, labels).sum(),  # sum, not mean
        lambda logits, labels: -_no_shift(logits, labels).sum() / (labels != -100).sum(),  # not shifted
        (lambda logits, labels: conservative.chosen_nll(logits, labels).item(), r"got a float"),  # .item()
        (_no_grad(conservative.chosen_nll), r"carry no gradient"),
        # the sign: log pi, not -log pi
        lambda logits, labels: conservative.sequence_log_probs(logits, labels).sum() / (labels[:, 1:] != -100).sum(),
    ],
    **ex04_policy_confidence.WRONG_ANSWERS,  # 04.7
}
