"""benchmarks/bench_gpu.py (the one-shot GPU-path check) at tiny size on the CPU, and its copy of the default
model's config and tokenizer (the script's random-weight model must have the real architecture)."""

import json

import numpy as np
import pytest


@pytest.fixture(scope="module")
def bench(benchmark_script):
    return benchmark_script("bench_gpu")


def test_tiny_run_on_cpu_writes_every_number(bench, tmp_path):
    out = tmp_path / "bench.json"
    rc = bench.main(["--device", "cpu", "--tiny", "--texts", "4", "--batch-size", "2", "--repeats", "1", "--steps", "1",
                     "--train-batch", "2", "--max-length", "64", "--methods", "confidence_policy", "--out", str(out)])
    report = json.loads(out.read_text())
    assert rc == 0, report
    assert "RANDOM" in report["weights"] and report["picked"]["pick_device"] == "cpu"
    assert report["environment"]["transformers"] and report["args"]["tiny"]
    (extraction,) = report["extraction"]
    assert extraction["run"] == "cpu float32" and extraction["texts"] == 4 and extraction["tokens_per_s"] > 0
    (dpo,) = report["dpo"]  # the paper's variant: a (random) reward model scores the policy's own states
    assert (dpo["run"], dpo["method"], dpo["trainer_device"], dpo["mixed_precision"]) == (
        "cpu fp32", "confidence_policy", "cpu", "no")
    assert dpo["finite"] and dpo["timed_steps"] == 1 and dpo["s_per_step"] > 0 and len(dpo["losses"]) == 2


def test_compare_reports_relative_error_and_cosine(bench):
    ref = np.random.default_rng(0).normal(size=(3, 2, 8)).astype(np.float32)
    same = bench.compare(ref, ref)
    assert same["max_abs"] == 0 and same["rel_l2"] == 0 and same["cos_min"] == pytest.approx(1)
    scaled = bench.compare(ref * 1.001, ref)
    assert scaled["rel_l2"] == pytest.approx(1e-3, rel=1e-3) and scaled["cos_min"] == pytest.approx(1)


def test_assets_are_the_default_models_config_and_tokenizer(bench, default_model):
    from transformers import AutoConfig

    from reprank.lm.extraction import format_conversation

    ours, real = AutoConfig.from_pretrained(bench.ASSETS).to_dict(), default_model.model.config.to_dict()
    keys = ["model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "head_dim", "vocab_size", "tie_word_embeddings", "rope_parameters", "rms_norm_eps"]
    assert {k: ours[k] for k in keys} == {k: real[k] for k in keys}
    tokenizer = bench.load_tokenizer()
    text = format_conversation(default_model.tokenizer, "Hi there?", "Hello, friend.")
    assert format_conversation(tokenizer, "Hi there?", "Hello, friend.") == text
    assert tokenizer(text)["input_ids"] == default_model.tokenizer(text)["input_ids"]
    assert tokenizer.pad_token_id == default_model.tokenizer.pad_token_id


def test_plan_on_a_gpu_trains_in_fp32_bf16_and_the_notebook_default(bench):
    """The CUDA branch cannot run here: check what it would run."""
    import argparse

    import torch

    args = argparse.Namespace(device="all", methods="confidence,confidence_policy", steps=5, cpu_steps=2)
    runs, trainings = bench.plan(args, True, torch.bfloat16)
    assert [(device.type, dtype) for device, dtype in runs] == [
        ("cuda", torch.float32), ("cuda", torch.bfloat16), ("cpu", torch.float32)]
    gpu = {"use_cpu": False, "bf16": False, "fp16": False}
    assert [(name, dtype, method, steps, precision) for name, _, dtype, method, steps, precision in trainings] == [
        ("cuda fp32", torch.float32, "confidence", 5, gpu),
        ("cuda bfloat16 + autocast", torch.bfloat16, "confidence", 5, {**gpu, "bf16": True}),
        ("cuda bfloat16, dpo_config defaults", torch.bfloat16, "confidence", 5, {}),
        ("cpu fp32", torch.float32, "confidence", 2, {"use_cpu": True}),
        ("cuda fp32", torch.float32, "confidence_policy", 5, gpu),
        ("cuda bfloat16 + autocast", torch.bfloat16, "confidence_policy", 5, {**gpu, "bf16": True}),
        ("cpu fp32", torch.float32, "confidence_policy", 2, {"use_cpu": True}),
    ]
    assert bench.plan(argparse.Namespace(device="cuda", methods="", steps=5, cpu_steps=None), False, None) == ([], [])
