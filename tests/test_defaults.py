"""One home per default (reprank/base/defaults.py): everything that restates one must agree with it.

The notebooks' parameter cells and the profiles must hold literals, so they restate defaults; the package reads
them. A default changed in one place only fails here, naming each literal that must follow. (That a parameter
declared by several notebooks has one default is tests/test_project.py's
``test_a_parameter_declared_by_several_notebooks_has_one_default``; here each is held to reprank.base.defaults.)
"""

import dataclasses
import inspect
from pathlib import Path

import pytest
import yaml

from reprank.base import defaults
from reprank.running import parameters

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
PROFILES = sorted((ROOT / "profiles").glob("*.yaml"))

# A notebook literal that may differ from its default, by (notebook prefix, parameter): none today.
NOTEBOOK_DIFFERS: dict[tuple[str, str], str] = {}

# Parameters whose names look like a default's but are not one: each says why.
NOT_A_DEFAULT = {
    "batch_size": "notebooks 01 and 03 batch forward passes (extraction, sampling), not training pairs",
    "paper_alpha": "notebook 04's switch: 0 takes notebook 02's fitted alpha; the paper's constant is defaults.ALPHA",
}
# Name parts that mark a parameter as one of the defaults' kind (a new one must be in PARAMETERS or NOT_A_DEFAULT).
LOOKS_LIKE_A_DEFAULT = ("alpha", "beta", "learning_rate", "lr", "nll", "epsilon", "temperature", "top_k", "top_p",
                        "repetition_penalty", "max_new_tokens", "max_length", "max_steps", "batch_size", "epochs",
                        "margin", "samples_per_prompt", "weight_decay", "tau", "floor", "lora")

# Profiles sized for other hardware or time differ on purpose, key by key; the cpu profile is the defaults' run.
PROFILE_DIFFERS = {
    "colab-gpu": {"max_new_tokens": "a T4 affords longer answers", "samples_per_prompt": "the paper's 8",
                  "sample_max_new_tokens": "a T4 affords longer samples"},
    "full": {"max_new_tokens": "paper-like lengths on a data-centre GPU", "rm_epochs": "a bigger RM data set",
             "samples_per_prompt": "the paper's 8", "sample_max_new_tokens": "the paper's 256"},
    "smoke": {"max_new_tokens": "smallest run", "rm_epochs": "smallest run", "sample_max_new_tokens": "smallest run",
              "max_steps": "smallest run", "eval_max_new_tokens": "smallest run"},
    "cpu-wide": {"max_steps": "twice the prompts, twice the steps: each prompt seen about once"},
    "cpu-large": {"max_steps": "cpu-wide's steps for cpu-wide's prompts"},
}

# What the package's own signatures default to, by (object, parameter).
PACKAGE = [
    ("reprank.method.confidence", "paper_batch_confidence", "alpha", defaults.ALPHA),
    ("reprank.method.confidence", "batched_paper_confidence", "alpha", defaults.ALPHA),
    ("reprank.method.rerank", "ranked_pair_confidence", "alpha", defaults.ALPHA),
    ("reprank.method.rerank", "make_pairs", "alpha", defaults.ALPHA),
    ("reprank.method.reward", "margin_bt_loss", "margin", defaults.RM_MARGIN),
    ("reprank.method.reward", "train_hybrid_reward_model", "margin", defaults.RM_MARGIN),
    ("reprank.method.reward", "train_hybrid_reward_model", "lr", defaults.RM_LR),
    ("reprank.method.reward", "train_hybrid_reward_model", "weight_decay", defaults.RM_WEIGHT_DECAY),
    ("reprank.method.reward", "train_hybrid_reward_model", "epochs", defaults.RM_EPOCHS),
    ("reprank.method.reward", "train_hybrid_reward_model", "batch_size", defaults.RM_BATCH_SIZE),
    ("reprank.method.reward_data", "build_response_table", "refusals_per_prompt", defaults.RM_REFUSALS_PER_PROMPT),
    ("reprank.method.align", "dpo_config", "nll_weight", defaults.NLL_WEIGHT),
    ("reprank.method.align", "make_trainer", "alpha", defaults.ALPHA),
    ("reprank.method.align", "make_trainer", "tau", defaults.PAIR_TAU),
    ("reprank.method.align", "lora_config", "r", defaults.LORA_R),
    ("reprank.method.align", "lora_config", "alpha", defaults.LORA_ALPHA),
    ("reprank.method.align", "lora_config", "dropout", defaults.LORA_DROPOUT),
    ("reprank.method.align", "lora_config", "target_modules", defaults.LORA_TARGET_MODULES),
    ("reprank.method.conservative", "ConfidenceDPOTrainer", "alpha", defaults.ALPHA),
    ("reprank.method.conservative", "ConfidenceDPOTrainer", "tau", defaults.PAIR_TAU),
    ("reprank.method.conservative", "ConfidenceDPOTrainer", "reward_lr", defaults.JOINT_RM_LR),
    ("reprank.method.conservative", "ConfidenceDPOTrainer", "reward_weight_decay", defaults.RM_WEIGHT_DECAY),
    ("reprank.method.conservative", "ConfidenceDPOTrainer", "reward_margin", defaults.RM_MARGIN),
]


def same(a, b) -> bool:
    """Equal and of one type (papermill and the profiles keep a parameter's type: 1 is not 1.0)."""
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_every_notebook_literal_that_names_a_default_equals_it(notebook):
    declared = parameters.parameter_defaults(notebook)
    wrong = {name: (value, defaults.PARAMETERS[name]) for name, value in declared.items()
             if name in defaults.PARAMETERS and (notebook.name[:2], name) not in NOTEBOOK_DIFFERS
             and not same(value, defaults.PARAMETERS[name])}
    assert not wrong, f"{notebook.name}: parameter literal (notebook, reprank.base.defaults) differ: {wrong}"
    unnamed = {name for name in declared if name not in defaults.PARAMETERS and name not in NOT_A_DEFAULT
               and any(part in name for part in LOOKS_LIKE_A_DEFAULT)}
    assert not unnamed, (f"{notebook.name}: {sorted(unnamed)} look like defaults: add them to "
                         "reprank.base.defaults.PARAMETERS, or to NOT_A_DEFAULT here with the reason")


def test_the_allow_lists_name_real_parameters():
    declared = {nb.name[:2]: parameters.parameter_defaults(nb) for nb in NOTEBOOKS}
    everything = set().union(*declared.values())
    assert set(defaults.PARAMETERS) <= everything, set(defaults.PARAMETERS) - everything
    assert set(NOT_A_DEFAULT) <= everything
    assert all(name in declared.get(prefix, {}) for prefix, name in NOTEBOOK_DIFFERS)
    profiles = {p.stem: yaml.safe_load(p.read_text()) for p in PROFILES}
    for profile, keys in PROFILE_DIFFERS.items():
        assert set(keys) <= set(profiles[profile]), (profile, set(keys) - set(profiles[profile]))
        # an allowed difference that no longer differs is stale: drop it
        stale = {k for k in keys if same(profiles[profile][k], defaults.PARAMETERS[k])}
        assert not stale, f"{profile}.yaml: {sorted(stale)} equal the defaults now; drop them from PROFILE_DIFFERS"


def test_training_parameters_keep_dpoconfigs_names():
    # Notebooks 04 and 05 name their training parameters as DPOConfig's fields, so a profile or --set value
    # goes straight into align.dpo_config.
    from trl import DPOConfig

    fields = {f.name for f in dataclasses.fields(DPOConfig)} - {"output_dir", "seed"}
    for notebook in [nb for nb in NOTEBOOKS if nb.name.startswith(("04", "05"))]:
        declared = {k for k in parameters.parameter_defaults(notebook) if k in fields}
        assert declared == set(defaults.TRAINING) - {"seed"}, notebook.name


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.stem)
def test_every_profile_key_that_names_a_default_equals_it(profile):
    values = yaml.safe_load(profile.read_text())
    allowed = PROFILE_DIFFERS.get(profile.stem, {})
    wrong = {k: (v, defaults.PARAMETERS[k]) for k, v in values.items()
             if k in defaults.PARAMETERS and k not in allowed and not same(v, defaults.PARAMETERS[k])}
    assert not wrong, f"{profile.name}: (profile, reprank.base.defaults) differ: {wrong}; or add the key to PROFILE_DIFFERS"
    # The training settings themselves are set in a profile only where they differ.
    restated = {k for k, v in values.items()
                if k in defaults.TRAINING and k != "seed" and same(v, defaults.TRAINING[k])}
    assert not restated, f"{profile.name} restates the training defaults {sorted(restated)}"


@pytest.mark.parametrize("module, name, parameter, expected", PACKAGE, ids=[f"{n}.{p}" for _, n, p, _ in PACKAGE])
def test_the_packages_signatures_default_to_reprank_defaults(module, name, parameter, expected):
    import importlib

    target = getattr(importlib.import_module(module), name)
    default = inspect.signature(target).parameters[parameter].default
    assert same(default, expected), f"{module}.{name}({parameter}={default!r}); reprank.base.defaults: {expected!r}"


def test_align_cpu_defaults_and_the_dpo_config_it_builds(tmp_path):
    from reprank.method import align

    assert {k: align.CPU_DEFAULTS[k] for k in defaults.TRAINING} == defaults.TRAINING
    config = align.dpo_config(tmp_path)
    assert {k: getattr(config, k) for k in defaults.TRAINING} == defaults.TRAINING
    # The NLL term is on by default, with its weight, as in notebooks 04 and 05.
    assert config.loss_type == ["sigmoid", "sft"] and config.loss_weights == [1.0, defaults.NLL_WEIGHT]
    assert align.dpo_config(tmp_path, nll_weight=0.0).loss_type == ["sigmoid"]
    lora = align.lora_config()
    assert (lora.r, lora.lora_alpha, lora.lora_dropout) == (defaults.LORA_R, defaults.LORA_ALPHA, defaults.LORA_DROPOUT)


def test_launch_train_defaults_are_the_notebooks(tmp_path):
    from reprank import launch

    args = launch.parser().parse_args(["train", "--pairs", "pairs.jsonl", "--out", str(tmp_path / "adapter")])
    assert (args.nll_weight, args.alpha, args.tau) == (defaults.NLL_WEIGHT, defaults.ALPHA, defaults.PAIR_TAU)
    assert {k: getattr(args, k) for k in defaults.TRAINING} == defaults.TRAINING
    ours, config = launch.split_train_args(args)
    assert ours.nll_weight == defaults.NLL_WEIGHT
    assert {k: getattr(config, k) for k in defaults.TRAINING} == defaults.TRAINING
    assert config.loss_type == ["sigmoid", "sft"] and config.loss_weights == [1.0, defaults.NLL_WEIGHT]


def test_sampling_defaults():
    from reprank.lm.generation import SamplingConfig

    assert SamplingConfig().max_new_tokens == defaults.ANSWER_MAX_NEW_TOKENS and not SamplingConfig().do_sample
    pools = SamplingConfig(do_sample=True, num_return_sequences=defaults.SAMPLES_PER_PROMPT, **defaults.SAMPLING)
    assert pools.generate_kwargs()["top_k"] == defaults.SAMPLE_TOP_K
    assert {f"sample_{k}": v for k, v in defaults.SAMPLING.items()} == {
        k: defaults.PARAMETERS[k] for k in defaults.PARAMETERS if k.startswith("sample_")}
