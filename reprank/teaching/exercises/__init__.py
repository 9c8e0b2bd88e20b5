"""Exercises: the paper's pieces, written by the student, checked, then used by the rest of the lesson.

A notebook's exercise is four cells (see ``reprank.teaching.student`` for how the editions are built from them):
the statement (markdown), the student's function (a stub that raises ``NotImplementedError``), the hidden
reference solution (runs only with ``use_reference_solutions = True``) and the check::

    my_margin_loss = exercises.check("01.5", my_margin_loss, use_reference=use_reference_solutions)

:func:`check` runs the exercise's cases against the student's function and the reference implementation
in ``reprank`` and returns the function the lesson goes on with: the student's when it is right, the
reference when the student left the stub and asked for the reference solutions. It stops the lesson with
one line naming the exercise when the stub is left unasked, and names the failing case when an answer is
wrong (the ARENA pattern: a skipped exercise stops the lesson rather than silently using the answer).

A checker can fail for the right reasons:

* every exercise has at least one case whose ``expected`` value was computed by hand or by an independent
  library (numpy, scipy, sklearn) and written into the case, so a checker does not only repeat the reference;
* results must have the reference's kind, shape and dtype exactly: a (b, 1, d) tensor where (b, d) is expected,
  a Python float where a tensor is expected (``.item()``) or float32 where float64 is expected fails, with one
  line saying what was expected and what came back;
* the exercises whose output feeds training (``Exercise.gradients``) compare the gradient of a random weighted
  sum of the output with respect to the listed inputs with the reference's: a detached input or a rebuilt
  tensor gives the right values and the wrong gradient, and fails.

Each notebook's exercises live in ``reprank.teaching.exercises.ex01`` ... ``ex05``; importing this package registers them.
"""

from __future__ import annotations

from typing import Callable

from reprank.base.errors import UserError
from reprank.teaching.exercises.checking import (  # noqa: F401  (the package's API)
    NOT_GIVEN, REGISTRY, Case, Exercise, ExerciseNotDone, ExerciseWrong, describe, is_close, kind_problem,
    register, run_cases, same_values, what)
# Importing each notebook's module registers its exercises (static imports: no module is loaded by a computed name).
from reprank.teaching.exercises import ex01, ex02, ex03, ex04, ex05  # noqa: F401,E402


def get(exercise_id: str) -> Exercise:
    if exercise_id not in REGISTRY:
        raise UserError(f"exercises: no exercise {exercise_id!r}; known: {sorted(REGISTRY)}")
    return REGISTRY[exercise_id]


def all_exercises() -> list[Exercise]:
    return [REGISTRY[key] for key in sorted(REGISTRY)]


def check(exercise_id: str, fn: Callable, use_reference: bool = False) -> Callable:
    """Check the student's ``fn`` on the exercise's cases; return the function the lesson goes on with."""
    __tracebackhide__ = True
    exercise = get(exercise_id)
    try:
        names = run_cases(exercise, fn)
    except NotImplementedError:
        if use_reference:
            print(f"exercise {exercise.id} ({exercise.title}): not written; the lesson goes on with the reference "
                  f"solution (use_reference_solutions = True)")
            return exercise.reference
        raise ExerciseNotDone(
            f"exercise {exercise.id} ({exercise.title}) is not done yet: write `{exercise.function}` in the cell "
            f"above, or set use_reference_solutions = True in the parameters cell to go on with the reference "
            f"solution") from None
    print(f"exercise {exercise.id} ({exercise.title}): correct on {len(names)} cases ({'; '.join(names)})")
    return fn
