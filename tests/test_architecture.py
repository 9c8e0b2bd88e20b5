"""The package's shape, read from the real imports of every module at any depth.

reprank is cut into layers, each a subpackage; a module may import its own layer and the layers below it:

    base < lm < data < measure < method < studies < running < teaching

(base: errors, file writes, defaults; lm: the model; data: prompts, pairs, judges; measure: judging, intervals,
compute; method: the paper; studies: notebook 05's; running: run folders, runner, sweeps, reports; teaching:
lessons, student edition, exercises). The entry points at the top (``cli``, ``__main__``, ``launch``) may import
any layer, and nothing imports ``cli``. Every import counts: at the top of a module or inside a function,
``from . import x``, ``import reprank.x.y``, ``importlib.import_module("reprank.x")`` and ``__import__``; a
module name computed at run time would hide an edge, so it fails here. No import cycle at any depth.
"""

import ast
import json
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "reprank"
NOTEBOOKS = sorted((PACKAGE.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))
LAYERS = ("base", "lm", "data", "measure", "method", "studies", "running", "teaching")
ENTRY_POINTS = {"reprank.cli", "reprank.__main__", "reprank.launch"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py")) if "__pycache__" not in path.parts}


def _resolve(name: str, known: set[str]) -> str | None:
    """The longest known module that ``name`` is or lies inside (``reprank.method.align.train_dpo`` -> align)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imported_modules(path: Path, module: str, known: set[str]) -> set[str]:
    """Every reprank module ``path`` (the module ``module``) imports, at the top or inside a function."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    targets = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # "from a.b import c": the module a.b.c when there is one, else a name inside a.b
            targets += [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        elif isinstance(node, ast.Import):
            targets += [alias.name for alias in node.names]
        elif isinstance(node, ast.Call):
            called = getattr(node.func, "attr", getattr(node.func, "id", ""))
            if called in ("import_module", "__import__"):
                arg = node.args[0] if node.args else None
                assert isinstance(arg, ast.Constant), \
                    f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {called} with a name computed at run time"
                targets.append(str(arg.value))
    found = {_resolve(t, known) for t in targets if t == "reprank" or t.startswith("reprank.")}
    return found - {None, "reprank", module}


def import_graph() -> dict[str, set[str]]:
    known = set(MODULES)
    return {name: imported_modules(path, name, known) for name, path in MODULES.items()}


def layer_of(module: str) -> str | None:
    """The layer a module lies in; None for the package itself and the entry points at the top."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for module, imports in sorted(graph.items()):
        if module in ENTRY_POINTS:
            continue
        own = layer_of(module)
        for target in sorted(imports):
            theirs = layer_of(target)
            if target in ENTRY_POINTS or own is None or theirs is None or LAYERS.index(theirs) > LAYERS.index(own):
                bad.append(f"{module} ({own}) imports {target} ({theirs or 'top'})")
    return bad


def test_the_checks_can_fail(tmp_path):
    fake = tmp_path / "reprank"
    (fake / "method").mkdir(parents=True)
    lazy = fake / "method" / "lazy.py"
    lazy.write_text("import importlib\ndef f():\n    from ..running import runs\n    from reprank.cli import main\n"
                    "    importlib.import_module('reprank.studies.noise')\n    __import__('reprank.base.errors')\n")
    known = {"reprank.running.runs", "reprank.cli", "reprank.studies.noise", "reprank.base.errors", "reprank.running"}
    global PACKAGE
    saved, PACKAGE = PACKAGE, fake
    try:
        found = imported_modules(lazy, "reprank.method.lazy", known)
        assert found == {"reprank.running.runs", "reprank.cli", "reprank.studies.noise", "reprank.base.errors"}
        computed = fake / "method" / "computed.py"
        computed.write_text("import importlib\nname = 'noise'\nimportlib.import_module(f'reprank.studies.{name}')\n")
        try:
            imported_modules(computed, "reprank.method.computed", known)
        except AssertionError as error:
            assert "computed at run time" in str(error)
        else:
            raise AssertionError("a computed module name went unnoticed")
    finally:
        PACKAGE = saved
    graph = {"reprank.method.lazy": found}
    assert layer_violations(graph) == ["reprank.method.lazy (method) imports reprank.cli (top)",
                                       "reprank.method.lazy (method) imports reprank.running.runs (running)",
                                       "reprank.method.lazy (method) imports reprank.studies.noise (studies)"]
    assert find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_every_module_lies_in_a_layer():
    outside = sorted(name for name in MODULES if layer_of(name) is None and name not in ENTRY_POINTS | {"reprank"})
    assert outside == []
    assert {path.name for path in PACKAGE.iterdir() if path.is_dir() and path.name != "__pycache__"} == set(LAYERS)


def test_each_layer_imports_only_itself_and_the_layers_below():
    assert layer_violations(import_graph()) == []


def test_no_import_cycle_at_any_depth():
    assert find_cycle(import_graph()) is None


def test_the_paper_lives_in_one_folder_and_its_trainer_does_not_import_the_studies():
    method = {name.split(".")[-1] for name in MODULES if layer_of(name) == "method"}
    assert {"reward", "confidence", "rerank", "conservative", "align"} <= method
    assert not any(layer_of(target) == "studies" for target in import_graph()["reprank.method.conservative"])


def test_nothing_imports_the_command_line_and_it_stays_thin():
    importers = sorted(name for name, deps in import_graph().items() if "reprank.cli" in deps)
    assert importers == ["reprank.__main__"]
    assert len((PACKAGE / "cli.py").read_text().splitlines()) < 150  # argument parsing only; the work is elsewhere
    for notebook in NOTEBOOKS:
        source = "\n".join("".join(c["source"]) for c in json.loads(notebook.read_text())["cells"])
        assert "reprank import cli" not in source and "reprank.cli" not in source, notebook.name
