"""The paper's confidence-weighted ("conservative") DPO loss as a subclass of TRL's ``DPOTrainer``.

The paper replaces DPO's hard label by a per-pair confidence ``p`` that the chosen answer really is better:

    L = -p log sigmoid(beta z) - (1 - p) log sigmoid(-beta z),
    z = [log pi(y_c|x) - log ref(y_c|x)] - [log pi(y_r|x) - log ref(y_r|x)].

Since ``log sigmoid(x) - log sigmoid(-x) = x``, this is ``-log sigmoid(beta z) + (1 - p) beta z``: TRL's own
"sigmoid" DPO loss plus a term linear in ``z``. ``ConfidenceDPOTrainer`` therefore lets TRL compute its loss
(and all its metrics) unchanged and adds ``(1 - p) beta z``; at ``p = 1`` it *is* TRL's loss. TRL keeps ``z``
local to ``DPOTrainer._compute_loss``, so the trainer reads the per-token log-probabilities that the policy
and reference forwards return (forward hooks) and sums them exactly as TRL does.

Where ``p`` comes from (``confidence_source``):

* ``"column"``: a per-pair ``confidence`` column of the dataset;
* ``"constant"``: one value for every pair. ``p = 1 - eps`` is conservative DPO with label smoothing ``eps``
  (TRL 1.16 ignores ``label_smoothing`` under ``loss_type="sigmoid"``, so smoothing goes through here);
* ``"policy"``: the paper's method (``align`` method ``"paper"``; ``"confidence_policy"`` keeps the RM frozen). Each step, a ``HybridRewardModel`` scores the *current* policy's hidden
  states at the end tokens of chosen and rejected (taken, detached, from the training forward itself:
  ``output_hidden_states=True`` on the policy call, read by a hook on the transformer body), and the batch gets
  ``p = max(sigmoid(alpha (mean sigmoid(s_c) - mean sigmoid(s_r))), 0.5)`` (``confidence_form="batch"``), or
  each pair its own ``p_i = sigmoid((s_c,i - s_r,i) / tau)``, with no floor (``"pair"``, method
  ``"paper_pair"``: a pair the current reward orders the other way gets p < 0.5 and is pulled the other way).
  With ``train_reward_model=True`` the reward model is also trained on those states with
  ``-log sigmoid(s_c - s_r - 1)`` (its own Adam, lr 0.01, weight decay 0.01), as in the authors' code: one step
  after it has scored the batch, and p is read from the scores of before that step (``policy_confidence``, the
  plain form of this step that notebook 04's exercise 04.7 asks for);
* ``"schedule"``: one given value per training step (``confidence_schedule``, read at ``global_step``): a p
  replayed from another run's log, the control that has the paper's p values but not their content
  (``align`` method ``"paper_replay"``);
* ``"none"``: ``p = 1``, i.e. TRL's loss untouched (any TRL loss type, e.g. IPO).

Two variants of the paper's p (issue 20: the authors' code differs from the text): ``reward_trainable="gate"``
trains only the gate of the jointly trained reward model (in the authors' released code the per-layer scorers are
not parameters of the module, so only its layer-mixing matrix trains), and ``score_offset`` shifts every score
before the sigmoids of the batch p (to put p in the regime of the authors' stored scores, mean -1.98).

An NLL term on the chosen answers composes through TRL's own ``"sft"`` loss type: ``loss_type=["sigmoid",
"sft"]`` with ``loss_weights=[1, w]`` (``align.dpo_config(nll_weight=w)`` sets both). TRL computes it from the same
forward, so nothing here has to know about it.

Logged per step beside TRL's metrics (averaged over the pairs of the step): ``confidence/mean``; with a
confidence, ``confidence/at_floor``, the share of pairs with p <= 0.5 (neutral, or for ``"pair"`` reversed; a
batch p makes it 0 or 1), and ``loss/dpo``, ``loss/conservative``; with ``"policy"``, ``reward_model/disagreement``
(pairs the current-state reward orders against the stored label), ``reward_model/score_chosen`` and
``reward_model/score_rejected`` (the mean raw scores s_c and s_r, to tell a reward whose scale drifts from one that
disagrees) and, when trained, ``reward_model/loss``. When the pairs carry a boolean ``flipped`` column
(``noise.flip_labels``), each of ``pair_observers`` (callables ``(p, flipped) -> {metric: value}``, one per train
and eval mode, e.g. ``noise.FlipDetection``) adds its metrics: the trainer itself knows nothing of the noise study.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from trl import DPOTrainer

from reprank.base import defaults
from reprank.method.dpo_loss import chosen_nll, conservative_dpo_loss, dpo_margin, sequence_log_probs  # noqa: F401
from reprank.lm.extraction import transformer_body
from reprank.method import answer_head
from reprank.method.reference_logps import ReusedReferenceLogps
from reprank.method.reward import HybridRewardModel, margin_bt_loss

# Every DPO trainer in a process that imports this one (the package's and a notebook's own subclass of TRL's):
# TRL's log-prob head scores the answer tokens only, on a CPU too: the same numbers up to float rounding, 1.38x
# faster steps there (reprank/method/answer_head.py).
answer_head.enable()

CONFIDENCE_SOURCES = ("column", "constant", "policy", "schedule", "none")
REWARD_TRAINABLE = ("all", "gate")  # what the jointly trained reward model updates
CONFIDENCE_FORMS = ("batch", "pair")  # of the "policy" source: the paper's batch p, or a per-pair p without floor
PAIR_COLUMNS = ("confidence", "flipped")  # per-pair dataset columns that reach _compute_loss


# ----------------------------------------------------------------------------------------------- helpers


class _WithConfidence:
    """Wrap TRL's preference collator so the per-pair ``confidence`` and ``flipped`` columns reach the loss."""

    def __init__(self, collator):
        self.collator = collator

    def __call__(self, examples):
        batch = self.collator(examples)
        if "confidence" in examples[0]:
            batch["confidence"] = torch.tensor([float(e["confidence"]) for e in examples], dtype=torch.float32)
        if "flipped" in examples[0]:
            batch["flipped"] = torch.tensor([bool(e["flipped"]) for e in examples])
        return batch


@contextlib.contextmanager
def _record_outputs(*modules):
    """Record, in call order, the outputs of every forward call of ``modules`` inside the block."""
    calls, handles = [], []
    for module in modules:
        handles.append(module.register_forward_hook(lambda _module, _args, output: calls.append(output)))
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()


def end_positions(input_ids, attention_mask, completion_mask, tokenizer) -> torch.Tensor:
    """Index of each row's end token: its last real (unpadded) token, stepping back over whitespace-only tokens.

    TRL's chat-templated sequences end with the end-of-turn marker and then a newline; the reward model was
    trained (``extraction.format_conversation``) on the text cut by ``rstrip()``, whose last token is the marker.
    Skipping trailing whitespace tokens (never past the completion's start) reads that same token.
    """
    last = attention_mask.shape[1] - 1 - attention_mask.flip(1).argmax(1)
    positions = []
    for row, pos in enumerate(last.tolist()):
        while pos > 0 and completion_mask[row, pos - 1] and not tokenizer.decode([int(input_ids[row, pos])]).strip():
            pos -= 1
        positions.append(pos)
    return torch.tensor(positions, device=input_ids.device)


def layer_states_at(hidden_states, ends, layers) -> torch.Tensor:
    """(n, len(layers), d): each row's state at its end position ``ends[row]`` in each of ``layers`` (indices into
    ``hidden_states``, a tuple or stacked tensor of (n, T, d) states: 0 is the embeddings, l the output of layer l),
    detached from the policy and in float32: what the reward model reads."""
    rows = torch.arange(len(ends), device=ends.device)
    return torch.stack([hidden_states[layer][rows, ends] for layer in layers], dim=1).detach().float()


def reward_model_step(optimizer, chosen, rejected, margin: float = defaults.RM_MARGIN) -> torch.Tensor:
    """One optimiser step of the reward model on ``margin_bt_loss(chosen, rejected, margin)``; the loss, detached."""
    loss = margin_bt_loss(chosen, rejected, margin)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.detach()


def batch_confidence(chosen, rejected, alpha: float, offset: float = 0.0) -> torch.Tensor:
    """The paper's p of one batch, ``max(sigmoid(alpha (mean sigmoid(s_c) - mean sigmoid(s_r))), 0.5)``, from its
    scores (``offset`` shifts each before the sigmoids: 0 in the paper's formula, see ``score_offset``)."""
    gap = torch.sigmoid(chosen + offset).mean() - torch.sigmoid(rejected + offset).mean()
    return torch.sigmoid(alpha * gap).clamp(min=defaults.CONFIDENCE_FLOOR)


def policy_confidence(hidden_states, ends, reward_model: HybridRewardModel, optimizer, alpha: float,
                      margin: float = defaults.RM_MARGIN) -> torch.Tensor:
    """One step of the paper's mechanism (notebook 04's exercise 04.7), as ``ConfidenceDPOTrainer`` runs it for
    ``paper``: the reward model scores the policy's end-token states (detached), takes one optimiser step on
    ``-log sigmoid(s_c - s_r - margin)``, and the batch's p is read from the scores it gave *before* that step.

    ``hidden_states``: the policy's states of the batch's 2B rows (B chosen, then B rejected), a tuple or stacked
    tensor indexed by layer; ``ends``: (2B,) end positions (``end_positions``). Returns p, a 0-dim tensor without
    gradient: a constant weight in the policy's loss.
    """
    chosen, rejected = reward_model(layer_states_at(hidden_states, ends, reward_model.layers)).chunk(2)
    reward_model_step(optimizer, chosen, rejected, margin)
    return batch_confidence(chosen.detach(), rejected.detach(), alpha)


# ----------------------------------------------------------------------------------------------- trainer


class ConfidenceDPOTrainer(ReusedReferenceLogps, DPOTrainer):
    """TRL's ``DPOTrainer`` with the conservative loss ``-p log s(beta z) - (1-p) log s(-beta z)``.

    Only ``_compute_loss`` is overridden: it runs TRL's loss, then adds ``(1 - p) beta z`` to the "sigmoid"
    part (see the module docstring) and logs ``confidence/mean``, ``loss/dpo`` (the ``p = 1`` term),
    ``loss/conservative`` (the confidence-weighted term) and, with ``"policy"``, ``reward_model/*``.
    The reference's log-probabilities of a set of pairs are computed once per process (``reference_logps``).
    """

    def __init__(
        self,
        model,
        *args,
        confidence_source: str = "column",
        confidence_value: float = 1.0,
        reward_model: HybridRewardModel | None = None,
        alpha: float = defaults.ALPHA,
        confidence_form: str = "batch",
        tau: float = defaults.PAIR_TAU,
        confidence_schedule=None,
        pair_observers=None,
        train_reward_model: bool = False,
        reward_trainable: str = "all",
        score_offset: float = 0.0,
        reward_lr: float = defaults.JOINT_RM_LR,
        reward_weight_decay: float = defaults.RM_WEIGHT_DECAY,
        reward_margin: float = defaults.RM_MARGIN,
        **kwargs,
    ):
        if confidence_source not in CONFIDENCE_SOURCES:
            raise ValueError(f"confidence_source must be one of {CONFIDENCE_SOURCES}; got {confidence_source!r}")
        if confidence_source == "policy" and reward_model is None:
            raise ValueError("confidence_source='policy' needs a reward_model (a HybridRewardModel).")
        if not 0.0 <= confidence_value <= 1.0:
            raise ValueError(f"confidence_value must lie in [0, 1]; got {confidence_value}")
        if confidence_form not in CONFIDENCE_FORMS or tau <= 0:
            raise ValueError(f"confidence_form must be one of {CONFIDENCE_FORMS} and tau > 0; "
                             f"got {confidence_form!r}, tau={tau}")
        if confidence_source == "schedule" and not confidence_schedule:
            raise ValueError("confidence_source='schedule' needs confidence_schedule: one p per training step.")
        if reward_trainable not in REWARD_TRAINABLE:
            raise ValueError(f"reward_trainable must be one of {REWARD_TRAINABLE}; got {reward_trainable!r}")
        super().__init__(model, *args, **kwargs)
        self.confidence_source = confidence_source
        self.confidence_schedule = None if confidence_schedule is None else [float(v) for v in confidence_schedule]
        self.score_offset = float(score_offset)
        self.confidence_value = confidence_value
        self.alpha, self.confidence_form, self.tau = alpha, confidence_form, tau
        # One observer per mode: a windowed statistic must not mix training and evaluation batches.
        self._pair_observers = {mode: [make() for make in (pair_observers or [])] for mode in ("train", "eval")}
        if confidence_source != "none":
            # The correction is exact only for TRL's plain DPO margin: the sum of token log-ratios, reverse KL.
            unsupported = {
                "'sigmoid' in loss_type": "sigmoid" in self.loss_types,
                "ld_alpha=None": self.ld_alpha is None,
                "f_divergence_type='reverse_kl'": self.f_divergence_type == "reverse_kl",
                "use_weighting=False": not self.use_weighting,
            }
            missing = [name for name, ok in unsupported.items() if not ok]
            if missing:
                raise ValueError(f"The confidence-weighted loss needs {', '.join(missing)}.")
        self.data_collator = _WithConfidence(self.data_collator)
        self.reward_model = self.reward_optimizer = None
        if reward_model is not None:
            self.reward_model = reward_model.to(self.accelerator.device)
            self.reward_model.requires_grad_(False)
            if train_reward_model:
                trained = [self.reward_model.gate.weight] if reward_trainable == "gate" \
                    else list(self.reward_model.parameters())
                for parameter in trained:
                    parameter.requires_grad_(True)
                self.reward_optimizer = torch.optim.Adam(trained, lr=reward_lr, weight_decay=reward_weight_decay)
            self.reward_margin = reward_margin

    def _set_signature_columns_if_needed(self):
        # Keep the per-pair columns through Trainer's removal of columns the model does not take.
        super()._set_signature_columns_if_needed()
        self._signature_columns += [c for c in PAIR_COLUMNS if c not in self._signature_columns]

    def _compute_loss(self, model, inputs, return_outputs=False):
        mode = "train" if self.model.training else "eval"
        inputs = dict(inputs)
        column = inputs.pop("confidence", None)  # TRL would pass unknown keys on to the model
        flipped = inputs.pop("flipped", None)
        if self.confidence_source == "none":
            self._metrics[mode]["confidence/mean"].append(1.0)
            return super()._compute_loss(model, inputs, return_outputs)
        if self.confidence_source == "policy":
            inputs["output_hidden_states"] = True  # TRL forwards it to the policy's transformer body

        # TRL keeps z and the hidden states local to its method: hooks record what its forwards return.
        # Call order inside TRL's method: policy forward first, then the reference (unless precomputed).
        policy = self.accelerator.unwrap_model(model)
        lms = [policy] + ([self.ref_model] if self.ref_model is not None else [])
        with _record_outputs(*lms) as lm_calls, _record_outputs(transformer_body(_causal_lm(policy))) as bodies:
            result = super()._compute_loss(model, inputs, return_outputs)
        loss = result[0] if return_outputs else result

        z = self._margin(lm_calls, inputs)  # (n_pairs,), differentiable through the policy
        if self.confidence_source == "column":
            if column is None:
                raise ValueError("confidence_source='column' needs a 'confidence' column in the dataset.")
            p = column.to(z)
        elif self.confidence_source == "constant":
            p = torch.full_like(z, self.confidence_value)
        elif self.confidence_source == "schedule":
            schedule = self.confidence_schedule
            p = torch.full_like(z, schedule[min(self.state.global_step, len(schedule) - 1)])
        else:
            p = self._policy_confidence(bodies[0].hidden_states, inputs, mode).expand_as(z)
        if flipped is not None:
            self._observe_pairs(p.detach(), flipped, mode)
        sigmoid_weight = self.loss_weights[self.loss_types.index("sigmoid")]
        loss = loss + sigmoid_weight * ((1 - p) * self.beta * z).mean()

        bz = self.beta * z.detach()
        self._metrics[mode]["confidence/mean"].append(p.mean().item())
        self._metrics[mode]["confidence/at_floor"].append((p <= defaults.CONFIDENCE_FLOOR).float().mean().item())
        self._metrics[mode]["loss/dpo"].append(-F.logsigmoid(bz).mean().item())
        self._metrics[mode]["loss/conservative"].append(conservative_dpo_loss(z.detach(), p, self.beta).item())
        return (loss, result[1]) if return_outputs else loss

    # -- helpers of _compute_loss ------------------------------------------------------------------

    def _margin(self, lm_calls, inputs) -> torch.Tensor:
        """``z`` per pair, summed from the recorded per-token log-probs exactly as ``DPOTrainer._compute_loss``."""
        seq_len = inputs["completion_mask"].shape[1] - 1
        # (With return_outputs=True TRL runs one more, unfused, forward after the loss; it has no log_probs.)
        logps = [out.log_probs[:, -seq_len:].sum(1) for out in lm_calls
                 if getattr(out, "log_probs", None) is not None]
        if self.precompute_ref_logps:
            ref = torch.cat([inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]]).to(logps[0])
        else:
            ref = logps[1].detach()
        (chosen, rejected), (ref_chosen, ref_rejected) = logps[0].chunk(2), ref.chunk(2)  # [chosen; rejected] rows
        return dpo_margin(chosen, rejected, ref_chosen, ref_rejected)

    def _observe_pairs(self, p, flipped, mode) -> None:
        """Hand each pair's p and flip flag to the pair observers; log what they return."""
        p, flipped = p.float().cpu().numpy(), flipped.bool().cpu().numpy()
        for observer in self._pair_observers[mode]:
            for name, value in observer(p, flipped).items():
                self._metrics[mode][name].append(value)

    def _policy_confidence(self, hidden_states, inputs, mode) -> torch.Tensor:
        """p from the reward model's scores of the policy's own end-token states: the paper's one p per batch,
        or with ``confidence_form="pair"`` one ``sigmoid((s_c - s_r) / tau)`` per pair (no floor)."""
        rm = self.reward_model
        ids, attention, completion = inputs["input_ids"], inputs["attention_mask"], inputs["completion_mask"]
        # As policy_confidence (exercise 04.7), with the trainer's options and logs: score, step the RM, then p from
        # the scores of before the step.
        ends = end_positions(ids, attention, completion, self._tokenizer)
        chosen, rejected = rm(layer_states_at(hidden_states, ends, rm.layers)).chunk(2)
        self._metrics[mode]["reward_model/score_chosen"].append(chosen.mean().item())
        self._metrics[mode]["reward_model/score_rejected"].append(rejected.mean().item())
        if self.reward_optimizer is not None and mode == "train":
            rm_loss = reward_model_step(self.reward_optimizer, chosen, rejected, self.reward_margin)
            self._metrics[mode]["reward_model/loss"].append(rm_loss.item())
        chosen, rejected = chosen.detach(), rejected.detach()
        if self.confidence_form == "pair":
            p = torch.sigmoid((chosen - rejected) / self.tau)
        else:
            p = batch_confidence(chosen, rejected, self.alpha, self.score_offset)  # offset 0: the paper's formula
        # Per step: the share of pairs the current-state reward orders against the stored label.
        self._metrics[mode]["reward_model/disagreement"].append((chosen <= rejected).float().mean().item())
        return p


def _causal_lm(model):
    """The causal LM inside a (possibly PEFT-wrapped) model."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model

