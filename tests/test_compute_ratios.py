from pathlib import Path

import pytest
import torch
import yaml
from transformers import LlamaConfig, LlamaForCausalLM

from reprank.base import defaults
from reprank.measure import compute, compute_ratios as cr

ROOT = Path(__file__).resolve().parents[1]

# A toy model: forward over n tokens at context c = 2*100*n + 2*2*c*4*n (+ 2*4*10*n with the head).
TOY = compute.ModelSize(n_params=100, n_layers=2, d_model=4, vocab=10)
P, T = 3, 2
GEN = (200 * 3 + 16 * 3 * 3 + 80) + (200 + 16 * 4 + 80)  # prefill over 3 + head once; 1 decode step at context 4
FWD = 200 * 5 + 16 * 5 * 5  # scoring: body over P + T = 5 tokens, no head
RM = 2 * 2 * 4 + 2 * 2 * 2 + 4 * 2  # 2 L d + 2 L^2 + 4 L
CANDIDATE = GEN + FWD + RM  # 1168 + 1400 + 32
STEP = 2 * 2 * 4 * (200 * 5 + 16 * 5 * 5 + 80 * 5)  # 2 pairs x 2 sequences x (3x train + 1x reference), head on


def test_toy_sizes_by_hand():
    assert (GEN, FWD, RM, CANDIDATE, STEP) == (1168, 1400, 32, 2600, 28800)
    assert cr.candidate_flops(TOY, P, T) == pytest.approx(CANDIDATE)


def test_total_pipeline_by_hand():
    ratio = cr.total_pipeline(TOY, n_prompts=5, samples_per_prompt=3, new_tokens=T, prompt_tokens=P, rounds=2,
                              steps_per_round=1, batch=2)
    assert ratio.online == pytest.approx(2 * 1 * 2 * 3 * CANDIDATE + 2 * STEP)  # 88,800
    assert ratio.reranking == pytest.approx(5 * 3 * CANDIDATE + 2 * STEP)  # 96,600: more prompts sampled than online
    assert ratio.value == pytest.approx(88800 / 96600)
    limit = cr.total_pipeline_limit(TOY, samples_per_prompt=3, new_tokens=T, prompt_tokens=P, batch=2)
    assert limit.value == pytest.approx((2 * 3 * CANDIDATE + STEP) / STEP)


def test_marginal_and_per_candidate_by_hand():
    marginal = cr.marginal_per_step(TOY, samples_per_prompt=3, new_tokens=T, prompt_tokens=P, batch=2)
    assert (marginal.online, marginal.reranking) == pytest.approx((2 * 3 * CANDIDATE, 2 * 2 * RM))
    assert marginal.value == pytest.approx(121.875)
    forward, head = cr.per_candidate(TOY, new_tokens=T, prompt_tokens=P)
    assert (forward.online, forward.reranking) == pytest.approx((GEN, FWD + RM))
    assert head.value == pytest.approx(GEN / RM)
    one_layer = cr.marginal_per_step(TOY, samples_per_prompt=3, new_tokens=T, prompt_tokens=P, batch=2, rm_layers=1)
    assert one_layer.reranking == pytest.approx(2 * 2 * (2 * 4 + 2 + 4))


def ours(**changes):
    return cr.PRESETS["ours"].with_(**changes)


def pipeline(config, rounds, steps_per_round):
    return cr.total_pipeline(config.model, n_prompts=config.n_prompts, samples_per_prompt=config.samples_per_prompt,
                             new_tokens=config.new_tokens, prompt_tokens=config.prompt_tokens, rounds=rounds,
                             steps_per_round=steps_per_round, batch=config.batch).value


@pytest.mark.parametrize("preset", ["ours", "authors"])
def test_total_pipeline_stays_bounded_as_rounds_grow(preset):
    """The ~3x argument: online's extra cost is its data per step, so however many rounds, (a) < its limit < 3."""
    config = cr.PRESETS[preset]
    limit = cr.ratios_for(config)[1].value
    values = [pipeline(config, rounds, 10) for rounds in (1, 4, 40, 400, 10**4, 10**6)]
    assert values == sorted(values) and values[-1] < limit < 3
    assert values[-1] == pytest.approx(limit, rel=1e-3)
    # At a fixed number of steps, how they are split into rounds changes nothing.
    assert pipeline(config, 1, 40) == pytest.approx(pipeline(config, 8, 5)) == pytest.approx(pipeline(config, 40, 1))


def test_authors_marginal_is_far_past_300_and_total_is_not():
    table = cr.project_to_config("authors").set_index("ratio")["online / re-ranking"]
    assert table["(b) marginal per training step"] > 1e6
    assert table["(c) per candidate, vs RM head alone"] > 1e6
    assert table["(a) total pipeline"] < 1  # online samples 1,600 prompts, re-ranking 4,000
    assert 2.5 < table["(a) total pipeline, rounds -> inf"] < 3
    assert 1 <= table["(c) per candidate, vs scoring forward"] < 1.5


@pytest.mark.parametrize("preset", ["ours", "authors"])
def test_marginal_ratios_grow_with_new_tokens(preset):
    config = cr.PRESETS[preset]
    values = [cr.ratios_for(config.with_(new_tokens=t)) for t in (16, 48, 128, 256, 512)]
    for index in (2, 4):  # (b) and (c) vs the RM head: online's cost grows with T, the head's does not
        assert [v[index].value for v in values] == sorted(v[index].value for v in values)
        # At least in proportion to the tokens run (P + T): attention adds to that, nothing takes away.
        tokens = (config.prompt_tokens + 512) / (config.prompt_tokens + 16)
        assert values[-1][index].value / values[0][index].value >= tokens


def test_project_to_config_table():
    table = cr.project_to_config()
    assert list(table.columns) == cr.COLUMNS
    assert len(table) == 10 and table.config.nunique() == 2
    assert set(table.ratio) == set(cr.FORMULAS)
    assert (table["online / re-ranking"] == table["online FLOPs"] / table["re-ranking FLOPs"]).all()
    custom = cr.project_to_config(ours(label="ours, 8 samples", samples_per_prompt=8))
    assert custom.config.unique().tolist() == ["ours, 8 samples"]
    assert custom["online FLOPs"].iloc[0] > cr.project_to_config("ours")["online FLOPs"].iloc[0]


def test_ours_preset_matches_the_cpu_profile_and_training_defaults(default_model):
    profile = yaml.safe_load((ROOT / "profiles" / "cpu.yaml").read_text())
    config = cr.PRESETS["ours"]
    assert config.n_prompts == profile["n_rerank_harmful"] + profile["n_rerank_benign"]
    assert config.samples_per_prompt == profile["samples_per_prompt"]
    assert config.new_tokens == profile["sample_max_new_tokens"]
    baselines = yaml.safe_load((ROOT / "profiles" / "sweeps" / "cpu-baselines.yaml").read_text())
    assert config.rounds == baselines["set"]["online_rounds"] == cr.OURS_ONLINE_ROUNDS
    training = defaults.TRAINING  # what align.CPU_DEFAULTS holds (tests/test_defaults.py)
    assert (config.steps, config.batch) == (training["max_steps"], training["per_device_train_batch_size"])
    assert config.prompt_tokens + config.new_tokens <= training["max_length"]  # training sequences not truncated
    assert config.model == compute.ModelSize.of(default_model.model)


def test_llama2_7b_sizes():
    config = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                         vocab_size=32000, tie_word_embeddings=False)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    assert compute.ModelSize.of(model) == cr.LLAMA2_7B
    assert compute.count_parameters(model, include_embeddings=True) == pytest.approx(6.74e9, rel=1e-3)


def test_total_pipeline_measured_from_ledgers():
    data, run = compute.ComputeLedger(), compute.ComputeLedger()
    data.add("sampling (once)", flops=100, seconds=30)
    data.add("scoring", flops=50, seconds=10)
    data.add("short training (shift check)", flops=999, seconds=999)  # not part of the data cost
    run.add("confidence: training", flops=200, seconds=60)
    run.add("online: sampling", flops=80, seconds=20)
    run.add("online: scoring", flops=40, seconds=8)
    run.add("online: training", flops=200, seconds=62)
    seconds = cr.total_pipeline_measured(data, run, "confidence")
    assert (seconds.online, seconds.reranking) == (90, 100)
    assert cr.total_pipeline_measured(data, run, "confidence", by="flops").value == pytest.approx(320 / 350)
    with pytest.raises(ValueError, match="No ledger entries"):
        cr.total_pipeline_measured(data, run, "dpo")
    cached = compute.ComputeLedger([compute.LedgerEntry("sampling (once)", 100, 0.2), compute.LedgerEntry("scoring", 50, 10)])
    with pytest.raises(ValueError, match="cache"):
        cr.total_pipeline_measured(cached, run, "confidence")
    assert cr.total_pipeline_measured(cached, run, "confidence", by="flops").value == pytest.approx(320 / 350)
