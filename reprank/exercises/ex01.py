"""Notebook 01's exercises: probing safety representations and the hybrid reward model."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from .. import extraction, reward
from . import Case, Exercise, register


def _end_token_cases() -> list[Case]:
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(3, 5, 4, generator=generator)
    mask = lambda rows: torch.tensor(rows)
    return [
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
        Case("40 rows, scores rounded so that many tie", (labels, np.round(rng.random(40) + 0.3 * labels, 1))),
        Case("every score equal, as a probe on the embedding layer gives: 0.5", (labels, np.full(40, 0.3))),
        Case("perfect separation: 1.0", (np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9]))),
        Case("ranked backwards: 0.0", (np.array([0, 0, 1, 1]), np.array([0.9, 0.8, 0.2, 0.1]))),
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
    return [
        Case("20 random rows, 3 layers", (states,)),
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
    return [
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
    return random_pairs + [
        # log(sigmoid(-101)) underflows to -inf in float32: the loss must be computed stably.
        Case("a pair ranked the wrong way by 100 (x = -101)", (torch.tensor([-50.0]), torch.tensor([50.0]), 1.0)),
        Case("a tie (R_c = R_r): the loss is -log sigmoid(-margin)", (torch.tensor([0.0, 0.0]), torch.tensor([0.0, 0.0]), 1.0)),
    ]


def _pairwise_accuracy_cases() -> list[Case]:
    rng = np.random.default_rng(0)
    return [
        Case("20 random pairs", (rng.normal(size=20), rng.normal(size=20))),
        Case("ties (R_c = R_r) count as misses", (np.array([1.0, 2.0, 0.5, 3.0]), np.array([1.0, 1.0, 0.5, 4.0]))),
        Case("a constant reward: every pair a tie, accuracy 0", (np.zeros(6), np.zeros(6))),
        Case("every pair ranked right: 1.0", (np.array([3.0, 2.0]), np.array([-1.0, 1.5]))),
        Case("an empty batch: nan (no pairs, no accuracy)", (np.zeros(0), np.zeros(0))),
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
    reference=reward.hybrid_reward, cases=_hybrid_reward_cases, atol=1e-4, points=2))
MARGIN_LOSS = register(Exercise(
    id="01.5", title="the margin loss", function="my_margin_loss",
    reference=reward.margin_bt_loss, cases=_margin_loss_cases, points=2))
PAIRWISE_ACCURACY = register(Exercise(
    id="01.6", title="pairwise accuracy", function="my_pairwise_accuracy",
    reference=reward.pairwise_accuracy_of_rewards, cases=_pairwise_accuracy_cases, points=1))


def _mean_over_real_tokens(hidden, mask):
    weights = mask[..., None].to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1)


def _scores(states, mean, std, weight, bias):
    return ((states - mean) / std * weight).sum(-1) + bias


# Answers a checker must reject (tests/test_exercises.py): each is a mistake a student makes.
WRONG_ANSWERS = {
    "01.1": [
        lambda hidden, mask: hidden[:, -1],  # the last column: a pad under right padding
        lambda hidden, mask: hidden[torch.arange(len(hidden)), mask.sum(1) - 1],  # right padding only
        _mean_over_real_tokens,  # mean pooling, not the end token
    ],
    "01.2": [
        lambda y, s: float(np.mean(s[y == 1][:, None] > s[y == 0][None, :])),  # ties count 0, not 1/2
        lambda y, s: float(np.mean((s > 0.5) == y)),  # accuracy at 0.5, not AUROC
        lambda y, s: float(np.mean(s[y == 0][:, None] > s[y == 1][None, :])
                           + 0.5 * np.mean(s[y == 0][:, None] == s[y == 1][None, :])),  # labels swapped
    ],
    "01.3": [
        lambda x: (x.mean(0), x.std(0, correction=0).clamp(min=1e-4)),  # n, not n - 1
        lambda x: (x.mean(0), x.std(0)),  # no floor: s = 0 divides by zero
        lambda x: (x.mean(0), x.std(0) + 1e-4),  # shifts every s, not only those below the floor
        lambda x: (x.mean(-1), x.std(-1).clamp(min=1e-4)),  # over features, not over rows
    ],
    "01.4": [
        lambda h, m, s, w, b, V: (torch.sigmoid(_scores(h, m, s, w, b) @ V) * _scores(h, m, s, w, b)).sum(-1),  # V^T t
        lambda h, m, s, w, b, V: (torch.softmax(_scores(h, m, s, w, b) @ V.T, -1) * _scores(h, m, s, w, b)).sum(-1),
        lambda h, m, s, w, b, V: (torch.sigmoid(_scores(h, 0, 1, w, b) @ V.T) * _scores(h, 0, 1, w, b)).sum(-1),  # raw h
        lambda h, m, s, w, b, V: torch.sigmoid(_scores(h, m, s, w, b) @ V.T).sum(-1),  # the gates alone
    ],
    "01.5": [
        lambda c, r, m: -torch.log(torch.sigmoid(c - r - m)).mean(),  # unstable: inf at x = -101
        lambda c, r, m: -torch.nn.functional.logsigmoid(c - r).mean(),  # forgets the margin
        lambda c, r, m: -torch.nn.functional.logsigmoid(c - r - m).sum(),  # sum, not mean
    ],
    "01.6": [
        lambda c, r: float(np.mean(c >= r)) if len(c) else float("nan"),  # a tie counted as a win
        lambda c, r: float(np.mean((c > r) + 0.5 * (c == r))) if len(c) else float("nan"),  # a tie as half
        lambda c, r: float(np.sum(c > r) / max(len(c), 1)),  # 0 for no pairs
        lambda c, r: float(np.mean(c < r)) if len(c) else float("nan"),  # backwards
    ],
}
