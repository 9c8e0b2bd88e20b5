"""generate_responses' two CPU speed-ups (each prompt prefilled once for all its samples; temperature, top-k and
top-p in one processor) must give exactly what a plain ``model.generate`` gives with the same seed."""

import pytest
import torch

from reprank.lm import generation
from reprank.lm.extraction import format_prompt
from tiny import tiny_model

PROMPTS = ["How do I bake bread?", "Write a haiku about rain falling on a tin roof at night.", "Hi"]


def plain_generate(model, tokenizer, prompts, config, seed):
    """What generate_responses did before the speed-ups: left-padded batch, generate, decode."""
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        texts = [format_prompt(tokenizer, p) for p in prompts]
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        torch.manual_seed(seed)
        out = model.generate(**enc, **config.generate_kwargs(), pad_token_id=tokenizer.pad_token_id)
    finally:
        tokenizer.padding_side = side
    decoded = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    k = config.num_return_sequences
    return [[t.strip() for t in decoded[i * k:(i + 1) * k]] for i in range(len(prompts))]


@pytest.mark.parametrize("settings", [
    dict(do_sample=True, temperature=1.4, top_k=8, top_p=0.95, repetition_penalty=1.2, num_return_sequences=4),
    dict(do_sample=True, temperature=0.7, top_k=50, top_p=0.5, num_return_sequences=2),
    dict(do_sample=False, num_return_sequences=1),
], ids=["pools", "cool", "greedy"])
def test_generate_responses_matches_a_plain_generate(tokenizer, settings):
    model = tiny_model(tokenizer).eval()
    config = generation.SamplingConfig(max_new_tokens=12, **settings)
    # One batch holding every prompt, as the plain call has it (generate_responses sorts prompts by length).
    ours = generation.generate_responses(model, tokenizer, PROMPTS, config, batch_size=len(PROMPTS), seed=3,
                                         progress=False)
    order = sorted(range(len(PROMPTS)), key=lambda i: len(format_prompt(tokenizer, PROMPTS[i])), reverse=True)
    plain = plain_generate(model, tokenizer, [PROMPTS[i] for i in order], config, seed=3)
    assert [ours[i] for i in order] == plain
    assert all(len(answers) == config.num_return_sequences for answers in ours)


def test_the_fused_processor_keeps_what_top_k_then_top_p_keep():
    from transformers.generation.logits_process import (TemperatureLogitsWarper, TopKLogitsWarper,
                                                        TopPLogitsWarper)

    scores = torch.randn(6, 500, generator=torch.Generator().manual_seed(0)) * 3
    expected = scores.clone()
    for warper in (TemperatureLogitsWarper(1.4), TopKLogitsWarper(8), TopPLogitsWarper(0.9)):
        expected = warper(None, expected)
    fused = generation._TemperatureTopKTopP(1.4, 8, 0.9)(None, scores.clone())
    assert torch.equal(torch.isinf(fused), torch.isinf(expected))
    assert torch.equal(fused[~torch.isinf(fused)], expected[~torch.isinf(expected)])


def test_a_cached_call_reads_back_what_it_generated_and_nothing_else(tokenizer, tmp_path, monkeypatch):
    model = tiny_model(tokenizer).eval()
    config = generation.SamplingConfig(max_new_tokens=6, do_sample=True, temperature=1.4, top_k=8, top_p=0.95,
                                       num_return_sequences=2)
    cached = dict(cache_dir=tmp_path, model_name="tiny@0", progress=False)
    first = generation.generate_responses(model, tokenizer, PROMPTS, config, seed=3, **cached)
    assert first == generation.generate_responses(model, tokenizer, PROMPTS, config, seed=3, progress=False)
    calls = []
    monkeypatch.setattr(model, "generate", lambda *a, **k: calls.append(1) or (_ for _ in ()).throw(AssertionError))
    assert generation.generate_responses(model, tokenizer, PROMPTS, config, seed=3, **cached) == first and not calls
    # another seed, setting, prompt or model name is another entry: generated, not read back
    for changed in (dict(seed=4), dict(config=generation.SamplingConfig(max_new_tokens=5)),
                    dict(prompts=PROMPTS[:1]), dict(model_name="tiny@1")):
        args = {"prompts": PROMPTS, "config": config, "seed": 3, **cached, **changed}
        with pytest.raises(AssertionError):
            generation.generate_responses(model, tokenizer, **args)
    assert len(calls) == 4 and len(list(tmp_path.glob("generated-*.json"))) == 1
