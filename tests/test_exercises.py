"""The exercise checkers accept the reference answers and reject wrong or unfinished ones."""

import numpy as np
import torch

from reprank import align, confidence, exercises, reward


def unfinished(*args):
    raise NotImplementedError


def test_margin_loss_checker():
    assert exercises.check_margin_loss(reward.margin_bt_loss)
    assert not exercises.check_margin_loss(lambda c, r, m: -torch.nn.functional.logsigmoid(c - r).mean())
    assert not exercises.check_margin_loss(unfinished)


def test_paper_confidence_checker():
    assert exercises.check_paper_confidence(lambda c, r, a: confidence.paper_batch_confidence(c, r, alpha=a))
    no_floor = lambda c, r, a: float(torch.sigmoid(a * (torch.sigmoid(c).mean() - torch.sigmoid(r).mean())))
    assert not exercises.check_paper_confidence(no_floor)
    assert not exercises.check_paper_confidence(unfinished)


def test_top_bottom_checker():
    def reference(rewards, m):
        order = np.argsort(-rewards, kind="stable")
        half = min(m, len(rewards) // 2)
        return [(int(order[i]), int(order[i + half])) for i in range(half)]

    def outside_in(rewards, m):  # i-th best against i-th worst: not how the authors pair
        order = np.argsort(-rewards, kind="stable")
        return [(int(order[i]), int(order[-1 - i])) for i in range(min(m, len(rewards) // 2))]

    assert exercises.check_top_bottom_pairs(reference)
    assert not exercises.check_top_bottom_pairs(outside_in)
    assert not exercises.check_top_bottom_pairs(lambda rewards, m: [(int(np.argmax(rewards)), int(np.argmin(rewards)))])
    assert not exercises.check_top_bottom_pairs(unfinished)


def test_conservative_loss_checker():
    assert exercises.check_conservative_loss(align.conservative_dpo_loss)
    plain_dpo = lambda z, p, beta: -torch.nn.functional.logsigmoid(beta * z).mean()  # ignores p
    assert not exercises.check_conservative_loss(plain_dpo)
    weighted = lambda z, p, beta: (-p * torch.nn.functional.logsigmoid(beta * z)).mean()  # drops the (1-p) term
    assert not exercises.check_conservative_loss(weighted)
    assert not exercises.check_conservative_loss(unfinished)


def test_margin_loss_checker_rejects_an_unstable_log_sigmoid():
    stable = lambda c, r, m: -torch.nn.functional.logsigmoid(c - r - m).mean()
    naive = lambda c, r, m: -torch.log(torch.sigmoid(c - r - m)).mean()  # inf at a margin of -101
    assert exercises.check_margin_loss(stable)
    assert not exercises.check_margin_loss(naive)
