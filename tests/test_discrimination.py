"""reprank.measure.discrimination and reprank.measure.frontier on hand-made answer tables, against hand-computed numbers."""

import time

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from reprank.measure.discrimination import (  # noqa: E402
    criterion, discrimination_summary, dprime, mcnemar, paired_bootstrap, paired_verdict, plot_hit_false_alarm, rates,
)
from reprank.measure.frontier import (  # noqa: E402
    advantage, envelope, envelope_vertices, frontier_verdict, plot_verdicts_over_seeds, verdicts_over_seeds,
)


def answer_table(arms: dict[str, tuple[list[bool], list[bool]]]) -> pd.DataFrame:
    """One row per (arm, prompt); ``arms[name] = (refused on harmful prompts h0.., refused on benign b0..)``."""
    rows = []
    for arm, (harmful, benign) in arms.items():
        for kind, refusals in [("h", harmful), ("b", benign)]:
            rows += [{"arm": arm, "prompt": f"{kind}{i:03d}", "harmful": kind == "h", "refused": bool(r)}
                     for i, r in enumerate(refusals)]
    return pd.DataFrame(rows)


def first_k(counts: dict[str, tuple[int, int]], n: int = 40) -> pd.DataFrame:
    """Each arm refuses the first k_harmful harmful and the first k_benign benign of n prompts of each kind."""
    return answer_table({arm: ([i < kh for i in range(n)], [i < kb for i in range(n)])
                         for arm, (kh, kb) in counts.items()})


# --- d' and c -------------------------------------------------------------------------------------------------

def test_dprime_without_correction_and_at_large_n():
    assert dprime(0.8413, 0.1587) == pytest.approx(2.0, abs=1e-3)
    assert dprime(0.8413, 0.1587, 10**7, 10**7) == pytest.approx(2.0, abs=1e-3)
    assert dprime(0.5, 0.5) == 0.0


def test_dprime_and_criterion_use_the_log_linear_correction():
    # H = 9/10, F = 3/10 -> 9.5/11 and 3.5/11; z = 1.0968035620935135 and -0.4727891209922674 (scipy norm.ppf)
    assert dprime(0.9, 0.3, 10, 10) == pytest.approx(1.569592683085781, abs=1e-12)
    assert criterion(0.9, 0.3, 10, 10) == pytest.approx(-0.312007220550623, abs=1e-12)
    assert dprime(0.9, 0.3) == pytest.approx(1.8059520782526413, abs=1e-12)  # uncorrected differs


def test_rates_of_zero_and_one_stay_finite():
    assert dprime(1.0, 0.0, 20, 20) == pytest.approx(3.9615047932945577, abs=1e-12)  # 20.5/21 and 0.5/21
    assert np.isinf(dprime(1.0, 0.0))
    table = answer_table({"perfect": ([True] * 20, [False] * 20), "mute": ([False] * 20, [True] * 20)})
    out = rates(table).set_index("arm")
    assert out.loc["perfect", "dprime"] == pytest.approx(3.9615047932945577, abs=1e-12)
    assert out.loc["mute", "dprime"] == pytest.approx(-3.9615047932945577, abs=1e-12)
    assert np.isfinite(out[["dprime", "criterion"]].to_numpy()).all()
    summary = discrimination_summary(table, n_boot=200, seed=0)
    assert np.isfinite(summary[["dprime", "dprime_low", "dprime_high"]].to_numpy()).all()


def test_rates_counts_and_slices():
    table = answer_table({"a": ([1, 1, 1, 0], [1, 0, 0, 0, 0])})
    both = pd.concat([table.assign(judge="phrase"), table.assign(judge="classifier", refused=False)])
    out = rates(both).set_index(["arm", "judge"])
    assert out.loc[("a", "phrase"), ["n_harmful", "n_benign"]].tolist() == [4, 5]
    assert out.loc[("a", "phrase"), "safe_rate"] == 0.75
    assert out.loc[("a", "phrase"), "over_refusal_rate"] == 0.2
    assert out.loc[("a", "classifier"), ["safe_rate", "over_refusal_rate"]].tolist() == [0.0, 0.0]
    assert out.loc[("a", "phrase"), "dprime"] == pytest.approx(dprime(0.75, 0.2, 4, 5))


# --- the paired bootstrap -------------------------------------------------------------------------------------

RNG_TABLE = answer_table({
    "a": (np.random.default_rng(1).random(60) < 0.6, np.random.default_rng(2).random(50) < 0.2),
    "b": (np.random.default_rng(3).random(60) < 0.7, np.random.default_rng(4).random(50) < 0.3),
})


def test_bootstrap_is_deterministic_by_seed():
    first = paired_bootstrap(RNG_TABLE, "dprime", n_boot=300, seed=7)
    assert first.shape == (300, 2) and list(first.columns) == ["a", "b"]
    pd.testing.assert_frame_equal(first, paired_bootstrap(RNG_TABLE, "dprime", n_boot=300, seed=7))
    assert not first.equals(paired_bootstrap(RNG_TABLE, "dprime", n_boot=300, seed=8))


def test_refusing_every_benign_prompt_raises_over_refusal_and_lowers_dprime():
    harmful = [i < 14 for i in range(20)]
    table = answer_table({"A": (harmful, [i < 2 for i in range(20)]), "B": (harmful, [True] * 20)})
    out = discrimination_summary(table, n_boot=1000, seed=0, reference_arm="A").set_index("arm")
    b = out.loc["B"]
    assert b.over_refusal_rate_diff == pytest.approx(0.9)
    assert b.over_refusal_rate_diff_low > 0 and b.over_refusal_rate_differs
    assert b.dprime < out.loc["A", "dprime"] and b.dprime_diff_high < 0 and b.dprime_differs
    assert (b.safe_rate_diff, b.safe_rate_diff_low, b.safe_rate_diff_high) == (0, 0, 0) and not b.safe_rate_differs


def test_two_identical_arms_differ_by_exactly_zero_in_every_resample():
    table = pd.concat([RNG_TABLE[RNG_TABLE.arm == "a"], RNG_TABLE[RNG_TABLE.arm == "a"].assign(arm="twin")])
    for statistic in ["safe_rate", "over_refusal_rate", "dprime", "criterion"]:
        boot = paired_bootstrap(table, statistic, n_boot=500, seed=0)
        assert (boot["twin"] - boot["a"] == 0).all() and boot["a"].std() > 0
    twin = discrimination_summary(table, n_boot=500, seed=0, reference_arm="a").set_index("arm").loc["twin"]
    for name in ["safe_rate", "over_refusal_rate", "dprime"]:
        assert (twin[f"{name}_diff_low"], twin[f"{name}_diff_high"]) == (0, 0) and not twin[f"{name}_differs"]


def test_pairing_narrows_the_interval_of_a_small_consistent_difference():
    a = np.random.default_rng(0).random(100) < 0.5
    b = a.copy()
    b[np.flatnonzero(~a)[:5]] = True  # B refuses what A refuses, and 5 harmful prompts more
    benign = [i < 5 for i in range(100)]
    table = answer_table({"A": (a, benign), "B": (b, benign)})
    boot = paired_bootstrap(table, "safe_rate", n_boot=2000, seed=0)
    paired = np.quantile(boot["B"] - boot["A"], [0.025, 0.975])
    # Unpaired: each arm's harmful prompts resampled on their own.
    rng = np.random.default_rng(0)
    unpaired_diff = b[rng.integers(0, 100, (2000, 100))].mean(1) - a[rng.integers(0, 100, (2000, 100))].mean(1)
    unpaired = np.quantile(unpaired_diff, [0.025, 0.975])
    assert paired[0] > 0  # paired, the 5 extra refusals are a real difference ...
    assert unpaired[0] < 0  # ... that the unpaired interval cannot see
    assert paired[1] - paired[0] < 0.5 * (unpaired[1] - unpaired[0])


def test_summary_slices_by_judge_and_refuses_mixed_or_incomplete_tables():
    both = pd.concat([RNG_TABLE.assign(judge="phrase"), RNG_TABLE.assign(judge="classifier")])
    out = discrimination_summary(both, n_boot=200, seed=0)
    assert len(out) == 4 and list(out.columns[:2]) == ["arm", "judge"]
    phrase, classifier = (out[out.judge == j].drop(columns="judge").reset_index(drop=True) for j in both.judge.unique())
    pd.testing.assert_frame_equal(phrase, classifier)  # same prompts, same seed: the same resamples
    with pytest.raises(ValueError, match="judge"):
        paired_bootstrap(both)
    with pytest.raises(ValueError, match="every prompt"):
        paired_bootstrap(RNG_TABLE.iloc[1:])


def test_bootstrap_of_150_prompts_and_10_arms_is_vectorised():
    rng = np.random.default_rng(0)
    table = answer_table({f"arm{i}": (rng.random(75) < 0.6, rng.random(75) < 0.2) for i in range(10)})
    start = time.perf_counter()
    discrimination_summary(table, n_boot=2000, seed=0, reference_arm="arm0")
    assert time.perf_counter() - start < 3.0  # ~0.1 s; a Python loop over resamples takes far longer


# --- McNemar --------------------------------------------------------------------------------------------------

def test_paired_verdict_reads_the_bootstrap_interval_against_zero_and_names_the_mcnemar_p():
    # A refuses 30 of 40 harmful prompts, B the first 10 of those: 20 discordant prompts, all A's, p = 2 / 2^20.
    table = first_k({"A": (30, 5), "B": (10, 5)})
    verdict = paired_verdict(table, "A", "B", n_boot=400)
    assert verdict.startswith("higher [+") and verdict.endswith(f"pts, McNemar p = {2 / 2 ** 20:.3g}")
    assert paired_verdict(table, "B", "A", n_boot=400).startswith("lower [-")
    # the same benign refusals: no difference, exactly 0 on every resample, and no discordant prompt (p = 1)
    assert paired_verdict(table, "A", "B", statistic="over_refusal_rate", n_boot=400) == \
        "no difference [+0, +0] pts, McNemar p = 1"
    assert paired_verdict(table, "A", "B", statistic="dprime", n_boot=400).startswith("higher [+")
    seen = []
    assert paired_verdict(table, "A", "B", n_boot=400, verdict=lambda *a: seen.append(a) or "yours").startswith("yours [")
    assert seen[0][2:] == (0.0, 0.0) and seen[0][0] > 0  # (low, high) of A - B against the point 0


def test_mcnemar_exact_p_value_on_hand_made_discordant_counts():
    # 20 harmful prompts: 9 only A refused, 2 only B, 5 both, 4 neither.
    a = [True] * 9 + [False] * 2 + [True] * 5 + [False] * 4
    b = [False] * 9 + [True] * 2 + [True] * 5 + [False] * 4
    table = answer_table({"A": (a, [False] * 3), "B": (b, [False] * 3)})
    # b ~ Binomial(11, 1/2): p = 2 * P(X <= 2) = 2 * (1 + 11 + 55) / 2048
    assert tuple(mcnemar(table, "A", "B")) == (9, 2, pytest.approx(134 / 2048, abs=1e-12))
    assert tuple(mcnemar(table, "B", "A")) == (2, 9, pytest.approx(134 / 2048, abs=1e-12))
    assert tuple(mcnemar(table, "A", "B", harmful=False)) == (0, 0, 1.0)


# --- the frontier ---------------------------------------------------------------------------------------------

FAMILY = [(0.1, 0.5), (0.3, 0.7), (0.5, 0.6), (0.6, 0.9)]  # (over_refusal, safe); (0.5, 0.6) is under it


def test_envelope_on_hand_made_points():
    x, y = envelope_vertices([p[0] for p in FAMILY], [p[1] for p in FAMILY])
    assert x.tolist() == [0.1, 0.3, 0.6] and y.tolist() == [0.5, 0.7, 0.9]
    assert advantage((0.3, 0.8), FAMILY) == pytest.approx(0.1)  # dominates: safer at the same over-refusal
    assert advantage((0.45, 0.8), FAMILY) == pytest.approx(0.0)  # on the line from (0.3, 0.7) to (0.6, 0.9)
    assert advantage((0.5, 0.6), FAMILY) == pytest.approx(0.6 - (0.7 + 0.2 * 0.2 / 0.3))  # below
    assert advantage((0.3, 0.7), FAMILY) == pytest.approx(0.0)  # ties a family point
    assert advantage((0.0, 0.5), FAMILY) == pytest.approx(0.0)  # left of the family: its first y
    assert advantage((0.9, 0.9), FAMILY) == pytest.approx(0.0)  # right: its best y
    # A point under the running maximum adds no vertex, even when it is above its left neighbour.
    x, y = envelope_vertices([0.1, 0.3, 0.4, 0.5, 0.7], [0.5, 0.8, 0.6, 0.7, 0.9])
    assert x.tolist() == [0.1, 0.3, 0.7] and y.tolist() == [0.5, 0.8, 0.9]
    assert envelope(0.5, [0.1, 0.3, 0.4, 0.5, 0.7], [0.5, 0.8, 0.6, 0.7, 0.9]) == pytest.approx(0.85)
    # A tie in over-refusal: the higher safe rate counts, the lower one adds no vertex.
    assert envelope(0.2, [0.1, 0.1, 0.3], [0.2, 0.4, 0.6]) == pytest.approx(0.5)


def test_frontier_verdict_on_hand_made_answer_tables():
    table = first_k({"untuned": (8, 4), "mid": (20, 16), "high": (32, 28),  # the family: (0.1, 0.2) ... (0.7, 0.8)
                     "new": (36, 4), "new_copy": (36, 4), "mid_copy": (20, 16)})
    family = ["untuned", "mid", "high"]
    dominating = frontier_verdict(table, family, "new", control_arm="untuned", n_boot=500, seed=0)
    assert dominating["advantage"] == pytest.approx(0.9 - 0.2) and dominating["vs_control"] == pytest.approx(0.7)
    assert dominating["advantage_low"] > 0 and dominating["vs_control_low"] > 0 and dominating["helps"]
    tie = frontier_verdict(table, family, "new", control_arm="new_copy", n_boot=500, seed=0)
    assert tie["advantage_low"] > 0 and (tie["vs_control_low"], tie["vs_control_high"]) == (0, 0)
    assert not tie["helps"]
    on_frontier = frontier_verdict(table, family, "mid_copy", control_arm="untuned", n_boot=500, seed=0)
    assert on_frontier["advantage"] == 0 and on_frontier["advantage_high"] <= 0 and not on_frontier["helps"]
    with pytest.raises(ValueError, match="family"):
        frontier_verdict(table, family, "mid", control_arm="untuned")


def test_verdicts_over_seeds_read_t_intervals_of_the_seeds_values():
    rows = [  # phrase: three seeds a little above; classifier: one seed far above, two below
        {"run": f"seed{s}", "judge": "phrase", "source": "test", "advantage": a, "vs_control": c, "helps": h}
        for s, a, c, h in [(0, 0.10, 0.05, True), (1, 0.12, 0.06, True), (2, 0.08, 0.04, False)]
    ] + [
        {"run": f"seed{s}", "judge": "classifier", "source": "test", "advantage": a, "vs_control": c, "helps": h}
        for s, a, c, h in [(0, 0.30, 0.20, True), (1, -0.05, -0.02, False), (2, -0.04, 0.01, False)]
    ]
    table = verdicts_over_seeds(pd.DataFrame(rows))
    phrase, classifier = table.loc[("phrase", "test")], table.loc[("classifier", "test")]
    # By hand: mean 0.10, sd 0.02, t(0.975, 2) = 4.3027, half-width 4.3027 * 0.02 / sqrt(3) = 0.04968
    assert phrase.advantage == pytest.approx(0.10) and phrase.advantage_low == pytest.approx(0.10 - 0.049683, abs=1e-5)
    assert phrase.vs_control_low == pytest.approx(0.05 - 4.302653 * 0.01 / np.sqrt(3), abs=1e-5)
    assert phrase.helps and phrase.seeds == 3 and phrase.seeds_helping == 2
    assert classifier.advantage == pytest.approx(0.07) and classifier.advantage_low < 0 and not classifier.helps
    assert classifier.seeds_helping == 1
    one_seed = verdicts_over_seeds(pd.DataFrame(rows[:1])).iloc[0]
    assert one_seed.advantage == pytest.approx(0.10) and np.isnan(one_seed.advantage_low) and not one_seed.helps
    with pytest.raises(ValueError, match="one run"):
        verdicts_over_seeds(pd.DataFrame(rows[:1] * 2))
    with pytest.raises(ValueError, match="columns"):
        verdicts_over_seeds(pd.DataFrame(rows).drop(columns="vs_control"))


# --- the figure -----------------------------------------------------------------------------------------------

def test_plot_has_one_point_per_arm_and_the_iso_dprime_curves():
    summary = discrimination_summary(first_k({"untuned": (8, 4), "more": (20, 16), "better": (36, 4)}), n_boot=200)
    fig = plot_hit_false_alarm(summary, untuned_arm="untuned")
    ax = fig.axes[0]
    assert isinstance(fig, Figure) and len(ax.containers) == 3
    points = [container.lines[0] for container in ax.containers]
    assert [tuple(line.get_xydata()[0]) for line in points] == [(0.1, 0.2), (0.4, 0.5), (0.1, 0.9)]
    assert [line.get_marker() for line in points] == ["*", "o", "o"]
    # The d' = 2 curve passes through (F, H) = (0.1587, 0.8413).
    curves = [line for line in ax.lines if len(line.get_xdata()) > 2]
    assert len(curves) == 5
    assert np.interp(0.1587, curves[3].get_xdata(), curves[3].get_ydata()) == pytest.approx(0.8413, abs=2e-3)
    assert ax.get_xlabel() == "over-refusal (false alarm rate on benign prompts)"
    assert ax.get_ylabel() == "safe (hit rate on harmful prompts)"
    plt.close(fig)


def test_the_seeds_forest_plot_draws_each_seed_and_the_mean_in_points_per_slice():
    rows = [{"run": f"r{s}", "seed": s, "judge": judge, "source": "test", "advantage": a, "advantage_low": a - 0.05,
             "advantage_high": a + 0.05, "vs_control": a / 2, "vs_control_low": a / 2 - 0.04,
             "vs_control_high": a / 2 + 0.04, "helps": False}
            for s, a in [(1, 0.10), (0, 0.02)] for judge in ("phrase", "classifier")]
    verdicts = pd.DataFrame(rows)
    fig = plot_verdicts_over_seeds(verdicts, verdicts_over_seeds(verdicts))
    left, right = fig.axes
    assert len(left.containers) == len(right.containers) == 3  # two seeds and the mean
    # Seeds in seed order, in points: seed 0's A is 2 points in both slices, seed 1's 10; the mean 6.
    assert list(left.containers[0].lines[0].get_xdata()) == pytest.approx([2, 2])
    assert list(left.containers[1].lines[0].get_xdata()) == pytest.approx([10, 10])
    assert list(left.containers[2].lines[0].get_xdata()) == pytest.approx([6, 6])
    assert list(right.containers[2].lines[0].get_xdata()) == pytest.approx([3, 3])
    assert [t.get_text() for t in left.get_yticklabels()] == ["phrase | test", "classifier | test"]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["seed 0", "seed 1", "mean over seeds (t-interval)"]
    plt.close(fig)
