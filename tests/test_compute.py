import pytest
from transformers import LlamaConfig, LlamaForCausalLM

from reprank.measure import compute

D, FF, LAYERS, VOCAB, KV_DIM = 32, 64, 2, 100, 16  # 4 heads of 8, 2 key/value heads -> k, v project to 16

# Per layer: q and o (d x d), k and v (d x kv), gate/up/down MLP (3 d ff), two RMSNorm weights; + final norm.
BODY = LAYERS * (2 * D * D + 2 * D * KV_DIM + 3 * D * FF + 2 * D) + D
EMBED = VOCAB * D


def tiny_llama(tied: bool) -> LlamaForCausalLM:
    config = LlamaConfig(
        hidden_size=D, intermediate_size=FF, num_hidden_layers=LAYERS, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=VOCAB, tie_word_embeddings=tied,
    )
    return LlamaForCausalLM(config)


@pytest.mark.parametrize("tied", [True, False])
def test_count_parameters_by_hand(tied):
    model = tiny_llama(tied)
    assert compute.count_parameters(model) == BODY  # the head never counts as non-embedding
    assert compute.count_parameters(model, include_embeddings=True) == BODY + EMBED * (1 if tied else 2)


def test_forward_and_generation_flops():
    model = tiny_llama(tied=True)
    body, attention, head = 2 * BODY * 10, 2 * LAYERS * 10 * D * 10, 2 * D * VOCAB * 10
    assert compute.forward_flops(model, 10) == body + attention + head
    assert compute.forward_flops(model, 10, include_head=False) == body + attention
    assert compute.forward_flops(model, 10, context=4, include_head=False) == body + 2 * LAYERS * 4 * D * 10
    # Prompt of 6, 3 new tokens: prefill (body over 6, head at 1) + decode steps at contexts 7 and 8.
    step = lambda ctx: 2 * BODY + 2 * LAYERS * ctx * D + 2 * D * VOCAB
    prefill = 2 * BODY * 6 + 2 * LAYERS * 6 * D * 6 + 2 * D * VOCAB
    assert compute.generation_flops(model, 6, 3) == pytest.approx(prefill + step(7) + step(8))
    assert compute.generation_flops(model, 6, 0) == 0.0
    assert compute.training_flops(100.0) == 300.0
    assert compute.rm_flops(30, 576) == 2 * 30 * 576 + 2 * 30 * 30 + 4 * 30


def test_sampling_flops_counts_each_answer_with_the_lessons_function(tokenizer):
    """Notebook 03 recounts its sampling stage with exercise 03.7's function: sampling_flops calls it per answer."""
    model, calls = tiny_llama(tied=True), []

    def per_answer(size, prompt_tokens, new_tokens):
        calls.append((size, new_tokens))
        return compute.generation_flops(size, prompt_tokens, new_tokens)

    prompts = ["How do I bake bread?", "Why is the sky blue?"]
    counted = compute.sampling_flops(model, tokenizer, prompts, 8, samples_per_prompt=3, generation=per_answer)
    assert counted == compute.sampling_flops(model, tokenizer, prompts, 8, samples_per_prompt=3)
    assert calls == [(compute.ModelSize.of(model), 8)] * 2  # once per prompt, with the sizes, times 3 samples


def test_model_size_stands_in_for_the_model():
    """The sizes alone give the same FLOPs as the model: compute_ratios costs configurations it never loads."""
    model = tiny_llama(tied=False)
    size = compute.ModelSize.of(model)
    assert size == compute.ModelSize(BODY, LAYERS, D, VOCAB)
    assert compute.forward_flops(size, 10, context=4) == compute.forward_flops(model, 10, context=4)
    assert compute.generation_flops(size, 6, 3) == compute.generation_flops(model, 6, 3)
    assert compute.dpo_training_flops(size, 10, 3, 2) == compute.dpo_training_flops(model, 10, 3, 2)
    assert compute.forward_flops(compute.ModelSize(2 * BODY, LAYERS, D, VOCAB), 10) > compute.forward_flops(model, 10)


def test_dpo_training_flops_counts_policy_train_and_reference_forward():
    model = tiny_llama(tied=True)
    seq = compute.forward_flops(model, 10)
    # 3 steps x 2 pairs x 2 sequences, each: policy forward + backward (3x) and a reference forward (1x).
    assert compute.dpo_training_flops(model, 10, steps=3, pairs_per_step=2) == pytest.approx(3 * 2 * 2 * 4 * seq)


def test_ledger_totals_ratio_and_frame():
    ledger = compute.ComputeLedger()
    ledger.add("generation", flops=1000, seconds=2.0, items=10)
    ledger.add("generation", flops=1000, seconds=2.0, items=10)
    with ledger.timed("reward", items=20) as entry:
        entry.flops = 50
    assert ledger.entries[-1].seconds >= 0
    assert ledger.total() == 2050
    assert ledger.total("generation", by="seconds") == 4.0
    assert ledger.ratio("reward", ["generation"]) == pytest.approx(50 / 2000)
    with pytest.raises(ValueError, match="No ledger entries"):
        ledger.total("typo")
    frame = ledger.to_frame().set_index("stage")
    assert list(frame.index) == ["generation", "reward"]
    assert frame.loc["generation", "flops_per_item"] == 100
    assert frame.loc["generation", "seconds_per_item"] == pytest.approx(0.2)


def test_ledger_save_load_roundtrip_and_no_overwrite(tmp_path):
    ledger = compute.ComputeLedger()
    ledger.add("extraction", flops=3e9, seconds=1.5, items=4, note="body only")
    path = ledger.save(tmp_path / "ledger.json")
    assert compute.ComputeLedger.load(path) == ledger
    with pytest.raises(FileExistsError):
        ledger.save(path)
    ledger.add("reward", flops=1, seconds=0.1)
    ledger.save(path, overwrite=True)
    assert len(compute.ComputeLedger.load(path).entries) == 2


def test_sampling_and_scoring_flops_count_the_chat_template(default_model):
    """The model reads each prompt wrapped in its chat template (~30 tokens on SmolLM2), so the FLOPs must too:
    the online baseline once counted bare prompts and under-stated its sampling cost against notebook 03's."""
    from reprank.lm.extraction import format_conversation, format_prompt

    model, tokenizer = default_model.model, default_model.tokenizer
    prompt, response = "How do I bake bread?", "Mix flour, water, yeast and salt."
    templated = len(tokenizer(format_prompt(tokenizer, prompt), add_special_tokens=False)["input_ids"])
    assert templated >= len(tokenizer(prompt)["input_ids"]) + 20
    assert compute.sampling_flops(model, tokenizer, [prompt] * 2, 8, samples_per_prompt=3) == pytest.approx(
        6 * compute.generation_flops(model, templated, 8))
    conversation = len(tokenizer(format_conversation(tokenizer, prompt, response), add_special_tokens=False)["input_ids"])
    body = compute.forward_flops(model, conversation, include_head=False)
    assert compute.scoring_flops(model, tokenizer, [prompt], [response]) == pytest.approx(body)
    rm = compute.rm_flops(30, model.config.hidden_size)
    assert compute.scoring_flops(model, tokenizer, [prompt], [response], rm_layers=30) == pytest.approx(body + rm)
