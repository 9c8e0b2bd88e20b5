"""Sweeps (``reprank sweep``) and ``--from-run``, on the tiny fake notebooks in tests/fixtures/notebooks.

The fake notebook 01 writes a score that depends on ``method``, ``seed`` and ``scale``, and raises for
``method: bad`` unless ``FAKE_NOTEBOOK_FIXED=1``; 02 rebuilds 01 with ``runner.ensure_step`` when it is missing.
Each papermill execution of them takes a second or two.
"""

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from reprank import cli, report, runner, sweep
from reprank.errors import UserError
from reprank.runs import read_metrics, read_run_record

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FAKE_PROFILE = str(FIXTURES / "fake-profile.yaml")


def check_sweep_and_report(spec_path, runs_root, jobs=1, from_run=None, notebooks=None):
    """Run a sweep, check every point finished into its own folder with its grid point recorded, and
    build the report; returns (results, report folder, aggregate table).

    For the real 2×2 method × seed sweep on notebook 04 at smoke size:
    ``check_sweep_and_report(ROOT / "profiles/sweeps/smoke-method-seed.yaml", tmp_path, from_run=...)``.
    The aggregate has one group per non-seed grid value, each over all the seeds (n = number of seeds).
    """
    spec = sweep.load_spec(spec_path)
    results = sweep.run_sweep(spec, runs_root, jobs=jobs, notebooks=notebooks, from_run=from_run)
    assert [r.status for r in results] == ["done"] * len(results), sweep.format_table(results)
    for (name, point), result in zip(sweep.plan_points(spec), results):
        record = read_run_record(result.folder)
        assert Path(result.folder).name == name and record["sweep"]["point"] == point
        assert record["status"] == "done" and {k: record["parameters"][k] for k in point} == point
    out = report.make_report([Path(runs_root) / spec.name], Path(runs_root) / f"report-{spec.name}")
    stats = pd.read_csv(out / "aggregate.csv")
    n_seeds = len(spec.grid.get("seed", [None]))
    assert (stats["n"] == n_seeds).all()
    groups = len(sweep.expand_grid({k: v for k, v in spec.grid.items() if k != "seed"}))
    assert stats.groupby("metric").size().eq(groups).all()
    return results, out, stats


@pytest.fixture
def fake_notebooks(monkeypatch):
    monkeypatch.setenv("REPRANK_NOTEBOOKS", str(FIXTURES / "notebooks"))
    monkeypatch.delenv("FAKE_NOTEBOOK_FIXED", raising=False)


def write_spec(path, **values):
    path.write_text(yaml.safe_dump({"profile": FAKE_PROFILE, **values}, sort_keys=False))
    return path


def test_grid_expands_in_order_to_readable_deterministic_names():
    grid = {"method": ["dpo", "confidence"], "seed": [0, 1]}
    points = sweep.expand_grid(grid)
    assert points == [{"method": "dpo", "seed": 0}, {"method": "dpo", "seed": 1},
                      {"method": "confidence", "seed": 0}, {"method": "confidence", "seed": 1}]
    assert [sweep.point_name(p) for p in points] == [
        "method=dpo,seed=0", "method=dpo,seed=1", "method=confidence,seed=0", "method=confidence,seed=1"]
    odd = {"model_id": "HuggingFaceTB/SmolLM2-360M-Instruct", "beta": 0.1, "layers": [1, 2], "flag": True}
    assert sweep.point_name(odd) == "model_id=HuggingFaceTB_SmolLM2-360M-Instruct,beta=0.1,layers=1_2,flag=true"
    assert sweep.point_name({}) == "base" and sweep.expand_grid({}) == [{}]


def test_bad_specs_are_refused_before_anything_runs(tmp_path, fake_notebooks):
    for values, message in [({"grid": {"seed": 0}}, "non-empty list"), ({"grids": {}}, "unknown keys"),
                            ({"set": {"seed": 1}, "grid": {"seed": [0]}}, "both in set and in grid")]:
        with pytest.raises(SystemExit, match=message):
            sweep.load_spec(write_spec(tmp_path / "bad.yaml", **values))
    clash = sweep.load_spec(write_spec(tmp_path / "clash.yaml", grid={"method": ["a/b", "a_b"]}))
    with pytest.raises(SystemExit, match="same folder name"):
        sweep.run_sweep(clash, tmp_path)
    unknown = sweep.load_spec(write_spec(tmp_path / "unknown.yaml", grid={"nope": [1, 2]}))
    with pytest.raises(UserError, match="not a parameter of any selected notebook"):
        sweep.run_sweep(unknown, tmp_path)
    assert not (tmp_path / "unknown").exists() or not any((tmp_path / "unknown").iterdir())


def test_sweep_reports_a_failing_cell_keeps_going_and_a_rerun_resumes(tmp_path, fake_notebooks, monkeypatch, capsys):
    spec = write_spec(tmp_path / "fake.yaml", notebooks=["01"], set={"scale": 2.0},
                      grid={"method": ["a", "bad"], "seed": [0, 1]})
    root = tmp_path / "runs"
    assert cli.main(["sweep", str(spec), "--runs-root", str(root), "--jobs", "2"]) == 1
    table = capsys.readouterr().out
    sweep_dir = root / "fake"
    names = ["method=a,seed=0", "method=a,seed=1", "method=bad,seed=0", "method=bad,seed=1"]
    assert sorted(p.name for p in sweep_dir.iterdir() if p.is_dir()) == names
    for name in names:
        record = read_run_record(sweep_dir / name)
        assert record["sweep"]["name"] == "fake" and record["sweep"]["point_name"] == name
        assert record["sweep"]["spec"]["grid"] == {"method": ["a", "bad"], "seed": [0, 1]}
        assert record["parameters"]["scale"] == 2.0 and "git_commit" in record and "packages" in record
    good = read_run_record(sweep_dir / "method=a,seed=1")
    assert good["status"] == "done"
    assert read_metrics(sweep_dir / "method=a,seed=1")["fake"]["score"] == pytest.approx(2.2)
    failure = read_run_record(sweep_dir / "method=bad,seed=0")["failure"]
    assert failure["notebook"] == "01_fake.ipynb" and failure["ename"] == "ValueError"
    assert "fails on purpose" in failure["evalue"] and failure["cell_first_line"].startswith("# Fails on purpose")
    executed = json.loads(Path(failure["output"]).read_text())  # papermill wrote the notebook, error included
    (cell,) = [c for c in executed["cells"] if c.get("execution_count") == failure["exec_count"]]
    assert cell["outputs"][0]["ename"] == "ValueError" and "Fails on purpose" in "".join(cell["source"])
    for line in (r"method=a,seed=0 +done", r"method=bad,seed=1 +failed +[\d.]+ +01_fake.ipynb In \[4\]: ValueError"):
        assert re.search(line, table), table

    # The bug is fixed: a rerun skips the finished points and reruns the failed ones into fresh folders.
    monkeypatch.setenv("FAKE_NOTEBOOK_FIXED", "1")
    results = sweep.run_sweep(sweep.load_spec(spec), root)
    assert [r.status for r in results] == ["skipped", "skipped", "done", "done"]
    aside = sorted(p.name for p in sweep_dir.iterdir() if ".failed-" in p.name)
    assert [a.split(".failed-")[0] for a in aside] == ["method=bad,seed=0", "method=bad,seed=1"]
    assert read_run_record(sweep_dir / aside[0])["status"] == "failed"  # the failed attempt is kept as it was
    assert read_metrics(sweep_dir / "method=bad,seed=1")["fake"]["score"] == pytest.approx(6.2)
    assert read_run_record(sweep_dir / "method=a,seed=1") == good  # a skipped point is left untouched
    assert json.loads((sweep_dir / "sweep.json").read_text())["points"][0]["status"] == "skipped"


def test_interrupted_and_stale_points_are_moved_aside_and_rerun(tmp_path, fake_notebooks):
    spec_path = write_spec(tmp_path / "s.yaml", notebooks=["01"], grid={"seed": [0, 1]})
    root = tmp_path / "runs"
    first = sweep.run_sweep(sweep.load_spec(spec_path), root)
    assert [r.status for r in first] == ["done", "done"]
    interrupted = read_run_record(root / "s" / "seed=0")
    interrupted["status"] = "running"  # as a killed run leaves it
    (root / "s" / "seed=0" / "run.json").write_text(json.dumps(interrupted))
    changed = read_run_record(root / "s" / "seed=1")
    changed["parameters"]["scale"] = 5.0  # finished, but not with what the spec gives now
    (root / "s" / "seed=1" / "run.json").write_text(json.dumps(changed))
    again = sweep.run_sweep(sweep.load_spec(spec_path), root)
    assert [r.status for r in again] == ["done", "done"]
    names = sorted(p.name.split("-")[0] for p in (root / "s").iterdir() if p.is_dir())
    assert names == ["seed=0", "seed=0.incomplete", "seed=1", "seed=1.stale"]
    assert sweep.run_sweep(sweep.load_spec(spec_path), root)[0].status == "skipped"


def test_from_run_starts_from_an_earlier_runs_results(tmp_path, fake_notebooks):
    assert cli.main(["run", "--profile", FAKE_PROFILE, "--notebooks", "01", "--set", "method=b",
                     "--runs-root", str(tmp_path / "first"), "--quiet"]) == 0
    (earlier,) = (tmp_path / "first").iterdir()
    token = read_metrics(earlier)["fake"]["token"]
    # The sweep runs only 02, over its own parameter; 02 finds step 01 in the copied metrics and artifacts.
    spec = write_spec(tmp_path / "later.yaml", notebooks=["02"], set={"method": "b"}, grid={"factor": [2, 3]},
                      from_run=str(earlier))
    results, out, stats = check_sweep_and_report(spec, tmp_path / "runs", jobs=2)
    assert sorted(stats[stats.metric == "fake2.score"]["mean"]) == [pytest.approx(4.0), pytest.approx(6.0)]
    for result, factor in zip(results, (2, 3)):
        metrics = read_metrics(result.folder)
        assert metrics["fake"]["token"] == token, "step 01 was copied, not run again"
        assert metrics["fake2"]["score"] == pytest.approx(2.0 * factor)
        source = read_run_record(result.folder)["from_run"]
        assert source["path"] == str(earlier.resolve()) and "metrics.json" in source["copied"]
        assert source["parameters_that_differ"] == {"factor": {"earlier": 10, "now": factor}}
        assert not (Path(result.folder) / "01_fake.ipynb").exists()
    # The same on `reprank run --from-run`; a seed that differs from the earlier run's is recorded.
    assert cli.main(["run", "--profile", FAKE_PROFILE, "--notebooks", "02", "--set", "method=b", "seed=1",
                     "--from-run", str(earlier), "--runs-root", str(tmp_path / "third"), "--quiet"]) == 0
    (third,) = (tmp_path / "third").iterdir()
    assert read_metrics(third)["fake"]["token"] == token
    assert read_run_record(third)["from_run"]["parameters_that_differ"] == {"seed": {"earlier": 0, "now": 1}}
    assert cli.main(["run", "--profile", FAKE_PROFILE, "--from-run", str(tmp_path), "--runs-root", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


def test_profile_keys_need_not_belong_to_the_selected_notebooks(fake_notebooks):
    # The profile sets factor, a parameter of 02 only; running 01 alone from it is fine...
    notebooks = runner.select_notebooks(["01"])
    assert runner.build_parameters(FAKE_PROFILE, {"seed": 3}, notebooks)["seed"] == 3
    # ...but an explicit override that no selected notebook takes would change nothing: refused.
    with pytest.raises(UserError, match="not a parameter of any selected notebook"):
        runner.build_parameters(FAKE_PROFILE, {"factor": 3}, notebooks)
