"""Notebook 01's exercises: probing safety representations and the hybrid reward model."""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from reprank.lm import extraction
from reprank.method import reward
from reprank.teaching.exercises.checking import Case, Exercise, register


def _end_token_cases() -> list[Case]:
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(3, 5, 4, generator=generator)
    mask = lambda rows: torch.tensor(rows)
    counted = torch.arange(12.0).reshape(2, 3, 2)  # hidden[i, t] = [6 i + 2 t, 6 i + 2 t + 1]
    return [
        # By hand: row 0's last real token is t = 1, row 1's (left-padded) t = 2.
        Case("by hand: states numbered 0..11, masks [1, 1, 0] and [0, 1, 1]",
             (counted, mask([[1, 1, 0], [0, 1, 1]])), expected=torch.tensor([[2.0, 3.0], [10.0, 11.0]])),
        Case("right padding (pads after the text)", (hidden, mask([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]))),
        Case("left padding (pads before the text)", (hidden, mask([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1]]))),
        Case("no padding", (hidden, torch.ones(3, 5, dtype=torch.long))),
        Case("one text of one token", (hidden[:1, :1], mask([[1]]))),
    ]


def _auroc_cases() -> list[Case]:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=40)
    labels[:2] = [0, 1]
    return [
        # By hand: unsafe 0.35 beats safe 0.1, ties 0.35 (1/2), loses to 0.4; unsafe 0.8 beats all three: 4.5 / 6.
        Case("by hand: 2 unsafe rows against 3 safe, one tie: 4.5 / 6 = 0.75",
             (np.array([0, 0, 1, 1, 0]), np.array([0.1, 0.35, 0.35, 0.8, 0.4])), expected=0.75),
        Case("40 rows, scores rounded so that many tie", (labels, np.round(rng.random(40) + 0.3 * labels, 1))),
        Case("every score equal, as a probe on the embedding layer gives: 0.5", (labels, np.full(40, 0.3)),
             expected=0.5),
        Case("perfect separation: 1.0", (np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9])), expected=1.0),
        Case("ranked backwards: 0.0", (np.array([0, 0, 1, 1]), np.array([0.9, 0.8, 0.2, 0.1])), expected=0.0),
        Case("one unsafe row among five, tied with one safe row", (np.array([0, 0, 0, 1, 0]),
                                                                   np.array([0.1, 0.7, 0.2, 0.7, 0.9]))),
    ]


def _statistics_cases() -> list[Case]:
    generator = torch.Generator().manual_seed(0)
    states = torch.randn(20, 3, 4, generator=generator)
    constant = states.clone()
    constant[:, 0, 1] = 2.5  # one feature never varies in training: s = 0
    tiny = states.clone()
    tiny[:, 2, 3] = 1.0 + 1e-3 * torch.randn(20, generator=generator)  # varies, but by little: no floor needed
    scaled = states * torch.tensor([1.0, 10.0, 100.0])[:, None]
    by_hand = torch.tensor([[[1.0, 5.0]], [[2.0, 5.0]], [[3.0, 5.0]]])  # 3 rows, 1 layer, 2 features
    return [
        # By hand: mean (1 + 2 + 3) / 3 = 2; variance ((-1)^2 + 0 + 1^2) / (3 - 1) = 1; the constant feature: 1e-4.
        Case("by hand: rows 1, 2, 3 give mean 2 and s = 1; a constant 5 gives s = 1e-4", (by_hand,),
             expected=(torch.tensor([[2.0, 5.0]]), torch.tensor([[1.0, 1e-4]]))),
        Case("numpy's mean and std (ddof = 1) of 20 random rows", (states,),
             expected=(torch.from_numpy(states.numpy().mean(0)),
                       torch.from_numpy(np.maximum(states.numpy().std(0, ddof=1), 1e-4)))),
        Case("3 rows: the standard deviation divides by n - 1", (states[:3],)),
        Case("a feature that never varies (s = 0 is floored at 1e-4)", (constant,)),
        Case("a feature that varies by about 1e-3 (above the floor: kept as it is)", (tiny,)),
        Case("layers 1x, 10x and 100x in scale", (scaled,)),
    ]


def _hybrid_reward_cases() -> list[Case]:
    generator = torch.Generator().manual_seed(0)
    n, layers, d = 5, 3, 4
    randn = lambda *shape: torch.randn(*shape, generator=generator)
    states, mean, std = randn(n, layers, d) * 2 + 1, randn(layers, d), randn(layers, d).abs() + 0.5
    weight, bias, gate = randn(layers, d), randn(layers), randn(layers, layers)  # V is not symmetric
    # By hand, 2 layers of 1 feature: (3 - 1) / 2 = 1 and (1 - 1) / 2 = 0, times w = (2, 3), plus b = (0, -1):
    # t = (2, -1). V = [[0, 0], [1, 0]]: (V t) = (0, 2), gates (1/2, sigmoid(2)), R = 2 / 2 - sigmoid(2).
    one = (torch.tensor([[[3.0], [1.0]]]), torch.ones(2, 1), torch.full((2, 1), 2.0), torch.tensor([[2.0], [3.0]]),
           torch.tensor([0.0, -1.0]), torch.tensor([[0.0, 0.0], [1.0, 0.0]]))
    return [
        Case("by hand: t = (2, -1), V = [[0, 0], [1, 0]]: R = 1 - sigmoid(2)", one,
             expected=torch.tensor([1.0 - 1.0 / (1.0 + math.exp(-2.0))])),
        Case("5 texts, 3 layers, random V (not symmetric)", (states, mean, std, weight, bias, gate)),
        Case("V = 0: every gate is 1/2, R = (t_1 + t_2 + t_3) / 2",
             (states, mean, std, weight, bias, torch.zeros(layers, layers))),
        Case("a large V: the gates saturate at 0 or 1", (states, mean, std, weight, bias, gate * 50)),
        Case("an empty batch (0 texts)", (states[:0], mean, std, weight, bias, gate)),
    ]


def _margin_loss_cases() -> list[Case]:
    generator = torch.Generator().manual_seed(0)
    random_pairs = [Case(f"16 random pairs, margin {m}", (torch.randn(16, generator=generator) * 3,
                                                          torch.randn(16, generator=generator) * 3, m))
                    for m in (0.0, 1.0, 2.5)]
    softplus = lambda x: math.log1p(math.exp(x))  # -log sigmoid(-x)
    return [
        # By hand: x = R_c - R_r - margin = (1, -1): -log sigmoid(1) = softplus(-1), -log sigmoid(-1) = softplus(1).
        Case("by hand: x = 1 and -1, loss (softplus(-1) + softplus(1)) / 2",
             (torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0]), 1.0),
             expected=torch.tensor((softplus(-1.0) + softplus(1.0)) / 2)),
    ] + random_pairs + [
        # log(sigmoid(-101)) underflows to -inf in float32: the loss must be computed stably.
        Case("a pair ranked the wrong way by 100 (x = -101): about 101",
             (torch.tensor([-50.0]), torch.tensor([50.0]), 1.0), expected=torch.tensor(101.0)),
        Case("a tie (R_c = R_r): the loss is -log sigmoid(-margin)",
             (torch.tensor([0.0, 0.0]), torch.tensor([0.0, 0.0]), 1.0), expected=torch.tensor(softplus(1.0))),
    ]


def _pairwise_accuracy_cases() -> list[Case]:
    rng = np.random.default_rng(0)
    return [
        Case("20 random pairs", (rng.normal(size=20), rng.normal(size=20))),
        Case("ties (R_c = R_r) count as misses: 1 of 4 by hand", (np.array([1.0, 2.0, 0.5, 3.0]),
                                                                  np.array([1.0, 1.0, 0.5, 4.0])), expected=0.25),
        Case("a constant reward: every pair a tie, accuracy 0", (np.zeros(6), np.zeros(6)), expected=0.0),
        Case("every pair ranked right: 1.0", (np.array([3.0, 2.0]), np.array([-1.0, 1.5])), expected=1.0),
        Case("an empty batch: nan (no pairs, no accuracy)", (np.zeros(0), np.zeros(0)), expected=float("nan")),
    ]


END_TOKEN = register(Exercise(
    id="01.1", title="the end-token state", function="my_end_token_state",
    reference=extraction.end_token_states, cases=_end_token_cases, points=2))
AUROC = register(Exercise(
    id="01.2", title="the probe's AUROC", function="my_auroc",
    reference=roc_auc_score, cases=_auroc_cases, points=1))
STATISTICS = register(Exercise(
    id="01.3", title="the standardisation's statistics", function="my_feature_statistics",
    reference=reward.feature_statistics, cases=_statistics_cases, points=1))
HYBRID_REWARD = register(Exercise(
    id="01.4", title="the hybrid reward model's forward", function="my_hybrid_reward",
    reference=reward.hybrid_reward, cases=_hybrid_reward_cases, atol=1e-4, points=2,
    gradients=(0, 3, 4, 5)))  # states, w, b and V; mu and s are fixed buffers
MARGIN_LOSS = register(Exercise(
    id="01.5", title="the margin loss", function="my_margin_loss",
    reference=reward.margin_bt_loss, cases=_margin_loss_cases, points=2, gradients=(0, 1)))
PAIRWISE_ACCURACY = register(Exercise(
    id="01.6", title="pairwise accuracy", function="my_pairwise_accuracy",
    reference=reward.pairwise_accuracy_of_rewards, cases=_pairwise_accuracy_cases, points=1))


def _mean_over_real_tokens(hidden, mask):
    weights = mask[..., None].to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1)


def _last_real(mask):
    return (mask.long() * torch.arange(mask.shape[1])).amax(-1)


def _scores(states, mean, std, weight, bias):
    return ((states - mean) / std * weight).sum(-1) + bias


def _gate_input_detached(h, m, s, w, b, V):  # right values; the gate's input t no longer trains w, b or V's input
    t = _scores(h, m, s, w, b)
    return (torch.sigmoid(t.detach() @ V.T) * t).sum(-1)


def _gates_detached(h, m, s, w, b, V):  # right values; V gets no gradient at all
    t = _scores(h, m, s, w, b)
    return (torch.sigmoid(t @ V.T).detach() * t).sum(-1)


# Answers a checker must reject (tests/test_exercises.py): each is a mistake a student makes. An entry is the
# answer, or (answer, a regular expression the checker's message must match: rejected for the right reason).
WRONG_ANSWERS = {
    "01.1": [
        lambda hidden, mask: hidden[:, -1],  # the last column: a pad under right padding
        lambda hidden, mask: hidden[torch.arange(len(hidden)), mask.sum(1) - 1],  # right padding only
        _mean_over_real_tokens,  # mean pooling, not the end token
        # gather without the squeeze: (b, 1, d), the right values in the wrong shape
        (lambda hidden, mask: hidden.gather(1, _last_real(mask)[:, None, None].expand(-1, 1, hidden.shape[-1])),
         r"expected a tensor of shape \(2, 2\), got shape \(2, 1, 2\).*squeeze"),
        lambda hidden, mask: hidden[torch.arange(len(hidden)), mask.long().argmax(1)],  # the first real token
        lambda hidden, mask: hidden[torch.arange(len(hidden)), _last_real(mask) - 1],  # off by one
    ],
    "01.2": [
        lambda y, s: float(np.mean(s[y == 1][:, None] > s[y == 0][None, :])),  # ties count 0, not 1/2
        lambda y, s: float(np.mean((s > 0.5) == y)),  # accuracy at 0.5, not AUROC
        lambda y, s: float(np.mean(s[y == 0][:, None] > s[y == 1][None, :])
                           + 0.5 * np.mean(s[y == 0][:, None] == s[y == 1][None, :])),  # labels swapped
        # a 0-d tensor, not a number
        (lambda y, s: torch.tensor(roc_auc_score(y, s)), r"expected a number .*got a tensor"),
    ],
    "01.3": [
        lambda x: (x.mean(0), x.std(0, correction=0).clamp(min=1e-4)),  # n, not n - 1
        lambda x: (x.mean(0), x.std(0)),  # no floor: s = 0 divides by zero
        lambda x: (x.mean(0), x.std(0) + 1e-4),  # shifts every s, not only those below the floor
        lambda x: (x.mean(-1), x.std(-1).clamp(min=1e-4)),  # over features, not over rows
        (lambda x: (x.mean(0, keepdim=True), x.std(0, keepdim=True).clamp(min=1e-4)),  # keepdim: (1, L, d)
         r"item 0: expected a tensor of shape \(1, 2\), got shape \(1, 1, 2\)"),
        lambda x: (x.mean(0), x.var(0).clamp(min=1e-4)),  # the variance, not the standard deviation
    ],
    "01.4": [
        lambda h, m, s, w, b, V: (torch.sigmoid(_scores(h, m, s, w, b) @ V) * _scores(h, m, s, w, b)).sum(-1),  # V^T t
        lambda h, m, s, w, b, V: (torch.softmax(_scores(h, m, s, w, b) @ V.T, -1) * _scores(h, m, s, w, b)).sum(-1),
        lambda h, m, s, w, b, V: (torch.sigmoid(_scores(h, 0, 1, w, b) @ V.T) * _scores(h, 0, 1, w, b)).sum(-1),  # raw h
        lambda h, m, s, w, b, V: torch.sigmoid(_scores(h, m, s, w, b) @ V.T).sum(-1),  # the gates alone
        (_gate_input_detached, r"gradient with respect to `h` differs"),
        (_gates_detached, r"gradient with respect to `h` differs"),
        (lambda h, m, s, w, b, V: (torch.sigmoid(_scores(h, m, s, w, b) @ V.T)  # keepdim: (n, 1)
                                   * _scores(h, m, s, w, b)).sum(-1, keepdim=True), r"shape \(1,\), got shape \(1, 1\)"),
        lambda h, m, s, w, b, V: (torch.sigmoid(_scores(h, m, s, w, b) @ V.T) * _scores(h, m, s, w, b)).mean(-1),  # mean
    ],
    "01.5": [
        lambda c, r, m: -torch.log(torch.sigmoid(c - r - m)).mean(),  # unstable: inf at x = -101
        lambda c, r, m: -torch.nn.functional.logsigmoid(c - r).mean(),  # forgets the margin
        lambda c, r, m: -torch.nn.functional.logsigmoid(c - r - m).sum(),  # sum, not mean
        lambda c, r, m: -torch.nn.functional.logsigmoid(r - c - m).mean(),  # sign flipped: rewards the rejected
        lambda c, r, m: -torch.nn.functional.logsigmoid(c - r + m).mean(),  # the margin added
        (lambda c, r, m: (-torch.nn.functional.logsigmoid(c - r - m).mean()).item(), r"got a float.*\.item\(\)"),
        (lambda c, r, m: -torch.nn.functional.logsigmoid(c - r - m).mean().detach(), r"carry no gradient"),
        (lambda c, r, m: torch.tensor(float(-torch.nn.functional.logsigmoid(c - r - m).mean())), r"carry no gradient"),
    ],
    "01.6": [
        lambda c, r: float(np.mean(c >= r)) if len(c) else float("nan"),  # a tie counted as a win
        lambda c, r: float(np.mean((c > r) + 0.5 * (c == r))) if len(c) else float("nan"),  # a tie as half
        lambda c, r: float(np.sum(c > r) / max(len(c), 1)),  # 0 for no pairs
        lambda c, r: float(np.mean(c < r)) if len(c) else float("nan"),  # backwards
        lambda c, r: float(np.sum(c > r)) if len(c) else float("nan"),  # a count, not a share
    ],
}
