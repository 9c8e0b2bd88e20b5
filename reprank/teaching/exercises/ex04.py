"""Notebook 04's exercises: judging with intervals, and the pieces of the conservative DPO loss.

04.1-04.2 are the rates' intervals and the verdict the results compare with; 04.3-04.6 are what the notebook's
``DPOTrainer`` subclass computes (log-probabilities of an answer, the margin z, the conservative loss, the NLL
term); 04.7 is one step of the paper's p from the current policy (the reward model's joint step included), which
a subclass of it runs; tests/test_notebook_trainer.py checks both subclasses against the package's trainer.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import log_softmax

from reprank.base import defaults
from reprank.measure import evaluate
from reprank.method import conservative
from reprank.method.reward import HybridRewardModel
from reprank.teaching.exercises.checking import Case, Exercise, register, same_values

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


def _reward_model_and_optimizer(n_layers, hidden_size, layers, generator=None):
    """A hybrid RM (random weights when ``generator`` is given) and the Adam the paper's trainer gives it."""
    rm = HybridRewardModel(n_layers, hidden_size, layers)
    if generator is not None:  # scales that keep the scores within a few units of 0, where the sigmoids bend
        with torch.no_grad():
            for tensor, scale in ((rm.feature_mean, 0.2), (rm.probe_weight, 0.5), (rm.probe_bias, 0.2),
                                  (rm.gate.weight, 1.0)):
                tensor.copy_(scale * torch.randn(tensor.shape, generator=generator))
            rm.feature_std.copy_(0.5 + torch.rand(rm.feature_std.shape, generator=generator))
    return rm, torch.optim.Adam(rm.parameters(), lr=defaults.JOINT_RM_LR, weight_decay=defaults.RM_WEIGHT_DECAY)


def _by_hand_step(swapped=False):
    """One pair, an RM of one layer of one feature with w = 1, b = 0 and V = 0: every gate 1/2, so R = h / 2.
    Layer 1 holds h = 2 ln 3 at the chosen row's end (position 1) and 0 at the rejected row's (position 2):
    s_c = ln 3 and s_r = 0, sigmoid(s) = 3/4 and 1/2. Every other position, and layer 0, holds 9 or -9.
    (Not s_r = -ln 3: with t_c^2 = t_r^2 the gradient of V is 0 up to rounding, which Adam's first step, a step of
    lr g / (|g| + 1e-8), turns into any step between -lr and lr.)"""
    rm, optimizer = _reward_model_and_optimizer(1, 1, [1])
    with torch.no_grad():
        rm.probe_weight.fill_(1.0)
    hidden = torch.full((2, 2, 3, 1), 9.0)
    hidden[0] = -9.0
    ends = torch.tensor([1, 2])
    hidden[1, 0, 1], hidden[1, 1, 2] = (0.0, 2 * LN3) if swapped else (2 * LN3, 0.0)
    return hidden, ends, rm, optimizer, 4 * LN3, 1.0


def _random_step(generator, pairs=4, n_layers=4, layers=(2, 3, 4), length=6, d=5, alpha=3.0, margin=1.0):
    """2 * pairs rows of a policy's states (chosen rows first), end positions in the second half of each row, and a
    random RM reading ``layers``; chosen rows lean towards the RM's direction, so p lies between 0.5 and 1 (0.6 to
    0.7 here)."""
    rm, optimizer = _reward_model_and_optimizer(len(layers), d, list(layers), generator)
    hidden = torch.randn(n_layers + 1, 2 * pairs, length, d, generator=generator)
    hidden[list(layers), :pairs] += 2.0 * rm.probe_weight.detach()[:, None, None, :]
    ends = torch.randint(length // 2, length, (2 * pairs,), generator=generator)
    return hidden, ends, rm, optimizer, alpha, margin


def _policy_confidence_cases() -> list[Case]:
    generator = torch.Generator().manual_seed(0)
    # Adam's second step: the optimiser's state holds a first step, taken on other states of the same shape.
    hidden, ends, rm, optimizer, alpha, margin = _random_step(generator, margin=2.5)
    conservative.policy_confidence(torch.randn(hidden.shape, generator=generator), ends, rm, optimizer, alpha, margin)
    return [
        Case("by hand: sigmoid(s) = 3/4 and 1/2 before the RM's step, alpha = 4 ln 3: p = sigmoid(ln 3) = 3/4",
             _by_hand_step(), expected=torch.tensor(0.75)),
        Case("by hand, chosen and rejected states swapped: sigmoid(-ln 3) = 1/4, floored at 0.5",
             _by_hand_step(swapped=True), expected=torch.tensor(0.5)),
        Case("4 pairs; the RM reads layers 2, 3, 4 of 4 (reward_model.layers)", _random_step(generator)),
        Case("Adam's second step (its state holds a first one), margin 2.5", (hidden, ends, rm, optimizer, alpha, margin)),
        Case("1 pair, 2 layers of 8 features", _random_step(generator, pairs=1, n_layers=2, layers=(1, 2), d=8)),
    ]


def _same_p(got, expected) -> str | None:
    """p's value, kind, shape and dtype, and no gradient: p is a constant weight in the policy's loss."""
    if isinstance(got, torch.Tensor) and got.requires_grad:
        return ("your p carries a gradient (to the reward model or the policy's states): compute it from detached "
                "scores, since p is a constant weight in the policy's loss")
    return same_values(got, expected, atol=1e-5)


def _optimizer_steps(optimizer) -> int:
    return max((int(state["step"]) for state in optimizer.state.values() if "step" in state), default=0)


def _reward_model_step_problem(yours: tuple, reference: tuple) -> str | None:
    """The step 04.7 leaves behind: no gradient in the policy's states, one optimiser step, the reference's weights."""
    hidden, rm, optimizer = yours[0], yours[2], yours[3]
    if isinstance(hidden, torch.Tensor) and hidden.grad is not None:
        return ("the reward model's loss sent a gradient into the policy's hidden states: detach the end-token states "
                "before scoring them (in the trainer that backward would run through the policy's graph)")
    steps, expected_steps = _optimizer_steps(optimizer), _optimizer_steps(reference[3])
    if steps != expected_steps:
        return (f"the reward model's optimiser stepped {steps - expected_steps + 1} times, not once: after scoring, "
                f"`optimizer.zero_grad()`, the margin loss's `.backward()`, then `optimizer.step()`")
    for (name, got), want in zip(rm.named_parameters(), reference[2].parameters()):
        gap = (got.detach() - want.detach()).abs().max().item()
        if gap > 1e-6:
            return (f"the reward model after your step differs from the reference's (`{name}` by up to {gap:.2g}): one "
                    f"step on the mean of -log sigmoid(s_c - s_r - margin) over the pairs, chosen rows first")
    return None


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
# 04.7 feeds training twice: p weighs the policy's loss and must carry no gradient back to the policy's states
# (argument 0, made a leaf that requires grad), and the reward model's step must match the reference's.
register(Exercise(id="04.7", title="the paper's p from the current policy", function="my_policy_confidence",
                  reference=conservative.policy_confidence, cases=_policy_confidence_cases, compare=_same_p, points=3,
                  gradients=(0,), effects=_reward_model_step_problem))


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


def _paper_step(hidden_states, ends, reward_model, optimizer, alpha, margin, *, detach=True, step=True,
                rescore=False, confidence=conservative.batch_confidence):
    """04.7 with one thing changed: the wrong answers below."""
    rows = torch.arange(len(ends))
    states = torch.stack([hidden_states[layer][rows, ends] for layer in reward_model.layers], dim=1)
    chosen, rejected = reward_model(states.detach() if detach else states).chunk(2)
    if step:
        conservative.reward_model_step(optimizer, chosen, rejected, margin)
    if rescore:  # p read from the scores of after the step
        chosen, rejected = reward_model(states.detach()).chunk(2)
    return confidence(chosen.detach(), rejected.detach(), alpha)


def _sigmoid_gap(chosen, rejected):
    return torch.sigmoid(chosen).mean() - torch.sigmoid(rejected).mean()


def _first_states_forever():
    """p and the RM's step from the states of the first call (the initial policy's), reused at every later step."""
    first = []

    def answer(hidden_states, ends, reward_model, optimizer, alpha, margin):
        if not first:
            first.append((hidden_states.detach().clone(), ends.clone()))
        return conservative.policy_confidence(*first[0], reward_model, optimizer, alpha, margin)
    return answer


def _p_with_gradient(hidden_states, ends, reward_model, optimizer, alpha, margin):  # p from undetached scores
    rows = torch.arange(len(ends))
    states = torch.stack([hidden_states[layer][rows, ends] for layer in reward_model.layers], dim=1).detach()
    chosen, rejected = reward_model(states).chunk(2)
    conservative.reward_model_step(optimizer, chosen, rejected, margin)
    return torch.sigmoid(alpha * _sigmoid_gap(chosen, rejected)).clamp(min=0.5)


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
    "04.7": [
        # the states not detached: the RM's backward runs into the policy's states (in the trainer, its graph)
        (functools.partial(_paper_step, detach=False), r"gradient into the policy's hidden states"),
        (_p_with_gradient, r"your p carries a gradient"),
        (functools.partial(_paper_step, confidence=lambda c, r, a: torch.sigmoid(a * _sigmoid_gap(c, r))),
         r"swapped.*expected 0\.5000, got 0\.2500"),  # p not floored at 0.5
        (functools.partial(_paper_step, confidence=lambda c, r, a: torch.sigmoid(a * (c.mean() - r.mean())).clamp(
            min=0.5)), r"by hand: .*expected 0\.7500, got 0\.99"),  # the mean of the scores, not of sigmoid(scores)
        (functools.partial(_paper_step, confidence=lambda c, r, a: (a * torch.sigmoid(_sigmoid_gap(c, r))).clamp(
            min=0.5)), r"expected 0\.7500, got 2\.47"),  # alpha outside the sigmoid
        functools.partial(_paper_step, confidence=lambda c, r, a: torch.sigmoid(  # alpha on the scores
            torch.sigmoid(a * c).mean() - torch.sigmoid(a * r).mean()).clamp(min=0.5)),
        (_first_states_forever(), r"swapped.*expected 0\.5000, got 0\.7500"),  # stale: the first call's states
        (functools.partial(_paper_step, step=False), r"optimiser stepped 0 times"),  # the RM step skipped
        (functools.partial(_paper_step, rescore=True), r"expected 0\.7500, got 0\.75"),  # p read after the RM's step
        (lambda h, e, rm, opt, alpha, margin: _paper_step(h, e, rm, opt, alpha, 1.0),  # margin 1 whatever is asked
         r"margin 2\.5.*reward model after your step differs"),
        (functools.partial(_paper_step, confidence=lambda c, r, a: torch.sigmoid(a * _sigmoid_gap(c, r)).clamp(
            min=0.5)[None]), r"shape \(\), got shape \(1,\)"),  # a (1,) tensor for a 0-dim one
    ],
}
