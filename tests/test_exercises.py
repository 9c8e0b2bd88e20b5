"""The exercise checkers accept the reference answers and reject wrong or unfinished ones, for the right reasons."""

import ast
import functools
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reprank.base.errors import UserError
from reprank.teaching import exercises
from reprank.teaching.exercises import ex01, ex02, ex03, ex04, ex05
from reprank.teaching.exercises.cells import exercise_blocks

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("0*.ipynb"))
# The exercises whose output is trained through: their checkers compare gradients with the reference's.
TRAINED_THROUGH = {"01.4", "01.5", "04.3", "04.4", "04.5", "04.6", "04.7"}


def unfinished(*args):
    raise NotImplementedError


@pytest.mark.parametrize("exercise", exercises.all_exercises(), ids=lambda e: e.id)
def test_reference_passes_its_own_cases(exercise):
    # Cases with an expected value worked out by hand or by numpy / scipy / sklearn hold the reference to it too.
    assert exercises.run_cases(exercise, exercise.reference)


@pytest.mark.parametrize("exercise", exercises.all_exercises(), ids=lambda e: e.id)
def test_every_exercise_has_an_expected_value_not_taken_from_the_reference(exercise):
    independent = [case.name for case in exercise.cases() if case.independent and case.raises is None]
    assert independent, f"exercise {exercise.id}: no case with an expected value of its own"


def test_the_exercises_trained_through_check_gradients():
    trained = {e.id for e in exercises.all_exercises()} & TRAINED_THROUGH
    assert trained >= {"01.4", "01.5", "04.3", "04.5", "04.6"}
    assert {e for e in trained if not exercises.get(e).gradients} == set()


def _unchained(error: BaseException) -> bool:
    return error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


def _entries(module):
    for exercise_id, answers in module.WRONG_ANSWERS.items():
        for index, entry in enumerate(answers):
            answer, because = entry if isinstance(entry, tuple) else (entry, None)
            yield exercise_id, index, answer, because


WRONG = [entry for module in (ex01, ex02, ex03, ex04, ex05) for entry in _entries(module)]


@pytest.mark.parametrize("exercise_id, index, answer, because", WRONG, ids=[f"{e}-{i}" for e, i, _, _ in WRONG])
def test_checker_rejects_a_wrong_answer(exercise_id, index, answer, because):
    with pytest.raises(exercises.ExerciseWrong, match=f"^exercise {exercise_id} ") as caught:
        exercises.check(exercise_id, answer)
    message = str(caught.value)
    assert "\n" not in message, "a check's message is one line"
    assert _unchained(caught.value), "no chained traceback under the message"
    if because:
        assert re.search(because, message), f"rejected, but not because {because!r}: {message}"
    # A wrong answer must not fail by crashing on how it is called (a tuple entry passed as the function).
    assert "your function raised TypeError: 'tuple' object is not callable" not in message


def test_ex03s_wrong_answers_differ_from_a_right_one_by_their_mistake_alone():
    # 03.4's and 03.7's catalogues are built by one function each, a mistake switched on per entry; none switched on,
    # it is a right answer written another way than the reference, and it passes.
    right_pairs, right_flops = ex03._ranked_pairs_with(), ex03._generation_flops_with()
    assert exercises.check("03.4", right_pairs) is right_pairs
    assert exercises.check("03.7", right_flops) is right_flops


def test_every_wrong_answer_the_issue_lists_is_in_the_catalogue():
    # Issue 23: the wrong answers the checkers used to accept; each is rejected for its own reason (above).
    reasons = {(e, b) for e, _, _, b in WRONG if b}
    for exercise_id, reason in [("01.1", "squeeze"), ("01.4", "gradient with respect to"), ("04.5", r"\.item\(\)"),
                                ("02.5", "any"), ("02.6", "linspace"), ("03.5", "AFTER"), ("04.2", "touching"),
                                ("04.7", "hidden states"), ("04.7", "stepped 0 times"), ("04.7", "p carries")]:
        assert any(e == exercise_id and reason in b for e, b in reasons), (exercise_id, reason)


@pytest.mark.parametrize("exercise", exercises.all_exercises(), ids=lambda e: e.id)
def test_stub_stops_the_lesson_unless_the_reference_is_asked_for(exercise):
    with pytest.raises(exercises.ExerciseNotDone, match=f"exercise {exercise.id} .*{exercise.function}") as caught:
        exercises.check(exercise.id, unfinished)
    # ... and says how to get unstuck on this exercise alone, in one line.
    message = str(caught.value)
    assert f'{exercise.function} = exercises.skip("{exercise.id}")' in message and "\n" not in message
    assert f'exercises.show_solution("{exercise.id}")' in message
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


def test_an_error_in_the_students_function_names_its_line_in_one_line():
    def my_end_token_state(hidden, attention_mask):
        index = attention_mask.shape[1]  # one past the last position
        return hidden[torch.arange(len(hidden)), index]

    with pytest.raises(exercises.ExerciseWrong, match=r"raised IndexError \(line 3 of `my_end_token_state`: "
                                                      r"`return hidden\[.*\]`\): index") as caught:
        exercises.check("01.1", my_end_token_state)
    assert "\n" not in str(caught.value) and _unchained(caught.value)


@pytest.mark.parametrize("got, expected, message", [
    (torch.zeros(3, 1, 4), torch.zeros(3, 4), r"shape \(3, 4\), got shape \(3, 1, 4\) \(as many values"),
    (torch.zeros(4, 3), torch.zeros(3, 4), r"shape \(3, 4\), got shape \(4, 3\)"),
    (torch.zeros(3, dtype=torch.float32), torch.zeros(3, dtype=torch.float64),
     "dtype torch.float64, got dtype torch.float32"),
    (0.5, torch.tensor(0.5), r"got a float 0.5000: `\.item\(\)`"),
    (np.zeros(3), torch.zeros(3), "got a numpy array.*numpy cuts"),
    (torch.zeros(3, dtype=torch.float64), np.zeros(3), "expected a numpy array .* got a tensor"),
    (np.zeros(3, dtype=np.float32), np.zeros(3), "dtype float64, got dtype float32"),
    (np.zeros((3, 1)), np.zeros(3), r"shape \(3,\), got shape \(3, 1\)"),
    (torch.tensor(0.5), 0.5, "expected a number .*got a tensor"),
    (np.array(0.5), 0.5, "expected a number .*got a numpy array"),
    (2.0, 2, "expected an int"),
    (None, 1.0, "returned None"),
    ([(0, 3)], [(0, 3), (1, 2)], "expected 2 items"),
    ({"a": 1.0}, {"a": 1.0, "b": 2.0}, "expected keys"),
    (np.zeros((5, 5)), np.ones((5, 5)), r"^expected \[\[1\. 1\. \.\.\. 1\. 1\.\] \[1\. 1\. \.\.\. 1\. 1\.\] \.\.\."),
])
def test_results_must_have_the_exact_kind_shape_and_dtype(got, expected, message):
    problem = exercises.same_values(got, expected)
    assert problem and "\n" not in problem
    assert re.search(message, problem), problem


@pytest.mark.parametrize("got, expected", [
    (np.float64(0.5), 0.5), (1, 1.0), (np.int64(3), 3), ([0, 3], (0, 3)), (float("nan"), float("nan")),
    (torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0 + 1e-7])), (None, None), ("lower", "lower"),
])
def test_equal_results_of_an_equivalent_kind_pass(got, expected):
    assert exercises.same_values(got, expected) is None


def _einsum_hybrid_reward(states, mean, std, weight, bias, gate_weight):
    t = torch.einsum("nld,ld->nl", (states - mean) / std, weight) + bias
    return (torch.sigmoid(torch.einsum("kl,nl->nk", gate_weight, t)) * t).sum(-1)


def _cross_entropy_logps(logits, labels):
    return -F.cross_entropy(logits[:, :-1].transpose(1, 2), labels[:, 1:], reduction="none", ignore_index=-100).sum(1)


def _cross_entropy_nll(logits, labels):
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100)


def _p_first_then_the_step(hidden_states, ends, reward_model, optimizer, alpha, margin):
    """04.7 in another order and by other means: p read before the step, the states picked by advanced indexing."""
    states = hidden_states[reward_model.layers][:, torch.arange(len(ends)), ends].transpose(0, 1).detach()
    chosen, rejected = reward_model(states).chunk(2)
    with torch.no_grad():
        p = torch.sigmoid(alpha * (chosen.sigmoid().mean() - rejected.sigmoid().mean())).clamp(min=0.5)
    reward_model.zero_grad()
    F.softplus(-(chosen - rejected - margin)).mean().backward()
    optimizer.step()
    return p


@pytest.mark.parametrize("exercise_id, answer", [
    ("01.4", _einsum_hybrid_reward),
    ("01.5", lambda c, r, m: F.softplus(-(c - r - m)).mean()),
    ("04.3", _cross_entropy_logps),
    ("04.5", lambda z, p, beta: (-F.logsigmoid(beta * z) + (1 - p) * beta * z).mean()),  # TRL's form
    ("04.5", lambda z, p, beta: (p * F.softplus(-beta * z) + (1 - p) * F.softplus(beta * z)).mean()),
    ("04.6", _cross_entropy_nll),
    ("04.7", _p_first_then_the_step),
], ids=["01.4-einsum", "01.5-softplus", "04.3-cross-entropy", "04.5-trl", "04.5-softplus", "04.6-cross-entropy",
        "04.7-p-first"])
def test_a_right_answer_written_another_way_passes_values_and_gradients(exercise_id, answer):
    assert exercises.check(exercise_id, answer) is answer


def test_the_reference_gradient_of_the_conservative_loss_is_the_one_by_hand():
    # d/dz_i of mean(-p log s(beta z) - (1 - p) log s(-beta z)) = beta (s(beta z_i) - p_i) / n
    z = torch.tensor([-3.0, 0.0, 2.0, 40.0], requires_grad=True)
    p, beta = torch.tensor([1.0, 0.5, 0.8, 0.6]), 0.5
    (grad,) = torch.autograd.grad(exercises.get("04.5").reference(z, p, beta), z)
    by_hand = [beta * (1 / (1 + np.exp(-beta * zi)) - pi) / 4 for zi, pi in zip(z.tolist(), p.tolist())]
    np.testing.assert_allclose(grad.numpy(), by_hand, rtol=1e-5, atol=1e-7)


def test_the_reference_step_of_the_reward_model_is_adams_first_step_by_hand():
    # 04.7's first case: R = sigmoid(V t) t with t = w h + b, w = 1, b = 0, V = 0 (R = h / 2); h_c = 2 ln 3, h_r = 0.
    # The margin loss -log s(d), d = R_c - R_r - 1, with k = 1 - s(d) > 0: dL/dw = -k (h_c - h_r) / 2 < 0, dL/db =
    # -k (1/2 - 1/2) = 0, dL/dV = -k (t_c^2 - t_r^2) / 4 < 0, plus weight decay 0.01 times each weight (0 for b and V).
    # Adam's first step moves each weight by -lr g / (|g| + 1e-8): w 1 -> 1.01, b stays 0, V 0 -> 0.01.
    hidden, ends, rm, optimizer, alpha, margin = exercises.get("04.7").cases()[0].args
    p = exercises.get("04.7").reference(hidden, ends, rm, optimizer, alpha, margin)
    assert p.item() == pytest.approx(0.75, abs=1e-6)
    assert rm.probe_weight.item() == pytest.approx(1.01, abs=1e-6)
    assert rm.probe_bias.item() == 0.0
    assert rm.gate.weight.item() == pytest.approx(0.01, abs=1e-6)


@functools.cache
def _solutions(notebook: Path) -> dict:
    """The notebook's solution defs by exercise id, executed in order in one namespace with the notebook's imports of
    numpy, pandas, torch, scipy, sklearn and math (one exercise's solution may call an earlier one's, as 04.6 does)."""
    nb = nbformat.read(notebook, as_version=4)
    namespace, solutions = {}, {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                roots = {(node.module or "") if isinstance(node, ast.ImportFrom) else alias.name for alias in node.names}
                if all(root.split(".")[0] in {"numpy", "pandas", "torch", "scipy", "sklearn", "math"} for root in roots):
                    exec(compile(ast.Module([node], []), notebook.name, "exec"), namespace)
    for block in exercise_blocks(notebook, nb.cells):
        exec(compile(block.solution_def, f"{notebook.name}: solution {block.exercise.id}", "exec"), namespace)
        solutions[block.exercise.id] = namespace[block.exercise.function]
    return solutions


SOLUTIONS = [(notebook, exercise_id) for notebook in NOTEBOOKS for exercise_id in _solutions(notebook)]


@pytest.mark.parametrize("notebook, exercise_id", SOLUTIONS, ids=[e for _, e in SOLUTIONS])
def test_the_notebooks_own_solutions_pass_their_checkers(notebook, exercise_id):
    # The notebooks run their hidden solutions through these checkers (use_reference_solutions = True).
    solution = _solutions(notebook)[exercise_id]
    assert exercises.check(exercise_id, solution) is solution


# Stuck on one exercise: exercises.show_solution prints its solution, exercises.skip skips it alone.

def _solution_region(notebook: Path, exercise_id: str) -> str:
    """The exercise's solution cell in the notebook, read here without reprank: the cell before its check cell, its
    `#@title` and guard lines dropped, dedented, the BEGIN / END SOLUTION lines dropped."""
    cells = nbformat.read(notebook, as_version=4).cells
    at = next(i for i, cell in enumerate(cells) if f'exercises.check("{exercise_id}"' in cell.source)
    lines = cells[at - 1].source.rstrip().split("\n")[2:]
    return "\n".join(line[4:] for line in lines if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION"))


@pytest.mark.parametrize("notebook, exercise_id", SOLUTIONS, ids=[e for _, e in SOLUTIONS])
def test_show_solution_prints_that_exercises_solution_from_the_repository(notebook, exercise_id, capsys, tmp_path,
                                                                          monkeypatch):
    # REPRANK_NOTEBOOKS (the student edition, in the tests) has no solution cells: show_solution must not read it.
    monkeypatch.setenv("REPRANK_NOTEBOOKS", str(tmp_path))
    exercise = exercises.get(exercise_id)
    assert exercises.show_solution(exercise_id) is None  # printed, not returned (Jupyter would show it twice)
    header, code = capsys.readouterr().out.rstrip("\n").split("\n", 1)
    assert header == f"# exercise {exercise_id} ({exercise.title}): the reference solution, from notebooks/{notebook.name}"
    assert code == _solution_region(notebook, exercise_id)
    defined = [node.name for node in ast.parse(code).body if isinstance(node, ast.FunctionDef)]
    assert defined == [exercise.function]  # this exercise's function, not another's
    others = [(n, e) for n, e in SOLUTIONS if e != exercise_id]
    assert all(code != _solution_region(n, e) for n, e in others)


def test_show_solution_outside_a_clone_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setattr(exercises, "repo_root", lambda: tmp_path)
    with pytest.raises(UserError, match=r"^exercise 01\.5: no notebook 01_\*\.ipynb in .*clone") as caught:
        exercises.show_solution("01.5")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("call", ["get", "skip", "show_solution", "check"])
def test_an_unknown_exercise_id_is_one_line_listing_the_known_ones(call):
    function = {"check": lambda i: exercises.check(i, unfinished)}.get(call, getattr(exercises, call))
    with pytest.raises(UserError) as caught:
        function("1.5")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("exercises: no exercise '1.5'; use the id in the exercise's heading")
    assert message.endswith(", ".join(e.id for e in exercises.all_exercises()))


def nbgrader_points(outputs: list[dict], points: float) -> float:
    """nbgrader's rule for an autograded test cell (nbgrader.utils.determine_grade, 0.7 to 0.9.5), written out again
    here: an error or anything on stderr scores 0, else all points (a check cell is an assignment: it has no result,
    which nbgrader would read as partial credit)."""
    assert all(output["output_type"] != "execute_result" for output in outputs)
    for output in outputs:
        if output["output_type"] == "error" or output["output_type"] == "stream" and output["name"] == "stderr":
            return 0.0
    return points


def _check_cell(exercise_id: str, fn, capsys, use_reference: bool = False) -> tuple:
    """A check cell run: (the function the lesson goes on with or None, its outputs as nbgrader reads them)."""
    outputs, result = [], None
    try:
        result = exercises.check(exercise_id, fn, use_reference=use_reference)
    except Exception as error:
        outputs.append({"output_type": "error", "ename": type(error).__name__, "evalue": str(error)})
    captured = capsys.readouterr()
    outputs += [{"output_type": "stream", "name": name, "text": text}
                for name, text in (("stdout", captured.out), ("stderr", captured.err)) if text]
    return result, outputs


@pytest.mark.parametrize("exercise", exercises.all_exercises(), ids=lambda e: e.id)
def test_a_skipped_exercise_goes_on_with_the_reference_and_scores_nothing(exercise, capsys):
    skipped = exercises.skip(exercise.id)
    assert skipped is exercise.reference
    result, outputs = _check_cell(exercise.id, skipped, capsys)
    assert result is exercise.reference  # the lesson goes on with the reference
    assert outputs == [{"output_type": "stream", "name": "stderr",
                        "text": f"exercise {exercise.id} ({exercise.title}): skipped; the lesson goes on with the "
                                f"reference solution (no points for this exercise)\n"}]
    assert nbgrader_points(outputs, exercise.points) == 0


def test_only_the_students_own_right_answer_scores(capsys):
    exercise = exercises.get("01.5")
    mine = lambda c, r, m: F.softplus(-(c - r - m)).mean()
    for fn, use_reference, expected in [(mine, False, exercise.points),  # right: full points, on stdout
                                        (exercise.reference, False, 0),  # the reference imported: a skip
                                        (unfinished, True, 0),  # use_reference_solutions switched on in another cell
                                        (unfinished, False, 0),  # not done: ExerciseNotDone
                                        (lambda c, r, m: (c - r).mean(), False, 0)]:  # wrong: ExerciseWrong
        result, outputs = _check_cell("01.5", fn, capsys, use_reference)
        assert nbgrader_points(outputs, exercise.points) == expected, outputs
    result, outputs = _check_cell("01.5", mine, capsys)
    assert result is mine and [o["name"] for o in outputs] == ["stdout"] and "correct on" in outputs[0]["text"]
    _, outputs = _check_cell("01.5", exercises.skip("01.5"), capsys)
    assert "): skipped; " in outputs[0]["text"]


def test_skipping_another_exercise_by_mistake_is_one_line_naming_both(capsys):
    with pytest.raises(UserError) as caught:
        exercises.check("01.5", exercises.skip("01.4"))
    assert str(caught.value) == ("exercise 01.5 got exercise 01.4's reference solution; to skip this one, write "
                                 "`my_margin_loss = exercises.skip(\"01.5\")`")
