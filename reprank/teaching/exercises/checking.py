"""The checking machinery of the exercises: a case, an exercise, the registry the notebooks' modules fill,
and the comparisons that catch a wrong kind, shape, dtype, value or gradient (the rules are in
``reprank.teaching.exercises``' docstring). It imports no exercise: ``ex01`` ... ``ex05`` and
``ex04_policy_confidence`` import it."""

from __future__ import annotations

import copy
import inspect
import linecache
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from reprank.base.errors import UserError


class ExerciseNotDone(UserError):
    """The student's function is still the stub and the reference solutions were not asked for."""


class ExerciseWrong(AssertionError):
    """The student's function differs from the reference on a named case (an AssertionError, as nbgrader's
    autograded test cells expect)."""


class _NotGiven:
    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN = _NotGiven()  # a Case without its own expected value: the reference's output is the expected one


@dataclass(frozen=True)
class Case:
    """One input to try: ``name`` says what it tests ("a tie", "x = -100", "an empty batch").

    ``raises``: the error the reference raises on this input (an empty batch: ValueError); the student's
    function must raise it too rather than return a value such as nan.
    ``expected``: the right answer worked out without the reference (by hand, or by numpy / scipy / sklearn),
    written into the case; the student's function and the reference are both held to it (the reference by
    tests/test_exercises.py). Without it the reference's output is the expected value.
    """

    name: str
    args: tuple
    kwargs: dict = field(default_factory=dict)
    raises: type[Exception] | None = None
    expected: Any = NOT_GIVEN

    @property
    def independent(self) -> bool:
        return self.expected is not NOT_GIVEN


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
    # Positional arguments (by index) whose gradient must reach the output as in the reference: the exercises
    # whose output is trained through. Floating tensors among them get requires_grad for both functions.
    gradients: tuple[int, ...] = ()
    # A function with a side effect (04.7's optimiser step): ``effects(yours, reference)`` gets the two tuples of
    # arguments after the calls and returns what differs, in words, or None.
    effects: Callable[[tuple, tuple], str | None] | None = None


REGISTRY: dict[str, Exercise] = {}


def register(exercise: Exercise) -> Exercise:
    if exercise.id in REGISTRY:
        raise ValueError(f"exercise {exercise.id} is registered twice")
    REGISTRY[exercise.id] = exercise
    return exercise


def describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        if not value.ndim:
            return f"{float(value):.4f}" if value.dtype.kind in "biuf" else repr(value.item())
        text = np.array2string(value, precision=4, threshold=8, edgeitems=2, max_line_width=10**6)
        return re.sub(r"\s*\n\s*", " ", text)  # one line, whatever the rank
    if isinstance(value, float):
        return f"{value:.4f}"
    text = re.sub(r"\s*\n\s*", " ", repr(value))
    return text if len(text) < 200 else text[:200] + "..."


def _as_array(value: Any) -> np.ndarray | None:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().double().numpy()
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return np.asarray(float(value))
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return value.astype(float)
    return None


def _kind(value: Any) -> str:
    """What a value is, for the checkers: tensor, array, bool, int, float, none, str, sequence, dict or other."""
    if isinstance(value, torch.Tensor):
        return "tensor"
    if isinstance(value, np.ndarray):
        return "array"
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, (int, np.integer)):
        return "int"
    if isinstance(value, (float, np.floating)):
        return "float"
    if value is None:
        return "none"
    if isinstance(value, str):
        return "str"
    if isinstance(value, (list, tuple)):
        return "sequence"
    if isinstance(value, dict):
        return "dict"
    return "other"


def _shape(value) -> tuple:
    return tuple(value.shape)


def what(value: Any) -> str:
    """A value's kind in words, with shape and dtype for tensors and arrays: "a tensor of shape (3, 4) and dtype
    torch.float32", "a float 0.6931"."""
    kind = _kind(value)
    if kind == "tensor":
        return f"a tensor of shape {_shape(value)} and dtype {value.dtype}"
    if kind == "array":
        return f"a numpy array of shape {_shape(value)} and dtype {value.dtype}"
    if kind in ("int", "float"):
        return f"{'an int' if kind == 'int' else 'a float'} {describe(value)}"
    if kind == "sequence":
        return f"a {type(value).__name__} of {len(value)}"
    if kind == "none":
        return "None"
    return f"a {type(value).__name__} {describe(value)}"


def kind_problem(got: Any, expected: Any) -> str | None:
    """None when ``got`` is the kind of value ``expected`` is, with its exact shape and dtype; else what differs.

    A Python or numpy int or float stands for a float; an index (int) must be an int; tensors and numpy arrays
    must match in shape and dtype exactly (a (b, 1, d) tensor is not a (b, d) one, whatever its values)."""
    want, have = _kind(expected), _kind(got)
    if have == "none" and want != "none":
        return "your function returned None (a missing `return`?)"
    if want == "tensor":
        if have != "tensor":
            hint = ""
            if have in ("int", "float"):
                hint = ": `.item()` or `float()` turns the tensor into a number cut from its gradient; return the tensor"
            elif have == "array":
                hint = ": numpy cuts the result from its gradient; compute it with torch"
            return f"expected {what(expected)}, got {what(got)}{hint}"
        if _shape(got) != _shape(expected):
            hint = (" (as many values, another shape: a missing squeeze, or an extra keepdim?)"
                    if got.numel() == expected.numel() else "")
            return f"expected a tensor of shape {_shape(expected)}, got shape {_shape(got)}{hint}"
        if got.dtype != expected.dtype:
            return f"expected a tensor of dtype {expected.dtype}, got dtype {got.dtype}"
        return None
    if want == "array":
        if have != "array":
            return f"expected {what(expected)}, got {what(got)}"
        if got.shape != expected.shape:
            hint = " (as many values, another shape)" if got.size == expected.size else ""
            return f"expected a numpy array of shape {expected.shape}, got shape {got.shape}{hint}"
        if got.dtype != expected.dtype:
            return f"expected a numpy array of dtype {expected.dtype}, got dtype {got.dtype}"
        return None
    if want == "float" and have in ("float", "int"):
        return None
    if want == "sequence" and have == "sequence":  # a list for a tuple is fine; the items are checked one by one
        return None
    if want == "none" and have != "none":
        return f"expected None, got {what(got)}"
    if want != have:
        article = {"int": "an int (an index or a count)", "float": "a number (a Python or numpy float)",
                   "bool": "True or False", "none": "None", "str": "a string", "sequence": "a list or tuple",
                   "dict": "a dict"}.get(want, f"a {type(expected).__name__}")
        return f"expected {article} {describe(expected)}, got {what(got)}"
    return None


def same_values(got: Any, expected: Any, atol: float = 1e-5) -> str | None:
    """None when ``got`` equals ``expected``: the same kind, shape and dtype (:func:`kind_problem`), then the same
    values (numbers, tensors and arrays within ``atol``, nested lists, tuples and dicts element by element);
    else what differs, in words, on one line."""
    problem = kind_problem(got, expected)
    if problem:
        return problem
    expected_array, got_array = _as_array(expected), _as_array(got)
    if expected_array is not None and got_array is not None:
        if not np.allclose(got_array, expected_array, atol=atol, rtol=1e-4, equal_nan=True):
            return f"expected {describe(expected)}, got {describe(got)}"
        return None
    if isinstance(expected, (list, tuple)):
        if len(got) != len(expected):
            return f"expected {len(expected)} items {describe(expected)}, got {len(got)}: {describe(got)}"
        for index, (g, e) in enumerate(zip(got, expected)):
            problem = same_values(g, e, atol)
            if problem:
                return f"item {index}: {problem}"
        return None
    if isinstance(expected, dict):
        if set(got) != set(expected):
            return f"expected keys {sorted(expected)}, got keys {sorted(got, key=str)}"
        for key in expected:
            problem = same_values(got[key], expected[key], atol)
            if problem:
                return f"{key!r}: {problem}"
        return None
    return None if got == expected else f"expected {describe(expected)}, got {describe(got)}"


def _copy_with_gradients(value):
    """A deep copy in which the parameters of every module at the top of ``value`` (nested tuples, lists, dicts) keep
    the gradients they hold: ``copy.deepcopy`` drops a Parameter's ``.grad``, and a case may hold the gradients an
    earlier step left, which an answer that forgets ``optimizer.zero_grad()`` would add to."""
    memo = {}
    copied = copy.deepcopy(value, memo)
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, (tuple, list)):
            pending.extend(item)
        elif isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, torch.nn.Module):
            for parameter in item.parameters():
                twin = memo.get(id(parameter))
                if parameter.grad is not None and twin is not None:
                    twin.grad = parameter.grad.detach().clone()
    return copied


def _call(fn: Callable, case: Case, gradients: tuple[int, ...]) -> tuple[Any, dict[int, torch.Tensor], list]:
    """``fn`` on a deep copy of the case's arguments, those listed in ``gradients`` (floating tensors) made leaves
    that require grad; returns the output, those leaves by argument index and the arguments after the call."""
    args, kwargs = _copy_with_gradients((case.args, case.kwargs))
    args = list(args)
    leaves = {}
    for index in gradients:
        if isinstance(args[index], torch.Tensor) and args[index].is_floating_point():
            args[index] = leaves[index] = args[index].detach().clone().requires_grad_(True)
    return fn(*args, **kwargs), leaves, args


def _argument_names(fn: Callable, count: int) -> list[str]:
    try:
        names = [p.name for p in inspect.signature(fn).parameters.values()
                 if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        names = []
    return [f"`{names[i]}`" if i < len(names) else f"argument {i + 1}" for i in range(count)]


def gradient_problem(fn: Callable, got: Any, got_leaves: dict, expected: torch.Tensor, expected_leaves: dict,
                     atol: float = 1e-5) -> str | None:
    """None when the gradient of a random weighted sum of ``got`` with respect to each leaf matches the reference's
    (``expected`` computed from ``expected_leaves``); else what differs, in words."""
    if not expected_leaves or expected.numel() == 0 or not expected.requires_grad:
        return None
    weights = torch.randn(_shape(expected), generator=torch.Generator().manual_seed(1234), dtype=expected.dtype)
    indices = sorted(expected_leaves)
    reference = torch.autograd.grad((expected * weights).sum(), [expected_leaves[i] for i in indices],
                                    allow_unused=True)
    reference = [torch.zeros_like(expected_leaves[i]) if g is None else g for i, g in zip(indices, reference)]
    names = _argument_names(fn, max(indices) + 1)
    if not got.requires_grad:
        if all(not g.any() for g in reference):
            return None
        return ("your values are right but carry no gradient: `.detach()`, `.item()`, numpy or `torch.tensor(...)` "
                f"cut them from {', '.join(names[i] for i in indices)}, and training would not move them")
    student = torch.autograd.grad((got * weights.to(got.dtype)).sum(), [got_leaves[i] for i in indices],
                                  allow_unused=True)
    for index, g, r in zip(indices, student, reference):
        g = torch.zeros_like(r) if g is None else g
        if g.shape != r.shape or not torch.allclose(g.double(), r.double(), atol=max(atol, 1e-5), rtol=1e-3):
            gap = (g.double() - r.double()).abs().max().item() if g.shape == r.shape else float("nan")
            return (f"your values are right but the gradient with respect to {names[index]} differs from the "
                    f"reference's (largest difference {gap:.4g}): is part of the computation detached "
                    f"(`.detach()`, `torch.no_grad()`, a rebuilt tensor) or computed another way?")
    return None


def _where_it_raised(fn: Callable, error: Exception) -> str:
    """Where in the student's function the error was raised, as ' (line 3 of `my_fn`: `return x[i]`)'; '' when
    the error came from elsewhere (a helper in another cell)."""
    code = getattr(fn, "__code__", None)
    tb, lineno = error.__traceback__, None
    while tb is not None:  # the last line run in the function itself, not in what it called
        if tb.tb_frame.f_code is code:
            lineno = tb.tb_lineno
        tb = tb.tb_next
    if lineno is None:
        return ""
    line = linecache.getline(code.co_filename, lineno).strip()
    return f" (line {lineno - code.co_firstlineno + 1} of `{code.co_name}`{f': `{line}`' if line else ''})"


def run_cases(exercise: Exercise, fn: Callable) -> list[str]:
    """The names of the cases checked; raises ExerciseWrong at the first that differs (NotImplementedError
    from an unfinished stub passes through). The message is one line: the exercise, the case, what was wrong."""
    __tracebackhide__ = True  # IPython and pytest show the student the message, not this function's frames
    names = []
    for case in exercise.cases():
        where = f"exercise {exercise.id} ({exercise.title}), case '{case.name}'"
        if case.raises is not None:
            _expect_error(exercise, case, fn)
            names.append(case.name)
            continue
        reference, reference_leaves, reference_args = None, {}, []
        if exercise.gradients or exercise.effects or not case.independent:  # what the reference gives or leaves
            reference, reference_leaves, reference_args = _call(exercise.reference, case, exercise.gradients)
        expected = case.expected if case.independent else reference
        try:
            got, leaves, args = _call(fn, case, exercise.gradients)
        except NotImplementedError:
            raise
        except Exception as error:  # the student's bug: name the case and the line, keep the error's own words
            message = " ".join(str(error).split())
            raise ExerciseWrong(f"{where}: your function raised {type(error).__name__}{_where_it_raised(fn, error)}: "
                                f"{message}") from None
        compare = exercise.compare or (lambda g, e: same_values(g, e, exercise.atol))
        problem = compare(got, expected)
        if not problem and isinstance(reference, torch.Tensor) and isinstance(got, torch.Tensor):
            problem = gradient_problem(fn, got, leaves, reference, reference_leaves, exercise.atol)
        if not problem and exercise.effects:
            problem = exercise.effects(tuple(args), tuple(reference_args))
        if problem:
            raise ExerciseWrong(f"{where}: {problem}")
        names.append(case.name)
    return names


def _expect_error(exercise: Exercise, case: Case, fn: Callable) -> None:
    __tracebackhide__ = True
    where = f"exercise {exercise.id} ({exercise.title}), case '{case.name}'"
    try:
        got = fn(*copy.deepcopy(case.args), **copy.deepcopy(case.kwargs))
    except NotImplementedError:
        raise
    except case.raises:
        return
    except Exception as error:
        message = " ".join(str(error).split())
        raise ExerciseWrong(f"{where}: expected a {case.raises.__name__}, your function raised "
                            f"{type(error).__name__}{_where_it_raised(fn, error)}: {message}") from None
    raise ExerciseWrong(f"{where}: expected a {case.raises.__name__}, your function returned {describe(got)}")


def is_close(a: float, b: float, atol: float = 1e-6) -> bool:
    return math.isclose(float(a), float(b), abs_tol=atol)
