"""An exercise's four cells in a notebook, read and validated (the convention of :mod:`reprank.teaching.exercises`).

1. the statement: markdown, tagged ``exercise``;
2. the stub: code, tagged ``exercise``, only ``def my_fn(...)`` with a docstring and nbgrader's replacement text
   (``# YOUR CODE HERE`` / ``raise NotImplementedError()``) as its body;
3. the solution: code, tagged ``solution``, hidden (``jupyter.source_hidden``, Colab's ``cellView: form``):
   ``#@title Solution NN.k ...``, ``if use_reference_solutions:``, then the same def whose body is between
   ``### BEGIN SOLUTION`` and ``### END SOLUTION`` lines;
4. the check: code, tagged ``check``, starting ``my_fn = exercises.check("NN.k", my_fn, use_reference=...)``
   with an exercise registered for this notebook (the statement starts ``### Exercise NN.k``).

:func:`exercise_blocks` finds them and raises a one-line :class:`UserError` naming the notebook and the cell
(counting from 0) where one is malformed; :mod:`reprank.teaching.student` builds the student edition from them.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from reprank.base.errors import UserError
# The registry, not the package: the package imports this module (for show_solution), and importing this module
# runs the package first, which registers every exercise.
from reprank.teaching.exercises.checking import REGISTRY, Exercise

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")  # nbgrader's replacement text for Python
TITLE = "#@title Solution {id}"
FLAG = "use_reference_solutions"  # the parameter that lets the solutions run
GUARD = f"if {FLAG}:"


@dataclass
class Block:
    """One exercise's four cells, from ``start`` (the statement) on."""

    start: int
    exercise: Exercise
    solution_def: str  # the solution cell's def out of its guard: the stub of nbgrader's source format


def clear_solution(source: str) -> str:
    """nbgrader's rule: each BEGIN..END SOLUTION region becomes ``STUB`` at the indentation of its BEGIN line."""
    lines, inside = [], False
    for line in source.split("\n"):
        if BEGIN.lstrip("# ") in line:
            indent = line[: len(line) - len(line.lstrip())]
            lines += [indent + stub for stub in STUB]
            inside = True
        elif END.lstrip("# ") in line:
            inside = False
        elif not inside:
            lines.append(line)
    return "\n".join(lines)


def cell_tags(cell) -> list:
    return cell.get("metadata", {}).get("tags", [])


def _source(cell) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _check_call(source: str):
    """(exercise id, assigned name, checked name) of ``fn = exercises.check("NN.k", fn, use_reference=...)``."""
    try:
        first = ast.parse(source).body[0]
    except (SyntaxError, IndexError):
        return None
    call = getattr(first, "value", None)
    if not (isinstance(first, ast.Assign) and len(first.targets) == 1 and isinstance(first.targets[0], ast.Name)
            and isinstance(call, ast.Call) and ast.unparse(call.func) == "exercises.check" and len(call.args) == 2
            and isinstance(call.args[0], ast.Constant) and isinstance(call.args[1], ast.Name)
            and [(k.arg, ast.unparse(k.value)) for k in call.keywords] == [("use_reference", FLAG)]):
        return None
    return call.args[0].value, first.targets[0].id, call.args[1].id


def _stub_problem(source: str, function: str) -> str | None:
    try:
        body = ast.parse(source).body
    except SyntaxError as error:
        return f"does not parse ({error.msg}, line {error.lineno})"
    if len(body) != 1 or not isinstance(body[0], ast.FunctionDef) or body[0].name != function:
        return f"must hold only `def {function}(...)`, the name the exercise registers"
    inner = body[0].body
    if not (len(inner) == 2 and isinstance(inner[0], ast.Expr) and isinstance(inner[0].value, ast.Constant)
            and isinstance(inner[0].value.value, str)):
        return "the def must have a docstring, then only nbgrader's stub"
    if source.rstrip().split("\n")[-2:] != ["    " + line for line in STUB]:
        return f"the def's body after its docstring must be exactly nbgrader's `{STUB[0]}` then `{STUB[1]}`"
    return None


def _solution_def(source: str, exercise_id: str, function: str, stub: str) -> tuple[str | None, str]:
    """(problem or None, the def out of its guard)."""
    lines = source.rstrip().split("\n")
    if len(lines) < 3 or not lines[0].startswith(TITLE.format(id=exercise_id)) or lines[1] != GUARD:
        return f"must start with '{TITLE.format(id=exercise_id)} ...' then '{GUARD}'", ""
    if any(line.strip() and not line.startswith("    ") for line in lines[2:]):
        return f"everything after '{GUARD}' must be indented by 4 spaces", ""
    body = "\n".join(line[4:] for line in lines[2:])
    markers = [line.strip() for line in body.split("\n") if "SOLUTION" in line]
    if markers != [BEGIN, END]:
        return f"needs one '{BEGIN}' line and one '{END}' line, in that order", body
    try:
        tree = ast.parse(body).body
    except SyntaxError as error:
        return f"does not parse ({error.msg})", body
    if len(tree) != 1 or not isinstance(tree[0], ast.FunctionDef) or tree[0].name != function:
        return f"must define only `{function}` inside the guard", body
    if clear_solution(body) != stub.rstrip():
        return "the def with its solution region cleared differs from the stub cell (signature or docstring?)", body
    return None, body


def exercise_blocks(path: Path, cells: list) -> list[Block]:
    """The notebook's exercises, validated; raises a one-line UserError naming the notebook and the cell."""
    def fail(index: int, message: str):
        raise UserError(f"{path.name}, cell {index} (counting from 0): {message}")

    blocks, index = [], 0
    while index < len(cells):
        cell = cells[index]
        tags = set(cell_tags(cell)) & {"exercise", "solution", "check"}
        if not tags:
            if BEGIN.lstrip("# ") in _source(cell) and cell["cell_type"] == "code":
                fail(index, f"'{BEGIN}' outside an exercise's solution cell")
            index += 1
            continue
        if not (cell["cell_type"] == "markdown" and tags == {"exercise"}):
            fail(index, f"a cell tagged {sorted(tags)} outside an exercise (statement, stub, solution, check)")
        expected = [("code", "exercise"), ("code", "solution"), ("code", "check")]
        for offset, (kind, tag) in enumerate(expected, start=1):
            if index + offset >= len(cells) or cells[index + offset]["cell_type"] != kind or \
                    cell_tags(cells[index + offset]) != [tag]:
                fail(index + offset, f"an exercise's cell {offset + 1} of 4 must be a {kind} cell tagged only "
                                     f"'{tag}' (statement, stub, solution, check)")
        stub, solution, check = (cells[index + k] for k in (1, 2, 3))
        found = _check_call(_source(check))
        if not found:
            fail(index + 3, f"must start with `my_fn = exercises.check(\"NN.k\", my_fn, use_reference={FLAG})`")
        exercise_id, assigned, checked = found
        exercise = REGISTRY.get(exercise_id)
        if exercise is None:
            fail(index + 3, f"exercise {exercise_id!r} is not registered in reprank.teaching.exercises")
        if not exercise_id.startswith(path.name[:2] + "."):
            fail(index + 3, f"exercise {exercise_id} belongs to notebook {exercise_id.split('.')[0]}")
        if not _source(cells[index]).startswith(f"### Exercise {exercise_id} "):
            fail(index, f"exercise {exercise_id}'s statement must start with '### Exercise {exercise_id} — title'")
        if assigned != exercise.function or checked != exercise.function:
            fail(index + 3, f"must check and reassign `{exercise.function}`, the name exercise {exercise_id} registers")
        if exercise_id in {b.exercise.id for b in blocks}:
            fail(index + 3, f"exercise {exercise_id} appears twice")
        problem = _stub_problem(_source(stub), exercise.function)
        if problem:
            fail(index + 1, f"exercise {exercise_id}'s stub: {problem}")
        metadata = solution.get("metadata", {})
        if metadata.get("jupyter", {}).get("source_hidden") is not True or metadata.get("cellView") != "form":
            fail(index + 2, f"exercise {exercise_id}'s solution must be hidden (metadata jupyter.source_hidden "
                            f"true and cellView 'form')")
        problem, solution_def = _solution_def(_source(solution), exercise_id, exercise.function, _source(stub))
        if problem:
            fail(index + 2, f"exercise {exercise_id}'s solution: {problem}")
        blocks.append(Block(index, exercise, solution_def))
        index += 4
    return blocks
