"""The exercise checkers accept the reference answers and reject wrong or unfinished ones."""

import numpy as np
import pytest
import torch

from reprank import confidence, exercises
from reprank.exercises import ex01, ex04


def unfinished(*args):
    raise NotImplementedError


@pytest.mark.parametrize("exercise", exercises.all_exercises(), ids=lambda e: e.id)
def test_reference_passes_its_own_cases(exercise):
    assert exercises.run_cases(exercise, exercise.reference)


WRONG = [(exercise_id, index, answer) for module in (ex01, ex04)
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


def test_paper_confidence_checker():
    assert exercises.check_paper_confidence(lambda c, r, a: confidence.paper_batch_confidence(c, r, alpha=a))
    no_floor = lambda c, r, a: float(torch.sigmoid(a * (torch.sigmoid(c).mean() - torch.sigmoid(r).mean())))
    assert not exercises.check_paper_confidence(no_floor)
    assert not exercises.check_paper_confidence(unfinished)


def test_top_bottom_checker():
    def reference(rewards, m):
        order = np.argsort(-rewards, kind="stable")
        half = min(m, len(rewards) // 2)
        return [(int(order[i]), int(order[i + half])) for i in range(half)]

    def outside_in(rewards, m):  # i-th best against i-th worst: not how the authors pair
        order = np.argsort(-rewards, kind="stable")
        return [(int(order[i]), int(order[-1 - i])) for i in range(min(m, len(rewards) // 2))]

    assert exercises.check_top_bottom_pairs(reference)
    assert not exercises.check_top_bottom_pairs(outside_in)
    assert not exercises.check_top_bottom_pairs(lambda rewards, m: [(int(np.argmax(rewards)), int(np.argmin(rewards)))])
    assert not exercises.check_top_bottom_pairs(unfinished)
