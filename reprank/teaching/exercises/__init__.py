"""Exercises: the paper's pieces, written by the student, checked, then used by the rest of the lesson.

A notebook's exercise is four cells (see ``reprank.teaching.student`` for how the editions are built from them):
the statement (markdown), the student's function (a stub that raises ``NotImplementedError``), the hidden
reference solution (runs only with ``use_reference_solutions = True``) and the check::

    my_margin_loss = exercises.check("01.5", my_margin_loss, use_reference=use_reference_solutions)

:func:`check` runs the exercise's cases against the student's function and the reference implementation
in ``reprank`` and returns the function the lesson goes on with: the student's when it is right, the
reference when the student left the stub and asked for the reference solutions. It stops the lesson with
one line naming the exercise when the stub is left unasked, and names the failing case when an answer is
wrong (the ARENA pattern: an exercise left as is stops the lesson rather than silently using the answer).

Stuck on one exercise (both work in the student edition, which has no solution cells)::

    exercises.show_solution("01.5")                 # prints its reference solution, read from the repository's notebooks/
    my_margin_loss = exercises.skip("01.5")         # in the exercise's cell: skip this one exercise alone

:func:`skip` returns the reference implementation, and :func:`check` given the reference (by ``skip`` or
imported) says the exercise was skipped and goes on with it. Grading: every line saying the lesson goes on
with the reference (a skip, or a stub with ``use_reference_solutions = True``) is written on **stderr**, and
nbgrader's autograder (>= 0.7, ``nbgrader.utils.determine_grade``) gives a test cell with stderr output zero
points: a skipped exercise lets the lesson run on and scores nothing, and the line in its output says why.

A checker can fail for the right reasons:

* every exercise has at least one case whose ``expected`` value was computed by hand or by an independent
  library (numpy, scipy, sklearn) and written into the case, so a checker does not only repeat the reference;
* results must have the reference's kind, shape and dtype exactly: a (b, 1, d) tensor where (b, d) is expected,
  a Python float where a tensor is expected (``.item()``) or float32 where float64 is expected fails, with one
  line saying what was expected and what came back;
* the exercises whose output feeds training (``Exercise.gradients``) compare the gradient of a random weighted
  sum of the output with respect to the listed inputs with the reference's: a detached input or a rebuilt
  tensor gives the right values and the wrong gradient, and fails.
* ``Exercise.effects`` compares what a function leaves in its arguments with what the reference leaves (04.7: one
  optimiser step of the reward model, no gradient in the policy's states).

Each notebook's exercises live in ``reprank.teaching.exercises.ex01`` ... ``ex05`` (04.7 in ``ex04_policy_confidence``);
importing this package registers them.
"""

from __future__ import annotations

import sys
from typing import Callable

import nbformat

from reprank.base.errors import UserError
from reprank.running.runs import repo_root
from reprank.teaching.exercises.checking import (  # noqa: F401  (the package's API)
    NOT_GIVEN, REGISTRY, Case, Exercise, ExerciseNotDone, ExerciseWrong, describe, is_close, kind_problem,
    register, run_cases, same_values, what)
# Importing each notebook's module registers its exercises (static imports: no module is loaded by a computed name).
from reprank.teaching.exercises import ex01, ex02, ex03, ex04, ex04_policy_confidence, ex05  # noqa: F401,E402
from reprank.teaching.exercises.cells import BEGIN, END, exercise_blocks  # noqa: E402  (after the registering imports)


def get(exercise_id: str) -> Exercise:
    if exercise_id not in REGISTRY:
        raise UserError(f"exercises: no exercise {exercise_id!r}; use the id in the exercise's heading, one of: "
                        f"{', '.join(sorted(REGISTRY))}")
    return REGISTRY[exercise_id]


def all_exercises() -> list[Exercise]:
    return [REGISTRY[key] for key in sorted(REGISTRY)]


def _goes_on_with_reference(exercise: Exercise, why: str) -> Callable:
    """Say so on stderr (nbgrader scores a test cell with stderr output 0) and return the reference."""
    print(f"exercise {exercise.id} ({exercise.title}): {why}; the lesson goes on with the reference solution "
          f"(no points for this exercise)", file=sys.stderr, flush=True)
    return exercise.reference


def check(exercise_id: str, fn: Callable, use_reference: bool = False) -> Callable:
    """Check the student's ``fn`` on the exercise's cases; return the function the lesson goes on with."""
    __tracebackhide__ = True
    exercise = get(exercise_id)
    if fn is exercise.reference:  # exercises.skip, or the reference imported: not the student's work
        return _goes_on_with_reference(exercise, "skipped")
    other = next((e.id for e in all_exercises() if e.reference is fn), None)
    if other:
        raise UserError(f"exercise {exercise.id} got exercise {other}'s reference solution; to skip this one, write "
                        f"`{exercise.function} = exercises.skip(\"{exercise.id}\")`")
    try:
        names = run_cases(exercise, fn)
    except NotImplementedError:
        if use_reference:
            return _goes_on_with_reference(exercise, "not written (use_reference_solutions = True)")
        raise ExerciseNotDone(
            f"exercise {exercise.id} ({exercise.title}) is not done yet: write `{exercise.function}` in the cell "
            f"above, or skip this exercise alone with `{exercise.function} = exercises.skip(\"{exercise.id}\")` there "
            f"(no points; exercises.show_solution(\"{exercise.id}\") prints its solution), or set "
            f"use_reference_solutions = True in the parameters cell to go on with every reference solution") from None
    print(f"exercise {exercise.id} ({exercise.title}): correct on {len(names)} cases ({'; '.join(names)})")
    return fn


def skip(exercise_id: str) -> Callable:
    """Skip one exercise: ``my_fn = exercises.skip("01.5")`` in its cell. Returns the reference implementation;
    the check cell then says the exercise was skipped (on stderr: no points) and the lesson goes on with it."""
    return get(exercise_id).reference


def show_solution(exercise_id: str) -> None:
    """Print one exercise's reference solution: its solution cell's def in the repository's ``notebooks/``
    (not ``REPRANK_NOTEBOOKS``: the student edition has no solution cells)."""
    exercise = get(exercise_id)
    folder = repo_root() / "notebooks"
    path = next(iter(sorted(folder.glob(f"{exercise_id.split('.')[0]}_*.ipynb"))), None)
    if path is None:
        raise UserError(f"exercise {exercise_id}: no notebook {exercise_id.split('.')[0]}_*.ipynb in {folder} to read "
                        f"its solution from; run this in a clone of the repository, whose notebooks/ hold them")
    blocks = exercise_blocks(path, nbformat.read(path, as_version=4).cells)
    block = next((b for b in blocks if b.exercise.id == exercise_id), None)
    if block is None:
        raise UserError(f"exercise {exercise_id}: {path} has no solution cell for it; pull the repository again")
    code = "\n".join(line for line in block.solution_def.split("\n") if line.strip() not in (BEGIN, END))
    print(f"# exercise {exercise.id} ({exercise.title}): the reference solution, from notebooks/{path.name}\n{code}")
