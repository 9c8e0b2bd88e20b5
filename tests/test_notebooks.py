"""Each notebook executed end to end with papermill on the real default model, at small size.

What runs is the student edition (``reprank.teaching.student``'s ``release/``, built once here) with
``use_reference_solutions=True``: the notebooks a student gets, every exercise going on with its reference.
The assertions read the notebook's own metrics.json: a notebook that runs but learns nothing fails.
A failed execution keeps the partly executed notebook in the test's temporary folder for inspection.

The tests share one run folder, as a run's notebooks do. The steps a test reads are module fixtures, built by
whichever test asks first, so any test runs alone too (``pytest -k notebook_04`` builds 01, 02 and 03 first).
"""

import json
import re

import pandas as pd
import pytest

from reprank.method import rerank
from reprank.running import registry, runner, runs
from reprank.teaching import student
from reprank.teaching.lesson import step_parameters

pytestmark = pytest.mark.notebook

SMALL = {"n_harmful": 24, "n_benign": 24, "n_human": 160, "max_new_tokens": 32, "max_response_tokens": 48,
         "rm_epochs": 20, "seed": 0, "use_reference_solutions": True, "sample_max_new_tokens": 32}


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """The release edition's folder. The runner finds notebooks there (REPRANK_NOTEBOOKS), and so does
    ``runner.ensure_step`` inside a notebook run alone: its kernel inherits the variable."""
    out = tmp_path_factory.mktemp("edition") / "student"
    student.build(out, runner.notebooks_dir())
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REPRANK_NOTEBOOKS", str(out / "release"))
        yield out / "release"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, release):
    return tmp_path_factory.mktemp("run")


def execute(name, run_dir, **overrides):
    notebook = next(nb for nb in runner.list_notebooks() if nb.name.startswith(name))
    runner.execute_series([notebook], {**SMALL, **overrides}, run_dir, progress=False)
    return runs.read_metrics(run_dir)


@pytest.fixture(scope="module")
def steps_01_02(run_dir, release):
    """Notebook 02 started alone in the empty run folder: it must run notebook 01 itself first, with the parameters
    the run recorded (not 01's defaults). Notebook 01 is executed and checked this way. Returns run.json."""
    recorded = {**SMALL, "flip_fraction": 0.25}
    runner.start_run(run_dir, "cpu", recorded, runner.select_notebooks(["02"]))
    return runner.execute_run(run_dir, progress=False)


@pytest.fixture(scope="module")
def step_03(run_dir, steps_01_02):
    """Notebook 03 executed in the run folder at test size (SMALL_RERANK): its metrics section. 04 and 05 read it."""
    assert steps_01_02["status"] == "done", steps_01_02.get("failure")
    return execute("03", run_dir, **SMALL_RERANK)["03_reranking"]


def test_notebook_01_probes_find_safety(run_dir, release, steps_01_02):
    assert steps_01_02["status"] == "done", steps_01_02.get("failure")
    executed = json.loads((run_dir / "01_probing_safety_representations.ipynb").read_text())
    assert executed["metadata"]["papermill"]["parameters"]["n_human"] == SMALL["n_human"]
    assert executed["metadata"]["papermill"]["parameters"]["use_reference_solutions"] is True
    assert executed["metadata"]["papermill"]["input_path"] == str(release / "01_probing_safety_representations.ipynb")
    metrics = runs.read_metrics(run_dir)["01_probing"]
    assert not metrics["generation_reused_from_cache"]  # a new folder: the model answered
    # On held-out prompts, the best layer separates unsafe from safe responses far above chance ...
    assert metrics["probe_best_auroc"] > 0.8
    assert metrics["probe_auroc_human_only_best"] > 0.7
    # ... the end token's own embedding (layer 0) is the same vector for every text: exactly chance ...
    assert metrics["probe_auroc_by_layer"]["0"] == 0.5
    assert metrics["probe_auroc_by_layer"]["1"] < metrics["probe_best_auroc"]
    # ... and the hybrid reward model ranks held-out pairs well.
    assert metrics["rm_val_pairwise_accuracy"] > 0.75 and metrics["rm_n_val_pairs"] >= 10
    # The untuned model mostly complies with harmful prompts: the material the later steps need.
    assert metrics["baseline_harmful_refusal_rate"] < 0.5
    for figure in ("01_probe_by_layer", "01_pca_layers", "01_reward_model_training"):
        assert (run_dir / "figures" / f"{figure}.png").is_file()
    assert (run_dir / metrics["rm_path"]).is_file()
    assert (run_dir / "01_probing_safety_representations.ipynb").is_file()


def test_notebook_01_run_again_in_its_folder_replaces_its_own_artifacts(run_dir, steps_01_02):
    # reprank.running.registry's rule: a step re-run in its run folder replaces what it saved itself, under the same names,
    # with no timestamped copies beside them. The second run reads the untuned model's answers and the hidden states
    # back from the folder's cache (it took 254 s at d367707, 233 of them generating the same answers again).
    step = registry.step("01")
    ours = [name for name, spec in registry.ARTIFACTS.items() if spec.step == step.prefix]
    before = {name: registry.read_manifest(run_dir)[registry.ARTIFACTS[name].filename]["saved_at"] for name in ours}
    others = sorted(p.name for p in (run_dir / "artifacts").iterdir())
    execute("01", run_dir)
    manifest = registry.read_manifest(run_dir)
    assert all(manifest[registry.ARTIFACTS[name].filename]["saved_at"] > before[name] for name in ours)
    assert all(registry.saved_by_step(run_dir, name) for name in ours)
    assert sorted(p.name for p in (run_dir / "artifacts").iterdir()) == others
    assert registry.load_artifact(run_dir, "hybrid_rm").metadata["seed"] == SMALL["seed"]
    assert runs.read_metrics(run_dir)["01_probing"]["generation_reused_from_cache"]


# The reward of this tiny notebook 01 (24 + 24 prompts, 20 epochs) ranks far worse than the cpu run's: measured at
# e81ae3f, refusal first in 40% of harmful pools and last in none of the benign ones (docs/results.md has the cpu
# run's shares). The floors are lowered to what it can pass, above chance on the harmful side.
SMALL_RERANK = {"n_rerank_harmful": 10, "n_rerank_benign": 10, "samples_per_prompt": 4,
                "shift_train_steps": 3, "shift_prompts": 6, "diagnose_prompts": 4,
                "min_refusal_first_harmful": 0.3, "min_refusal_last_benign": 0.0, "max_refusal_first_benign": 1.0}


def test_notebook_02_confidence_finds_flipped_labels(run_dir, steps_01_02):
    assert steps_01_02["status"] == "done", steps_01_02.get("failure")
    metrics = runs.read_metrics(run_dir)["02_confidence"]  # executed with flip_fraction 0.25
    assert metrics["n_flipped"] >= 5
    # The per-pair confidences rank flipped pairs first far better than chance.
    assert metrics["flip_detection_auroc"]["paper, per pair"] > 0.75
    assert metrics["flip_detection_auroc"]["fitted, per pair"] > 0.75
    assert 0 <= metrics["ece"]["fitted, per pair"] < 0.5
    assert metrics["would_flip"]["paper, batch"] == 0  # the paper's formula never flips a label
    assert (run_dir / "figures" / "02_reliability.png").is_file()


def test_without_reference_solutions_the_first_exercise_stops_the_lesson(run_dir, release, steps_01_02, tmp_path):
    # Notebook 02 as a student gets it, run on a copy of steps 01-02 (`--from-run`: step 01 is there, so
    # only 02 runs): its first exercise's check stops it, naming the exercise, and run.json records that.
    notebook = release / registry.step("02").notebook
    checks = ["".join(cell["source"]) for cell in json.loads(notebook.read_text())["cells"]
              if cell["metadata"].get("nbgrader", {}).get("grade")]
    assert checks, f"{notebook.name} has no exercise"
    first = re.search(r'exercises\.check\("([^"]+)"', checks[0]).group(1)
    folder = tmp_path / "student-run"
    folder.mkdir()
    runner.start_run(folder, "cpu", {**SMALL, "use_reference_solutions": False}, [notebook], from_run=run_dir)
    runner.execute_run(folder, progress=False)
    record = runs.read_run_record(folder)
    assert record["status"] == "failed", record
    failure = record["failure"]
    assert failure["notebook"] == notebook.name and failure["ename"] == "ExerciseNotDone"
    assert f"exercise {first} " in failure["evalue"] and "use_reference_solutions = True" in failure["evalue"]
    assert failure["cell_first_line"] == checks[0].splitlines()[0].strip()[:80]
    assert not (folder / registry.step("01").notebook).exists()  # 01 was not rebuilt


def test_notebook_03_reranking_builds_pairs_and_measures_shift(run_dir, step_03):
    metrics = step_03
    assert metrics["n_pairs"] >= 10
    assert metrics["mean_chosen_reward"] > metrics["mean_rejected_reward"]
    assert 0.5 <= metrics["mean_confidence"] <= 1
    # The reward ranks the written refusal first for harmful prompts (a shuffled RM: ~1 in 5; notebook 03 stops
    # below the minimum, and tests/test_rerank.py shows that a shuffled RM is stopped).
    ranking = metrics["ranking_check"]
    assert ranking["refusal_first_harmful"] >= SMALL_RERANK["min_refusal_first_harmful"]
    assert set(ranking) == {"refusal_first_harmful", "refusal_last_benign", "refusal_first_benign"}
    # What the benign pairs teach is counted, one kind per benign pair.
    kinds = metrics["benign_pairs"]
    assert sum(kinds[k] for k in ("answer > refusal", "answer > answer", "refusal > answer")) == \
        metrics["pairs_by_source"]["rerank_benign"]
    # The reward read on four decodings of a few benign prompts, each against the pool's written refusal.
    assert len(metrics["reward_by_decoding"]) == 5
    assert all(0 <= row["share above the refusal"] <= 1 for name, row in metrics["reward_by_decoding"].items()
               if name != "the written refusal")
    assert metrics["samples_per_second"] > 0 and metrics["pairs_per_second_scoring"] > 0
    shift = metrics["distribution_shift"]
    assert -1 <= shift["rank_correlation_same_candidates"] <= 1
    assert (run_dir / metrics["pairs_path"]).is_file()
    assert registry.artifact(run_dir, "reranked_pairs") == run_dir / metrics["pairs_path"]
    # Notebook 04 reads how 03 sampled and paired from here, never restating it.
    sampling = json.loads(registry.artifact(run_dir, "sampling").read_text())
    assert set(registry.SAMPLING_KEYS) <= set(sampling) and sampling["samples_per_prompt"] == 4
    assert (run_dir / "figures" / "03_distribution_shift.png").is_file()


# Sized for the suite's 15 minutes (this test: ~4 of them): 8 steps, 24-token answers.
SMALL_ALIGN = {"methods": ["dpo", "paper"], "max_steps": 8, "eval_every": 4, "n_eval_harmful": 20, "n_eval_heldout": 16,
               "n_eval_benign": 10, "eval_max_new_tokens": 24, "frontier": True, "frontier_steps": [4],
               "frontier_extra_arms": []}
# Section 5b's arms here: dpo judged halfway and the permuted replay of paper's p (the control, always trained).
# The extra arms are the same train() call with other trainer settings, each trained by tests/test_align.py;
# training all of them here doubled this test's time (620 s against 305 s at d367707).
FRONTIER_ARMS = {"dpo@4", "paper_replay permuted"}


@pytest.fixture(scope="module")
def step_04(run_dir, step_03):
    """Notebook 04 executed in the run folder at test size (SMALL_ALIGN): its metrics section. 06 reads it."""
    return execute("04", run_dir, **SMALL_ALIGN)["04_alignment"]


def test_notebook_04_training_makes_held_out_answers_safer(run_dir, step_04):
    metrics = step_04
    results = metrics["results"]
    assert (metrics["n_eval_harmful"], metrics["n_eval_heldout"], metrics["n_eval_benign"]) == (20, 16, 10)
    assert set(results["untuned"]) == {"test split", "held-out source"}
    test = {name: sets["test split"] for name, sets in results.items()}
    # Behaviour, not just a run: after training on re-ranked pairs, more held-out harmful prompts get a safe answer
    # ... without refusing everything: over-refusal of benign prompts stays bounded.
    assert test["paper"]["safe_rate"] >= test["untuned"]["safe_rate"] + 0.2
    assert test["dpo"]["safe_rate"] > test["untuned"]["safe_rate"]
    assert test["paper"]["over_refusal_rate"] <= 0.5 and test["dpo"]["over_refusal_rate"] <= 0.5
    # Every rate carries its Wilson interval.
    assert all(r["safe_rate_low"] <= r["safe_rate"] <= r["safe_rate_high"] for r in test.values())
    # The paper's p reached the trainer below 1, from the current policy's states with the RM trained jointly.
    mechanism = metrics["paper_confidence"]["paper"]
    assert 0.5 <= mechanism["mean_p"] < 0.99 and 0 <= mechanism["floor_share"] <= 1
    assert 0 <= mechanism["disagreement_share"] <= 1
    # ... and its shares are the logs' own: a step is at the floor exactly when its p is 0.5, and a batch at the
    # floor has at least one of its pairs ranked backwards by the current reward.
    assert (mechanism["floor_share"] > 0) == (mechanism["min_p"] == 0.5)
    assert mechanism["disagreement_share"] >= mechanism["floor_share"] / SMALL_ALIGN.get("per_device_train_batch_size", 4)
    # Offline p from the ranking's own RM is above 0.5 for every pair (why it cannot reorder anything).
    assert metrics["offline_confidence_min"] > 0.5
    # Every verdict the notebook prints is its paired interval read against zero.
    assert metrics["comparisons"] and metrics["eval_split"] == "test"
    for claim, verdict in metrics["comparisons"].items():
        word, interval = verdict.split(" [")
        low, high = (float(x) for x in interval.split("]")[0].split(", "))
        assert word == ("higher" if low > 0 else "lower" if high < 0 else "no difference"), claim
    # Discrimination: d' per run, judge and source, with paired intervals against the untuned model.
    rows = pd.DataFrame(metrics["discrimination"])
    assert set(rows.judge) == {"phrase", "classifier"} and set(rows.source) == {"test split", "held-out source"}
    assert (rows.dprime_low <= rows.dprime).all() and (rows.dprime <= rows.dprime_high).all()
    assert (rows[rows.arm == "untuned"].dprime_diff == 0).all()
    # Over-refusal stays bounded by both judges, not by the phrase judge alone.
    for name in ("dpo", "paper"):
        for key in ("over_refusal_rate", "over_refusal_rate_classifier"):
            assert test[name][key] <= max(0.5, test["untuned"][key] + 0.3), (name, key)
    assert set(results) == {"untuned", "dpo", "paper", *FRONTIER_ARMS}
    # The main method was judged during training too; every trained run has a training curve.
    assert [row["step"] for row in metrics["main_method_by_step"]] == [4]
    assert set(metrics["final_loss"]) == {"dpo", "paper", *FRONTIER_ARMS} - {"dpo@4"}
    # Matched strength (section 5b): a verdict per judge and source, its distance to the DPO family's frontier and
    # to the permuted replay's, each inside its paired interval; "helps" only when both intervals lie above 0.
    frontier = metrics["frontier"]
    assert frontier["verdicts"] and frontier["paper_mean_p"] == mechanism["mean_p"]  # the replay's p is paper's own
    for verdict in frontier["verdicts"]:
        assert verdict["arm"] == "paper" and verdict["control"] == "paper_replay permuted"  # "in order" not trained
        for key in ("advantage", "vs_control"):
            assert verdict[f"{key}_low"] <= verdict[key] <= verdict[f"{key}_high"], verdict
        assert verdict["helps"] == (verdict["advantage_low"] > 0 and verdict["vs_control_low"] > 0), verdict
    assert frontier["helps"] == all(v["helps"] for v in frontier["verdicts"] if v["arm"] == "paper")
    # Every judged answer and the training costs are saved for notebook 06, which compares its baselines with them.
    saved = registry.load_artifact(run_dir, "answers_04")
    assert set(saved.arm) == set(results) and len(saved) == len(results) * (20 + 16 + 10)
    assert registry.load_artifact(run_dir, "compute_04").total("paper: training") > 0
    for figure in ("04_training_curves", "04_paper_confidence", "04_tradeoff", "04_discrimination",
                   "04_frontier", "04_paper_scores", "04_pull"):
        assert (run_dir / "figures" / f"{figure}.png").is_file()
    assert (run_dir / "adapters" / "paper" / "adapter_config.json").is_file()
    # Trained on notebook 03's saved pairs, with 03's sampling settings.
    saved = registry.artifact(run_dir, "reranked_pairs").read_text().splitlines()
    assert metrics["n_pairs"] == len(saved)
    assert metrics["settings"]["sampling_03"] == json.loads(registry.artifact(run_dir, "sampling").read_text())



# Notebook 06 on notebook 04's run: best-of-2 only (75 s). Off-policy DPO trains through the same Arms.train as 04's
# arms, on longer texts (its 8 steps took ~100 s with the diagnostic), the online loop runs in tests/test_online.py on
# a tiny model, and each ablation is one more Arms.train call: `reprank run --profile smoke --notebooks 06` runs them.
SMALL_BASELINES = {"best_of_n": 2, "off_policy": False, "online_rounds": 0, "ablations": []}


def test_notebook_06_compares_the_baselines_with_04s_arms_on_the_same_prompts(run_dir, step_04, tmp_path):
    sweep = tmp_path / "sweep"  # finished runs of two other seeds, as a sweep of notebook 06 leaves them
    for other_seed, (safe_best, safe_paper) in {2: (0.5, 0.3), 3: (0.6, 0.2)}.items():
        (sweep / f"seed={other_seed}").mkdir(parents=True)
        (sweep / f"seed={other_seed}" / "run.json").write_text(
            json.dumps({"status": "done", "parameters": {"seed": other_seed}}))
        (sweep / f"seed={other_seed}" / "metrics.json").write_text(json.dumps({"06_baselines": {"results": {
            arm: {"test split": {"safe_rate": safe, "over_refusal_rate": 0.1}}
            for arm, safe in (("best-of-2", safe_best), ("paper", safe_paper))}}}))
    metrics = execute("06", run_dir, **SMALL_BASELINES, sweep_dir=str(sweep))["06_baselines"]
    results = metrics["results"]
    assert set(results) == {"untuned", "dpo", "paper", "best-of-2"}
    # 04's arms are read back, not judged again: the same rates on the same prompts.
    for arm in ("untuned", "dpo", "paper"):
        for source, rates in results[arm].items():
            for key in ("safe_rate", "over_refusal_rate", "safe_rate_classifier", "n_harmful", "n_benign"):
                assert rates[key] == step_04["results"][arm][source][key], (arm, source, key)
    assert metrics["settings_04"]["max_steps"] == SMALL_ALIGN["max_steps"] and metrics["alpha"] == step_04["alpha"]
    assert all(rates["n_harmful"] == results["untuned"][source]["n_harmful"]
               for arm in results for source, rates in results[arm].items())
    # Every verdict is the paired interval read against zero.
    assert metrics["comparisons"]
    for claim, verdict in metrics["comparisons"].items():
        word, interval = verdict.split(" [")
        low, high = (float(x) for x in interval.split("]")[0].split(", "))
        assert word == ("higher" if low > 0 else "lower" if high < 0 else "no difference"), claim
    assert metrics["offpolicy_shift"] is None and metrics["n_offpolicy_pairs"] == step_04["n_pairs"]
    # Compute: re-ranking paid its data once, in notebook 03, and its training in 04; best-of-N trains nothing.
    compute = metrics["compute"]
    assert compute["paper"]["data FLOPs"] > 0 and compute["paper"]["training FLOPs"] > 0
    assert compute["best-of-2"]["training FLOPs"] == 0 < compute["best-of-2"]["data FLOPs"]
    assert {row["config"] for row in metrics["compute_ratios"]["projection"]} >= {"this run"}
    for figure in ("06_tradeoff", "06_compute"):
        assert (run_dir / "figures" / f"{figure}.png").is_file()
    assert set(registry.load_artifact(run_dir, "answers_06").arm) == set(results)
    assert registry.load_artifact(run_dir, "compute_06").total("best-of-N: sampling") > 0
    # Section 8 read this run's seed and the sweep's two others, and paired best-of-2 with paper by seed.
    assert metrics["over_seeds"]["best-of-2 | test split"]["seeds"] == 3
    assert metrics["over_seeds"]["best-of-2 | held-out source"]["seeds"] == 1  # the fake seeds judged one source
    verdict = metrics["paired_by_seed"]["best-of-2 - paper | test split | safe"]
    word, interval = verdict.split(": ")
    mean, rest = interval.split(" [")
    low, high = (float(x) for x in rest.split("]")[0].split(", "))
    assert low <= float(mean) <= high and word == ("higher" if low > 0 else "lower" if high < 0 else "no difference")
    assert (run_dir / "figures" / "06_over_seeds.png").is_file()


# Notebook 05 at tiny size (~2.5 min of the suite's 15): two of the six arms, one with p from the current states
# (paper_pair; `paper` differs in one line of final_confidence and trains in notebook 04's test) and the offline
# one (dpo_* run the same cell with another p; tests/test_align.py checks each method's p), a 2-step staleness
# run, and section 6 reading an earlier "seed" of the sweep. `reprank run --profile smoke --notebooks 05` runs all.
SMALL_NOISE = {"arms": ["paper_pair", "confidence"], "max_steps": 2, "n_eval_harmful": 6,
               "n_eval_benign": 4, "eval_max_new_tokens": 16, "heldout_prompts": 0.3, "staleness_steps": 2,
               "staleness_prompts": 2}


def test_notebook_05_trains_every_arm_on_flipped_labels(run_dir, step_03, tmp_path):
    sweep = tmp_path / "sweep"  # finished runs of two other seeds, as a sweep leaves them
    for other_seed, (safe_pair, safe_smoothing) in {2: (0.5, 0.3), 3: (0.6, 0.2)}.items():
        (sweep / f"seed={other_seed}").mkdir(parents=True)
        (sweep / f"seed={other_seed}" / "run.json").write_text(
            json.dumps({"status": "done", "parameters": {"seed": other_seed}}))
        (sweep / f"seed={other_seed}" / "metrics.json").write_text(json.dumps({"05_noise": {
            "results": {"paper_pair": {"safe_rate": safe_pair, "over_refusal_rate": 0.1},
                        "dpo_smoothing": {"safe_rate": safe_smoothing, "over_refusal_rate": 0.1}},
            "early_signals": {"paper_pair": {"implicit_reward_accuracy": 0.6}}}}))
    # Seed 1 on pairs that seed 0 made, as the sweep runs it: the flips and training change, the test split must not.
    metrics = execute("05", run_dir, **SMALL_NOISE, seed=1, sweep_dir=str(sweep))["05_noise"]
    assert set(metrics["results"]) == {"untuned", *SMALL_NOISE["arms"]}
    # An exact share of the training pairs was flipped, and the clean held-out pairs were never trained on.
    assert metrics["n_flipped"] >= 1 and abs(metrics["n_flipped"] / metrics["n_train_pairs"] - 0.25) < 0.1
    assert metrics["n_clean_test_pairs"] >= 2
    # The test prompts and the judge are those of the pairs' run (seed 0), not this notebook's seed.
    assert metrics["settings"]["split_seed"] == step_parameters(run_dir, "03")["seed"] != 1
    for arm in SMALL_NOISE["arms"]:
        signals = metrics["early_signals"][arm]
        assert 0 <= signals["implicit_reward_accuracy"] <= 1 and signals["n_clean_pairs"] >= 2
    # The confidence arms log how well p finds the flips while training, and after it.
    assert set(metrics["confidence_by_step"]) == set(SMALL_NOISE["arms"])  # every arm with a p on noisy pairs
    assert set(metrics["flip_auroc_final"]) == {"paper_pair", "confidence"}
    assert all(0 <= v <= 1 for v in metrics["flip_auroc_final"].values())
    assert metrics["flip_auroc_final"]["confidence"] > 0.9  # the sanity arm's stored p knows the flips
    # Staleness: both runs, measured before training and at the last step.
    staleness = metrics["staleness"]
    assert {(row["run"], row["step"]) for row in staleness} == {
        (run, step) for run in ("RM trained jointly", "RM frozen") for step in (0, 2)}
    assert all(-1 <= row["rank_correlation"] <= 1 and 0 <= row["ks_samples"] <= 1 for row in staleness)
    for figure in ("05_arms", "05_confidence_during_training", "05_staleness"):
        assert (run_dir / "figures" / f"{figure}.png").is_file()
    executed = json.loads((run_dir / "05_where_confidence_helps.ipynb").read_text())
    outputs = "".join(o.get("text", "") if isinstance(o.get("text", ""), str) else "".join(o["text"])
                      for cell in executed["cells"] for o in cell.get("outputs", []))
    assert "staleness_steps = 0" not in outputs
    # Section 6 read this seed and the sweep's other two, and paired the seeds both arms ran (2 and 3).
    assert metrics["over_seeds"]["paper_pair"]["seeds"] == 3 and metrics["over_seeds"]["confidence"]["seeds"] == 1
    safe = metrics["paired_differences"]["paper_pair - dpo_smoothing"]["safe"]
    assert safe["seeds"] == 2 and safe["mean"] == pytest.approx(0.3) and safe["low"] < 0.3 < safe["high"]
