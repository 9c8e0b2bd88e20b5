"""The runner (``reprank run``): parameter checks before anything runs, one-line user errors, interrupted
runs, the registry of artifacts. On the tiny fake notebooks of tests/fixtures, and the real notebooks'
parameters cells (read, never executed here)."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest
import yaml

from reprank import cli
from reprank.running import parameters, registry, runner
from reprank.base.errors import UserError
from reprank.running.runs import read_metrics, read_run_record, update_metrics

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FAKE_PROFILE = str(FIXTURES / "fake-profile.yaml")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fake_notebooks(monkeypatch):
    monkeypatch.setenv("REPRANK_NOTEBOOKS", str(FIXTURES / "notebooks"))
    monkeypatch.delenv("FAKE_NOTEBOOK_FIXED", raising=False)


def run_cli(capsys, *argv):
    capsys.readouterr()
    status = cli.main(list(argv))
    return status, capsys.readouterr().err


def test_a_wrong_type_is_one_line_exit_2_and_no_run_folder(tmp_path, fake_notebooks, capsys):
    root = tmp_path / "runs"
    status, err = run_cli(capsys, "run", "--profile", FAKE_PROFILE, "--set", "seed=abc", "--runs-root", str(root))
    assert status == 2
    assert err == "reprank: error: --set seed=abc: seed must be an integer (notebook 01 declares seed = 0)\n"
    assert not root.exists()
    # --debug shows the traceback instead.
    with pytest.raises(UserError, match="seed must be an integer"):
        cli.main(["--debug", "run", "--profile", FAKE_PROFILE, "--set", "seed=abc", "--runs-root", str(root)])
    assert not root.exists()


def test_the_real_notebooks_parameter_types():
    every = parameters.list_notebooks()
    check = lambda overrides, only=None: parameters.build_parameters(
        "cpu", overrides, parameters.select_notebooks(only) if only else every)
    with pytest.raises(UserError, match=r"^--set seed=abc: seed must be an integer \(notebook 01 declares seed = 0\)$"):
        check({"seed": "abc"})
    assert check({"rm_lr": 1})["rm_lr"] == 1  # an int where a float is declared is fine
    assert parameters.parse_overrides(["rm_lr=5e-4"]) == {"rm_lr": 0.0005}  # YAML 1.1 would say "5e-4"
    assert check({"layers": [1, 2]})["layers"] == [1, 2]  # "all" or a list
    assert check({"methods": "dpo"}, ["04"])["methods"] == "dpo"  # a sweep passes one method
    assert check({"arms": "paper"}, ["05"])["arms"] == "paper"  # ... or one arm of notebook 05
    assert check({"methods": ["dpo", "ipo"]}, ["04"])["methods"] == ["dpo", "ipo"]
    with pytest.raises(UserError, match="ablations must be a list"):
        check({"ablations": "no_nll"}, ["06"])
    with pytest.raises(UserError, match="beta must be a number"):
        check({"beta": True}, ["04"])
    with pytest.raises(UserError, match="max_steps is not a parameter of any selected notebook.*01"):
        check({"max_steps": 3}, ["01"])
    # Notebook 04's training parameters carry TRL DPOConfig's names.
    declared = parameters.declared_parameters(parameters.select_notebooks(["04"])[0])
    assert {"max_steps", "per_device_train_batch_size", "learning_rate", "beta", "max_length"} <= declared
    assert not {"train_steps", "train_batch_size", "pairing", "sample_temperature"} & declared


def test_an_unknown_parameter_is_named_with_close_matches(tmp_path, fake_notebooks, capsys):
    status, err = run_cli(capsys, "run", "--profile", FAKE_PROFILE, "--set", "sede=1", "--runs-root", str(tmp_path))
    assert status == 2 and err.count("\n") == 1
    assert "--set sede=1: sede is not a parameter of any selected notebook" in err and "did you mean seed" in err
    assert not any(tmp_path.iterdir())


def test_profile_keys_are_checked_the_same_way(tmp_path, fake_notebooks, capsys):
    profile = tmp_path / "p.yaml"
    profile.write_text(yaml.safe_dump({"method": "a", "scale": "big"}))
    status, err = run_cli(capsys, "run", "--profile", str(profile), "--runs-root", str(tmp_path / "runs"))
    assert status == 2
    assert err == f"reprank: error: profile '{profile}': scale must be a number (notebook 01 declares scale = 1.0)\n"
    profile.write_text(yaml.safe_dump({"methd": "a"}))
    status, err = run_cli(capsys, "run", "--profile", str(profile), "--runs-root", str(tmp_path / "runs"))
    assert status == 2 and "methd is not a parameter of any notebook; did you mean method?" in err
    assert not (tmp_path / "runs").exists()
    status, err = run_cli(capsys, "run", "--profile", "no-such-profile")
    assert status == 2 and err.startswith("reprank: error: Unknown profile 'no-such-profile'")


def test_ensure_step_rebuilds_with_the_parameters_recorded_in_run_json(tmp_path, fake_notebooks):
    recorded = {"method": "b", "seed": 0, "scale": 2.0, "factor": 10}
    runner.start_run(tmp_path, "fake", recorded, parameters.select_notebooks(["02"]))
    record = runner.execute_run(tmp_path, progress=False)
    assert record["status"] == "done", record.get("failure")
    metrics = read_metrics(tmp_path)
    assert metrics["fake"]["score"] == pytest.approx(4.0)  # 01 ran with the recorded scale 2 and method b
    assert metrics["fake2"]["score"] == pytest.approx(40.0)


def _our_kernels(token):
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if "ipykernel_launcher" in " ".join(process.info["cmdline"] or []) and \
                    process.environ().get("REPRANK_TEST_TOKEN") == token:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def sleeping_notebooks(folder: Path, marker: Path) -> Path:
    """tests/fixtures/sleeping, with its sleeping cell first touching ``marker``: an event the test can wait for."""
    folder.mkdir()
    notebook = json.loads((FIXTURES / "sleeping" / "01_sleep.ipynb").read_text())
    cell = notebook["cells"][-1]
    assert "".join(cell["source"]).startswith("import time\n") and "time.sleep(seconds)" in "".join(cell["source"])
    cell["source"] = ["import time\n", "from pathlib import Path\n", "\n",
                      f"Path({str(marker)!r}).touch()  # the kernel is in this cell: the test may interrupt it\n",
                      "time.sleep(seconds)"]
    (folder / "01_sleep.ipynb").write_text(json.dumps(notebook, indent=1))
    return folder


def test_sigterm_marks_the_run_interrupted_and_leaves_no_kernel(tmp_path):
    token, marker, runs_root = uuid.uuid4().hex, tmp_path / "in-the-sleeping-cell", tmp_path / "runs"
    notebooks = sleeping_notebooks(tmp_path / "notebooks", marker)
    env = dict(os.environ, REPRANK_NOTEBOOKS=str(notebooks), REPRANK_TEST_TOKEN=token,
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    process = subprocess.Popen(
        [sys.executable, "-m", "reprank", "run", "--profile", str(FIXTURES / "sleeping" / "sleep-profile.yaml"),
         "--runs-root", str(runs_root), "--quiet"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Wait for the sleeping cell itself to say it runs (papermill has saved its start before sending it).
    deadline = time.monotonic() + 120
    while not marker.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            out, err = process.communicate()
            pytest.fail(f"the kernel never reached the sleeping cell (exit {process.returncode}): {err[-2000:]}")
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    (run_dir,) = runs_root.iterdir()
    record = read_run_record(run_dir)
    assert record["status"] == "interrupted"
    assert record["interrupted"]["signal"] == "SIGTERM" and record["interrupted"]["notebook"] == "01_sleep.ipynb"
    assert record["interrupted"]["cell_first_line"] == "import time"
    assert "interrupted by SIGTERM" in err
    # No kernel left behind, and none ran over unencrypted TCP.
    deadline = time.monotonic() + 10
    while _our_kernels(token) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _our_kernels(token)
    assert "without encryption" not in out + err


def test_registry_paths(tmp_path):
    assert registry.artifact(tmp_path, "reranked_pairs") == tmp_path / "artifacts" / "reranked_pairs.jsonl"
    assert registry.artifact(tmp_path, "sampling") == tmp_path / "artifacts" / "sampling.json"
    assert registry.step("03").section == "03_reranking"
    # A file already there is never overwritten: a new name, which the step records in its metrics ...
    first = registry.new_artifact_path(tmp_path, "reranked_pairs")
    first.write_text("{}\n")
    second = registry.new_artifact_path(tmp_path, "reranked_pairs")
    assert second != first and second.name.startswith("reranked_pairs-") and second.suffix == ".jsonl"
    update_metrics(tmp_path, "03_reranking", {"pairs_path": registry.relative(tmp_path, second)})
    # ... and the registry resolves through that record.
    assert registry.artifact(tmp_path, "reranked_pairs") == tmp_path / second.relative_to(tmp_path)
    with pytest.raises(KeyError, match="unknown artifact"):
        registry.artifact(tmp_path, "nope")
    assert [step.notebook for step in registry.STEPS.values()] == [nb.name for nb in sorted(
        (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))]


@pytest.mark.parametrize("notebook", sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.stem)
def test_notebooks_name_artifacts_through_the_registry(notebook):
    code = "\n".join("".join(c["source"]) for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code")
    for artifact in registry.ARTIFACTS.values():
        assert artifact.filename not in code, f"{notebook.name} types {artifact.filename}"
    assert "reprank import cli" not in code and "cli." not in code


def test_running_a_series_never_loads_the_command_line():
    # At run time, not only in the source (tests/test_architecture.py reads the imports).
    probe = ("import sys, reprank.running.runner, reprank.running.sweep, reprank.running.report, "
             "reprank.running.parameters, reprank.running.registry; "
             "assert 'reprank.cli' not in sys.modules, 'something imports the CLI'")
    subprocess.run([sys.executable, "-c", probe], check=True, cwd=ROOT,
                   env=dict(os.environ, PYTHONPATH=str(ROOT)))


@pytest.fixture
def papermill_calls(monkeypatch):
    """papermill's execute_notebook replaced (nothing executes): records what each notebook would get and writes
    that step's metrics section, as the notebook would."""
    import papermill

    calls = []

    def execute_notebook(input_path, output_path, parameters, **kwargs):
        calls.append((Path(input_path).name[:2], dict(parameters)))
        update_metrics(parameters["output_dir"], registry.step(Path(input_path).name).section, {"done": True})

    monkeypatch.setattr(papermill, "execute_notebook", execute_notebook)
    return calls


def test_runs_go_on_with_the_reference_solutions_unless_the_user_sets_them(tmp_path, papermill_calls, capsys):
    root = tmp_path / "runs"
    declaring = [nb.name[:2] for nb in parameters.list_notebooks()
                 if "use_reference_solutions" in parameters.declared_parameters(nb)]
    assert declaring == ["01", "02", "03", "04", "05"]  # 06 has no exercises
    assert run_cli(capsys, "run", "--profile", "cpu", "--runs-root", str(root)) == (0, "")
    assert [(name, given.get("use_reference_solutions")) for name, given in papermill_calls] == \
        [(name, True) for name in declaring] + [("06", None)]
    (run_dir,) = root.iterdir()  # run.json records what each notebook got
    assert all(t["parameters"]["use_reference_solutions"] is True for t in read_run_record(run_dir)["timings"]
               if t["notebook"][:2] in declaring)
    # A student runs their own solutions through the pipeline.
    papermill_calls.clear()
    status, _ = run_cli(capsys, "run", "--profile", "cpu", "--notebooks", "02",
                        "--set", "use_reference_solutions=false", "--runs-root", str(root))
    assert status == 0 and papermill_calls == [("02", papermill_calls[0][1])]
    assert papermill_calls[0][1]["use_reference_solutions"] is False
    # A notebook that does not declare it is not given it.
    fake = FIXTURES / "notebooks" / "01_fake.ipynb"
    assert "use_reference_solutions" not in parameters.notebook_parameters(fake, {"use_reference_solutions": True})


def test_ensure_step_rebuilds_with_the_reference_solutions_unless_the_run_set_them(tmp_path, papermill_calls):
    # A student's notebook 02 run by hand (use_reference_solutions = False there) rebuilds step 01 with them ...
    for name in "abc":
        (tmp_path / name).mkdir()
    runner.start_run(tmp_path / "a", "cpu", {"seed": 0}, parameters.select_notebooks(["02"]))
    assert runner.ensure_step(tmp_path / "a", "01", seed=0) == {"done": True}
    assert papermill_calls[-1][0] == "01" and papermill_calls[-1][1]["use_reference_solutions"] is True
    # ... not when the run (or the caller) says otherwise; a finished step is not rebuilt.
    runner.start_run(tmp_path / "b", "cpu", {"use_reference_solutions": False}, parameters.select_notebooks(["02"]))
    runner.ensure_step(tmp_path / "b", "01")
    assert papermill_calls[-1][1]["use_reference_solutions"] is False
    runner.ensure_step(tmp_path / "c", "01", use_reference_solutions=False)
    assert papermill_calls[-1][1]["use_reference_solutions"] is False
    runner.ensure_step(tmp_path / "a", "01")
    assert len(papermill_calls) == 3
