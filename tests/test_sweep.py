"""Sweeps (``reprank sweep``) and ``--from-run``, on the tiny fake notebooks in tests/fixtures/notebooks.

The fake notebook 01 writes a score that depends on ``method``, ``seed`` and ``scale``, and raises for
``method: bad`` unless ``FAKE_NOTEBOOK_FIXED=1``; 02 rebuilds 01 with ``runner.ensure_step`` when it is missing.
Each papermill execution of them takes a second or two. Every sweep here runs through submitit's local
executor, one job per point, as ``reprank sweep`` does by default; SLURM is checked without submitting.
"""

import argparse
import json
import os
import re
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from reprank import cli
from reprank.running import report, runner, sweep, sweep_jobs
from reprank.base.errors import UserError
from reprank.running.runs import read_metrics, read_run_record

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
        # One submitit job per point; its log is in the sweep folder's .submitit/, not in the run folder.
        assert result.job_id and Path(result.log).is_file()
        assert Path(result.log).parent.parent == Path(runs_root) / spec.name / ".submitit"
    out = report.make_report([Path(runs_root) / spec.name], Path(runs_root) / f"report-{spec.name}")
    stats = pd.read_csv(out / "aggregate.csv")
    n_seeds = len(spec.grid.get("seed", [None]))
    assert (stats["n"] == n_seeds).all()
    groups = len(sweep.expand_grid({k: v for k, v in spec.grid.items() if k != "seed"}))
    assert stats.groupby("metric").size().eq(groups).all()
    # A 95% t-interval over the seeds around each mean; none from a single seed.
    assert stats.ci95_low.isna().all() if n_seeds == 1 else (stats.ci95_low <= stats["mean"]).all()
    assert (out / "report.html").is_file()
    return results, out, stats


@pytest.fixture
def fake_notebooks(monkeypatch):
    monkeypatch.setenv("REPRANK_NOTEBOOKS", str(FIXTURES / "notebooks"))
    monkeypatch.delenv("FAKE_NOTEBOOK_FIXED", raising=False)


def write_spec(path, **values):
    path.write_text(yaml.safe_dump({"profile": FAKE_PROFILE, **values}, sort_keys=False))
    return path


def sweep_args(spec, root, **options):
    """The namespace ``reprank sweep`` hands to :func:`sweep.cmd_sweep`, defaults as in cli.py."""
    values = dict(spec=str(spec), runs_root=str(root), notebooks=None, from_run=None, executor="local", jobs=1,
                  partition=None, time=None, gpus_per_node=None, cpus_per_task=None, mem_gb=None, max_parallel=None)
    return argparse.Namespace(**{**values, **options})


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


def test_bad_specs_and_options_are_refused_in_one_line_before_anything_runs(tmp_path, fake_notebooks):
    for values, message in [({"grid": {"seed": 0}}, "non-empty list"), ({"grids": {}}, "unknown keys"),
                            ({"set": {"seed": 1}, "grid": {"seed": [0]}}, "both in set and in grid")]:
        with pytest.raises(UserError, match=message):
            sweep.load_spec(write_spec(tmp_path / "bad.yaml", **values))
    (tmp_path / "broken.yaml").write_text("grid: {seed: [0, 1\n")
    with pytest.raises(UserError, match="not valid YAML") as caught:
        sweep.load_spec(tmp_path / "broken.yaml")
    assert "\n" not in str(caught.value)
    with pytest.raises(UserError, match="No sweep spec"):
        sweep.load_spec(tmp_path / "missing.yaml")
    clash = sweep.load_spec(write_spec(tmp_path / "clash.yaml", grid={"method": ["a/b", "a_b"]}))
    with pytest.raises(UserError, match="same folder name"):
        sweep.run_sweep(clash, tmp_path)
    unknown = sweep.load_spec(write_spec(tmp_path / "unknown.yaml", grid={"nope": [1, 2]}))
    with pytest.raises(UserError, match="not a parameter of any selected notebook"):
        sweep.run_sweep(unknown, tmp_path)
    assert not (tmp_path / "unknown").exists()
    spec = write_spec(tmp_path / "ok.yaml", notebooks=["01"], grid={"seed": [0]})
    for options, message in [({"executor": "pbs"}, "unknown; use one of local, slurm"),
                             ({"jobs": 0}, "--jobs 0: must be a positive"), ({"time": -5}, "--time -5")]:
        with pytest.raises(UserError, match=message):
            sweep.cmd_sweep(sweep_args(spec, tmp_path / "runs", **options))
    assert not (tmp_path / "runs").exists()


def test_sweep_reports_a_failing_cell_keeps_going_and_a_rerun_resumes(tmp_path, fake_notebooks, monkeypatch, capsys):
    spec = write_spec(tmp_path / "fake.yaml", notebooks=["01"], set={"scale": 2.0},
                      grid={"method": ["a", "bad"], "seed": [0, 1]})
    root = tmp_path / "runs"
    assert cli.main(["sweep", str(spec), "--runs-root", str(root), "--executor", "local", "--jobs", "2"]) == 1
    table = capsys.readouterr().out
    sweep_dir = root / "fake"
    names = ["method=a,seed=0", "method=a,seed=1", "method=bad,seed=0", "method=bad,seed=1"]
    assert sorted(p.name for p in sweep_dir.iterdir() if p.is_dir() and p.name != ".submitit") == names
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
    for line in (r"method=a,seed=0 +done", r"method=bad,seed=1 +failed +[\d.]+ +01_fake.ipynb In \[4\]: ValueError",
                 r"method=a,seed=0: job \d+ submitted \(log: .*\.submitit/\d+/\d+_0_log\.out\)"):
        assert re.search(line, table), table
    # Each point was its own submitit job; the failing one's log shows which notebook it ran.
    points = json.loads((sweep_dir / "sweep.json").read_text())["points"]
    assert len({p["job_id"] for p in points}) == 4 and all(Path(p["log"]).is_file() for p in points)
    assert "01_fake.ipynb" in Path(points[2]["log"]).read_text()

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

    # The report over methods x seeds: the finished points only, grouped by method, over the two seeds.
    out = report.make_report([sweep_dir], tmp_path / "report")
    stats = pd.read_csv(out / "aggregate.csv").set_index(["method", "metric"])
    assert len(pd.read_csv(out / "runs.csv")) == 4
    score = stats.xs("fake.score", level="metric")
    assert score.loc["a", "mean"] == pytest.approx(2.1) and score.loc["bad", "mean"] == pytest.approx(6.1)
    assert (score["n"] == 2).all()
    # Seeds 0 and 1 give scale * 0.1 apart: std = 0.2 / sqrt(2), 95% interval = mean ± t(0.975, 1) * std / sqrt(2).
    half = 12.706204736 * (0.2 / np.sqrt(2)) / np.sqrt(2)
    assert score.loc["a", "ci95_low"] == pytest.approx(2.1 - half)
    assert score.loc["a", "ci95_high"] == pytest.approx(2.1 + half)
    page = (out / "report.html").read_text()
    assert "95% CI" in page and "moved aside" in page


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
    names = sorted(p.name.split("-")[0] for p in (root / "s").iterdir() if p.is_dir() and p.name != ".submitit")
    assert names == ["seed=0", "seed=0.incomplete", "seed=1", "seed=1.stale"]
    assert sweep.run_sweep(sweep.load_spec(spec_path), root)[0].status == "skipped"


def test_a_job_that_dies_is_recorded_as_failed_with_its_log(tmp_path, fake_notebooks, monkeypatch):
    # The job raises before execute_run records anything (here: its run.json names no notebooks).
    spec = sweep.load_spec(write_spec(tmp_path / "d.yaml", notebooks=["01"], grid={"seed": [0]}))
    start_run = runner.start_run

    def broken_start(run_dir, *args, **kwargs):
        record = start_run(run_dir, *args, **kwargs)
        (Path(run_dir) / "run.json").write_text(json.dumps({k: v for k, v in record.items() if k != "notebooks"}))

    monkeypatch.setattr(runner, "start_run", broken_start)
    (result,) = sweep.run_sweep(spec, tmp_path / "runs")
    assert result.status == "failed" and f"job {result.job_id} failed" in result.detail
    failure = read_run_record(result.folder)["failure"]
    assert failure["ename"] == "FailedJobError" and "KeyError: 'notebooks'" in failure["evalue"]  # the job's trace
    assert Path(failure["output"]).name.endswith("_log.err") and failure["summary"].endswith(failure["output"])
    assert Path(failure["output"]).is_file()


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
    # --from-run on the command line overrides the spec's; a seed that differs from the earlier run's is recorded.
    assert cli.main(["run", "--profile", FAKE_PROFILE, "--notebooks", "02", "--set", "method=b", "seed=1",
                     "--from-run", str(earlier), "--runs-root", str(tmp_path / "third"), "--quiet"]) == 0
    (third,) = (tmp_path / "third").iterdir()
    assert read_metrics(third)["fake"]["token"] == token
    assert read_run_record(third)["from_run"]["parameters_that_differ"] == {"seed": {"earlier": 0, "now": 1}}
    assert cli.main(["run", "--profile", FAKE_PROFILE, "--from-run", str(tmp_path), "--runs-root", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()
    with pytest.raises(UserError, match="no metrics.json"):
        sweep.run_sweep(sweep.load_spec(spec), tmp_path / "runs", from_run=tmp_path)


def test_profile_keys_need_not_belong_to_the_selected_notebooks(fake_notebooks):
    # The profile sets factor, a parameter of 02 only; running 01 alone from it is fine...
    notebooks = runner.select_notebooks(["01"])
    assert runner.build_parameters(FAKE_PROFILE, {"seed": 3}, notebooks)["seed"] == 3
    # ...but an explicit override that no selected notebook takes would change nothing: refused.
    with pytest.raises(UserError, match="not a parameter of any selected notebook"):
        runner.build_parameters(FAKE_PROFILE, {"factor": 3}, notebooks)


def test_local_points_see_the_callers_gpus_and_a_share_of_the_cores(monkeypatch):
    # submitit's local executor sets CUDA_VISIBLE_DEVICES to gpus_per_node GPUs (none by default); a point's
    # job puts back the caller's value, or unsets it, so it sees the GPUs `reprank run` would.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    env = sweep_jobs.job_environment(sweep_jobs.ExecutorOptions(jobs=2))
    assert env["CUDA_VISIBLE_DEVICES"] == "3"
    assert env["OMP_NUM_THREADS"] == str(max(1, (os.cpu_count() or 1) // 2))
    assert "CUDA_VISIBLE_DEVICES" not in sweep_jobs.job_environment(sweep_jobs.ExecutorOptions(gpus_per_node=1))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert sweep_jobs.job_environment(sweep_jobs.ExecutorOptions()) == {"CUDA_VISIBLE_DEVICES": None}


def fake_slurm(tmp_path, monkeypatch):
    """An ``srun`` and an ``sbatch`` on PATH: submitit builds a real SlurmExecutor and writes the real sbatch
    script; this sbatch keeps a copy of it and refuses the job, as a cluster does for an unknown partition."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "sbatch").write_text(f"#!/bin/sh\ncp \"$1\" {tmp_path}/submitted.sh\n"
                                    "echo 'sbatch: error: invalid partition specified: gpu' >&2\nexit 1\n")
    for tool in ("srun", "sbatch"):
        (bin_dir / tool).chmod((bin_dir / tool).stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return tmp_path / "submitted.sh"


def test_slurm_sweep_hands_the_options_to_sbatch_as_one_job_array(tmp_path, fake_notebooks, monkeypatch):
    spec = write_spec(tmp_path / "sl.yaml", notebooks=["01"], grid={"seed": [0, 1, 2]})
    args = sweep_args(spec, tmp_path / "runs", executor="slurm", partition="gpu", time=60, gpus_per_node=1,
                      cpus_per_task=8, mem_gb=32, max_parallel=2, jobs=5)
    with monkeypatch.context() as patch:
        patch.setenv("PATH", str(tmp_path / "no-slurm-here"))
        with pytest.raises(UserError, match="no SLURM here"):
            sweep.cmd_sweep(args)
    submitted = fake_slurm(tmp_path, monkeypatch)
    options = sweep_jobs.ExecutorOptions.from_args(args)
    try:
        executor = sweep_jobs.make_executor(options, tmp_path / ".submitit", name="reprank-s")
    except RuntimeError as exc:  # pragma: no cover - a submitit that needs more than srun on PATH
        pytest.skip(f"submitit cannot build a SLURM executor here: {exc}")
    assert executor.cluster == "slurm" and options.parallel == 2  # --jobs is for the local executor
    with pytest.raises(UserError, match="submission was refused: sbatch: error: invalid partition specified"):
        sweep.cmd_sweep(args)
    script = submitted.read_text()  # what sbatch was given: one array of 3 tasks, at most 2 at once
    for line in ("#SBATCH --array=0-2%2", "#SBATCH --partition=gpu", "#SBATCH --time=60", "#SBATCH --gpus-per-node=1",
                 "#SBATCH --cpus-per-task=8", "#SBATCH --mem=32GB", "#SBATCH --job-name=reprank-sl"):
        assert line in script, script
    assert f"--output={tmp_path / 'runs' / 'sl' / '.submitit'}/%A_%a/%A_%a_0_log.out" in script
    assert "-m submitit.core._submit" in script
    # Nothing ran: each point is left as started, to be moved aside and rerun by the next sweep.
    assert [read_run_record(tmp_path / "runs" / "sl" / f"seed={i}")["status"] for i in range(3)] == ["started"] * 3
    assert "CUDA_VISIBLE_DEVICES" not in sweep_jobs.job_environment(options)  # SLURM sets it for the job's GPUs
