"""Label noise (reprank.studies.noise): stratified, seeded, reward-blind flips, and the windowed detection AUROC."""

import datasets
import numpy as np
import pandas as pd
import pytest

from reprank.studies import noise


def reranked(n_harmful=40, n_benign=20):
    rows = []
    for kind, n in (("harmful", n_harmful), ("benign", n_benign)):
        for i in range(n):
            rows.append({"prompt": f"{kind} {i}", "chosen": f"good {kind} {i}", "rejected": f"bad {kind} {i}",
                         "chosen_reward": 1.0 + i, "rejected_reward": -1.0 - i, "chosen_origin": "reference",
                         "rejected_origin": "policy_sample", "confidence": 0.9, "source": f"rerank_{kind}"})
    return pd.DataFrame(rows)


def test_flips_an_exact_share_of_each_source_and_swaps_everything_of_a_side():
    clean = reranked()
    noisy = noise.flip_labels(clean, 0.25, seed=3)
    assert noisy.flipped.dtype == bool and len(noisy) == len(clean)
    assert noisy.groupby("source").flipped.sum().to_dict() == {"rerank_benign": 5, "rerank_harmful": 10}
    f = noisy.flipped.to_numpy()
    assert (noisy.chosen[f] == clean.rejected[f]).all() and (noisy.rejected[f] == clean.chosen[f]).all()
    assert (noisy.chosen_reward[f] == clean.rejected_reward[f]).all()
    assert (noisy.rejected_origin[f] == "reference").all() and (noisy.chosen_origin[~f] == "reference").all()
    np.testing.assert_allclose(noisy.confidence, np.where(f, 0.1, 0.9))  # 1 - p: the new label's probability
    pd.testing.assert_frame_equal(noisy[~f].drop(columns="flipped"), clean[~f])
    assert "flipped" not in clean  # the input is left as it was


def test_flips_are_seeded_and_blind_to_the_reward():
    clean = reranked()
    first = noise.flip_labels(clean, 0.25, seed=0).flipped
    assert (noise.flip_labels(clean, 0.25, seed=0).flipped == first).all()
    assert not (noise.flip_labels(clean, 0.25, seed=1).flipped == first).all()
    # Other rewards, same flips: the choice never reads a reward.
    shuffled = clean.assign(chosen_reward=np.random.default_rng(0).permutation(clean.chosen_reward))
    assert (noise.flip_labels(shuffled, 0.25, seed=0).flipped == first).all()
    # A group's flips do not depend on the other groups.
    harmful_only = clean[clean.source == "rerank_harmful"]
    assert (noise.flip_labels(harmful_only, 0.25, seed=0).flipped.to_numpy()
            == first[clean.source == "rerank_harmful"].to_numpy()).all()


def test_flip_labels_keeps_a_dataset_a_dataset_and_checks_its_input():
    clean = datasets.Dataset.from_pandas(reranked(8, 4), preserve_index=False)
    noisy = noise.flip_labels(clean, 0.5, seed=0)
    assert isinstance(noisy, datasets.Dataset) and sum(noisy["flipped"]) == 6
    with pytest.raises(ValueError, match="already"):
        noise.flip_labels(noisy, 0.25)
    with pytest.raises(ValueError, match="by=None"):
        noise.flip_labels(reranked().drop(columns="source"), 0.25)
    assert noise.flip_labels(reranked().drop(columns="source"), 0.25, by=None).flipped.sum() == 15
    with pytest.raises(ValueError, match="fraction"):
        noise.flip_labels(reranked(), 1.5)


def test_arm_settings_match_smoothing_to_the_noise_rate():
    assert noise.arm_settings("dpo_smoothing", 0.25) == {"method": "dpo_smoothing", "noisy": True, "epsilon": 0.25}
    assert noise.arm_settings("dpo_clean", 0.25) == {"method": "dpo", "noisy": False, "epsilon": None}
    assert noise.arm_settings("paper_pair", 0.25)["method"] == "paper_pair"
    with pytest.raises(ValueError, match="arm must be"):
        noise.arm_settings("dpo", 0.25)
    with pytest.raises(ValueError, match="label_noise"):
        noise.arm_settings("dpo_smoothing", 0.0)


def test_detection_window_pools_batches_until_both_kinds_are_there():
    window = noise.FlipDetectionWindow(batches=2)
    assert window.update([0.9, 0.8], [False, False]) is None  # one kind only
    assert window.update([0.2, 0.7], [True, False]) == 1.0  # the flipped pair has the lowest p of 4
    assert window.update([0.95, 0.1], [False, False]) == pytest.approx(2 / 3)  # first batch left the window
    assert noise.FlipDetectionWindow(1).update([0.5, 0.5], [True, False]) == 0.5  # batch p ties: no ranking
    with pytest.raises(ValueError):
        noise.FlipDetectionWindow(0)
