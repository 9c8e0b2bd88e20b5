"""The student edition of the lessons, in nbgrader's format: ``make student`` (``python -m reprank.teaching.student``).

``python -m reprank.teaching.student [--out DIR] [--force]`` reads ``notebooks/`` and writes (default DIR: ``student/``):

- ``DIR/release/NN_*.ipynb``, for students: each exercise's hidden solution cell removed; the stub cell marked
  as nbgrader's autograded answer (``ex-NN-k``), the check cell as its autograded test (``check-NN-k``, the
  exercise's points); ``use_reference_solutions`` stays False; outputs stripped.
- ``DIR/source/NN_*.ipynb``, nbgrader's *source* format, for instructors: the same, except that each stub cell
  holds the solution's def (out of its ``if use_reference_solutions:`` guard, without the ``#@title`` line),
  so its ``### BEGIN SOLUTION`` / ``### END SOLUTION`` region sits where the student writes, and the
  parameters cell is locked (nbgrader's autograder restores it, so a submission cannot switch the
  reference solutions on).
- ``DIR/README.md``: how to use each folder, with nbgrader or without.

Neither edition has the hidden solution cells, so in both the text that says they are there is reworded
(``NO_SOLUTION_CELLS``), and the first markdown cell of a notebook with exercises says how to read one solution
(``exercises.show_solution``) and skip one exercise (``exercises.skip``): ``STUCK``.

Why not nbgrader itself: nbgrader 0.9.6 (the newest) installs beside the pinned set without changing a pinned
package, but it requires Python >= 3.11 (reprank supports 3.10), adds nine packages (SQLAlchemy, alembic,
Mako, RapidFuzz, notebook, ipywidgets, ...) and its ``generate_assignment`` works in a course folder with a
gradebook database. This generator writes nbgrader's markers, so ``source/`` goes into a course as is:
``nbgrader generate_assignment`` (0.9.6, tried once by hand) turns it into ``release/``, cell for cell, plus
its checksums and cell locks (and the parameters cell locked).

The lessons are validated first: a malformed exercise (its four cells: :mod:`reprank.teaching.exercises.cells`) stops
the build with one line naming the notebook and the cell, and nothing is written.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import re
import shutil
import sys
from pathlib import Path

import nbformat

from reprank.base.errors import EXIT_USER_ERROR, UserError
from reprank.teaching.exercises.cells import cell_tags, exercise_blocks
from reprank.running.parameters import list_notebooks, notebooks_dir, parameter_defaults

MARKER = ".reprank-student-edition"  # what the generator wrote there: the folder may be replaced while unchanged


def nbgrader_metadata(grade_id: str, solution: bool = False, points: int | None = None) -> dict:
    """nbgrader's cell metadata (schema 3): an answer cell (``solution``), a test cell (``points``), else locked."""
    metadata = {"grade": points is not None, "grade_id": grade_id, "locked": not solution, "schema_version": 3,
                "solution": solution, "task": False}
    return metadata if points is None else {**metadata, "points": points}


# What the repository's notebooks say about their hidden solution cells, reworded for the editions (which lack them).
NO_SOLUTION_CELLS = [
    (re.compile(r"the hidden (?:reference )?solution(?:s| cells) then run instead"),
     "every check then goes on with the reference solution"),
    (re.compile(r"\bits hidden reference solution\b"), "the reference solution"),
]
STUCK = ("**In the student edition** the solutions are not in the notebook. Stuck on an exercise? "
         "`exercises.show_solution(\"{id}\")` prints exercise {id}'s reference solution (any exercise's id works), "
         "and `{function} = exercises.skip(\"{id}\")` in the exercise's cell, in place of your def, skips that "
         "exercise alone: its check goes on with the reference, and the exercise scores no points. "
         "`use_reference_solutions = True` in the parameters cell goes on with every reference solution.")


def _reword(nb, blocks) -> None:
    """Apply ``NO_SOLUTION_CELLS`` to every cell; put ``STUCK`` in the first markdown cell (after its paragraph
    on ``use_reference_solutions``, else at its end) when the notebook has exercises."""
    for cell in nb.cells:
        for pattern, replacement in NO_SOLUTION_CELLS:
            cell.source = pattern.sub(replacement, cell.source)
    intro = next((cell for cell in nb.cells if cell.cell_type == "markdown"), None)
    if not blocks or intro is None:
        return
    paragraphs = intro.source.rstrip("\n").split("\n\n")
    at = next((i + 1 for i, p in enumerate(paragraphs) if "use_reference_solutions" in p), len(paragraphs))
    first = blocks[0].exercise
    paragraphs.insert(at, STUCK.format(id=first.id, function=first.function))
    intro.source = "\n\n".join(paragraphs)


def _clean(nb) -> None:
    for cell in nb.cells:
        cell.pop("id", None)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.metadata.pop("papermill", None)


def editions(folder: Path | None = None) -> dict[str, tuple]:
    """name -> (release notebook, source notebook, blocks), built in memory after validating every notebook."""
    paths = list_notebooks() if folder is None else sorted(Path(folder).glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        raise UserError(f"{folder or notebooks_dir()}: no NN_*.ipynb notebooks to build a student edition from")
    built = {}
    for path in paths:
        try:
            nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
            nbformat.validate(nb)
        except Exception as error:  # unreadable JSON or not a valid notebook
            raise UserError(f"{path.name}: not a valid notebook ({str(error).splitlines()[0]})") from None
        blocks = exercise_blocks(path, nb.cells)  # ids carry the notebook's number: no duplicates across notebooks
        parameters_cell = next((i for i, c in enumerate(nb.cells) if "parameters" in cell_tags(c)), None)
        if blocks and (parameters_cell is None or parameter_defaults(path).get("use_reference_solutions") is not False):
            where = f", cell {parameters_cell} (counting from 0)" if parameters_cell is not None else ""
            raise UserError(f"{path.name}{where}: a notebook with exercises must declare "
                            f"use_reference_solutions = False in its parameters cell")
        release, source = copy.deepcopy(nb), copy.deepcopy(nb)
        if blocks:
            source.cells[parameters_cell].metadata["nbgrader"] = nbgrader_metadata(f"parameters-{path.name[:2]}")
        for block in reversed(blocks):  # from the end: deleting a solution cell moves the cells after it
            number = block.exercise.id.replace(".", "-")
            for edition in (release, source):
                edition.cells[block.start + 1].metadata["nbgrader"] = nbgrader_metadata(f"ex-{number}", solution=True)
                edition.cells[block.start + 3].metadata["nbgrader"] = nbgrader_metadata(f"check-{number}",
                                                                                        points=block.exercise.points)
                del edition.cells[block.start + 2]
            source.cells[block.start + 1].source = block.solution_def
        for edition in (release, source):
            _reword(edition, blocks)
            _clean(edition)
        built[path.name] = (release, source, blocks)
    return built


README = """# The student edition of reprank's lessons

Written from `notebooks/` by `make student` (`python -m reprank.teaching.student`), which replaces this folder (it holds
`{marker}`): rebuild it after pulling. {n} notebooks, {m} exercises (table below).

## `release/`: for students

The lessons without their solutions. Each exercise is a statement, a cell where you write a function (replace
`# YOUR CODE HERE` and `raise NotImplementedError()`) and a check cell that runs it on named cases, edge
cases included, against the reference in `reprank`. The lesson goes on with **your** function: an exercise
left as is stops it at the check, with a message naming the exercise. Stuck on one exercise, say 01.5?

    exercises.show_solution("01.5")          # prints its reference solution (read from the repository's notebooks/)
    my_margin_loss = exercises.skip("01.5")  # in the exercise's cell, in place of your def: skips this one alone

A skipped exercise's check says so and the lesson goes on with the reference; the exercise scores no points.
`use_reference_solutions = True` in the parameters cell makes every check go on with the reference. The
notebooks need the repository's
environment (`.venv/bin/jupyter lab {release}`); the command line runs them too, into a folder under `runs/`:

    REPRANK_NOTEBOOKS={release} .venv/bin/reprank run --set use_reference_solutions=false

(`false` runs your own solutions through the pipeline: `reprank run` otherwise passes `true`. A notebook run
alone runs the earlier lessons it needs first, with the reference solutions.)

## `source/`: for instructors, in nbgrader's source format

The same notebooks with each solution in its exercise's cell, between `### BEGIN SOLUTION` and
`### END SOLUTION`; nbgrader's cell metadata (schema 3): answer cells `ex-NN-k`, autograded test cells
`check-NN-k` with their points, and a locked parameters cell (the autograder restores it, so a submission
cannot switch the reference solutions on). With nbgrader installed beside `reprank` (Python >= 3.11):

    mkdir -p course/source/reprank && cp {source}/*.ipynb course/source/reprank/
    cd course && nbgrader generate_assignment reprank   # = release/ plus nbgrader's checksums and cell locks
    nbgrader autograde reprank                          # once submissions are collected

A check cell scores its points when the function is right on every case; it fails with `ExerciseWrong` (an
`AssertionError` naming the case) or, for a stub left as is, `ExerciseNotDone`. A skipped exercise
(`exercises.skip`, or the reference passed to the check some other way) passes its check so the lesson runs
on, but the check writes `exercise NN.k (...): skipped; ...` on stderr, and nbgrader's autograder (>= 0.7)
gives a test cell with stderr output zero points. Without nbgrader: hand out `release/` and run a submission
with the command above; its `run.json` says `"status": "done"` or names the exercise that failed, and a
skipped exercise's line is in the executed notebook the run folder holds (`grep -l '): skipped;' runs/*/*.ipynb`).

| notebook | exercise | function | points |
|---|---|---|---|
{rows}
"""


def _contents(out: Path) -> dict:
    """{relative path: sha256} of the files in ``out`` but the marker and Jupyter's checkpoints."""
    return {path.relative_to(out).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(out.rglob("*")) if path.is_file() and path.name != MARKER
            and ".ipynb_checkpoints" not in path.parts}


def _make_room(out: Path, force: bool, folder: Path) -> None:
    """Remove ``out`` if it may be replaced: as the generator left it (the marker records what it wrote), empty,
    or ``force``; never the lessons' folder or one above it."""
    resolved = out.resolve()
    if resolved == folder.resolve() or resolved in folder.resolve().parents:
        raise UserError(f"{out}: holds the lessons themselves; choose another --out folder")
    if not out.exists():
        return
    if not out.is_dir():
        raise UserError(f"{out}: is a file; choose another --out folder")
    contents = _contents(out)
    try:
        written = json.loads((out / MARKER).read_text())["written"]
    except (OSError, ValueError, KeyError, TypeError):
        written = None
    if contents and not force:
        if written is None:
            raise UserError(f"{out}: exists and was not written by reprank.teaching.student; move it away, or pass --force "
                            f"to replace it")
        changed = sorted(name for name in set(contents) | set(written) if contents.get(name) != written.get(name))
        if changed:
            raise UserError(f"{out}: {changed[0]} was added or changed since reprank.teaching.student wrote it (your "
                            f"work?); move it away, or pass --force to replace the folder")
    shutil.rmtree(out)


def build(out: str | Path = "student", notebooks: str | Path | None = None, force: bool = False) -> dict:
    """Validate the lessons, then write the student edition into ``out``; returns {notebook: [exercise ids]}."""
    out, folder = Path(out), Path(notebooks) if notebooks else notebooks_dir()
    built = editions(folder)
    _make_room(out, force, folder)
    for name, (release, source, _) in built.items():
        for kind, nb in (("release", release), ("source", source)):
            (out / kind).mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, out / kind / name)
    rows = [f"| {name[:2]} | {b.exercise.id} — {b.exercise.title} | `{b.exercise.function}` | {b.exercise.points} |"
            for name, (_, _, blocks) in built.items() for b in blocks]
    (out / "README.md").write_text(README.format(marker=MARKER, n=len(built), m=len(rows), rows="\n".join(rows),
                                                 release=out.resolve() / "release", source=out.resolve() / "source"))
    (out / MARKER).write_text(json.dumps({"note": "written by python -m reprank.teaching.student, which replaces this "
                                                  "folder while these files are as it wrote them",
                                          "written": _contents(out)}, indent=1) + "\n")
    return {name: [b.exercise.id for b in blocks] for name, (_, _, blocks) in built.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reprank.teaching.student", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="student", help="the edition's folder (default: student/)")
    parser.add_argument("--force", action="store_true", help="replace --out even if reprank.teaching.student did not write it")
    args = parser.parse_args(argv)
    try:
        built = build(args.out, force=args.force)
    except UserError as error:
        print(f"reprank.teaching.student: error: {error}", file=sys.stderr, flush=True)
        return EXIT_USER_ERROR
    ids = [i for found in built.values() for i in found]
    print(f"student edition: {len(built)} notebooks, {len(ids)} exercises ({', '.join(ids) or 'none'}) -> "
          f"{args.out}/release (students), {args.out}/source (nbgrader's source format), {args.out}/README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
