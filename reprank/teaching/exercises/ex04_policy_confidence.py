"""Notebook 04's exercise 04.7, the paper's p from the current policy: its cases, checkers and wrong answers."""

from __future__ import annotations

import functools
import math

import torch

from reprank.base import defaults
from reprank.method import conservative
from reprank.method.reward import HybridRewardModel
from reprank.teaching.exercises.checking import Case, Exercise, register, same_values

LN3 = math.log(3.0)  # sigmoid(ln 3) = 3/4: the by-hand cases' scores


def _reward_model_and_optimizer(n_layers, hidden_size, layers, generator=None):
    """A hybrid RM (random weights when ``generator`` is given) and the Adam the paper's trainer gives it."""
    rm = HybridRewardModel(n_layers, hidden_size, layers)
    if generator is not None:  # scales that keep the scores within a few units of 0, where the sigmoids bend
        with torch.no_grad():
            for tensor, scale in ((rm.feature_mean, 0.2), (rm.probe_weight, 0.5), (rm.probe_bias, 0.2),
                                  (rm.gate.weight, 1.0)):
                tensor.copy_(scale * torch.randn(tensor.shape, generator=generator))
            rm.feature_std.copy_(0.5 + torch.rand(rm.feature_std.shape, generator=generator))
    return rm, torch.optim.Adam(rm.parameters(), lr=defaults.JOINT_RM_LR, weight_decay=defaults.RM_WEIGHT_DECAY)


def _by_hand_step(swapped=False):
    """One pair, an RM of one layer of one feature with w = 1, b = 0 and V = 0: every gate 1/2, so R = h / 2.
    Layer 1 holds h = 2 ln 3 at the chosen row's end (position 1) and 0 at the rejected row's (position 2):
    s_c = ln 3 and s_r = 0, sigmoid(s) = 3/4 and 1/2. Every other position, and layer 0, holds 9 or -9.
    (Not s_r = -ln 3: with t_c^2 = t_r^2 the gradient of V is 0 up to rounding, which Adam's first step, a step of
    lr g / (|g| + 1e-8), turns into any step between -lr and lr.)"""
    rm, optimizer = _reward_model_and_optimizer(1, 1, [1])
    with torch.no_grad():
        rm.probe_weight.fill_(1.0)
    hidden = torch.full((2, 2, 3, 1), 9.0)
    hidden[0] = -9.0
    ends = torch.tensor([1, 2])
    hidden[1, 0, 1], hidden[1, 1, 2] = (0.0, 2 * LN3) if swapped else (2 * LN3, 0.0)
    return hidden, ends, rm, optimizer, 4 * LN3, 1.0


def _random_step(generator, pairs=4, n_layers=4, layers=(2, 3, 4), length=6, d=5, alpha=3.0, margin=1.0):
    """2 * pairs rows of a policy's states (chosen rows first), end positions in the second half of each row, and a
    random RM reading ``layers``; chosen rows lean towards the RM's direction, so p lies between 0.5 and 1 (0.6 to
    0.7 here)."""
    rm, optimizer = _reward_model_and_optimizer(len(layers), d, list(layers), generator)
    hidden = torch.randn(n_layers + 1, 2 * pairs, length, d, generator=generator)
    hidden[list(layers), :pairs] += 2.0 * rm.probe_weight.detach()[:, None, None, :]
    ends = torch.randint(length // 2, length, (2 * pairs,), generator=generator)
    return hidden, ends, rm, optimizer, alpha, margin


def _policy_confidence_cases() -> list[Case]:
    generator = torch.Generator().manual_seed(0)
    # Adam's second step: the optimiser's state holds a first step, taken on other states of the same shape, and the
    # RM's parameters still hold that step's gradients (the checker's copy keeps them), as in the trainer.
    hidden, ends, rm, optimizer, alpha, margin = _random_step(generator, margin=2.5)
    conservative.policy_confidence(torch.randn(hidden.shape, generator=generator), ends, rm, optimizer, alpha, margin)
    return [
        Case("by hand: sigmoid(s) = 3/4 and 1/2 before the RM's step, alpha = 4 ln 3: p = sigmoid(ln 3) = 3/4",
             _by_hand_step(), expected=torch.tensor(0.75)),
        Case("by hand, chosen and rejected states swapped: sigmoid(-ln 3) = 1/4, floored at 0.5",
             _by_hand_step(swapped=True), expected=torch.tensor(0.5)),
        Case("4 pairs; the RM reads layers 2, 3, 4 of 4 (reward_model.layers)", _random_step(generator)),
        Case("Adam's second step (its state holds a first one), margin 2.5", (hidden, ends, rm, optimizer, alpha, margin)),
        Case("1 pair, 2 layers of 8 features", _random_step(generator, pairs=1, n_layers=2, layers=(1, 2), d=8)),
    ]


def _same_p(got, expected) -> str | None:
    """p's value, kind, shape and dtype, and no gradient: p is a constant weight in the policy's loss."""
    if isinstance(got, torch.Tensor) and got.requires_grad:
        return ("your p carries a gradient (to the reward model or the policy's states): compute it from detached "
                "scores, since p is a constant weight in the policy's loss")
    return same_values(got, expected, atol=1e-5)


def _optimizer_steps(optimizer) -> int:
    return max((int(state["step"]) for state in optimizer.state.values() if "step" in state), default=0)


def _reward_model_step_problem(yours: tuple, reference: tuple) -> str | None:
    """The step 04.7 leaves behind: no gradient in the policy's states, one optimiser step, the reference's weights."""
    hidden, rm, optimizer = yours[0], yours[2], yours[3]
    if isinstance(hidden, torch.Tensor) and hidden.grad is not None:
        return ("the reward model's loss sent a gradient into the policy's hidden states: detach the end-token states "
                "before scoring them (in the trainer that backward would run through the policy's graph)")
    steps, expected_steps = _optimizer_steps(optimizer), _optimizer_steps(reference[3])
    if steps != expected_steps:
        return (f"the reward model's optimiser stepped {steps - expected_steps + 1} times, not once: after scoring, "
                f"`optimizer.zero_grad()`, the margin loss's `.backward()`, then `optimizer.step()`")
    for (name, got), want in zip(rm.named_parameters(), reference[2].parameters()):
        gap = (got.detach() - want.detach()).abs().max().item()
        if gap > 1e-6:
            return (f"the reward model after your step differs from the reference's (`{name}` by up to {gap:.2g}): one "
                    f"step on the mean of -log sigmoid(s_c - s_r - margin) over the pairs, chosen rows first, after "
                    f"`optimizer.zero_grad()` (the gradients an earlier step left would add to this one's)")
    return None


# 04.7 feeds training twice: p weighs the policy's loss and must carry no gradient back to the policy's states
# (argument 0, made a leaf that requires grad), and the reward model's step must match the reference's.
register(Exercise(id="04.7", title="the paper's p from the current policy", function="my_policy_confidence",
                  reference=conservative.policy_confidence, cases=_policy_confidence_cases, compare=_same_p, points=3,
                  gradients=(0,), effects=_reward_model_step_problem))


def _paper_step(hidden_states, ends, reward_model, optimizer, alpha, margin, *, detach=True, step=True,
                rescore=False, confidence=conservative.batch_confidence):
    """04.7 with one thing changed: the wrong answers below."""
    rows = torch.arange(len(ends))
    states = torch.stack([hidden_states[layer][rows, ends] for layer in reward_model.layers], dim=1)
    chosen, rejected = reward_model(states.detach() if detach else states).chunk(2)
    if step:
        conservative.reward_model_step(optimizer, chosen, rejected, margin)
    if rescore:  # p read from the scores of after the step
        chosen, rejected = reward_model(states.detach()).chunk(2)
    return confidence(chosen.detach(), rejected.detach(), alpha)


def _sigmoid_gap(chosen, rejected):
    return torch.sigmoid(chosen).mean() - torch.sigmoid(rejected).mean()


def _first_states_forever():
    """p and the RM's step from the states of the first call (the initial policy's), reused at every later step."""
    first = []

    def answer(hidden_states, ends, reward_model, optimizer, alpha, margin):
        if not first:
            first.append((hidden_states.detach().clone(), ends.clone()))
        return conservative.policy_confidence(*first[0], reward_model, optimizer, alpha, margin)
    return answer


def _p_with_gradient(hidden_states, ends, reward_model, optimizer, alpha, margin):  # p from undetached scores
    rows = torch.arange(len(ends))
    states = torch.stack([hidden_states[layer][rows, ends] for layer in reward_model.layers], dim=1).detach()
    chosen, rejected = reward_model(states).chunk(2)
    conservative.reward_model_step(optimizer, chosen, rejected, margin)
    return torch.sigmoid(alpha * _sigmoid_gap(chosen, rejected)).clamp(min=0.5)


def _no_zero_grad(hidden_states, ends, reward_model, optimizer, alpha, margin):  # backward onto stale gradients
    rows = torch.arange(len(ends))
    states = torch.stack([hidden_states[layer][rows, ends] for layer in reward_model.layers], dim=1).detach()
    chosen, rejected = reward_model(states).chunk(2)
    conservative.margin_bt_loss(chosen, rejected, margin).backward()
    optimizer.step()
    return conservative.batch_confidence(chosen.detach(), rejected.detach(), alpha)


# Answers the checker must reject (tests/test_exercises.py, through ex04.WRONG_ANSWERS, which merges this catalogue):
# the answer, or (answer, a regular expression the checker's message must match).
WRONG_ANSWERS = {
    "04.7": [
        # the states not detached: the RM's backward runs into the policy's states (in the trainer, its graph)
        (functools.partial(_paper_step, detach=False), r"gradient into the policy's hidden states"),
        (_p_with_gradient, r"your p carries a gradient"),
        (functools.partial(_paper_step, confidence=lambda c, r, a: torch.sigmoid(a * _sigmoid_gap(c, r))),
         r"swapped.*expected 0\.5000, got 0\.2500"),  # p not floored at 0.5
        (functools.partial(_paper_step, confidence=lambda c, r, a: torch.sigmoid(a * (c.mean() - r.mean())).clamp(
            min=0.5)), r"by hand: .*expected 0\.7500, got 0\.99"),  # the mean of the scores, not of sigmoid(scores)
        (functools.partial(_paper_step, confidence=lambda c, r, a: (a * torch.sigmoid(_sigmoid_gap(c, r))).clamp(
            min=0.5)), r"expected 0\.7500, got 2\.47"),  # alpha outside the sigmoid
        functools.partial(_paper_step, confidence=lambda c, r, a: torch.sigmoid(  # alpha on the scores
            torch.sigmoid(a * c).mean() - torch.sigmoid(a * r).mean()).clamp(min=0.5)),
        (_first_states_forever(), r"swapped.*expected 0\.5000, got 0\.7500"),  # stale: the first call's states
        (functools.partial(_paper_step, step=False), r"optimiser stepped 0 times"),  # the RM step skipped
        (functools.partial(_paper_step, rescore=True), r"expected 0\.7500, got 0\.75"),  # p read after the RM's step
        (lambda h, e, rm, opt, alpha, margin: _paper_step(h, e, rm, opt, alpha, 1.0),  # margin 1 whatever is asked
         r"margin 2\.5.*reward model after your step differs"),
        (functools.partial(_paper_step, confidence=lambda c, r, a: torch.sigmoid(a * _sigmoid_gap(c, r)).clamp(
            min=0.5)[None]), r"shape \(\), got shape \(1,\)"),  # a (1,) tensor for a 0-dim one
        (_no_zero_grad, r"Adam's second step.*after `optimizer.zero_grad\(\)`"),  # the last step's gradients added
    ],
}
