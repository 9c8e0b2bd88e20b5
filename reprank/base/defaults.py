"""Reprank's defaults, each in one place: training (DPO with LoRA), the reward model, the paper's confidence, sampling.

The package reads them from here: ``align`` (``CPU_DEFAULTS``, ``dpo_config``, ``lora_config``, ``make_trainer``),
``conservative``, ``confidence``, ``rerank``, ``reward``, ``generation`` and ``reprank.launch train``'s flags. The
notebooks' parameter cells must hold literals (papermill reads them), and the profiles restate some of them:
``PARAMETERS`` names those parameters, and tests/test_defaults.py fails when a literal there differs from here.

The values are the ones notebooks 01-05 run with on a laptop CPU (SmolLM2-135M); where the paper (arXiv
2503.10093) uses another value, its comment says so. Changing a default here changes the package; the test then
names every notebook literal and profile key that must follow.
"""

from __future__ import annotations

# ----------------------------------------------------------------------------------------------- training (DPO)
# Under TRL DPOConfig's field names in TRAINING (what align.CPU_DEFAULTS and reprank.launch take).

LEARNING_RATE = 5e-4  # LoRA takes a larger step than full fine-tuning (TRL's default: 1e-6)
BETA = 0.1  # DPO's KL scale
MAX_LENGTH = 128  # tokens of prompt + answer; notebook 03's pairs fit (tests/test_compute_ratios.py)
BATCH_SIZE = 4  # pairs per device and step; also the batch of the paper's batch confidence in notebook 02
MAX_STEPS = 40  # the paper: 100 steps of 16 pairs
SEED = 0
NLL_WEIGHT = 1.0  # weight of the NLL of the chosen answers added to the preference loss (TRL's "sft" term)
SMOOTHING_EPSILON = 0.1  # dpo_smoothing's fixed label noise: a constant confidence of 1 - epsilon

TRAINING = dict(learning_rate=LEARNING_RATE, beta=BETA, max_length=MAX_LENGTH, per_device_train_batch_size=BATCH_SIZE,
                max_steps=MAX_STEPS, seed=SEED)
"""The training defaults under DPOConfig's field names (``nll_weight`` is ``align.dpo_config``'s own keyword)."""

# LoRA on every linear layer but the LM head (PEFT's "all-linear").
LORA_R = 16
LORA_ALPHA = 32
LORA_DROPOUT = 0.0
LORA_TARGET_MODULES = "all-linear"

# ----------------------------------------------------------------------------------------------- the paper's confidence

ALPHA = 7.5  # the paper's sharpness: p = max(sigmoid(ALPHA (mean sig(s_c) - mean sig(s_r))), CONFIDENCE_FLOOR)
CONFIDENCE_FLOOR = 0.5  # the paper never flips a label: a batch the reward disagrees with gets p = 0.5, neutral
PAIR_TAU = 1.0  # paper_pair's scale in p = sigmoid((s_c - s_r) / tau) without a fitted tau (notebook 02 fits one)

# ----------------------------------------------------------------------------------------------- the reward model

RM_MARGIN = 1.0  # the paper's Bradley-Terry margin: -log sigmoid(R_c - R_r - margin)
RM_LR = 1e-3  # Adam's step when notebook 01 trains the hybrid RM
RM_WEIGHT_DECAY = 0.01
RM_EPOCHS = 50  # 100 goes with rm_refusals_per_prompt = 2 (its best validation epoch was 56-65 of 100)
# Written refusals per harmful prompt in the reward's data (the paper has no such rows). Two rank refusals better on
# validation pools but made seed 0's aligned models less safe on the held-out source (docs/results.md, issue 21).
RM_REFUSALS_PER_PROMPT = 1
RM_BATCH_SIZE = 16
JOINT_RM_LR = 0.01  # the RM's step when the paper's method trains it jointly with the policy (ConfidenceDPOTrainer)

# ----------------------------------------------------------------------------------------------- sampling
# How notebook 03 samples its candidate pools (and notebook 01 the reward model's sampled answers).

SAMPLE_TEMPERATURE = 1.4  # the paper's
SAMPLE_TOP_K = 8  # the paper's
SAMPLE_TOP_P = 0.95  # the paper's
SAMPLE_REPETITION_PENALTY = 1.2  # the paper's
SAMPLE_MAX_NEW_TOKENS = 48  # the paper: 256
SAMPLES_PER_PROMPT = 4  # the paper: 8
ANSWER_MAX_NEW_TOKENS = 64  # greedy answers: notebook 01's baseline answers, generation.SamplingConfig's default
EVAL_MAX_NEW_TOKENS = 48  # answers judged after training (notebooks 04 and 05)

SAMPLING = dict(temperature=SAMPLE_TEMPERATURE, top_k=SAMPLE_TOP_K, top_p=SAMPLE_TOP_P,
                repetition_penalty=SAMPLE_REPETITION_PENALTY, max_new_tokens=SAMPLE_MAX_NEW_TOKENS)
"""The pools' decoding under ``generation.SamplingConfig``'s names (with ``do_sample=True``)."""

# ----------------------------------------------------------------------------------------------- restated elsewhere

PARAMETERS = {
    "seed": SEED,
    "learning_rate": LEARNING_RATE,
    "beta": BETA,
    "max_length": MAX_LENGTH,
    "per_device_train_batch_size": BATCH_SIZE,
    "max_steps": MAX_STEPS,
    "nll_weight": NLL_WEIGHT,
    "smoothing_epsilon": SMOOTHING_EPSILON,
    "alpha": ALPHA,
    "confidence_batch_size": BATCH_SIZE,
    "rm_lr": RM_LR,
    "rm_epochs": RM_EPOCHS,
    "rm_refusals_per_prompt": RM_REFUSALS_PER_PROMPT,
    "sample_temperature": SAMPLE_TEMPERATURE,
    "sample_top_k": SAMPLE_TOP_K,
    "sample_top_p": SAMPLE_TOP_P,
    "sample_repetition_penalty": SAMPLE_REPETITION_PENALTY,
    "sample_max_new_tokens": SAMPLE_MAX_NEW_TOKENS,
    "samples_per_prompt": SAMPLES_PER_PROMPT,
    "max_new_tokens": ANSWER_MAX_NEW_TOKENS,
    "eval_max_new_tokens": EVAL_MAX_NEW_TOKENS,
}
"""Notebook parameters and profile keys that restate a default, by name: their literals must equal these."""
