"""Exercises: the paper's pieces, written by the student, checked, then used by the rest of the lesson.

A notebook's exercise is four cells (see ``reprank.student`` for how the editions are built from them):
the statement (markdown), the student's function (a stub that raises ``NotImplementedError``), the hidden
reference solution (runs only with ``use_reference_solutions = True``) and the check::

    my_margin_loss = exercises.check("01.5", my_margin_loss, use_reference=use_reference_solutions)

:func:`check` runs the exercise's cases against the student's function and the reference implementation
in ``reprank`` and returns the function the lesson goes on with: the student's when it is right, the
reference when the student left the stub and asked for the reference solutions. It stops the lesson with
one line naming the exercise when the stub is left unasked, and names the failing case when an answer is
wrong (the ARENA pattern: a skipped exercise stops the lesson rather than silently using the answer).

Each notebook's exercises live in ``reprank.exercises.ex01`` ... ``ex05``; importing this package registers them.
"""

from __future__ import annotations

import copy
import importlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from ..errors import UserError


class ExerciseNotDone(UserError):
    """The student's function is still the stub and the reference solutions were not asked for."""


class ExerciseWrong(AssertionError):
    """The student's function differs from the reference on a named case (an AssertionError, as nbgrader's
    autograded test cells expect)."""


@dataclass(frozen=True)
class Case:
    """One input to try: ``name`` says what it tests ("a tie", "x = -100", "an empty batch").

    ``raises``: the error the reference raises on this input (an empty batch: ValueError); the student's
    function must raise it too rather than return a value such as nan.
    """

    name: str
    args: tuple
    kwargs: dict = field(default_factory=dict)
    raises: type[Exception] | None = None


@dataclass(frozen=True)
class Exercise:
    id: str  # "01.2": notebook and number
    title: str  # "the margin loss"
    function: str  # the name the student defines: "my_margin_loss"
    reference: Callable  # the package's implementation, called like the student's function
    cases: Callable[[], list[Case]]  # built when checked (seeded), so importing stays cheap
    compare: Callable[[Any, Any], str | None] | None = None  # None: same values within ``atol``
    atol: float = 1e-5
    points: int = 1  # for nbgrader's autograded test cell


REGISTRY: dict[str, Exercise] = {}
NOTEBOOK_MODULES = ("ex01", "ex02", "ex03", "ex04", "ex05")


def register(exercise: Exercise) -> Exercise:
    if exercise.id in REGISTRY:
        raise ValueError(f"exercise {exercise.id} is registered twice")
    REGISTRY[exercise.id] = exercise
    return exercise


def get(exercise_id: str) -> Exercise:
    _load_all()
    if exercise_id not in REGISTRY:
        raise UserError(f"exercises: no exercise {exercise_id!r}; known: {sorted(REGISTRY)}")
    return REGISTRY[exercise_id]


def all_exercises() -> list[Exercise]:
    _load_all()
    return [REGISTRY[key] for key in sorted(REGISTRY)]


def _load_all() -> None:
    for name in NOTEBOOK_MODULES:
        try:
            importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"{__name__}.{name}":
                raise


def describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return np.array2string(value, precision=4, threshold=8) if value.ndim else f"{float(value):.4f}"
    if isinstance(value, float):
        return f"{value:.4f}"
    return repr(value) if len(repr(value)) < 200 else repr(value)[:200] + "..."


def _as_array(value: Any) -> np.ndarray | None:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().double().numpy()
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return np.asarray(float(value))
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return value.astype(float)
    return None


def same_values(got: Any, expected: Any, atol: float = 1e-5) -> str | None:
    """None when ``got`` equals ``expected`` (numbers, tensors and arrays within ``atol``, nested lists,
    tuples and dicts element by element); else what differs, in words."""
    if got is None and expected is not None:
        return "your function returned None (a missing `return`?)"
    expected_array, got_array = _as_array(expected), _as_array(got)
    if expected_array is not None:
        if got_array is None:
            return f"expected a number or tensor {describe(expected)}, got {type(got).__name__} {describe(got)}"
        if got_array.shape != expected_array.shape and got_array.size != expected_array.size:
            return f"expected shape {expected_array.shape}, got shape {got_array.shape}"
        got_array = got_array.reshape(expected_array.shape)
        if not np.allclose(got_array, expected_array, atol=atol, rtol=1e-4, equal_nan=True):
            return f"expected {describe(expected)}, got {describe(got)}"
        return None
    if isinstance(expected, (list, tuple)):
        if not isinstance(got, (list, tuple)) or len(got) != len(expected):
            return f"expected {describe(expected)}, got {describe(got)}"
        for index, (g, e) in enumerate(zip(got, expected)):
            problem = same_values(g, e, atol)
            if problem:
                return f"item {index}: {problem}"
        return None
    if isinstance(expected, dict):
        if not isinstance(got, dict) or set(got) != set(expected):
            return f"expected keys {sorted(expected)}, got {describe(got)}"
        for key in expected:
            problem = same_values(got[key], expected[key], atol)
            if problem:
                return f"{key!r}: {problem}"
        return None
    return None if got == expected else f"expected {describe(expected)}, got {describe(got)}"


def run_cases(exercise: Exercise, fn: Callable) -> list[str]:
    """The names of the cases checked; raises ExerciseWrong at the first that differs (NotImplementedError
    from an unfinished stub passes through)."""
    names = []
    for case in exercise.cases():
        if case.raises is not None:
            _expect_error(exercise, case, fn)
            names.append(case.name)
            continue
        expected = exercise.reference(*copy.deepcopy(case.args), **copy.deepcopy(case.kwargs))
        try:
            got = fn(*copy.deepcopy(case.args), **copy.deepcopy(case.kwargs))
        except NotImplementedError:
            raise
        except Exception as error:  # the student's bug: name the case, keep the error's own words
            raise ExerciseWrong(f"exercise {exercise.id} ({exercise.title}), case '{case.name}': your function "
                                f"raised {type(error).__name__}: {error}") from error
        compare = exercise.compare or (lambda g, e: same_values(g, e, exercise.atol))
        problem = compare(got, expected)
        if problem:
            raise ExerciseWrong(f"exercise {exercise.id} ({exercise.title}), case '{case.name}': {problem}")
        names.append(case.name)
    return names


def _expect_error(exercise: Exercise, case: Case, fn: Callable) -> None:
    where = f"exercise {exercise.id} ({exercise.title}), case '{case.name}'"
    try:
        got = fn(*copy.deepcopy(case.args), **copy.deepcopy(case.kwargs))
    except NotImplementedError:
        raise
    except case.raises:
        return
    except Exception as error:
        raise ExerciseWrong(f"{where}: expected a {case.raises.__name__}, your function raised "
                            f"{type(error).__name__}: {error}") from error
    raise ExerciseWrong(f"{where}: expected a {case.raises.__name__}, your function returned {describe(got)}")


def check(exercise_id: str, fn: Callable, use_reference: bool = False) -> Callable:
    """Check the student's ``fn`` on the exercise's cases; return the function the lesson goes on with."""
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


def is_close(a: float, b: float, atol: float = 1e-6) -> bool:
    return math.isclose(float(a), float(b), abs_tol=atol)
