"""Notebook parameters: profiles, ``--set`` overrides, and the parameters each notebook declares.

A notebook declares its parameters as literals in its one cell tagged ``parameters``; the literal's type
is the parameter's type. Values from a profile or ``--set`` are checked against those types here, before
any notebook starts and before a run folder is made, so a typo costs one line of error, not a run.
"""

from __future__ import annotations

import ast
import difflib
import functools
import json
import os
import re
from pathlib import Path

import yaml

from reprank.base.errors import UserError
from reprank.running.runs import repo_root

# Parameters that take another type besides their default's: a sweep passes one method as a string;
# ``layers`` is "all" or a list of hidden-state indices.
ALSO_ACCEPTS = {"methods": (str,), "arms": (str,), "layers": (list,)}  # a sweep passes one method or arm


def notebooks_dir() -> Path:
    """The lessons' folder; ``REPRANK_NOTEBOOKS`` points elsewhere (the tests use small fake notebooks)."""
    return Path(os.environ.get("REPRANK_NOTEBOOKS") or repo_root() / "notebooks")


def profiles_dir() -> Path:
    return repo_root() / "profiles"


def list_notebooks() -> list[Path]:
    return sorted(notebooks_dir().glob("[0-9][0-9]_*.ipynb"))


def select_notebooks(only: list[str] | None) -> list[Path]:
    notebooks = list_notebooks()
    if not only:
        return notebooks
    chosen = [nb for nb in notebooks if any(nb.name.startswith(prefix) for prefix in only)]
    if not chosen:
        raise UserError(f"no notebook matches {' '.join(only)}; available: {', '.join(nb.name for nb in notebooks)}")
    return chosen


_EXPONENT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def _yaml_value(value):
    """YAML 1.1 reads ``5e-4`` (no dot) as a string; read such a value as the number it is."""
    return float(value) if isinstance(value, str) and _EXPONENT.match(value.strip()) else value


def load_profile(name: str) -> dict:
    """``profiles/<name>.yaml``, or a YAML file given by its path (``my/profile.yaml``)."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else profiles_dir() / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in profiles_dir().glob("*.yaml")))
        raise UserError(f"Unknown profile '{name}' (looked for {path}); known profiles: {known}")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(values, dict):
        raise UserError(f"{path}: a profile must be a mapping of notebook parameters to values")
    return {key: _yaml_value(value) for key, value in values.items()}


def parse_overrides(items: list[str]) -> dict:
    """``key=value`` pairs; values are read as YAML (so 3, 0.1, true, [1, 2] keep their types)."""
    overrides = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"--set expects key=value, got '{item}'")
        key, value = item.split("=", 1)
        try:
            overrides[key.strip()] = _yaml_value(yaml.safe_load(value))
        except yaml.YAMLError:
            overrides[key.strip()] = value  # e.g. an unbalanced bracket: the type check names it
    return overrides


@functools.lru_cache(maxsize=None)
def _defaults(path: str, mtime: float) -> dict:
    cells = json.loads(Path(path).read_text())["cells"]
    source = next(("".join(c["source"]) for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])), "")
    values = {}
    for node in ast.parse(source).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                if isinstance(target, ast.Name):
                    values[target.id] = ast.literal_eval(node.value)
    return values


def parameter_defaults(notebook: Path) -> dict:
    """The parameters a notebook declares, with their default values (whose types are the parameters' types).

    Read with Python's own parser: papermill's line parser skips a line whose comment holds ``=`` or
    brackets (``layers = "all"  # (1 = first layer)``), which would make such a parameter look unknown.
    """
    return dict(_defaults(str(notebook), notebook.stat().st_mtime))


def declared_parameters(notebook: Path) -> frozenset:
    """The names assigned in a notebook's ``parameters`` cell."""
    return frozenset(parameter_defaults(notebook))


# A notebook with exercises declares it (False: a student's own run); a run, a sweep point or a step rebuilt by
# ``runner.ensure_step`` goes on with the hidden reference solutions unless the user set it.
REFERENCE_SOLUTIONS = "use_reference_solutions"


def notebook_parameters(notebook: Path, parameters: dict) -> dict:
    """What papermill gives ``notebook``: the ``parameters`` it declares, and ``use_reference_solutions=True``
    where it declares that and ``parameters`` does not set it (``--set use_reference_solutions=false`` runs a
    student's own solutions through the pipeline)."""
    declared = declared_parameters(notebook)
    given = {key: value for key, value in parameters.items() if key in declared}
    if REFERENCE_SOLUTIONS in declared:
        given.setdefault(REFERENCE_SOLUTIONS, True)
    return given


_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list",
               dict: "a mapping"}


def check_value(name: str, value, default, notebook: str, source: str) -> None:
    """Raise a one-line :class:`UserError` unless ``value`` fits the type of the declared ``default``."""
    if default is None:
        return
    kind = type(default)
    allowed = (kind,) + ALSO_ACCEPTS.get(name, ())
    fits = isinstance(value, allowed) and not (isinstance(value, bool) and kind is not bool)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        fits = True
    if not fits:
        wanted = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in allowed)
        raise UserError(f"{source}: {name} must be {wanted} ({notebook} declares {name} = {default!r})")


def _unknown(names, known: set, where: str, source) -> None:
    for name in sorted(names):
        close = difflib.get_close_matches(name, sorted(known), n=3)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise UserError(f"{source(name)}: {name} is not a parameter of {where}{hint}")


def _declarations(notebooks: list[Path]) -> dict:
    """name -> (default, "notebook 01") for the first notebook that declares each name."""
    found = {}
    for nb in notebooks:
        for name, default in parameter_defaults(nb).items():
            found.setdefault(name, (default, f"notebook {nb.name[:2]}"))
    return found


def _show(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def build_parameters(profile: str, overrides: dict, notebooks: list[Path], sources: dict | None = None) -> dict:
    """A profile's values updated with ``overrides``, checked against the notebooks' parameters and types.

    A profile describes the whole series, so its keys must be parameters of some notebook of the series;
    an override must be a parameter of a notebook that will run (else it would silently change nothing).
    ``sources`` names where each override came from in errors (default: ``--set key=value``).
    """
    parameters = load_profile(profile)
    series = _declarations(list_notebooks())
    selected = _declarations(notebooks)
    in_profile = lambda name: f"profile '{profile}'"
    _unknown(set(parameters) - set(series), set(series), "any notebook", in_profile)
    for name, value in parameters.items():
        check_value(name, value, *series[name], in_profile(name))
    given = lambda name: (sources or {}).get(name) or f"--set {name}={_show(overrides[name])}"
    names = ", ".join(nb.name[:2] for nb in notebooks)
    _unknown(set(overrides) - set(selected), set(selected), f"any selected notebook ({names})", given)
    for name, value in overrides.items():
        check_value(name, value, *selected[name], given(name))
    parameters.update(overrides)
    return parameters
