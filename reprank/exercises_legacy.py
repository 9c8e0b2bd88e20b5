"""Checkers for the notebooks' exercises (the ARENA pattern): call one with your function; it says whether
your answer matches the reference implementation in reprank, and if not, on which input it differs."""

from __future__ import annotations

import numpy as np
import torch

from . import confidence, rerank, reward


def _report(name: str, ok: bool, detail: str = "") -> bool:
    print(f"{name}: {'correct' if ok else 'not yet'}{' - ' + detail if detail and not ok else ''}")
    return ok


def _unused_check_margin_loss(fn) -> bool:
    """``fn(chosen_reward, rejected_reward, margin)`` -> mean of ``-log sigmoid(R_c - R_r - margin)``."""
    generator = torch.Generator().manual_seed(0)
    cases = [(torch.randn(16, generator=generator) * 3, torch.randn(16, generator=generator) * 3, m)
             for m in (0.0, 1.0, 2.5)]
    # Edge cases: a pair ranked the wrong way by 100 (log(sigmoid(-101)) underflows to -inf in float32 unless
    # computed stably), and a tie.
    cases += [(torch.tensor([-50.0, 0.0]), torch.tensor([50.0, 0.0]), 1.0)]
    for c, r, margin in cases:
        try:
            got = fn(c, r, margin)
        except NotImplementedError:
            return _report("margin loss", False, "raises NotImplementedError: fill in the function")
        expected = reward.margin_bt_loss(c, r, margin)
        if got is None or not torch.allclose(torch.as_tensor(got, dtype=expected.dtype), expected, atol=1e-5):
            return _report("margin loss", False, f"margin={margin}: expected {expected.item():.4f}, got {got}")
    return _report("margin loss", True)


def check_paper_confidence(fn) -> bool:
    """``fn(chosen_scores, rejected_scores, alpha)`` -> the paper's batch confidence (a number)."""
    rng = np.random.default_rng(0)
    cases = [(rng.normal(2, 1, 8), rng.normal(-2, 1, 8)), (rng.normal(-2, 1, 8), rng.normal(2, 1, 8)),
             (rng.normal(0, 1, 8), rng.normal(0, 1, 8))]
    for i, (c, r) in enumerate(cases):
        try:
            got = fn(torch.as_tensor(c), torch.as_tensor(r), 7.5)
        except NotImplementedError:
            return _report("paper confidence", False, "raises NotImplementedError: fill in the function")
        expected = float(confidence.paper_batch_confidence(torch.as_tensor(c), torch.as_tensor(r), alpha=7.5))
        if got is None or abs(float(got) - expected) > 1e-4:
            return _report("paper confidence", False, f"case {i}: expected {expected:.4f}, got {got}")
    return _report("paper confidence", True)


def check_top_bottom_pairs(fn) -> bool:
    """``fn(rewards, m)`` -> list of (chosen_index, rejected_index): rank i vs rank i + m, i < m."""
    import pandas as pd

    rng = np.random.default_rng(0)
    for n, m in ((8, 4), (5, 2), (6, 1), (3, 4)):
        rewards = rng.normal(size=n)
        try:
            got = fn(rewards.copy(), m)
        except NotImplementedError:
            return _report("top-bottom pairs", False, "raises NotImplementedError: fill in the function")
        frame = pd.DataFrame({"prompt": "p", "response": [str(i) for i in range(n)], "origin": "x", "reward": rewards})
        expected = [(int(p.chosen), int(p.rejected)) for p in rerank.build_ranked_pairs(frame, m=m).itertuples()]
        if got is None or [tuple(map(int, pair)) for pair in got] != expected:
            return _report("top-bottom pairs", False, f"n={n}, m={m}: expected {expected}, got {got}")
    return _report("top-bottom pairs", True)
