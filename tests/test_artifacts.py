"""reprank.running.registry saves and loads each artifact by name in its format, with one rule for a file already there:
a step's re-run replaces what that step saved; a file anyone else made, or changed, is never overwritten."""

import json

import pandas as pd
import pytest
import torch

from reprank.running import registry, runner
from reprank.measure.compute import ComputeLedger
from reprank.base.errors import UserError
from reprank.teaching.lesson import start_lesson
from reprank.method.reward import HybridRewardModel
from reprank.running.runs import update_metrics

PAIRS = pd.DataFrame({"prompt": ["How do I pick a lock?", "Name a colour."],
                      "chosen": ["I can't help with that.", "Blue."], "rejected": ["First, ...", "I won't."],
                      "confidence": [0.9, 0.7]})


def reward_model(seed=0):
    torch.manual_seed(seed)
    model = HybridRewardModel(2, 3, layers=[1, 2])
    with torch.no_grad():
        model.probe_weight.normal_()
    return model


def values(seed=0):
    """A value of each artifact's format."""
    ledger = ComputeLedger()
    ledger.add("scoring", flops=1e9 + seed, seconds=1.0, items=4)
    return {"hybrid_rm": reward_model(seed), "rm_pairs": PAIRS, "responses": PAIRS[["prompt", "chosen"]],
            "confidence": {"tau": 0.5 + seed, "alpha": 7.5}, "reranked_pairs": PAIRS.assign(rank=[0, seed]),
            "candidates": PAIRS.assign(reward=[0.1, seed]), "compute_03": ledger, "sampling": {"top_k": 8 + seed},
            "answers_04": PAIRS[["prompt", "chosen"]].assign(arm=["dpo", "paper"], harmful=[True, False]),
            "compute_04": ledger, "answers_06": PAIRS[["prompt", "chosen"]].assign(arm=["online", "best-of-2"]),
            "compute_06": ledger}


def save_all(folder, seed=0):
    return {name: registry.save_artifact(folder, name, value, step=registry.ARTIFACTS[name].step)
            for name, value in values(seed).items()}


def test_every_artifact_has_a_format_and_comes_back_as_saved(tmp_path):
    assert {spec.format for spec in registry.ARTIFACTS.values()} <= set(registry.FORMATS)
    assert set(values()) == set(registry.ARTIFACTS)
    paths = save_all(tmp_path)
    assert all(path == registry.default_path(tmp_path, name) for name, path in paths.items())
    rm = registry.load_artifact(tmp_path, "hybrid_rm")
    torch.testing.assert_close(rm.probe_weight, reward_model().probe_weight)
    assert rm.layers == [1, 2]
    pairs = registry.load_artifact(tmp_path, "rm_pairs")  # validated: split and source filled in
    assert list(pairs.chosen) == list(PAIRS.chosen) and set(pairs.split) <= {"train", "validation", "test"}
    assert registry.load_artifact(tmp_path, "responses").equals(PAIRS[["prompt", "chosen"]])
    assert registry.load_artifact(tmp_path, "confidence") == {"tau": 0.5, "alpha": 7.5}
    assert registry.load_artifact(tmp_path, "compute_03").total() == 1e9
    manifest = registry.read_manifest(tmp_path)
    assert {entry["artifact"] for entry in manifest.values()} == set(registry.ARTIFACTS)
    assert all(registry.saved_by_step(tmp_path, name) for name in registry.ARTIFACTS)
    assert sorted(p.name for p in (tmp_path / "artifacts").iterdir()) == sorted(
        [spec.filename for spec in registry.ARTIFACTS.values()] + [registry.MANIFEST])  # no temporary files left


def test_a_step_saved_again_replaces_what_it_saved(tmp_path):
    save_all(tmp_path)
    save_all(tmp_path, seed=1)  # the notebooks re-run in their own run folder
    assert registry.load_artifact(tmp_path, "confidence")["tau"] == 1.5
    assert list(registry.load_artifact(tmp_path, "reranked_pairs")["rank"]) == [0, 1]
    torch.testing.assert_close(registry.load_artifact(tmp_path, "hybrid_rm").probe_weight, reward_model(1).probe_weight)
    assert len(list((tmp_path / "artifacts").iterdir())) == len(registry.ARTIFACTS) + 1  # same names, no new ones


def test_a_file_the_step_did_not_save_is_never_overwritten(tmp_path):
    path = registry.default_path(tmp_path, "rm_pairs")
    path.parent.mkdir(parents=True)
    path.write_text("my own pairs\n")  # a user's file where notebook 01's pairs go
    with pytest.raises(registry.ArtifactExistsError) as error:
        registry.save_artifact(tmp_path, "rm_pairs", PAIRS, step="01")
    message = str(error.value)
    assert "\n" not in message and str(path) in message and "never overwritten" in message
    assert "Move it away, or run notebook 01 in a new folder" in message
    assert isinstance(error.value, UserError) and path.read_text() == "my own pairs\n"

    # One the step saved, then edited by hand: the same.
    registry.save_artifact(tmp_path, "confidence", {"tau": 1.0}, step="02")
    confidence = registry.default_path(tmp_path, "confidence")
    confidence.write_text(json.dumps({"tau": 2.0}))
    with pytest.raises(registry.ArtifactExistsError, match="confidence.json is there"):
        registry.save_artifact(tmp_path, "confidence", {"tau": 3.0}, step="02")
    assert registry.load_artifact(tmp_path, "confidence") == {"tau": 2.0}


def test_no_step_saves_another_steps_artifact(tmp_path):
    with pytest.raises(ValueError, match="artifact 'hybrid_rm' .* is notebook 01's; notebook 03 cannot save it"):
        registry.save_artifact(tmp_path, "hybrid_rm", reward_model(), step="03")
    assert not (tmp_path / "artifacts").exists()


def test_results_copied_from_another_run_are_that_steps_own(tmp_path):
    source, copy = tmp_path / "source", tmp_path / "copy"
    save_all(source)
    update_metrics(source, "01_probing", {"done": True})
    copy.mkdir()
    runner.copy_earlier_results(source, copy, {}, steps=["01"])
    assert registry.saved_by_step(copy, "rm_pairs") and not registry.default_path(copy, "sampling").exists()
    registry.save_artifact(copy, "rm_pairs", PAIRS.iloc[:1], step="01")  # notebook 01 re-run there
    assert len(registry.load_artifact(copy, "rm_pairs")) == 1 and len(registry.load_artifact(source, "rm_pairs")) == 2


def test_results_copied_from_a_run_older_than_the_manifest_are_that_steps_own_too(tmp_path):
    source, copy = tmp_path / "source", tmp_path / "copy"
    path = registry.default_path(source, "sampling")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"top_k": 8}))  # written by hand, as notebook 03 wrote it before the manifest
    update_metrics(source, "03_reranking", {"done": True})
    copy.mkdir()
    runner.copy_earlier_results(source, copy, {})
    assert registry.read_manifest(copy)["sampling.json"]["copied"] and not registry.read_manifest(source)
    registry.save_artifact(copy, "sampling", {"top_k": 4}, step="03")  # `reprank run --notebooks 03 --from-run`
    with pytest.raises(registry.ArtifactExistsError):
        registry.save_artifact(source, "sampling", {"top_k": 4}, step="03")  # the old folder itself: not recorded


def test_loading_a_missing_artifact_is_one_line_or_the_default(tmp_path):
    assert registry.load_artifact(tmp_path, "confidence", default=None) is None
    with pytest.raises(UserError, match=r"confidence.json: not there .*notebook 02 saves it: run it in .* first$"):
        registry.load_artifact(tmp_path, "confidence")


def test_a_lesson_saves_and_loads_by_name_and_can_run_again(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRANK_RUNS", str(tmp_path / "runs"))
    folder = tmp_path / "run"
    for attempt in range(2):  # notebook 03's saves, twice in its own folder (01 and 02 are there)
        for name in ("hybrid_rm", "confidence"):
            if attempt == 0:
                registry.save_artifact(folder, name, values()[name], step=registry.ARTIFACTS[name].step)
        update_metrics(folder, "01_probing", {"done": True})
        lesson = start_lesson("03", output_dir=str(folder), model_id="smollm2-135m-gguf", seed=0)
        assert lesson.load("confidence", default=None) == {"tau": 0.5, "alpha": 7.5}
        path = lesson.save("reranked_pairs", PAIRS, seed=attempt)
        assert path == registry.default_path(folder, "reranked_pairs")
        lesson.ledger.add("scoring", flops=1.0 + attempt, seconds=1.0)
        lesson.save_metrics({"pairs_path": registry.relative(folder, path)})  # saves the ledger too
        assert lesson.load("reranked_pairs").chosen.tolist() == PAIRS.chosen.tolist()
        assert lesson.earlier_ledger("03").total() == 1.0 + attempt
    with pytest.raises(ValueError, match="notebook 03 cannot save it"):
        lesson.save("confidence", {"tau": 1.0})
