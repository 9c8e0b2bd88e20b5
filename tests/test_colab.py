"""Notebook checks for the Colab path: an 'Open in Colab' badge to the notebook itself, and a setup cell right
after the title that installs the pinned project on Colab and does nothing anywhere else.

(The other hygiene checks, one parameters cell, no outputs, kernelspec, no input(), are in test_project.py.)
"""

import json
import re
import subprocess
import sys
import tomllib
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
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


def run_cell(code, monkeypatch, on_colab):
    """Execute a cell's source with google.colab present or absent; return the recorded check_call commands."""
    calls = []
    monkeypatch.setattr(subprocess, "check_call", lambda command, *args, **kwargs: calls.append(list(command)))
    for name in ("run", "Popen", "call", "check_output"):  # nothing else may start a process
        monkeypatch.setattr(subprocess, name, lambda *args, **kwargs: pytest.fail("unexpected subprocess"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    if on_colab:
        monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    exec(compile(code, "<setup cell>", "exec"), {"__name__": "__main__"})
    return calls


def test_every_notebook_is_checked():
    assert len(NOTEBOOKS) >= 3


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
    clone = re.findall(r"^\s*REPO = (.+)$", setup_source(notebook), re.M)
    assert clone == [f'"https://github.com/{repo}.git"'], f"{notebook.name}: the setup cell clones another repository"
    assert f"@{branch}#egg=reprank" in setup_source(notebook), f"{notebook.name}: the setup cell installs another branch"


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
def test_setup_cell_on_colab_installs_the_pinned_project_and_keeps_colabs_torch(notebook, monkeypatch, capsys):
    import torch  # noqa: F401  (the cell imports it after installing; keep that import cheap here)

    calls = run_cell(setup_source(notebook), monkeypatch, on_colab=True)
    assert len(calls) == 2
    for command in calls:
        assert command[:4] == [sys.executable, "-m", "pip", "install"]
        # Every call is constrained to the torch that is already installed: Colab's CUDA build stays.
        constraint = Path(command[command.index("-c") + 1])
        assert constraint.read_text().strip() == f"torch=={torch.__version__}"
        assert not any(requirement_name(arg) == "torch" for arg in command if not arg.startswith("-"))
    constraint.unlink()

    project, wheels = calls
    match = badge(notebook)
    editable = project[project.index("-e") + 1]
    assert editable == f"git+https://github.com/{match['repo']}.git@{match['branch']}#egg=reprank"
    requirements = [a for a in project[4:] if not a.startswith("-") and a != editable and "/" not in a]
    assert sorted(requirements) == sorted(expected_requirements()), "the pins of pyproject.toml, torch left out"

    assert "--no-deps" in wheels
    assert [a for a in wheels[4:] if not a.startswith("-") and "/" not in a] == data_wheels()
    assert "reprank installed" in capsys.readouterr().out
