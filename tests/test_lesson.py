"""reprank.teaching.lesson: a notebook's setup call. On fake run folders (run.json, metrics.json, empty artifacts) and the
real notebooks' parameters cells (read, never executed); building earlier steps goes through a stand-in for
papermill."""

import os

import numpy as np
import pytest

from reprank.running import registry, runner
from reprank.base.errors import UserError
from reprank.teaching.lesson import start_lesson
from reprank.running.runs import read_metrics, read_run_record, update_metrics, write_run_record

MODEL = "smollm2-135m-gguf"


@pytest.fixture
def runs_root(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    monkeypatch.setenv("REPRANK_RUNS", str(root))
    monkeypatch.delenv("REPRANK_NOTEBOOKS", raising=False)
    return root


def write_results(folder, steps, tag):
    """What finished steps leave in a run folder: their metrics sections and artifacts."""
    for step in steps:
        update_metrics(folder, registry.step(step).section, {"made_in": tag})
        (folder / "figures").mkdir(exist_ok=True)
        (folder / "figures" / f"{step}_figure.png").write_text("")
    for name, spec in registry.ARTIFACTS.items():
        if spec.step in steps:
            path = registry.default_path(folder, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text('{"entries": []}' if name.startswith("compute_") else "{}")


def fake_run(root, name, steps, age, status="done", **parameters):
    """A run folder of ``reprank run`` that finished ``age`` seconds ago (older folders are never reused first)."""
    folder = root / name
    folder.mkdir(parents=True)
    record = {"profile": "cpu", "parameters": {"model_id": MODEL, "seed": 0, **parameters}, "status": status,
              "notebooks": [registry.step(s).notebook for s in steps]}
    write_run_record(folder, record)
    write_results(folder, steps, name)
    stamp = (folder / "run.json").stat().st_mtime - age
    os.utime(folder / "run.json", (stamp, stamp))
    return folder


@pytest.fixture
def fake_papermill(monkeypatch):
    """Replaces papermill: each 'executed' notebook writes its step's results; returns the calls made."""
    calls = []

    def execute_series(notebooks, parameters, run_dir, progress=True, timings=None, current=None):
        calls.append({"notebooks": [nb.name[:2] for nb in notebooks], "parameters": dict(parameters),
                      "run_dir": run_dir, "progress": progress})
        for nb in notebooks:
            write_results(run_dir, [nb.name[:2]], "built")
            if timings is not None:
                timings.append({"notebook": nb.name, "parameters": parameters, "seconds": 1.0})
        return timings

    monkeypatch.setattr(runner, "execute_series", execute_series)
    return calls


def test_by_hand_reuses_the_latest_compatible_finished_run(runs_root, capsys, fake_papermill):
    fake_run(runs_root, "cpu-old", ["01", "02"], age=900)
    chosen = fake_run(runs_root, "sweep-a/point-1", ["01", "02", "03", "04"], age=800)  # a sweep's point
    fake_run(runs_root, "cpu-other-seed", ["01", "02"], age=700, seed=1)
    fake_run(runs_root, "cpu-other-model", ["01", "02"], age=600, model_id="HuggingFaceTB/SmolLM2-360M-Instruct")
    fake_run(runs_root, "cpu-failed", ["01", "02"], age=500, status="failed")
    fake_run(runs_root, "cpu-running", ["01", "02"], age=450, status="running")
    fake_run(runs_root, "smoke-small", ["01", "02"], age=400, n_harmful=24)  # 01 not at its default
    fake_run(runs_root, "cpu-01-only", ["01"], age=300)  # no step 02
    fake_run(runs_root, "sweep-a/point-2.failed-20250101-120000", ["01", "02"], age=200)  # moved aside by a rerun

    lesson = start_lesson("03", output_dir="", namespace={"pairing": "top_bottom"}, model_id=MODEL, seed=0)
    out = capsys.readouterr().out
    assert lesson.by_hand and lesson.run_dir.parent == runs_root and lesson.run_dir.name.startswith("by-hand-")
    assert out.count("\n") == 1 and f"copied from {chosen}" in out and "steps 01, 02 with model_id=" in out
    assert not fake_papermill  # nothing was executed
    record = read_run_record(lesson.run_dir)
    assert record["from_run"]["path"] == str(chosen) and record["status"] == "started"
    assert record["parameters"]["pairing"] == "top_bottom" and "use_reference_solutions" not in record["parameters"]
    metrics = read_metrics(lesson.run_dir)  # everything the chosen run had, as `reprank run --from-run` copies it
    assert metrics["01_probing"]["made_in"] == metrics["02_confidence"]["made_in"] == "sweep-a/point-1"
    assert sorted(metrics) == ["01_probing", "02_confidence"]  # not the later steps' results
    assert sorted(p.name for p in (lesson.run_dir / "figures").iterdir()) == ["01_figure.png", "02_figure.png"]
    assert not lesson.artifact("reranked_pairs").exists() and not lesson.artifact("compute_03").exists()
    assert lesson.artifact("hybrid_rm").is_file() and lesson.artifact("confidence").is_file()

    lesson.ledger.add("sampling (once)", flops=2e9, seconds=3.0, items=8)
    assert lesson.save_metrics({"n_pairs": np.int64(5)}) == {"n_pairs": 5}  # as written: plain JSON types
    record = read_run_record(lesson.run_dir)
    assert record["status"] == "done" and read_metrics(lesson.run_dir)["03_reranking"] == {"n_pairs": 5}
    (timing,) = record["timings"]
    assert timing["notebook"] == registry.step("03").notebook
    assert timing["parameters"]["pairing"] == "top_bottom" and timing["parameters"]["use_reference_solutions"] is False

    # Notebook 04 by hand: this run's 03 has a non-default pairing, so the newest run that fits is the sweep point.
    assert start_lesson("04", namespace={}, model_id=MODEL, seed=0).earlier_ledger("03").total() == 0
    assert f"copied from {chosen}" in capsys.readouterr().out


def test_a_by_hand_run_at_the_defaults_is_reused_through_the_runs_it_copied(runs_root, capsys, fake_papermill):
    fake_run(runs_root, "cpu-a", ["01", "02"], age=100)
    three = start_lesson("03", namespace={}, model_id=MODEL, seed=0)
    three.ledger.add("scoring", flops=1e9, seconds=1.0, items=4)
    three.save_metrics({"n_pairs": 5})
    four = start_lesson("04", namespace={}, model_id=MODEL, seed=0)
    assert f"copied from {three.run_dir}" in capsys.readouterr().out
    assert four.earlier_ledger("03").total() == 1e9  # 01, 02 traced to cpu-a through 03's run.json
    assert not fake_papermill


def test_by_hand_without_a_compatible_run_builds_the_earlier_steps_once(runs_root, capsys, fake_papermill):
    edited = start_lesson("01", namespace={"n_harmful": 200}, model_id=MODEL, seed=0)
    assert capsys.readouterr().out == f"run folder: {edited.run_dir}\n"
    edited.save_metrics({"rm_path": "artifacts/hybrid_rm.pt"})
    assert read_run_record(edited.run_dir)["parameters"]["n_harmful"] == 200

    lesson = start_lesson("02", namespace={}, model_id=MODEL, seed=0)  # the edited 01 does not fit
    out = capsys.readouterr().out
    assert "building them first in" in out and "~8 min, a rough estimate" in out
    (call,) = fake_papermill
    built = call["run_dir"]
    assert call["notebooks"] == ["01"] and call["progress"] and built.name.startswith("defaults-")
    assert call["parameters"] == {"model_id": MODEL, "seed": 0, "use_reference_solutions": True}
    assert read_run_record(built)["status"] == "done"
    assert read_run_record(lesson.run_dir)["from_run"]["path"] == str(built)
    assert read_metrics(lesson.run_dir)["01_probing"] == {"made_in": "built"}

    again = start_lesson("02", namespace={}, model_id=MODEL, seed=0)  # the built steps are reused, not rebuilt
    assert f"copied from {built}" in capsys.readouterr().out and len(fake_papermill) == 1
    assert again.run_dir != lesson.run_dir


def test_a_failed_build_is_one_error_naming_the_notebook(runs_root, monkeypatch):
    def fail(notebooks, parameters, run_dir, progress=True, timings=None, current=None):
        raise runner.NotebookFailed(notebooks[0].name, str(run_dir / notebooks[0].name), 3, 4, "ValueError", "boom")

    monkeypatch.setattr(runner, "execute_series", fail)
    with pytest.raises(RuntimeError, match="building the earlier steps failed: 01_probing.* ValueError: boom"):
        start_lesson("02", namespace={}, model_id=MODEL, seed=0)


def test_an_explicit_output_dir_behaves_as_reprank_run_expects(runs_root, tmp_path, capsys, fake_papermill):
    fake_run(runs_root, "cpu-a", ["01", "02", "03"], age=100)  # never looked at with an explicit folder
    given = tmp_path / "given"
    lesson = start_lesson("02", output_dir=str(given), model_id=MODEL, seed=3)
    assert lesson.run_dir == given and not lesson.by_hand
    assert capsys.readouterr().out.splitlines()[1:] == [f"run folder: {given}"]
    (call,) = fake_papermill  # 01 was missing there: executed in that folder, as runner.ensure_step does
    assert call["notebooks"] == ["01"] and call["run_dir"] == given and not call["progress"]
    assert call["parameters"] == {"model_id": MODEL, "seed": 3}
    lesson.save_metrics({"tau": 1.0})
    assert read_metrics(given)["02_confidence"] == {"tau": 1.0}
    assert not (given / "run.json").exists()  # the runner owns run.json there
    assert sorted(p.name for p in runs_root.iterdir()) == ["cpu-a"]  # no new folder under runs/

    # 03 needs only 01 here (02's tau when it ran); without 02 its confidence file is simply absent.
    other = tmp_path / "other"
    other.mkdir()
    write_results(other, ["01"], "given")
    three = start_lesson("03", output_dir=other, model_id=MODEL, seed=3)
    assert not three.artifact("confidence").exists() and len(fake_papermill) == 1


def test_an_artifact_an_earlier_step_never_wrote_is_one_line(runs_root, tmp_path, capsys, fake_papermill):
    folder = tmp_path / "old"
    folder.mkdir()
    write_results(folder, ["01", "02", "03"], "old")
    registry.default_path(folder, "sampling").unlink()  # results from before 03 saved its sampling settings
    lesson = start_lesson("04", output_dir=folder, model_id=MODEL, seed=0)
    predates = r"step 03 finished there without writing sampling.json .*new folder \(output_dir = \"\"\)$"
    with pytest.raises(UserError, match=predates):
        lesson.artifact("sampling")
    assert lesson.artifact("candidates").is_file() and not fake_papermill


def test_a_later_lesson_reads_the_parameter_an_earlier_step_ran_with(runs_root, tmp_path, capsys, fake_papermill):
    fake_run(runs_root, "cpu-a", ["01", "02"], age=100, max_response_tokens=48)
    given = runs_root / "cpu-a"
    assert start_lesson("03", output_dir=str(given), model_id=MODEL, seed=0).earlier_parameter(
        "01", "max_response_tokens") == 48
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no record of the no_such_parameter step 01 ran with"):
        start_lesson("03", output_dir=str(empty), model_id=MODEL, seed=0).earlier_parameter("01", "no_such_parameter")
