"""The exercise checkers accept the reference answers and reject wrong or unfinished ones."""

import pytest
import torch

from reprank import exercises
from reprank.exercises import ex01, ex02, ex03, ex04, ex05


def unfinished(*args):
    raise NotImplementedError


@pytest.mark.parametrize("exercise", exercises.all_exercises(), ids=lambda e: e.id)
def test_reference_passes_its_own_cases(exercise):
    assert exercises.run_cases(exercise, exercise.reference)


WRONG = [(exercise_id, index, answer) for module in (ex01, ex02, ex03, ex04, ex05)
         for exercise_id, answers in module.WRONG_ANSWERS.items() for index, answer in enumerate(answers)]


@pytest.mark.parametrize("exercise_id, index, answer", WRONG, ids=[f"{e}-{i}" for e, i, _ in WRONG])
def test_checker_rejects_a_wrong_answer(exercise_id, index, answer):
    with pytest.raises(exercises.ExerciseWrong, match=exercise_id):
        exercises.check(exercise_id, answer)


@pytest.mark.parametrize("exercise", exercises.all_exercises(), ids=lambda e: e.id)
def test_stub_stops_the_lesson_unless_the_reference_is_asked_for(exercise):
    with pytest.raises(exercises.ExerciseNotDone, match=f"exercise {exercise.id} .*{exercise.function}"):
        exercises.check(exercise.id, unfinished)
    assert exercises.check(exercise.id, unfinished, use_reference=True) is exercise.reference


def test_a_case_that_expects_an_error_names_it():
    # The paper's confidence of an empty batch: the reference raises ValueError; nan (no check) is wrong.
    no_check = lambda c, r, a: torch.sigmoid(a * (torch.sigmoid(c).mean() - torch.sigmoid(r).mean())).clamp(min=0.5)
    with pytest.raises(exercises.ExerciseWrong, match="empty batch.*expected a ValueError, your function returned nan"):
        exercises.check("02.1", no_check)

    def wrong_error(c, r, a):
        if len(c) == 0:
            raise ZeroDivisionError("no pairs")
        return exercises.get("02.1").reference(c, r, a)

    with pytest.raises(exercises.ExerciseWrong, match="expected a ValueError, your function raised ZeroDivisionError"):
        exercises.check("02.1", wrong_error)
