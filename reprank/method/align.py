"""LoRA-DPO training for the series: reprank's training defaults, the trainer for each method, the entry point.

The loss itself (the paper's confidence-weighted, "conservative" DPO) lives in ``reprank.method.conservative``;
its names are re-exported here, so ``align.conservative_dpo_loss``, ``align.ConfidenceDPOTrainer`` etc. work.
``dpo_config`` applies reprank's training defaults (``CPU_DEFAULTS``: ``reprank.base.defaults.TRAINING`` plus settings
for a CPU, under DPOConfig's field names; the NLL weight is ``reprank.base.defaults.NLL_WEIGHT``).
"""

from __future__ import annotations

import copy

import torch
from datasets import Dataset
from peft import LoraConfig, PeftModel
from transformers import Trainer, TrainerCallback, get_scheduler
from trl import DPOConfig

from reprank.method.conservative import (  # noqa: F401  (re-exported: notebooks and tests use align.<name>)
    CONFIDENCE_SOURCES,
    ConfidenceDPOTrainer,
    chosen_nll,
    conservative_dpo_loss,
    dpo_margin,
    end_positions,
    sequence_log_probs,
)
from reprank.base import defaults
from reprank.method.reward import HybridRewardModel

# "paper": the paper's method as the authors run it: p from the current policy's end-token states, the hybrid RM
# trained jointly (a copy: the caller's RM is left as it was). "confidence_policy": the same with the RM frozen.
# "paper_pair": as "paper", but each pair its own p = sigmoid((s_c - s_r) / tau), no 0.5 floor (issue 11).
# "confidence": p offline, stored with each pair by notebook 03 (from the RM that built the ranking).
METHODS = ("dpo", "dpo_smoothing", "ipo", "confidence", "confidence_policy", "paper", "paper_pair", "paper_replay",
           "nll_only")
POLICY_METHODS = ("confidence_policy", "paper", "paper_pair")  # p from the current policy's states: need an RM


def history_frame(trainer) -> "pd.DataFrame":
    """The trainer's logged training metrics, one row per logged step (TRL's names: loss, rewards/margins, ...)."""
    import pandas as pd

    rows = [h for h in trainer.state.log_history if "loss" in h and "train_runtime" not in h]
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------- configs, entry point


# Reprank's training defaults, under DPOConfig's own field names: reprank.base.defaults.TRAINING (learning rate, beta,
# max_length, batch, steps, seed) and how to run on a CPU. ``dpo_config`` applies them; ``reprank.launch train``
# sets them as its parser's defaults, so every DPOConfig field is also a flag.
CPU_DEFAULTS = dict(
    bf16=False,  # fp32 on a CPU (TRL's DPOConfig would default to bf16)
    fp16=False,
    # TRL defaults gradient checkpointing on; a 135M model's activations fit, and it costs a forward. Set under
    # transformers 5's name (gradient_checkpointing is its deprecated alias, mirrored from this one).
    activation_checkpointing=False,
    **defaults.TRAINING,  # learning_rate, beta, max_length, per_device_train_batch_size, max_steps, seed
    # TRL runs the reference forward once per pair before training instead of once per pair per visit: the
    # reference is fixed (the model with LoRA off, online rounds included), so the loss is the same
    # (tests/test_align.py checks step 0). make_trainer turns it off for a run shorter than one pass over the
    # pairs, where it would be extra work, and for several processes. benchmarks/bench_training.py measures it.
    precompute_ref_log_probs=True,
    loss_type=["sigmoid"],
    logging_steps=1,
    save_strategy="no",
    report_to=[],
    dataloader_num_workers=0,
)


def training_defaults() -> dict:
    """``CPU_DEFAULTS`` plus what depends on the machine (``use_cpu`` when there is no GPU); a fresh copy."""
    return {**copy.deepcopy(CPU_DEFAULTS), "use_cpu": not torch.cuda.is_available()}


def dpo_config(output_dir, *, nll_weight: float = defaults.NLL_WEIGHT, **overrides) -> DPOConfig:
    """A ``DPOConfig`` with reprank's defaults (``training_defaults()``), any DPOConfig field overridable by name.

    Defaults: fp32, no gradient checkpointing, ``reprank.base.defaults.TRAINING`` (lr, beta, batch, length, steps,
    seed), logging every step, no checkpoints. ``nll_weight > 0`` (default ``reprank.base.defaults.NLL_WEIGHT``, as
    in notebooks 04 and 05; 0 turns it off) adds TRL's "sft" loss (mean NLL of the chosen tokens) with that
    weight: TRL 1.16's DPOConfig has no single field for it (``rpo_alpha`` is gone), only ``loss_type`` +
    ``loss_weights``, which this sets.
    """
    settings = {**training_defaults(), "output_dir": str(output_dir), **overrides}
    if overrides.get("gradient_checkpointing") is not None:  # the old name, given, must not lose to our default
        settings["activation_checkpointing"] = settings.pop("gradient_checkpointing")
    if nll_weight:
        settings["loss_type"] = [*settings["loss_type"], "sft"]
        weights = settings.get("loss_weights") or [1.0] * (len(settings["loss_type"]) - 1)
        settings["loss_weights"] = [*weights, nll_weight]
    return DPOConfig(**settings)


def lora_config(r: int = defaults.LORA_R, alpha: int = defaults.LORA_ALPHA, dropout: float = defaults.LORA_DROPOUT,
                target_modules=defaults.LORA_TARGET_MODULES) -> LoraConfig:
    """LoRA on every linear layer but the LM head (PEFT's "all-linear" leaves it out; TRL refuses it anyway)."""
    return LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules, task_type="CAUSAL_LM"
    )


def to_conversational(pairs: Dataset) -> Dataset:
    """Plain-string (prompt, chosen, rejected) pairs -> TRL's conversational preference format."""
    def convert(row):
        return {
            "prompt": [{"role": "user", "content": row["prompt"]}],
            "chosen": [{"role": "assistant", "content": row["chosen"]}],
            "rejected": [{"role": "assistant", "content": row["rejected"]}],
        }

    if isinstance(pairs[0]["prompt"], list):
        return pairs
    return pairs.map(convert)


def make_trainer(
    model,
    tokenizer,
    pairs: Dataset,
    *,
    method: str = "confidence",
    config: DPOConfig,
    reward_model: HybridRewardModel | None = None,
    lora: LoraConfig | None = None,
    epsilon: float | None = None,
    train_reward_model: bool = False,
    alpha: float = defaults.ALPHA,
    tau: float = defaults.PAIR_TAU,
    confidence_schedule=None,
    pair_observers=None,
    reward_trainable: str = "all",
    score_offset: float = 0.0,
    eval_pairs: Dataset | None = None,
    callbacks: list | None = None,
    optimizers: tuple = (None, None),
) -> ConfidenceDPOTrainer:
    """A ``ConfidenceDPOTrainer`` for one of ``METHODS``, not yet trained (see ``train_dpo``).

    ``model`` is a plain model (a new LoRA adapter, ``lora``, is put on it) or a ``PeftModel``, whose adapter keeps
    training. Either way the reference is the model with its adapter disabled: the untuned model (see
    ``_UntunedReference``). ``optimizers``: Trainer's ``(optimizer, lr_scheduler)``, to share one across trainers
    (``shared_optimizer``); ``(None, None)`` lets Trainer make them for this run.
    ``alpha`` sharpens the batch p of ``paper`` / ``confidence_policy``; ``tau`` scales the per-pair p of
    ``paper_pair`` (notebook 02 fits one on the same reward scale). ``paper_replay`` trains with one given p per
    step (``confidence_schedule``, e.g. a ``paper`` run's logged ``confidence/mean``, permuted or in order): the
    paper's p values without their content. ``nll_only`` keeps the config's NLL term and weighs the preference
    term 0. ``reward_trainable`` ("all" / "gate") and ``score_offset`` are variants of ``paper`` (see
    ``conservative``). Pairs with a boolean ``flipped`` column reach ``pair_observers`` (``noise.FlipDetection``).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    config = copy.deepcopy(config)
    # The method picks the preference loss; an "sft" (NLL) term in the config is kept with its weight.
    base_loss = "ipo" if method == "ipo" else "sigmoid"
    config.loss_type = [base_loss if t in ("sigmoid", "ipo") else t for t in config.loss_type]
    source, value = {
        "dpo": ("none", 1.0),
        "ipo": ("none", 1.0),
        "confidence": ("column", 1.0),
        "confidence_policy": ("policy", 1.0),
        "paper": ("policy", 1.0),
        "paper_pair": ("policy", 1.0),
        "dpo_smoothing": ("constant", None),
        "paper_replay": ("schedule", 1.0),
        "nll_only": ("none", 1.0),
    }[method]
    if method == "nll_only":
        if "sft" not in config.loss_type:
            raise ValueError("method='nll_only' needs an NLL term: build the config with nll_weight > 0.")
        config.loss_weights = [0.0 if t == "sigmoid" else w for t, w in zip(config.loss_type, config.loss_weights)]
    if method == "dpo_smoothing":
        epsilon = config.label_smoothing if epsilon is None else epsilon
        if not 0.0 < epsilon < 0.5:
            raise ValueError(f"dpo_smoothing needs 0 < epsilon < 0.5 (set epsilon or label_smoothing); got {epsilon}")
        value = 1.0 - epsilon
    if source == "policy":
        if reward_model is None:
            raise ValueError(f"method={method!r} needs reward_model (notebook 01's hybrid RM).")
        train_reward_model = train_reward_model or method in ("paper", "paper_pair")
        # Trained jointly, the RM changes in place: every run starts from the caller's RM, untouched.
        reward_model = copy.deepcopy(reward_model) if train_reward_model else reward_model
    else:
        reward_model = None
    if method == "confidence" and "confidence" not in pairs.column_names:
        raise ValueError("method='confidence' needs a 'confidence' column in pairs.")
    if config.precompute_ref_log_probs and (0 < _pair_visits(config) < len(pairs) or config.world_size > 1):
        # Fewer visits than pairs: precomputing them all costs more. Several processes: TRL 1.16 writes the
        # precomputed log-probs to the main process's temporary cache, which the others cannot open for an
        # in-memory dataset (FileNotFoundError on rank 1, seen under tests/test_launch.py).
        config.precompute_ref_log_probs = False
    return ConfidenceDPOTrainer(
        model,
        args=config,
        train_dataset=to_conversational(pairs),
        eval_dataset=None if eval_pairs is None else to_conversational(eval_pairs),
        processing_class=tokenizer,
        # A model that already carries an adapter (the online loop's) keeps training it.
        peft_config=None if isinstance(model, PeftModel) else (lora or lora_config()),
        confidence_source=source,
        confidence_value=value,
        reward_model=reward_model,
        train_reward_model=train_reward_model,
        alpha=alpha,
        confidence_form="pair" if method == "paper_pair" else "batch",
        tau=tau,
        confidence_schedule=confidence_schedule,
        pair_observers=pair_observers,
        reward_trainable=reward_trainable,
        score_offset=score_offset,
        callbacks=[*(callbacks or []), _UntunedReference(model)] if isinstance(model, PeftModel) else callbacks,
        optimizers=optimizers,
    )


class _UntunedReference(TrainerCallback):
    """Make the reference of a trainer given a ``PeftModel`` the untuned model, as for a plain model + LoRA config.

    TRL 1.16's DPOTrainer adds a frozen "ref" adapter, a copy of the adapter as given, to a ``PeftModel`` (and
    uses it as the reference whenever it exists); given a plain model and a ``peft_config`` it takes the
    reference with the adapter disabled. It adds "ref" before ``Trainer.__init__`` and first uses it after
    (model hash, precomputed reference log-probs, training): this drops it at ``on_init_end``, in between, so TRL
    falls back to the disabled adapter. tests/test_online.py checks the reference against the untuned model.
    """

    def __init__(self, model: PeftModel):
        self.model = model

    def on_init_end(self, args, state, control, **kwargs):
        if "ref" in self.model.peft_config:
            self.model.delete_adapter("ref")


def shared_optimizer(model, config: DPOConfig, total_steps: int) -> tuple:
    """The ``(optimizer, lr_scheduler)`` that ``transformers.Trainer`` makes for ``model``'s trainable parameters
    under ``config`` in a run of ``total_steps`` steps (as its ``create_optimizer`` / ``create_scheduler``), to hand
    to several trainers (``make_trainer(optimizers=...)``) that together make that run: one optimizer state, one
    LR schedule. The trainers must train these same parameter objects.
    """
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = set(Trainer.get_decay_parameter_names(None, model))  # an instance method that does not use self
    groups = [{"params": [p for n, p in trainable if n in decay], "weight_decay": config.weight_decay},
              {"params": [p for n, p in trainable if n not in decay], "weight_decay": 0.0}]
    optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(config, model)
    optimizer = optimizer_cls(groups, **optimizer_kwargs)
    scheduler = get_scheduler(config.lr_scheduler_type, optimizer=optimizer,
                              num_warmup_steps=config.get_warmup_steps(total_steps), num_training_steps=total_steps,
                              scheduler_specific_kwargs=config.lr_scheduler_kwargs)
    return optimizer, scheduler


def _pair_visits(config: DPOConfig) -> int:
    """Pairs the run will see, all processes together (0 when ``max_steps`` is unset: epochs decide)."""
    per_step = config.per_device_train_batch_size * config.gradient_accumulation_steps * config.world_size
    return max(config.max_steps, 0) * per_step


def mean_pair_tokens(tokenizer, pairs, max_length: int | None = None) -> float:
    """Mean length in tokens of the chat-templated (prompt + chosen) and (prompt + rejected) sequences,
    each cut at ``max_length`` as TRL does: the sequence length that training FLOPs are counted at."""
    lengths = []
    for row in pairs:
        for side in ("chosen", "rejected"):
            messages = [{"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": row[side]}]
            ids = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
            lengths.append(min(len(ids), max_length) if max_length else len(ids))
    return float(sum(lengths) / len(lengths)) if lengths else 0.0


def train_dpo(model, tokenizer, pairs: Dataset, *, method: str = "confidence", config: DPOConfig, **kwargs):
    """Train a LoRA adapter on ``pairs`` with ``method``; returns ``(trainer, peft_model)``.

    ``pairs`` has plain-string prompt/chosen/rejected columns (and ``confidence`` for ``method="confidence"``).
    ``model`` is changed in place: PEFT injects the LoRA layers into it and TRL patches its forward with a
    fused LM head (inactive unless asked for). Keyword arguments go to ``make_trainer``.
    """
    trainer = make_trainer(model, tokenizer, pairs, method=method, config=config, **kwargs)
    trainer.train()
    return trainer, trainer.model
