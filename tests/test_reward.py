import math

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score

from reprank.method import reward


def synthetic_states(n=200, layers=3, d=8, signal_layer=1, seed=0):
    """Unsafe examples differ from safe ones only along one direction of one layer."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, layers, d)).astype(np.float32)
    y = rng.integers(0, 2, size=n)
    x[:, signal_layer, 0] += 3.0 * y
    return x, y


def test_probes_find_the_layer_that_knows():
    x, y = synthetic_states()
    result = reward.probe_layers(x[:150], y[:150], x[150:], y[150:], layers=[1, 2, 3], progress=False)
    by_layer = result.set_index("layer").auroc
    assert by_layer[2] > 0.9
    assert by_layer[1] < 0.75 and by_layer[3] < 0.75


def test_probes_need_both_classes():
    x, y = synthetic_states()
    with pytest.raises(ValueError, match="both safe and unsafe"):
        reward.probe_layers(x, np.zeros_like(y), x, y, layers=[1, 2, 3], progress=False)


def test_margin_loss_matches_the_formula():
    c, r = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0])
    expected = -(math.log(1 / (1 + math.exp(-1.0))) + math.log(1 / (1 + math.exp(1.0)))) / 2
    assert reward.margin_bt_loss(c, r).item() == pytest.approx(expected, rel=1e-6)


def test_hybrid_rm_forward_is_the_gated_sum():
    rm = reward.HybridRewardModel(n_layers=3, hidden_size=4)
    torch.manual_seed(0)
    with torch.no_grad():
        rm.probe_weight.normal_()
        rm.probe_bias.normal_()
        rm.gate.weight.normal_()
    h = torch.randn(5, 3, 4)
    t = (h * rm.probe_weight).sum(-1) + rm.probe_bias
    expected = (torch.sigmoid(t @ rm.gate.weight.T) * t).sum(-1)
    torch.testing.assert_close(rm(h), expected)
    assert sum(p.numel() for p in rm.parameters()) == 3 * (4 + 1) + 3 * 3


def pair_data(seed=0):
    safe, _ = synthetic_states(n=120, seed=seed)
    unsafe = safe.copy()
    unsafe[:, 1, 0] += 3.0  # the rejected response of each pair carries the "unsafe" direction
    return safe, unsafe


def test_hybrid_rm_learns_pairs_and_is_deterministic():
    chosen, rejected = pair_data()
    kwargs = dict(epochs=15, batch_size=16, seed=3, progress=False)
    a = reward.train_hybrid_reward_model(chosen[:90], rejected[:90], chosen[90:], rejected[90:], **kwargs)
    b = reward.train_hybrid_reward_model(chosen[:90], rejected[:90], chosen[90:], rejected[90:], **kwargs)
    assert reward.pairwise_accuracy(a.model, chosen[90:], rejected[90:]) > 0.9
    assert list(a.history.columns) == ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy"]
    assert a.history.train_loss.iloc[-1] < a.history.train_loss.iloc[0]
    for p, q in zip(a.model.state_dict().values(), b.model.state_dict().values()):
        assert torch.equal(p, q)


def test_hybrid_rm_save_load_roundtrip_and_no_overwrite(tmp_path):
    chosen, rejected = pair_data()
    rm = reward.train_hybrid_reward_model(chosen[:90], rejected[:90], chosen[90:], rejected[90:], epochs=2,
                                          layers=[4, 5, 6], progress=False).model
    path = rm.save(tmp_path / "rm.pt", model_id="test")
    loaded = reward.HybridRewardModel.load(path)
    assert loaded.layers == [4, 5, 6] and loaded.metadata["model_id"] == "test"
    x = torch.as_tensor(chosen[:5])
    torch.testing.assert_close(loaded(x), rm(x))
    with pytest.raises(FileExistsError, match="never overwritten"):
        rm.save(path)


def test_hybrid_rm_rejects_bad_shapes():
    chosen, rejected = pair_data()
    with pytest.raises(ValueError, match="n_layers, d"):
        reward.train_hybrid_reward_model(chosen[:, 0], rejected[:, 0], chosen, rejected, progress=False)


def test_feature_statistics_use_n_minus_1_and_floor_a_constant_feature():
    states = torch.randn(6, 2, 3)
    states[:, 1, 2] = 4.0
    mean, std = reward.feature_statistics(states)
    torch.testing.assert_close(mean, states.mean(0))
    assert std[1, 2] == reward.MIN_STD
    torch.testing.assert_close(std[0], states[:, 0].std(0, correction=1))


def test_hybrid_reward_is_the_models_forward_and_gates_by_rows_of_v():
    rm = reward.HybridRewardModel(n_layers=3, hidden_size=4)
    torch.manual_seed(1)
    rm.fit_normalization(torch.randn(10, 3, 4) * 5 + 2)
    with torch.no_grad():
        rm.probe_weight.normal_()
        rm.gate.weight.normal_()
    h = torch.randn(5, 3, 4)
    args = (h, rm.feature_mean, rm.feature_std, rm.probe_weight, rm.probe_bias, rm.gate.weight)
    torch.testing.assert_close(rm(h), reward.hybrid_reward(*args))
    t = reward.layer_scores(*args[:5])
    expected = sum(torch.sigmoid(sum(rm.gate.weight[l, k] * t[:, k] for k in range(3))) * t[:, l] for l in range(3))
    torch.testing.assert_close(reward.hybrid_reward(*args), expected)


def test_training_takes_the_students_forward_statistics_and_loss():
    chosen, rejected = pair_data()
    kwargs = dict(epochs=3, batch_size=16, seed=0, progress=False)
    calls = {"forward": 0, "statistics": 0}

    def forward(*args):
        calls["forward"] += 1
        return reward.hybrid_reward(*args)

    def statistics(states):
        calls["statistics"] += 1
        return reward.feature_statistics(states)

    plain = reward.train_hybrid_reward_model(chosen[:90], rejected[:90], chosen[90:], rejected[90:], **kwargs)
    plugged = reward.train_hybrid_reward_model(chosen[:90], rejected[:90], chosen[90:], rejected[90:], **kwargs,
                                               forward_fn=forward, statistics_fn=statistics,
                                               loss_fn=reward.margin_bt_loss)
    assert calls["statistics"] == 1 and calls["forward"] > 0
    assert plugged.model.forward_fn is forward
    for p, q in zip(plain.model.state_dict().values(), plugged.model.state_dict().values()):
        torch.testing.assert_close(p, q)


def test_pairwise_accuracy_counts_a_tie_as_a_miss_and_has_none_without_pairs():
    assert reward.pairwise_accuracy_of_rewards(np.array([1.0, 2.0, 0.0]), np.array([1.0, 1.0, 3.0])) == pytest.approx(1 / 3)
    assert reward.pairwise_accuracy_of_rewards(torch.tensor([2.0]), torch.tensor([1.0])) == 1.0
    assert math.isnan(reward.pairwise_accuracy_of_rewards(np.zeros(0), np.zeros(0)))


def test_probe_layers_take_an_auroc_function_and_fit_probe_is_their_probe():
    x, y = synthetic_states()
    seen = []

    def auroc(labels, scores):
        seen.append(len(scores))
        return 0.25

    result = reward.probe_layers(x[:150], y[:150], x[150:], y[150:], layers=[1, 2, 3], progress=False, auroc_fn=auroc)
    assert list(result.auroc) == [0.25] * 3 and seen == [50] * 3
    probe = reward.fit_probe(x[:150, 1], y[:150])
    accuracy = accuracy_score(y[150:], probe.decision_function(x[150:, 1]) > 0)
    assert accuracy == pytest.approx(reward.probe_layers(x[:150], y[:150], x[150:], y[150:], layers=[1, 2, 3],
                                                         progress=False).accuracy[1])
