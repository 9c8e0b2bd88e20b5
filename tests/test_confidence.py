import math

import numpy as np
import pytest
import torch

from reprank.method import confidence


def test_paper_confidence_equal_scores_is_neutral():
    s = torch.tensor([0.3, -1.0, 2.0])
    p = confidence.paper_batch_confidence(s, s)
    assert isinstance(p, torch.Tensor) and p.ndim == 0 and p.dtype == torch.float32
    assert p.item() == pytest.approx(0.5)


def test_paper_confidence_by_hand_and_never_flips():
    sig = lambda x: 1 / (1 + math.exp(-x))
    chosen, rejected = np.array([1.0, 2.0]), np.array([-1.0, 0.0])
    c_m, r_m = (sig(1) + sig(2)) / 2, (sig(-1) + sig(0)) / 2
    expected = sig(7.5 * (c_m - r_m))
    assert confidence.paper_batch_confidence(chosen, rejected).item() == pytest.approx(expected, rel=1e-6)
    # Reward strongly disagrees with the labels: clamped to exactly 0.5, not below.
    assert confidence.paper_batch_confidence([-10.0], [10.0]).item() == 0.5
    # Strong agreement: close to 1 (sigmoid(7.5 * ~1)).
    assert confidence.paper_batch_confidence([10.0], [-10.0]).item() > 0.999


def test_batched_confidence_gives_each_pair_its_batch_value():
    rng = np.random.default_rng(0)
    chosen, rejected = rng.normal(size=10), rng.normal(size=10)
    p = confidence.batched_paper_confidence(chosen, rejected, batch_size=4, seed=3)
    assert p.shape == (10,) and (p >= 0.5).all()
    order = torch.randperm(10, generator=torch.Generator().manual_seed(3)).numpy()
    for batch in (order[:4], order[4:8], order[8:]):
        expected = confidence.paper_batch_confidence(chosen[batch], rejected[batch]).item()
        np.testing.assert_allclose(p[batch], expected, rtol=1e-6)
    # batch_size=1 is the per-pair formula, independent of the shuffle.
    single = confidence.batched_paper_confidence(chosen, rejected, batch_size=1, seed=7)
    per_pair = [confidence.paper_batch_confidence(chosen[i : i + 1], rejected[i : i + 1]).item() for i in range(10)]
    np.testing.assert_allclose(single, per_pair, rtol=1e-6)


def test_pair_confidence_keeps_the_input_kind_and_can_go_below_half():
    p_np = confidence.pair_confidence(np.array([0.0, 2.0]), np.array([1.0, 0.0]), tau=2.0)
    assert isinstance(p_np, np.ndarray)
    np.testing.assert_allclose(p_np, [1 / (1 + math.exp(0.5)), 1 / (1 + math.exp(-1))], rtol=1e-6)
    assert isinstance(confidence.pair_confidence(torch.zeros(2), torch.ones(2), tau=1.0), torch.Tensor)


def test_fit_temperature_recovers_the_simulating_tau():
    rng = np.random.default_rng(0)
    tau = 1.7
    chosen, rejected = rng.normal(scale=3, size=4000), rng.normal(scale=3, size=4000)
    correct = rng.random(4000) < 1 / (1 + np.exp(-(chosen - rejected) / tau))
    assert confidence.fit_temperature(chosen, rejected, correct) == pytest.approx(tau, rel=0.2)
    # All labels correct and all margins positive: still a finite tau, at the lower bound.
    fitted = confidence.fit_temperature([2.0, 3.0], [0.0, 0.0], [1, 1], bounds=(0.1, 10.0))
    assert 0.1 <= fitted < 0.11


def test_fit_temperature_rejects_bad_input():
    with pytest.raises(ValueError, match="at least one"):
        confidence.fit_temperature([], [], [])
    with pytest.raises(ValueError, match="pair up"):
        confidence.fit_temperature([1.0, 2.0], [0.0, 0.0], [1])


def test_ece_is_zero_when_calibrated_and_known_by_hand():
    # Four at 0.25 with one right, four at 0.75 with three right: accuracy equals confidence per bin.
    conf = [0.25] * 4 + [0.75] * 4
    assert confidence.expected_calibration_error(conf, [1, 0, 0, 0, 1, 1, 1, 0]) == pytest.approx(0.0)
    # All 0.9 but only half right: gap 0.4 in the one bin. Plus 0.1 with none right: gap 0.1.
    conf = [0.9, 0.9, 0.1, 0.1]
    assert confidence.expected_calibration_error(conf, [1, 0, 0, 0]) == pytest.approx((2 * 0.4 + 2 * 0.1) / 4)
    table = confidence.reliability_table(conf, [1, 0, 0, 0])
    assert list(table["count"]) == [2, 2] and list(table["accuracy"]) == [0.0, 0.5]
    assert table["bin_lower"].tolist() == pytest.approx([0.1, 0.9])


def test_flip_pairs_exact_count_and_deterministic():
    mask = confidence.flip_pairs(101, 0.2, seed=1)
    assert mask.dtype == bool and mask.sum() == 20
    assert (mask == confidence.flip_pairs(101, 0.2, seed=1)).all()
    assert (mask != confidence.flip_pairs(101, 0.2, seed=2)).any()


def test_detection_auroc():
    flipped = confidence.flip_pairs(50, 0.3, seed=0)
    conf = np.where(flipped, 0.2, 0.9)
    assert confidence.detection_auroc(conf, flipped) == 1.0
    with pytest.raises(ValueError, match="both"):
        confidence.detection_auroc(conf, np.zeros(50, dtype=bool))


def test_fit_alpha_makes_the_batch_confidence_a_probability_of_a_right_label():
    rng = np.random.default_rng(0)
    n = 400
    chosen, rejected = rng.normal(2, 1, n), rng.normal(-2, 1, n)  # a reward that agrees with every true label
    flipped = confidence.flip_pairs(n, 0.25, seed=1)
    stored_c, stored_r = np.where(flipped, rejected, chosen), np.where(flipped, chosen, rejected)
    alpha = confidence.fit_alpha(stored_c, stored_r, ~flipped, batch_size=4)
    p = confidence.batched_paper_confidence(stored_c, stored_r, 4, alpha=alpha)
    # Calibrated on average: the mean p matches the share of right labels, far below the paper's alpha = 7.5.
    assert abs(p.mean() - (1 - flipped.mean())) < 0.05
    assert 0.5 < alpha < 7.5
    assert confidence.batched_paper_confidence(stored_c, stored_r, 4, alpha=7.5).mean() > p.mean() + 0.05
    # No wrong labels: the likelihood only grows with alpha, so the fit runs to the bound it is given.
    assert confidence.fit_alpha(chosen, rejected, np.ones(n), batch_size=4, bounds=(0.1, 50)) > 49
    with pytest.raises(ValueError, match="pair up"):
        confidence.fit_alpha(chosen, rejected, np.ones(n - 1), batch_size=4)


def test_label_nll_is_what_fit_temperature_minimises():
    sig = lambda x: 1 / (1 + math.exp(-x))
    # By hand: a right label with margin 2 and a wrong one with margin 1, tau = 2.
    expected = -(math.log(sig(1.0)) + math.log(1 - sig(0.5))) / 2
    assert confidence.label_nll([2.0, 1.0], [0.0, 0.0], [1, 0], tau=2.0) == pytest.approx(expected, rel=1e-9)
    # A tie costs log 2 whatever tau; a confident wrong label a large finite number, not inf.
    assert confidence.label_nll([0.0], [0.0], [0], tau=0.3) == pytest.approx(math.log(2))
    assert confidence.label_nll([1000.0], [0.0], [0], tau=0.05) == pytest.approx(20000.0)
    rng = np.random.default_rng(1)
    chosen, rejected = rng.normal(scale=3, size=300), rng.normal(scale=3, size=300)
    correct = rng.random(300) < 1 / (1 + np.exp(-(chosen - rejected) / 2.0))
    tau = confidence.fit_temperature(chosen, rejected, correct)
    at_fit = confidence.label_nll(chosen, rejected, correct, tau)
    assert at_fit <= min(confidence.label_nll(chosen, rejected, correct, tau * f) for f in (0.9, 1.1))
    with pytest.raises(ValueError, match="positive"):
        confidence.label_nll([1.0], [0.0], [1], tau=0.0)


def test_floor_share_counts_batches_not_pairs():
    # Ten pairs in batches of 4, 4 and 2: the batch of two sits at the floor (1 of 3 batches, 2 of 10 pairs).
    batch = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
    p = np.array([0.9] * 4 + [0.7] * 4 + [0.5] * 2)
    assert confidence.floor_share(p, batch) == pytest.approx(1 / 3)
    # Just above the floor is not at it; batches of one are pairs.
    assert confidence.floor_share([0.5, 0.5000001, 1.0], np.arange(3)) == pytest.approx(1 / 3)
    # With alpha > 0 the floor binds where the gap is <= 0, whatever alpha.
    rng = np.random.default_rng(0)
    chosen, rejected = rng.normal(size=40), rng.normal(size=40)
    ids = confidence.batch_ids(40, 4, seed=0)
    shares = {confidence.floor_share(confidence.batched_paper_confidence(chosen, rejected, 4, alpha=a), ids)
              for a in (0.5, 7.5, 200.0)}
    assert len(shares) == 1 and 0 < shares.pop() < 1
    with pytest.raises(ValueError, match="at least one"):
        confidence.floor_share([], [])


def test_batched_confidence_takes_the_batch_formula_as_an_argument():
    rng = np.random.default_rng(2)
    chosen, rejected = rng.normal(size=9), rng.normal(size=9)
    as_float = lambda c, r, alpha: max(float(torch.sigmoid(alpha * (torch.sigmoid(c).mean() - torch.sigmoid(r).mean()))), 0.5)
    np.testing.assert_allclose(confidence.batched_paper_confidence(chosen, rejected, 4, batch_confidence=as_float),
                               confidence.batched_paper_confidence(chosen, rejected, 4), rtol=1e-12)
