"""``reprank report`` on handmade run folders: flattening, grouping, mean/std/n/95% interval over seeds,
CSV/PNG/HTML."""

import json
import re

import numpy as np
import pandas as pd
import pytest

from reprank import cli
from reprank.running import report
from reprank.base.errors import UserError
from reprank.running.runs import write_run_record

SAFE = {("dpo", 0): 0.50, ("dpo", 1): 0.60, ("dpo", 2): 0.70,
        ("confidence", 0): 0.80, ("confidence", 1): 0.90, ("confidence", 2): 0.95}


def make_run(folder, parameters, metrics, status="done", **extra):
    folder.mkdir(parents=True)
    write_run_record(folder, {"profile": "smoke", "parameters": parameters, "notebooks": ["04_x.ipynb"],
                              "packages": {"torch": "2.13.0", "reprank": "0.1.0"}, "git_commit": "abc1234",
                              "status": status, "seconds": 10.0, **extra})
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def align_metrics(method, seed):
    """Shaped like notebook 04's: results keyed by the method's name."""
    safe = SAFE[(method, seed)]
    results = {"untuned": {"safe_rate": 0.1}, method: {"safe_rate": safe, "over_refusal_rate": 1 - safe,
                                                       "safe_rate_low": safe - 0.1, "safe_rate_high": safe + 0.1}}
    return {"04_align": {"results": results, "nested": {"steps": 8 + seed}, "per_layer": [1, 2, 3],
                         "method_name": method, "converged": True}}


@pytest.fixture
def sweep_dir(tmp_path):
    root = tmp_path / "smoke-method-seed"
    for (method, seed) in SAFE:
        make_run(root / f"method={method},seed={seed}", {"model_id": "m", "methods": method, "seed": seed,
                 "beta": 0.1}, align_metrics(method, seed), sweep={"name": root.name})
    # An earlier failed attempt moved aside by a rerun, and a point that failed: neither is reported.
    make_run(root / "method=dpo,seed=0.failed-20260101-000000", {"methods": "dpo", "seed": 0, "beta": 0.1},
             {"04_align": {"safe_rate": 0.0}}, status="failed")
    make_run(root / "method=ipo,seed=0", {"methods": "ipo", "seed": 0, "beta": 0.1},
             {"04_align": {"safe_rate": 0.0}}, status="failed")
    (root / "sweep.json").write_text("{}")
    return root


def test_flatten_keeps_scalars_under_dotted_names():
    assert report.flatten({"a": {"b": 1, "c": {"d": "x"}, "l": [1]}, "e": None, "f": True}) == {
        "a.b": 1, "a.c.d": "x", "e": None, "f": True}


def test_report_aggregates_over_seeds_and_writes_csv_png_html(sweep_dir, tmp_path):
    extra = make_run(tmp_path / "other" / "smoke-20260101-000000", {"model_id": "m", "methods": "ipo", "seed": 0,
                     "beta": 0.1}, {"04_align": {"results": {"ipo": {"safe_rate": 0.4, "over_refusal_rate": 0.5}},
                                                 "nested": {"steps": 8}}})
    out = report.make_report([sweep_dir, extra], tmp_path / "report")

    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 7 and "04_align.nested.steps" in runs and "04_align.per_layer" not in runs
    assert not runs.run.str.contains("failed-|ipo,seed").any()
    stats = pd.read_csv(out / "aggregate.csv")
    # seed and constant parameters are not groups
    assert list(stats.columns) == ["methods", "metric", "mean", "std", "n", "ci95_low", "ci95_high"]
    # Each run's own method name in its metrics' names is generalised, so the methods line up.
    assert "04_align.results.<methods>.safe_rate" in runs and "04_align.results.dpo.safe_rate" not in runs
    safe = stats[stats.metric == "04_align.results.<methods>.safe_rate"].set_index("methods")
    for method in ("dpo", "confidence"):
        values = [v for (m, _), v in SAFE.items() if m == method]
        assert safe.loc[method, "mean"] == pytest.approx(np.mean(values))
        assert safe.loc[method, "std"] == pytest.approx(np.std(values, ddof=1))
        assert safe.loc[method, "n"] == 3
        # The 95% t-interval of the mean over 3 seeds: t(0.975, 2) = 4.3027.
        half = 4.302652730 * np.std(values, ddof=1) / np.sqrt(3)
        assert safe.loc[method, "ci95_low"] == pytest.approx(np.mean(values) - half)
        assert safe.loc[method, "ci95_high"] == pytest.approx(np.mean(values) + half)
    assert safe.loc["ipo", "n"] == 1 and np.isnan(safe.loc["ipo", "std"])
    assert np.isnan(safe.loc["ipo", "ci95_low"]) and np.isnan(safe.loc["ipo", "ci95_high"])  # one seed: no interval
    steps = stats[stats.metric == "04_align.nested.steps"].set_index("methods")
    assert steps.loc["dpo", "mean"] == pytest.approx(9.0) and steps.loc["dpo", "std"] == pytest.approx(1.0)
    assert not stats.metric.isin(["04_align.converged", "04_align.method_name"]).any()  # not numbers to average

    # Default plots: every metric named like safe_rate or over_refusal, not the ends of its interval (_low, _high).
    # And one trade-off figure (safe against over-refusal, means with 95% intervals) for the pair that has both.
    assert sorted(p.name for p in (out / "figures").iterdir()) == [
        "04_align.results._methods_.over_refusal_rate.png", "04_align.results._methods_.safe_rate.png",
        "04_align.results.untuned.safe_rate.png", "tradeoff-04_align.results._methods_.safe_rate.png"]
    for name in ("04_align.results._methods_.safe_rate.png", "tradeoff-04_align.results._methods_.safe_rate.png"):
        assert (out / "figures" / name).read_bytes()[:4] == b"\x89PNG"
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page), "the report needs no network"
    assert "<link" not in page and "<script" not in page
    for text in ("abc1234", "2.13.0", "0.6 ± 0.1 (n=3, 95% CI 0.352–0.848)",
                 "0.8833 ± 0.076 (n=3, 95% CI 0.694–1.07)", "0.4 (n=1)", "moved aside",
                 "not finished", "&lt;methods&gt;</code> stands for"):
        assert text in page, text


def test_report_folders_are_new_each_time_and_metrics_can_be_chosen(sweep_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REPRANK_RUNS", str(tmp_path / "reports"))
    assert cli.main(["report", str(sweep_dir), "--metric", "nested.steps"]) == 0
    assert cli.main(["report", str(sweep_dir), "--metric", "<methods>.safe_rate", "--metric", "refusal"]) == 0
    first, second = sorted((tmp_path / "reports").iterdir())
    assert [p.name for p in (first / "figures").iterdir()] == ["04_align.nested.steps.png"]
    assert sorted(p.name for p in (second / "figures").iterdir()) == [
        "04_align.results._methods_.over_refusal_rate.png", "04_align.results._methods_.safe_rate.png",
        "tradeoff-04_align.results._methods_.safe_rate.png"]
    assert report.choose_metrics(["a.safe_rate", "a.safe_rate_low"], None, ["safe_rate_low"]) == ["a.safe_rate_low"]
    with pytest.raises(UserError, match="never overwrite"):
        report.make_report([sweep_dir], first)
    with pytest.raises(UserError, match="no numeric metric matches"):
        report.make_report([sweep_dir], tmp_path / "r3", metrics=["nope"])
    with pytest.raises(UserError, match="No run or sweep folder"):
        report.make_report([tmp_path / "missing"], tmp_path / "r4")


def test_tradeoff_pairs_match_each_safe_rate_with_its_over_refusal_rate():
    from reprank.running.report_plots import tradeoff_pairs

    names = ["r.<arm>.safe_rate", "r.<arm>.over_refusal_rate", "r.untuned.safe_rate", "r.<arm>.safe_rate_classifier",
             "r.<arm>.over_refusal_rate_classifier", "r.<arm>.safe_rate_low"]
    assert tradeoff_pairs(names) == [("r.<arm>.safe_rate", "r.<arm>.over_refusal_rate"),
                                     ("r.<arm>.safe_rate_classifier", "r.<arm>.over_refusal_rate_classifier")]


def test_frontier_verdicts_gather_one_arms_verdicts_from_every_finished_run(tmp_path):
    def verdicts(a):
        return [{"judge": j, "source": "test split", "arm": arm, "control": "paper_replay permuted", "advantage": a,
                 "vs_control": a / 2, "helps": a > 0} for j in ("phrase", "classifier")
                for arm in ("paper", "paper_replay in order")]
    root = tmp_path / "frontier"
    for seed, a in [(0, 0.1), (1, -0.1)]:
        make_run(root / f"seed={seed}", {"seed": seed}, {"04_alignment": {"frontier": {"verdicts": verdicts(a)}}})
    make_run(root / "plain", {"seed": 2}, {"04_alignment": {"results": {}}})  # notebook 04 without the frontier
    make_run(root / "seed=3", {"seed": 3}, {"04_alignment": {"frontier": {"verdicts": verdicts(0.5)}}},
             status="failed")
    found = report.frontier_verdicts(root)
    assert sorted(found.seed) == [0, 0, 1, 1] and set(found.arm) == {"paper"} and set(found.run) == {"seed=0", "seed=1"}
    assert found.set_index(["run", "judge"]).advantage[("seed=1", "phrase")] == -0.1
    with pytest.raises(UserError, match="no finished run there has frontier verdicts"):
        report.frontier_verdicts(root / "plain")
