"""Notebook 04's visible DPOTrainer subclasses (built from the student's functions) compute the package's loss:
``ConservativeDPOTrainer`` with one fixed p, ``PaperDPOTrainer`` (exercise 04.7) with the paper's p and its reward
model's step.

The subclasses are taken from the notebook cells themselves and run with the reference solutions in place of the
student's functions, as the notebook does with ``use_reference_solutions = True``.
"""

import copy
import json
from pathlib import Path

import pytest
import torch
from test_align import fixed_batch, pairs, reward_model  # noqa: F401  (reward_model: a module fixture)
from tiny import perturb_lora, tiny_model
from trl import DPOTrainer

from reprank.method import align
from reprank.teaching import exercises

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "04_aligning_with_confidence.ipynb"
STUDENT_FUNCTIONS = {"04.3": "my_sequence_logps", "04.4": "my_dpo_margin", "04.5": "my_conservative_loss",
                     "04.6": "my_chosen_nll", "04.7": "my_policy_confidence"}


@pytest.fixture(scope="module")
def notebook_classes():
    """The notebook's ConservativeDPOTrainer and PaperDPOTrainer, each from its own cell."""
    cells = ["".join(c["source"]) for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code"]
    namespace = {"torch": torch, "align": align}
    for exercise_id, name in STUDENT_FUNCTIONS.items():
        exercise = exercises.get(exercise_id)
        assert exercise.function == name
        namespace[name] = exercise.reference
    for definition in ("class ConservativeDPOTrainer(DPOTrainer)", "class PaperDPOTrainer(ConservativeDPOTrainer)"):
        source = [s for s in cells if definition in s]
        assert len(source) == 1, f"notebook 04 has `{definition}` in exactly one cell"
        exec(compile(source[0], f"{NOTEBOOK.name}: {definition}", "exec"), namespace)
    assert issubclass(namespace["PaperDPOTrainer"], namespace["ConservativeDPOTrainer"])
    assert issubclass(namespace["ConservativeDPOTrainer"], DPOTrainer)
    return namespace["ConservativeDPOTrainer"], namespace["PaperDPOTrainer"]


@pytest.fixture(scope="module")
def notebook_trainer_class(notebook_classes):
    return notebook_classes[0]


def config(tmp_path, nll_weight):
    # beta = 1: the margins of a tiny random model are small, and the comparison should see the loss move with p.
    return align.dpo_config(tmp_path, max_steps=1, per_device_train_batch_size=4, nll_weight=nll_weight, beta=1.0,
                            precompute_ref_log_probs=False)


def notebook_trainer(trainer_class, tokenizer, tmp_path, p, nll_weight):
    return trainer_class(tiny_model(tokenizer), args=config(tmp_path / "notebook", nll_weight),
                         train_dataset=align.to_conversational(pairs()), processing_class=tokenizer,
                         peft_config=align.lora_config(), p=p)


# p < 1 with the NLL term: the package's "constant" confidence; p = 1 without it: TRL's own loss ("dpo").
@pytest.mark.parametrize("p, nll_weight", [(0.8, 1.0), (1.0, 0.0)])
def test_the_notebooks_subclass_gives_the_packages_loss(notebook_trainer_class, tokenizer, tmp_path, p, nll_weight):
    ours = notebook_trainer(notebook_trainer_class, tokenizer, tmp_path, p, nll_weight)
    method = dict(method="dpo") if p == 1.0 else dict(method="dpo_smoothing", epsilon=1 - p)
    package = align.make_trainer(tiny_model(tokenizer), tokenizer, pairs(), config=config(tmp_path, nll_weight),
                                 **method)
    perturb_lora(ours.model)  # LoRA B is zero at the start (z = 0): make z non-trivial, the same in both
    package.model.load_state_dict(ours.model.state_dict())
    batch = fixed_batch(package)
    expected = package.compute_loss(package.model, batch)
    got = ours.compute_loss(ours.model, batch)
    # Tight: the same float32 log-probabilities summed in another order agree to ~1e-7 here, while a subclass that
    # ignores p, or averages the NLL over answers rather than tokens, is off by 2e-3 to 2e-2 on this batch.
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_the_notebooks_check_one_step_then_the_package_on_the_same_model(notebook_trainer_class, tokenizer, tmp_path):
    """What the notebook does: train the subclass one step, then build the package's trainer on that model."""
    ours = notebook_trainer(notebook_trainer_class, tokenizer, tmp_path, p=0.9, nll_weight=1.0)
    before = {n: w.detach().clone() for n, w in ours.model.named_parameters() if "lora_B" in n}
    ours.train()
    assert any(not torch.equal(w.detach().cpu(), before[n].cpu()) for n, w in ours.model.named_parameters()
               if n in before)
    package = align.make_trainer(ours.model, tokenizer, pairs(), method="dpo_smoothing", epsilon=0.1,
                                 config=config(tmp_path, 1.0))
    assert "ref" not in package.model.peft_config  # the reference is the model with the adapter off, in both
    batch = fixed_batch(package)
    with torch.no_grad():
        got, expected = ours.compute_loss(ours.model, batch), package.compute_loss(package.model, batch)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_the_notebooks_paper_trainer_takes_the_packages_step(notebook_classes, tokenizer, tmp_path, reward_model):
    """What the notebook's check does: one batch, the same weights (LoRA perturbed: not the initial policy), one step
    of the paper's mechanism in PaperDPOTrainer (with 04.7's reference) and in the package's `paper` trainer."""
    alpha = 3.0  # p within (0.5, 1) on this RM's scores, where a wrong p would show
    ours = notebook_classes[1](tiny_model(tokenizer), args=config(tmp_path / "notebook", 1.0), processing_class=tokenizer,
                               train_dataset=align.to_conversational(pairs()), peft_config=align.lora_config(),
                               reward_model=copy.deepcopy(reward_model), alpha=alpha)
    perturb_lora(ours.model, scale=0.05)
    package = align.make_trainer(ours.model, tokenizer, pairs(), method="paper", reward_model=reward_model, alpha=alpha,
                                 config=config(tmp_path, 1.0))
    batch = fixed_batch(package)  # in training mode: the package steps its reward model only in training
    got, expected = ours.compute_loss(ours.model, batch), package.compute_loss(package.model, batch)
    p = package._metrics["train"]["confidence/mean"][-1]
    assert 0.5 < p < 0.99
    assert ours.last_p.item() == pytest.approx(p, abs=1e-6)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    moved = 0.0
    for mine, theirs, start in zip(ours.reward_model.parameters(), package.reward_model.parameters(),
                                   reward_model.parameters()):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=1e-6)
        moved = max(moved, (theirs - start.to(theirs.device)).abs().max().item())
    assert moved > 5e-3  # one Adam step of lr 0.01 moved the reward model: the comparison is not of two idle copies
