"""The package's shape: no import cycle (lazy imports inside functions included), nothing imports the
command line, a thin cli.py, modules of one job each under ~300 lines, notebooks that never import the CLI."""

import ast
import json
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "reprank"
NOTEBOOKS = sorted((PACKAGE.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))
MODULES = {path.stem: path for path in sorted(PACKAGE.glob("*.py")) if path.stem != "__init__"}


def imported_modules(path: Path) -> set[str]:
    """Every reprank module ``path`` imports, at the top or inside a function, by any spelling."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 or node.module == "reprank" or (node.module or "").startswith("reprank."):
                base = (node.module or "").removeprefix("reprank").lstrip(".") if node.level == 0 else (node.module or "")
                if base:
                    found.add(base.split(".")[0])
                else:  # from . import x / from reprank import x
                    found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("reprank.")}
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            arg = node.args[0] if node.args else None
            # A module name built at run time would hide an edge from this test: not allowed for our own modules.
            assert isinstance(arg, ast.Constant), f"{path.name}: importlib.import_module with a computed name"
            if str(arg.value).startswith("reprank."):
                found.add(arg.value.split(".")[1])
    return found & set(MODULES)


def import_graph() -> dict[str, set[str]]:
    return {name: imported_modules(path) - {name} for name, path in MODULES.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
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



def test_the_checks_can_fail(tmp_path):
    # A function-level (lazy) import is an edge, and the loop it closes is found.
    lazy = tmp_path / "lazy.py"
    lazy.write_text("def f():\n    from .cli import main\n    from reprank import runs\n")
    assert imported_modules(lazy) == {"cli", "runs"}
    assert find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_package_import_graph_has_no_cycle_lazy_imports_included():
    assert find_cycle(import_graph()) is None


def test_nothing_imports_the_command_line():
    importers = sorted(name for name, deps in import_graph().items() if "cli" in deps and name != "__main__")
    assert importers == []
    for notebook in NOTEBOOKS:
        source = "\n".join("".join(c["source"]) for c in json.loads(notebook.read_text())["cells"])
        assert "reprank import cli" not in source and "reprank.cli" not in source, notebook.name


def test_cli_is_thin_and_modules_stay_small():
    assert len((PACKAGE / "cli.py").read_text().splitlines()) < 150
    sizes = {name: len(path.read_text().splitlines()) for name, path in MODULES.items()}
    assert {name: n for name, n in sizes.items() if n > 300} == {}
