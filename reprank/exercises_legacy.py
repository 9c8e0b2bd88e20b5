"""Checkers for the notebooks' exercises (the ARENA pattern): call one with your function; it says whether
your answer matches the reference implementation in reprank, and if not, on which input it differs."""

from __future__ import annotations

import torch

from . import align, reward


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




def check_conservative_loss(fn) -> bool:
    """``fn(z, p, beta)`` -> mean over pairs of ``-p log sigmoid(beta z) - (1 - p) log sigmoid(-beta z)``."""
    generator = torch.Generator().manual_seed(0)
    for beta, p_kind in ((0.1, "ones"), (0.5, "random"), (1.0, "half")):
        z = torch.randn(12, generator=generator) * 5
        p = {"ones": torch.ones(12), "half": torch.full((12,), 0.5),
             "random": 0.5 + 0.5 * torch.rand(12, generator=generator)}[p_kind]
        try:
            got = fn(z.clone(), p.clone(), beta)
        except NotImplementedError:
            return _report("conservative DPO loss", False, "raises NotImplementedError: fill in the function")
        expected = align.conservative_dpo_loss(z, p, beta)
        if got is None or not torch.allclose(torch.as_tensor(got, dtype=expected.dtype), expected, atol=1e-5):
            return _report("conservative DPO loss", False,
                           f"beta={beta}, p {p_kind}: expected {expected.item():.4f}, got {got}")
    return _report("conservative DPO loss", True)
