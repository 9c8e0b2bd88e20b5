"""Notebook 01's exercises: probing safety representations and the hybrid reward model."""

from __future__ import annotations

import torch

from .. import reward
from . import Case, Exercise, register


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


MARGIN_LOSS = register(Exercise(
    id="01.2", title="the margin loss", function="my_margin_loss",
    reference=reward.margin_bt_loss, cases=_margin_loss_cases, points=2))

# Answers a checker must reject (tests/test_exercises.py): each is a mistake a student makes.
WRONG_ANSWERS = {
    "01.2": [
        lambda c, r, m: -torch.log(torch.sigmoid(c - r - m)).mean(),  # unstable: inf at x = -101
        lambda c, r, m: -torch.nn.functional.logsigmoid(c - r).mean(),  # forgets the margin
        lambda c, r, m: -torch.nn.functional.logsigmoid(c - r - m).sum(),  # sum, not mean
    ],
}
