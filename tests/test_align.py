"""Conservative DPO (reprank.method.align) on a tiny random Llama with the real SmolLM2 tokenizer."""

import math

import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset
from tiny import perturb_lora, tiny_model
from trl import DPOTrainer

from reprank.method import align, answer_head
from reprank.studies import noise
from reprank.lm.extraction import extract_hidden_states
from reprank.lm.models import bf16_supported, model_device
from reprank.method.reward import train_hybrid_reward_model

PROMPTS = ["How do I bake bread?", "Tell me a joke.", "What is 2+2?", "Name a colour."]
CHOSEN = ["Mix flour, water and yeast, then bake.", "Why did the chicken cross the road?", "4", "Blue."]
REJECTED = ["No.", "I will not tell jokes today, or ever.", "Five, obviously.", "Loud."]






def pairs(confidence=None):
    data = {"prompt": PROMPTS, "chosen": CHOSEN, "rejected": REJECTED}
    if confidence is not None:
        data["confidence"] = confidence
    return Dataset.from_dict(data)


def config(tmp_path, **overrides):
    # Without the NLL term unless asked (reprank.base.defaults.NLL_WEIGHT is on): the checks compare preference losses.
    return align.dpo_config(tmp_path, **{"max_steps": 2, "per_device_train_batch_size": 4, "nll_weight": 0.0,
                                         **overrides})


def lora_weights(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}




def fixed_batch(trainer):
    """All pairs as one collated batch, on the model's device (the trainer puts the model on CUDA if present)."""
    trainer.model.train()
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))])
    return {k: v.to(model_device(trainer.model)) for k, v in batch.items()}


def hand_margin(trainer, batch):
    """z per pair from full-vocabulary logits, independently of TRL's fused head and of our hooks."""
    model = trainer.model
    labels = batch["input_ids"][:, 1:]
    mask = batch["completion_mask"][:, 1:].bool()

    def logps():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        token = torch.log_softmax(logits.float(), -1).gather(-1, labels[..., None])[..., 0]
        return (token * mask).sum(1)

    with torch.no_grad():
        policy = logps()
        with model.disable_adapter():
            ref = logps()
    chosen, rejected = (policy - ref).chunk(2)
    return chosen - rejected


def trl_loss(trainer, batch):
    """TRL's own DPOTrainer._compute_loss on the same trainer (same model, same reference)."""
    plain = {k: v for k, v in batch.items() if k != "confidence"}
    return DPOTrainer._compute_loss(trainer, trainer.model, plain, False)


def test_confidence_one_is_exactly_trls_sigmoid_loss(tokenizer, tmp_path):
    trainer = align.make_trainer(tiny_model(tokenizer), tokenizer, pairs([1.0] * 4), config=config(tmp_path))
    perturb_lora(trainer.model)
    batch = fixed_batch(trainer)
    assert hand_margin(trainer, batch).abs().min() > 1e-3  # a non-trivial margin

    expected = trl_loss(trainer, batch)
    torch.testing.assert_close(trainer._compute_loss(trainer.model, batch), expected, rtol=0, atol=0)
    assert trainer._metrics["train"]["confidence/mean"][-1] == 1.0

    trainer.confidence_source = "none"  # method="dpo": TRL's loss untouched
    torch.testing.assert_close(trainer._compute_loss(trainer.model, batch), expected, rtol=0, atol=0)


@pytest.mark.parametrize("method", ["dpo", "confidence"])
def test_the_answer_only_head_feeds_trls_head_fewer_rows_and_changes_no_number(tokenizer, tmp_path, monkeypatch,
                                                                               method):
    """reprank.method.answer_head: on a CPU, TRL's fused head sees the labelled positions only; same loss, same grads."""
    import trl.trainer.utils as trl_utils

    trainer = align.make_trainer(tiny_model(tokenizer), tokenizer, pairs([1.0, 0.5, 0.8, 0.7]), method=method,
                                 config=config(tmp_path))
    perturb_lora(trainer.model)
    batch = fixed_batch(trainer)
    head, rows = trl_utils._ChunkedLogProbFunction, []

    class CountingHead:
        @staticmethod
        def apply(hidden, *args):
            rows.append(hidden.shape[0])
            return head.apply(hidden, *args)

    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", CountingHead)
    results = []
    try:
        for switch in (answer_head.disable, answer_head.enable):
            switch()
            trainer.model.zero_grad()
            loss = trainer._compute_loss(trainer.model, batch)
            loss.backward()
            results.append((loss.detach(), {n: q.grad.clone() for n, q in trainer.model.named_parameters()
                                            if q.grad is not None}))
    finally:
        answer_head.enable()
    labelled = int((batch["completion_mask"] == 1).sum())
    assert rows == [batch["input_ids"].shape[0] * (batch["input_ids"].shape[1] - 1), labelled]  # every position, then answers
    (full_loss, full_grads), (compact_loss, compact_grads) = results
    torch.testing.assert_close(compact_loss, full_loss)
    assert full_grads and full_grads.keys() == compact_grads.keys()
    for name, grad in full_grads.items():
        torch.testing.assert_close(compact_grads[name], grad, msg=name)


@pytest.mark.parametrize("confidence", [[0.5] * 4, [1.0, 0.5, 0.8, 0.0]])
def test_conservative_loss_matches_the_formula(tokenizer, tmp_path, confidence):
    trainer = align.make_trainer(tiny_model(tokenizer), tokenizer, pairs(confidence), config=config(tmp_path))
    perturb_lora(trainer.model)
    batch = fixed_batch(trainer)
    p = batch["confidence"]
    z = hand_margin(trainer, batch)
    bz = trainer.beta * z
    expected = (-p * F.logsigmoid(bz) - (1 - p) * F.logsigmoid(-bz)).mean()
    torch.testing.assert_close(align.conservative_dpo_loss(z, p, trainer.beta), expected)
    if confidence == [0.5] * 4:  # -(log s(x) + log s(-x)) / 2 = log 2 + log cosh(x / 2)
        torch.testing.assert_close(expected, math.log(2) + torch.log(torch.cosh(bz / 2)).mean())
    loss = trainer._compute_loss(trainer.model, batch)
    torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-5)
    assert trainer._metrics["train"]["loss/conservative"][-1] == pytest.approx(expected.item(), rel=1e-4)
    assert trainer._metrics["train"]["confidence/mean"][-1] == pytest.approx(sum(confidence) / 4)


def test_confidence_column_survives_column_removal_and_collation(tokenizer, tmp_path):
    confidence = [1.0, 0.5, 0.8, 0.25]
    trainer = align.make_trainer(tiny_model(tokenizer), tokenizer, pairs(confidence), config=config(tmp_path))
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["confidence"].dtype == torch.float32
    assert sorted(batch["confidence"].tolist()) == pytest.approx(sorted(confidence))
    assert batch["input_ids"].shape[0] == 2 * len(confidence)  # chosen rows, then rejected rows


def test_dpo_smoothing_uses_one_minus_epsilon(tokenizer, tmp_path):
    trainer = align.make_trainer(
        tiny_model(tokenizer), tokenizer, pairs(), method="dpo_smoothing", epsilon=0.2, config=config(tmp_path)
    )
    perturb_lora(trainer.model)
    batch = fixed_batch(trainer)
    bz = trainer.beta * hand_margin(trainer, batch)
    expected = (-0.8 * F.logsigmoid(bz) - 0.2 * F.logsigmoid(-bz)).mean()
    torch.testing.assert_close(trainer._compute_loss(trainer.model, batch), expected, rtol=1e-4, atol=1e-5)
    assert trainer._metrics["train"]["confidence/mean"][-1] == pytest.approx(0.8)
    with pytest.raises(ValueError, match="epsilon"):
        align.make_trainer(tiny_model(tokenizer), tokenizer, pairs(), method="dpo_smoothing", config=config(tmp_path))


@pytest.fixture(scope="module")
def reward_model(tokenizer):
    """A hybrid RM fitted on the tiny base model's end-token states, so it ranks these chosen answers higher."""
    model = tiny_model(tokenizer)
    prompts = PROMPTS * 2
    states = extract_hidden_states(model, tokenizer, prompts, CHOSEN + REJECTED, progress=False)
    chosen, rejected = states.end[:4], states.end[4:]
    return train_hybrid_reward_model(chosen, rejected, chosen, rejected, epochs=30, lr=0.01, progress=False).model


def test_policy_confidence_reads_the_policys_end_token_states(tokenizer, tmp_path, reward_model):
    trainer = align.make_trainer(
        tiny_model(tokenizer), tokenizer, pairs(), method="confidence_policy", reward_model=reward_model,
        config=config(tmp_path),
    )
    batch = fixed_batch(trainer)
    ends = align.end_positions(batch["input_ids"], batch["attention_mask"], batch["completion_mask"], tokenizer)
    assert {tokenizer.decode([int(batch["input_ids"][i, e])]) for i, e in enumerate(ends)} == {"<|im_end|>"}

    # Before any step LoRA B is zero: the policy's states are the base model's, i.e. what extraction reads.
    base = extract_hidden_states(tiny_model(tokenizer), tokenizer, PROMPTS * 2, CHOSEN + REJECTED, progress=False)
    with torch.no_grad():
        scores = reward_model(torch.as_tensor(base.end).to(model_device(reward_model)))
    gap = torch.sigmoid(scores[:4]).mean() - torch.sigmoid(scores[4:]).mean()
    expected = max(torch.sigmoid(7.5 * gap).item(), 0.5)
    trainer._compute_loss(trainer.model, batch)
    assert trainer._metrics["train"]["confidence/mean"][-1] == pytest.approx(expected, rel=1e-5)
    assert 0.5 < expected <= 1.0


def test_policy_confidence_trains_the_reward_model_when_asked(tokenizer, tmp_path, reward_model):
    import copy

    rm = copy.deepcopy(reward_model)
    before = rm.probe_weight.detach().clone()
    trainer, _ = align.train_dpo(
        tiny_model(tokenizer), tokenizer, pairs(), method="confidence_policy", reward_model=rm,
        train_reward_model=True, config=config(tmp_path),
    )
    assert not torch.equal(trainer.reward_model.probe_weight.cpu(), before)
    assert torch.equal(rm.probe_weight, before)  # the caller's RM is left as it was (a later run starts from it)
    logged = [row for row in trainer.state.log_history if "confidence/mean" in row]
    assert len(logged) == 2 and all(0.5 <= row["confidence/mean"] <= 1.0 for row in logged)
    assert all("reward_model/loss" in row for row in logged)


def test_the_paper_method_trains_the_rm_jointly_and_logs_floor_and_disagreement(tokenizer, tmp_path, reward_model):
    trainer, _ = align.train_dpo(tiny_model(tokenizer), tokenizer, pairs(), method="paper", reward_model=reward_model,
                                 alpha=1.0, config=config(tmp_path))
    assert trainer.reward_optimizer is not None and trainer.reward_model is not reward_model
    logged = [row for row in trainer.state.log_history if "confidence/mean" in row]
    assert len(logged) == 2
    for row in logged:
        assert row["confidence/at_floor"] in (0.0, 1.0) and 0.0 <= row["reward_model/disagreement"] <= 1.0
        # alpha 1: p = sigmoid(gap) with |gap| <= 1, so p < sigmoid(1) < 1 — it can bind
        assert 0.5 <= row["confidence/mean"] < 0.74
    with pytest.raises(ValueError, match="needs reward_model"):
        align.make_trainer(tiny_model(tokenizer), tokenizer, pairs(), method="paper", config=config(tmp_path))


@pytest.mark.parametrize("method", align.METHODS)
def test_two_steps_of_each_method_move_the_lora_weights(tokenizer, tmp_path, reward_model, method):
    model = tiny_model(tokenizer)
    trainer = align.make_trainer(
        model, tokenizer, pairs([1.0, 0.5, 0.8, 0.9]), method=method, reward_model=reward_model,
        epsilon=0.1, confidence_schedule=[0.8, 0.6], config=config(tmp_path, nll_weight=0.5),
    )
    before = lora_weights(trainer.model)
    assert before and all("lm_head" not in name for name in before)
    trainer.train()
    after = lora_weights(trainer.model)
    assert any(not torch.equal(before[n], after[n]) for n in before)
    logged = [row for row in trainer.state.log_history if "loss" in row]
    assert len(logged) == 2 and all(math.isfinite(row["loss"]) for row in logged)
    low = 0.0 if method == "paper_pair" else 0.5  # the per-pair p has no floor
    assert all(low <= row["confidence/mean"] <= 1.0 for row in logged)
    if method == "ipo":
        assert trainer.loss_types == ["ipo", "sft"]  # the NLL term kept with its weight


def test_paper_pair_gives_each_pair_its_own_p_below_half_too_and_it_reaches_the_loss(tokenizer, tmp_path, reward_model):
    # Swapped labels: the RM (fitted on CHOSEN > REJECTED) now disagrees with every stored label.
    swapped = Dataset.from_dict({"prompt": PROMPTS, "chosen": REJECTED, "rejected": CHOSEN})
    tau = 0.1
    trainer = align.make_trainer(tiny_model(tokenizer), tokenizer, swapped, method="paper_pair", reward_model=reward_model,
                                 tau=tau, alpha=1e6, config=config(tmp_path, beta=1.0))
    assert trainer.reward_optimizer is not None and trainer.confidence_form == "pair"
    perturb_lora(trainer.model, scale=0.05)  # small enough that the states still make sense to the RM
    batch = fixed_batch(trainer)
    # p_i from the *current* (perturbed) policy's end-token states, read independently by extraction.
    states = extract_hidden_states(trainer.model.get_base_model(), tokenizer, PROMPTS * 2, REJECTED + CHOSEN,
                                   progress=False)
    with torch.no_grad():
        scores = reward_model(torch.as_tensor(states.end).to(model_device(reward_model))).cpu()
    p = torch.sigmoid((scores[:4] - scores[4:]) / tau)
    assert p.min() < 0.5 and p.max() < 1.0  # no floor, no alpha: below 0.5 where the current reward disagrees
    bz = trainer.beta * hand_margin(trainer, batch).cpu()
    expected = align.conservative_dpo_loss(bz / trainer.beta, p, trainer.beta)
    floored = align.conservative_dpo_loss(bz / trainer.beta, p.clamp(min=0.5), trainer.beta)
    loss = trainer._compute_loss(trainer.model, batch).cpu()
    torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-5)
    assert abs(loss - floored) > 1e-3  # with the paper's floor the loss would differ: p < 0.5 reached it
    logged = trainer._metrics["train"]
    assert logged["confidence/mean"][-1] == pytest.approx(p.mean().item(), rel=1e-4)
    assert logged["confidence/at_floor"][-1] == pytest.approx((p <= 0.5).float().mean().item())
    assert logged["reward_model/disagreement"][-1] == pytest.approx((scores[:4] <= scores[4:]).float().mean().item())
    assert "reward_model/loss" in logged  # trained jointly, as in "paper"


def flipped_pairs(confidence=None):
    return pairs(confidence).add_column("flipped", [True, False, False, True])


def test_flipped_column_reaches_the_loss_and_logs_detection(tokenizer, tmp_path):
    trainer = align.make_trainer(tiny_model(tokenizer), tokenizer, flipped_pairs([0.2, 0.9, 0.8, 0.4]),
                                 pair_observers=[noise.FlipDetection.every()], config=config(tmp_path))
    collated = next(iter(trainer.get_train_dataloader()))
    assert collated["flipped"].dtype == torch.bool and collated["flipped"].sum() == 2
    trainer._compute_loss(trainer.model, fixed_batch(trainer))
    logged = trainer._metrics["train"]
    assert logged["confidence/mean_flipped"][-1] == pytest.approx(0.3)
    assert logged["confidence/mean_clean"][-1] == pytest.approx(0.85)
    assert logged["confidence/flip_auroc"][-1] == 1.0  # both flipped pairs have the lowest p
    assert logged["confidence/at_floor"][-1] == 0.5  # 0.2 and 0.4


@pytest.mark.parametrize("method", ["paper", "paper_pair", "dpo"])
def test_noisy_runs_log_flip_detection_per_step(tokenizer, tmp_path, reward_model, method):
    trainer, _ = align.train_dpo(tiny_model(tokenizer), tokenizer, flipped_pairs(), method=method,
                                 reward_model=reward_model, pair_observers=[noise.FlipDetection.every()],
                                 config=config(tmp_path))
    logged = [row for row in trainer.state.log_history if "loss" in row]
    assert len(logged) == 2
    if method == "dpo":  # p = 1 for every pair: nothing to detect with, nothing logged
        assert not any("confidence/flip_auroc" in row for row in logged)
        return
    for row in logged:  # each batch of 4 holds 2 flipped pairs: defined every step
        assert 0.0 <= row["confidence/flip_auroc"] <= 1.0 and 0.0 <= row["confidence/at_floor"] <= 1.0
        assert {"confidence/mean_flipped", "confidence/mean_clean"} <= set(row)
    if method == "paper":  # one p per batch: it cannot rank the pairs within a batch
        assert logged[0]["confidence/flip_auroc"] == 0.5
        assert logged[0]["confidence/mean_flipped"] == pytest.approx(logged[0]["confidence/mean_clean"])


def test_nll_weight_adds_trls_sft_term(tmp_path):
    cfg = align.dpo_config(tmp_path, nll_weight=0.5)
    assert cfg.loss_type == ["sigmoid", "sft"] and cfg.loss_weights == [1.0, 0.5]
    assert (cfg.bf16, cfg.gradient_checkpointing, cfg.learning_rate) == (False, False, 5e-4)


def test_nll_term_composes_through_trls_sft_loss(tokenizer, tmp_path):
    confidence = [1.0, 0.5, 0.8, 0.9]
    cfg = config(tmp_path, nll_weight=0.5)
    trainer = align.make_trainer(tiny_model(tokenizer), tokenizer, pairs(confidence), config=cfg)
    perturb_lora(trainer.model)
    batch = fixed_batch(trainer)
    p = batch["confidence"]
    bz = trainer.beta * hand_margin(trainer, batch)
    with torch.no_grad():
        logits = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        token = torch.log_softmax(logits, -1).gather(-1, batch["input_ids"][:, 1:, None])[..., 0]
    chosen_mask = batch["completion_mask"][:4, 1:].bool()
    nll = -token[:4][chosen_mask].mean()
    expected = (-p * F.logsigmoid(bz) - (1 - p) * F.logsigmoid(-bz)).mean() + 0.5 * nll
    torch.testing.assert_close(trainer._compute_loss(trainer.model, batch), expected, rtol=1e-4, atol=1e-5)


def test_precomputed_reference_log_probs_give_the_same_step_0_loss(tokenizer, tmp_path):
    """precompute_ref_log_probs (TRL computes the reference once, before training) changes no loss value."""
    losses = {}
    for precompute in (False, True):
        cfg = config(tmp_path / str(precompute), precompute_ref_log_probs=precompute, nll_weight=0.5)
        trainer = align.make_trainer(tiny_model(tokenizer), tokenizer, pairs([1.0, 0.5, 0.8, 0.9]), config=cfg)
        batch = fixed_batch(trainer)
        assert ("ref_chosen_logps" in batch) == precompute
        perturb_lora(trainer.model)  # after the precompute: the policy moves away from the (fixed) reference
        losses[precompute] = trainer._compute_loss(trainer.model, batch)
    torch.testing.assert_close(losses[True], losses[False], rtol=1e-5, atol=1e-6)


def test_a_second_trainer_on_the_same_pairs_reuses_the_reference_log_probs(tokenizer, tmp_path, monkeypatch):
    """Computed once per process for the same reference weights and pairs (any method, any adapter init); other
    pairs or other weights are computed afresh, and the reused numbers are the ones a fresh computation gives."""
    from reprank.method import reference_logps

    monkeypatch.setattr(reference_logps, "_saved", type(reference_logps._saved)())
    runs = []
    monkeypatch.setattr(DPOTrainer, "compute_ref_log_probs",
                        lambda self, model, batch, real=DPOTrainer.compute_ref_log_probs: runs.append(1)
                        or real(self, model, batch))

    def reference_column(method, data, model=None, **kw):
        trainer = align.make_trainer(model or tiny_model(tokenizer), tokenizer, data, method=method,
                                     config=config(tmp_path / method, precompute_ref_log_probs=True), **kw)
        return trainer.train_dataset["ref_chosen_logps"], trainer.train_dataset.features["ref_chosen_logps"].dtype

    first, dtype = reference_column("dpo", pairs())
    assert len(runs) == 1
    torch.manual_seed(123)  # another LoRA initialisation: TRL's own cache key changes, ours does not
    second, second_dtype = reference_column("dpo_smoothing", pairs(), epsilon=0.2)
    assert len(runs) == 1 and second == first and second_dtype == dtype == "float32"
    reference_column("dpo", pairs().select(range(3)))  # other pairs
    assert len(runs) == 2
    other = tiny_model(tokenizer)
    with torch.no_grad():
        other.model.norm.weight.mul_(2.0)  # other weights
    assert reference_column("dpo", pairs(), model=other)[0] != first and len(runs) == 3
    monkeypatch.setattr(reference_logps, "_saved", type(reference_logps._saved)())
    assert reference_column("dpo", pairs())[0] == first and len(runs) == 4  # a fresh computation agrees


# ----------------------------------------------------------------------------------------------- half precision
# A few LoRA-DPO steps in each GPU precision the series uses: bf16 where the GPU has it natively, fp16 (e.g. a
# T4) through accelerate's GradScaler, which transformers switches on for fp16=True. They need a GPU.


def half_precision_steps(tokenizer, tmp_path, **precision):
    trainer = align.make_trainer(tiny_model(tokenizer).cuda(), tokenizer, pairs([1.0, 0.5, 0.8, 0.9]),
                                 config=config(tmp_path, max_steps=3, use_cpu=False, **precision))
    before = lora_weights(trainer.model)
    trainer.train()
    after = lora_weights(trainer.model)
    logged = [row for row in trainer.state.log_history if "loss" in row]
    assert len(logged) == 3 and all(math.isfinite(row["loss"]) for row in logged)
    assert any(not torch.equal(before[n], after[n]) for n in before)
    assert all(torch.isfinite(w).all() for w in after.values())
    return trainer


@pytest.mark.skipif(not bf16_supported(), reason="bf16 training path: needs a CUDA GPU with native bfloat16")
def test_bf16_lora_dpo_steps(tokenizer, tmp_path):
    trainer = half_precision_steps(tokenizer, tmp_path, bf16=True, fp16=False)
    assert trainer.accelerator.mixed_precision == "bf16"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 training path (GradScaler): needs a CUDA GPU")
def test_fp16_lora_dpo_steps_with_a_gradient_scaler(tokenizer, tmp_path):
    trainer = half_precision_steps(tokenizer, tmp_path, bf16=False, fp16=True)
    assert trainer.accelerator.mixed_precision == "fp16"
    assert trainer.accelerator.scaler is not None  # fp16 gradients are scaled, then unscaled before the step


def test_the_paper_method_trains_with_the_p_it_logs(tokenizer, tmp_path, reward_model):
    """The loss of a batch whose p < 1 is the conservative formula at the logged p, not DPO's (p = 1)."""
    trainer = align.make_trainer(tiny_model(tokenizer), tokenizer, pairs(), method="paper", reward_model=reward_model,
                                 alpha=1.0, config=config(tmp_path, beta=1.0))
    perturb_lora(trainer.model, scale=0.05)
    batch = fixed_batch(trainer)
    z = hand_margin(trainer, batch).cpu()
    loss = trainer._compute_loss(trainer.model, batch).cpu()
    p = trainer._metrics["train"]["confidence/mean"][-1]
    assert 0.5 < p < 0.74  # alpha 1: p = sigmoid(gap), |gap| <= 1
    expected = align.conservative_dpo_loss(z, torch.full_like(z, p), trainer.beta)
    torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-5)
    assert abs(loss - align.conservative_dpo_loss(z, torch.ones_like(z), trainer.beta)) > 1e-3  # p = 1 would differ


def test_the_paper_methods_batch_p_is_floored_at_half(tokenizer, tmp_path, reward_model):
    """Pairs the reward ranks backwards: unfloored, p would be ~0; the paper's p stops at 0.5."""
    swapped = Dataset.from_dict({"prompt": PROMPTS, "chosen": REJECTED, "rejected": CHOSEN})
    trainer = align.make_trainer(tiny_model(tokenizer), tokenizer, swapped, method="paper", reward_model=reward_model,
                                 alpha=1e6, config=config(tmp_path, beta=1.0))
    perturb_lora(trainer.model, scale=0.05)
    batch = fixed_batch(trainer)
    z = hand_margin(trainer, batch).cpu()
    loss = trainer._compute_loss(trainer.model, batch).cpu()
    logged = trainer._metrics["train"]
    assert logged["reward_model/score_chosen"][-1] < logged["reward_model/score_rejected"][-1]  # ranked backwards
    assert logged["confidence/mean"][-1] == 0.5 and logged["confidence/at_floor"][-1] == 1.0
    torch.testing.assert_close(loss, align.conservative_dpo_loss(z, torch.full_like(z, 0.5), trainer.beta),
                               rtol=1e-4, atol=1e-5)
    assert abs(loss - align.conservative_dpo_loss(z, torch.zeros_like(z), trainer.beta)) > 1e-3  # p = 0 differs


def test_paper_replay_trains_step_k_with_the_kth_p(tokenizer, tmp_path):
    schedule = [0.9, 0.6]
    trainer, _ = align.train_dpo(tiny_model(tokenizer), tokenizer, pairs(), method="paper_replay",
                                 confidence_schedule=schedule, config=config(tmp_path))
    logged = [row["confidence/mean"] for row in trainer.state.log_history if "confidence/mean" in row]
    assert logged == pytest.approx(schedule)
    with pytest.raises(ValueError, match="confidence_schedule"):
        align.make_trainer(tiny_model(tokenizer), tokenizer, pairs(), method="paper_replay", config=config(tmp_path))


def test_nll_only_weighs_the_preference_term_zero(tokenizer, tmp_path):
    trainer = align.make_trainer(tiny_model(tokenizer), tokenizer, pairs(), method="nll_only",
                                 config=config(tmp_path, nll_weight=1.0))
    assert trainer.loss_types == ["sigmoid", "sft"] and list(trainer.loss_weights) == [0.0, 1.0]
    perturb_lora(trainer.model, scale=0.05)
    batch = fixed_batch(trainer)
    nll_only = trainer._compute_loss(trainer.model, batch)
    sft = align.make_trainer(trainer.model, tokenizer, pairs(), method="dpo",
                             config=config(tmp_path / "sft", nll_weight=1.0))
    sft.loss_types, sft.loss_weights = ["sft"], [1.0]
    torch.testing.assert_close(nll_only, DPOTrainer._compute_loss(sft, sft.model, batch, False), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="nll_weight"):
        align.make_trainer(tiny_model(tokenizer), tokenizer, pairs(), method="nll_only",
                           config=config(tmp_path, nll_weight=0.0))


def test_gate_only_joint_training_leaves_the_probes_and_an_offset_moves_p(tokenizer, tmp_path, reward_model):
    trainer, _ = align.train_dpo(tiny_model(tokenizer), tokenizer, pairs(), method="paper", reward_model=reward_model,
                                 reward_trainable="gate", config=config(tmp_path))
    rm = trainer.reward_model
    assert torch.equal(rm.probe_weight.cpu(), reward_model.probe_weight.cpu())
    assert not torch.equal(rm.gate.weight.cpu(), reward_model.gate.weight.cpu())
    p = {}
    for offset in (0.0, -4.0):
        trainer = align.make_trainer(tiny_model(tokenizer), tokenizer, pairs(), method="paper", alpha=1.0,
                                     reward_model=reward_model, score_offset=offset, config=config(tmp_path / str(offset)))
        trainer._compute_loss(trainer.model, fixed_batch(trainer))
        p[offset] = trainer._metrics["train"]["confidence/mean"][-1]
    assert p[0.0] != pytest.approx(p[-4.0])  # the sigmoids of shifted scores give another gap
