"""The student edition (``reprank.teaching.student``, ``make student``), built from notebooks/ into a temporary folder.

Nothing here executes a notebook: the solutions are exec'd alone with the notebook's imports, and
tests/test_notebooks.py executes the release edition end to end. Every test holds for any number of exercises.
"""

import ast
import json
import re
import shutil
from pathlib import Path

import pytest

from reprank.running import parameters
from reprank.teaching import exercises, student
from reprank.base.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"


def cells(path: Path) -> list:
    return json.loads(path.read_text())["cells"]


def text(cell: dict) -> str:
    return "".join(cell["source"])


def tagged(cell: dict, tag: str) -> bool:
    return tag in cell["metadata"].get("tags", [])


def exercises_in(path: Path) -> list:
    """(exercise id, solution cell) of each exercise in a notebook of notebooks/, in order."""
    found = []
    for index, cell in enumerate(cells(path)):
        if tagged(cell, "check"):
            found.append((re.search(r'exercises\.check\("([^"]+)"', text(cell)).group(1), cells(path)[index - 1]))
    return found


ALL = [(path, exercise_id, solution) for path in NOTEBOOKS for exercise_id, solution in exercises_in(path)]


def nbgrader_clear(source: str) -> str:
    """nbgrader's ClearSolutions, written out again here: the region from a BEGIN SOLUTION line to its END line
    becomes `# YOUR CODE HERE` and `raise NotImplementedError()` at the BEGIN line's indentation."""
    out, inside = [], False
    for line in source.split("\n"):
        indent = re.match(r"\s*", line).group(0)
        if "BEGIN SOLUTION" in line:
            out += [indent + "# YOUR CODE HERE", indent + "raise NotImplementedError()"]
            inside = True
        elif "END SOLUTION" in line:
            inside = False
        elif not inside:
            out.append(line)
    return "\n".join(out)


@pytest.fixture(scope="module")
def edition(tmp_path_factory):
    out = tmp_path_factory.mktemp("edition") / "student"
    built = student.build(out, ROOT / "notebooks")
    return out, built


def test_the_edition_holds_every_lesson_in_both_formats(edition):
    out, built = edition
    names = [path.name for path in NOTEBOOKS]
    assert sorted(p.name for p in (out / "release").iterdir()) == names
    assert sorted(p.name for p in (out / "source").iterdir()) == names
    assert (out / student.MARKER).is_file()
    assert built == {path.name: [exercise_id for exercise_id, _ in exercises_in(path)] for path in NOTEBOOKS}
    readme = (out / "README.md").read_text()
    assert "release/" in readme and "source/" in readme and "nbgrader generate_assignment" in readme
    assert all(f"| {exercise_id} —" in readme for _, exercise_id, _ in ALL)
    for kind in ("release", "source"):
        for name in names:
            nb = json.loads((out / kind / name).read_text())
            assert (nb["nbformat"], nb["nbformat_minor"]) == (4, 4)
            assert len(nb["cells"]) == len(cells(ROOT / "notebooks" / name)) - len(built[name])
            for cell in nb["cells"]:
                assert "id" not in cell
                if cell["cell_type"] == "code":
                    assert cell["outputs"] == [] and cell["execution_count"] is None


def test_the_release_has_no_solution_and_nbgrader_metadata(edition):
    out, built = edition
    for path in NOTEBOOKS:
        release = out / "release" / path.name
        code = "\n".join(text(cell) for cell in cells(release))
        assert "BEGIN SOLUTION" not in code and "END SOLUTION" not in code and "#@title Solution" not in code
        assert not any(tagged(cell, "solution") for cell in cells(release))
        assert parameters.parameter_defaults(release).get("use_reference_solutions") in (False, None)
        stripped = "\n".join(line.strip() for line in code.split("\n"))
        for exercise_id, solution in exercises_in(path):
            lines = [line.strip() for line in text(solution).split("\n")]
            region = "\n".join(lines[lines.index(BEGIN) + 1:lines.index(END)])
            assert region and region not in stripped, f"{path.name}: the solution of {exercise_id} is in the release"
        graded = [cell["metadata"]["nbgrader"] for cell in cells(release) if "nbgrader" in cell["metadata"]]
        expected = []
        for exercise_id in built[path.name]:
            number = exercise_id.replace(".", "-")
            expected += [{"grade": False, "grade_id": f"ex-{number}", "locked": False, "schema_version": 3,
                          "solution": True, "task": False},
                         {"grade": True, "grade_id": f"check-{number}", "locked": True,
                          "points": exercises.get(exercise_id).points, "schema_version": 3, "solution": False,
                          "task": False}]
        assert graded == expected


# What the repository's notebooks may say about their hidden solution cells, and neither edition may (it has none).
PROMISES = re.compile(r"hidden (?:reference )?solutions?|solution cells?\b|collapsed cell|#@title Solution", re.I)


def promises(path: Path) -> list[str]:
    """Each place in a notebook's cells (markdown and code) that speaks of solution cells, as 'cell N: ...text...'."""
    return [f"cell {index}: ...{text(cell)[max(0, m.start() - 60):m.end() + 60]}..."
            for index, cell in enumerate(cells(path)) for m in PROMISES.finditer(text(cell))]


def test_the_editions_text_promises_no_solution_cell_and_says_how_to_get_unstuck(edition):
    out, built = edition
    for kind in ("release", "source"):
        for path in NOTEBOOKS:
            assert promises(out / kind / path.name) == [], f"{kind}/{path.name} speaks of solution cells it lacks"
    for path in NOTEBOOKS:
        if not built[path.name]:
            continue
        first = exercises.get(built[path.name][0])
        intro = next(text(cell) for cell in cells(out / "release" / path.name) if cell["cell_type"] == "markdown")
        assert f'`exercises.show_solution("{first.id}")`' in intro
        assert f'`{first.function} = exercises.skip("{first.id}")`' in intro and "no points" in intro
    readme = (out / "README.md").read_text()
    assert 'exercises.show_solution("01.5")' in readme and 'my_margin_loss = exercises.skip("01.5")' in readme
    assert "skipped" in readme and "stderr" in readme and "zero points" in readme


def test_a_promise_of_solution_cells_the_rewording_misses_is_found(tmp_path):
    # The check above can fail: a sentence the generator does not reword reaches the release and is found there.
    path = next(path for path in NOTEBOOKS if exercises_in(path))
    nb = json.loads(path.read_text())
    intro = next(cell for cell in nb["cells"] if cell["cell_type"] == "markdown")
    intro["source"] = text(intro) + "\n\nA reference solution sits in a collapsed cell under each exercise."
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / path.name).write_text(json.dumps(nb))
    student.build(tmp_path / "student", tmp_path / "notebooks")
    found = promises(tmp_path / "student" / "release" / path.name)
    assert len(found) == 1 and found[0].startswith("cell 0: ") and "collapsed cell" in found[0]


def test_show_solution_works_from_the_release(edition, monkeypatch, capsys):
    # The tests point REPRANK_NOTEBOOKS at release/, which has no solution cells: the solutions come from notebooks/.
    out, built = edition
    monkeypatch.setenv("REPRANK_NOTEBOOKS", str(out / "release"))
    assert parameters.notebooks_dir() == out / "release"
    for path, exercise_id, _ in ALL:
        exercises.show_solution(exercise_id)
        printed = capsys.readouterr().out
        assert printed.startswith(f"# exercise {exercise_id} (") and f"from notebooks/{path.name}\n" in printed
        assert f"def {exercises.get(exercise_id).function}(" in printed


def test_nbgraders_rule_turns_each_source_stub_into_the_release_stub(edition):
    out, _ = edition
    for path in NOTEBOOKS:
        release, source = cells(out / "release" / path.name), cells(out / "source" / path.name)
        solutions = iter(solution for _, solution in exercises_in(path))
        for got, expected in zip(source, release):
            if got["metadata"].get("nbgrader", {}).get("solution"):
                assert text(got).count(BEGIN) == 1 and text(got).count(END) == 1
                assert nbgrader_clear(text(got)) == text(expected)
                # The source stub is the hidden solution's def, out of its `if use_reference_solutions:` guard.
                hidden = text(next(solutions)).split("\n")
                assert hidden[1] == "if use_reference_solutions:"
                assert text(got) == "\n".join(line[4:] for line in hidden[2:])
            else:  # every other cell is the same (the parameters cell is locked in the source only)
                assert text(got) == text(expected)
                if tagged(got, "parameters"):
                    got["metadata"].pop("nbgrader", None)
                assert got["metadata"] == expected["metadata"]
        assert next(solutions, None) is None


def import_lines(path: Path) -> str:
    """The imports of the notebook's import cell: its first code cell after the parameters cell."""
    notebook = cells(path)
    start = next(i for i, cell in enumerate(notebook) if tagged(cell, "parameters"))
    cell = next(cell for cell in notebook[start + 1:] if cell["cell_type"] == "code")
    tree = ast.parse(text(cell))
    return "\n".join(ast.unparse(node) for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom)))


@pytest.mark.parametrize("path, exercise_id, solution", ALL, ids=[f"{p.name[:2]}-{i}" for p, i, _ in ALL])
def test_every_hidden_solution_passes_its_checker(path, exercise_id, solution):
    namespace = {}
    exec(import_lines(path), namespace)
    namespace["use_reference_solutions"] = True
    # A solution may call an earlier exercise's function (02.4 minimises 02.3's NLL): run the notebook's
    # solutions in order up to this one.
    for _, _, earlier in (entry for entry in ALL if entry[0] == path):
        exec(text(earlier), namespace)
        if earlier is solution:
            break
    function = namespace[exercises.get(exercise_id).function]
    assert exercises.check(exercise_id, function) is function  # the solution itself, not the reference


def test_a_foreign_folder_or_a_changed_edition_is_never_replaced(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes")
    with pytest.raises(UserError) as error:
        student.build(mine, ROOT / "notebooks")
    assert str(mine) in str(error.value) and "--force" in str(error.value) and "\n" not in str(error.value)
    assert student.main(["--out", str(mine)]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert (mine / "notes.txt").read_text() == "my notes" and sorted(mine.iterdir()) == [mine / "notes.txt"]
    student.build(mine, ROOT / "notebooks", force=True)  # --force replaces it ...
    assert not (mine / "notes.txt").exists() and (mine / student.MARKER).is_file()
    student.build(mine, ROOT / "notebooks")  # ... the generator's own edition is replaced without it ...
    (mine / "release" / ".ipynb_checkpoints").mkdir()  # (Jupyter's checkpoints do not count)
    (mine / "release" / ".ipynb_checkpoints" / "x-checkpoint.ipynb").write_text("{}")
    student.build(mine, ROOT / "notebooks")
    # ... unless a file in it changed or was added since (a student's work): then --force is needed.
    for name in (f"release/{NOTEBOOKS[0].name}", "release/my_work.py"):
        (mine / name).write_text("my work")
        with pytest.raises(UserError, match=f"^{re.escape(str(mine))}: {name} was added or changed since .* --force"):
            student.build(mine, ROOT / "notebooks")
        assert (mine / name).read_text() == "my work"
        student.build(mine, ROOT / "notebooks", force=True)
    assert not (mine / "release" / "my_work.py").exists()
    # Never, even with --force, the folder the lessons are in or one above it.
    course = tmp_path / "course"
    shutil.copytree(ROOT / "notebooks", course / "notebooks")
    for out in (course, course / "notebooks"):
        with pytest.raises(UserError, match="holds the lessons themselves"):
            student.build(out, course / "notebooks", force=True)
    assert sorted(p.name for p in (course / "notebooks").iterdir()) == [p.name for p in NOTEBOOKS]


def _first_exercise(path: Path) -> tuple[list, int]:
    notebook = cells(path)
    return notebook, next(i for i, cell in enumerate(notebook) if tagged(cell, "exercise"))


def _replace(cell: dict, old: str, new: str) -> None:
    assert old in text(cell)
    cell["source"] = text(cell).replace(old, new)


def _break(how: str, notebook: list, at: int) -> int:
    """Break the exercise whose statement is cell ``at``; returns the index of the cell the error must name."""
    statement, stub, solution, check = notebook[at:at + 4]
    function = re.search(r"def (\w+)\(", text(stub)).group(1)
    if how == "order":
        notebook[at + 2], notebook[at + 3] = check, solution
        return at + 2
    if how == "stub body":
        _replace(stub, "raise NotImplementedError()", "pass")
        return at + 1
    if how == "stub name":
        _replace(stub, f"def {function}(", "def my_other_name(")
        return at + 1
    if how == "unknown id":
        check["source"] = re.sub(r'check\("[^"]+"', 'check("99.9"', text(check))
        return at + 3
    if how == "statement number":
        _replace(statement, "### Exercise ", "### Exercise 9")
        return at
    if how == "solution shown":
        solution["metadata"].pop("jupyter")
        return at + 2
    if how == "solution signature":
        _replace(solution, f"def {function}(", f"def {function}(extra, ")
        return at + 2
    if how == "solution unguarded":
        _replace(solution, "if use_reference_solutions:", "if True:")
        return at + 2
    if how == "duplicate id":
        notebook[at + 4:at + 4] = json.loads(json.dumps(notebook[at:at + 4]))
        return at + 7
    if how == "stray solution tag":
        notebook.insert(at, {"cell_type": "code", "execution_count": None, "metadata": {"tags": ["solution"]},
                             "outputs": [], "source": "x = 1"})
        return at
    if how == "parameters":
        index = next(i for i, cell in enumerate(notebook) if tagged(cell, "parameters"))
        _replace(notebook[index], "use_reference_solutions = False", "use_reference_solutions = True")
        return index
    raise ValueError(how)


BREAKS = ["order", "statement number", "stub body", "stub name", "unknown id", "solution shown", "solution signature",
          "solution unguarded", "duplicate id", "stray solution tag", "parameters"]


@pytest.mark.parametrize("how", BREAKS)
def test_a_malformed_exercise_is_named_by_notebook_and_cell(tmp_path, how):
    path = next(path for path in NOTEBOOKS if exercises_in(path))
    notebook, at = _first_exercise(path)
    cell = _break(how, notebook, at)
    folder = tmp_path / "notebooks"
    folder.mkdir()
    nb = json.loads(path.read_text())
    nb["cells"] = notebook
    (folder / path.name).write_text(json.dumps(nb))
    with pytest.raises(UserError) as error:
        student.build(tmp_path / "student", folder)
    assert str(error.value).startswith(f"{path.name}, cell {cell} (counting from 0): ") and "\n" not in str(error.value)
    assert not (tmp_path / "student").exists()  # nothing written


def _hint_and_solution(path: Path, exercise_id: str) -> tuple[list[tuple[str, str]], list[str]]:
    """The exercise's hints as (title, text) (every <details> Hint block of the markdown cells before its stub) and the code lines of
    its hidden solution, comments dropped."""
    notebook = cells(path)
    check = next(i for i, cell in enumerate(notebook) if f'exercises.check("{exercise_id}"' in text(cell))
    solution = text(notebook[check - 1]).split("### BEGIN SOLUTION")[-1].split("### END SOLUTION")[0]
    lines = [line.strip() for line in solution.splitlines() if line.strip() and not line.strip().startswith("#")]
    markdown = next(i for i in range(check - 1, -1, -1) if notebook[i]["cell_type"] == "markdown")
    hints = re.findall(r"<summary>(Hint.*?)</summary>(.*?)</details>", text(notebook[markdown]), re.S)
    return hints, lines


@pytest.mark.parametrize("path, exercise_id", [(p, i) for p, i, _ in ALL], ids=[f"{p.name[:2]}-{i}" for p, i, _ in ALL])
def test_hints_come_in_two_tiers_and_hold_no_line_of_the_solution(path, exercise_id):
    # Issue 23: a hint that contains the solution's line is the solution. Compared without spaces and backticks;
    # lines under 12 characters (``return p``) say nothing.
    hints, lines = _hint_and_solution(path, exercise_id)
    # two tiers, a nudge first and a code skeleton second
    assert [title for title, _ in hints] == ["Hint 1 (a nudge)", "Hint 2 (code)"], (exercise_id, hints)
    hint = " ".join(body for _, body in hints)
    squeeze = lambda s: re.sub(r"[\s`]+", "", s)
    leaked = [line for line in lines if len(line) >= 12 and squeeze(line) in squeeze(hint)]
    assert not leaked, f"exercise {exercise_id}: its hint holds the solution line(s) {leaked}"
