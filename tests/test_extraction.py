import numpy as np
import pytest
import torch

from reprank.lm import extraction, models

PROMPTS = ["How do I bake bread?", "Tell me how to pick a lock.", "What is the capital of France?"]
RESPONSES = ["Mix flour and water, knead, rest and bake at 220 C for 30 minutes.", "I can't help with that.",
             "Paris."]


def numpy32(tensor):
    """A hidden state as the float32 numpy array extraction returns, from any device and dtype."""
    return tensor.float().cpu().numpy()


def naive_end_states(model, tokenizer, prompt, response):
    """One unpadded forward pass, inputs on the model's device."""
    text = extraction.format_conversation(tokenizer, prompt, response)
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(models.model_device(model))
    with torch.no_grad():
        out = model(**ids, output_hidden_states=True)
    return numpy32(torch.stack(out.hidden_states[1:])[:, 0, -1]), out, ids


def test_shapes_dtype_and_end_token(default_model, close):
    m, tok = default_model.model, default_model.tokenizer
    hs = extraction.extract_hidden_states(m, tok, PROMPTS, RESPONSES, batch_size=2, progress=False)
    L, d = m.config.num_hidden_layers, m.config.hidden_size
    assert hs.end.shape == (3, L, d) and hs.end.dtype == np.float32 and hs.mean is None
    assert hs.layers == list(range(1, L + 1))
    for i in range(3):  # padded, length-sorted batches give the per-text states of a plain forward
        ref, _, ids = naive_end_states(m, tok, PROMPTS[i], RESPONSES[i])
        np.testing.assert_allclose(hs.end[i], ref, **close)
        assert hs.n_tokens[i] == ids["input_ids"].shape[1]
    # The end token is the template's end-of-turn marker, not trailing whitespace.
    text = extraction.format_conversation(tok, PROMPTS[0], RESPONSES[0])
    assert not text[-1].isspace()


def test_mean_over_response_tokens(default_model, close):
    m, tok = default_model.model, default_model.tokenizer
    hs = extraction.extract_hidden_states(m, tok, PROMPTS[:1], RESPONSES[:1], layers=[3, 7], pools=("end", "mean"),
                                          progress=False)
    _, out, ids = naive_end_states(m, tok, PROMPTS[0], RESPONSES[0])
    start = len(tok(extraction.format_prompt(tok, PROMPTS[0]), add_special_tokens=False)["input_ids"])
    expected = np.stack([numpy32(out.hidden_states[l][0, start:].float().mean(0)) for l in (3, 7)])
    np.testing.assert_allclose(hs.mean[0], expected, **close)


def test_deterministic_and_cached(default_model, tmp_path):
    m, tok = default_model.model, default_model.tokenizer
    a = extraction.extract_hidden_states(m, tok, PROMPTS, RESPONSES, cache_dir=tmp_path, model_name="x",
                                         progress=False)
    assert len(list(tmp_path.glob("hidden-*.npz"))) == 1
    b = extraction.extract_hidden_states(m, tok, PROMPTS, RESPONSES, progress=False)
    np.testing.assert_array_equal(a.end, b.end)
    c = extraction.extract_hidden_states(m, tok, PROMPTS, RESPONSES, cache_dir=tmp_path, model_name="x",
                                         progress=False)
    np.testing.assert_array_equal(a.end, c.end)
    # A different text is a different cache entry.
    extraction.extract_hidden_states(m, tok, PROMPTS, ["changed"] * 3, cache_dir=tmp_path, model_name="x",
                                     progress=False)
    assert len(list(tmp_path.glob("hidden-*.npz"))) == 2


def test_reuse_rows_takes_the_texts_an_earlier_call_read_and_computes_only_the_others(default_model, tmp_path,
                                                                                      monkeypatch):
    m, tok = default_model.model, default_model.tokenizer
    first = extraction.extract_hidden_states(m, tok, PROMPTS, RESPONSES, layers=[0, 1, 2, 3], pools=("end", "mean"),
                                             cache_dir=tmp_path, model_name="x", progress=False)
    forwards = []
    body = extraction.transformer_body(m)
    monkeypatch.setattr(type(body), "forward", _counting(type(body).forward, forwards))
    # Layers 3 and 1 (a subset, in another order), one text twice and one text new.
    prompts, responses = [PROMPTS[2], PROMPTS[0], "Name a colour.", PROMPTS[2]], [RESPONSES[2], RESPONSES[0], "Blue.", RESPONSES[2]]
    later = extraction.extract_hidden_states(m, tok, prompts, responses, layers=[3, 1], pools=("end", "mean"),
                                             cache_dir=tmp_path, model_name="x", reuse_rows=True, progress=False)
    assert [len(ids) for ids in forwards] == [1]  # one forward, of the new text alone
    for row, earlier in ((0, 2), (1, 0), (3, 2)):
        np.testing.assert_array_equal(later.end[row], first.end[earlier][[3, 1]])
        np.testing.assert_array_equal(later.mean[row], first.mean[earlier][[3, 1]])
        assert later.n_tokens[row] == first.n_tokens[earlier]
    fresh = extraction.extract_hidden_states(m, tok, ["Name a colour."], ["Blue."], layers=[3, 1], pools=("end", "mean"),
                                             progress=False)
    np.testing.assert_allclose(later.end[2], fresh.end[0], atol=1e-5)
    # Without reuse_rows, or for another model name, every text is computed again.
    forwards.clear()
    extraction.extract_hidden_states(m, tok, prompts[:2], responses[:2], layers=[3, 1], pools=("end", "mean"),
                                     cache_dir=tmp_path, model_name="x", progress=False)
    extraction.extract_hidden_states(m, tok, prompts[:2], responses[:2], layers=[3, 1], pools=("end", "mean"),
                                     cache_dir=tmp_path, model_name="y", reuse_rows=True, progress=False)
    assert sum(len(ids) for ids in forwards) == 4


def _counting(forward, calls):
    def counted(self, input_ids=None, **kwargs):
        calls.append(input_ids)
        return forward(self, input_ids=input_ids, **kwargs)
    return counted


def test_long_responses_keep_their_end_token(default_model, close):
    m, tok = default_model.model, default_model.tokenizer
    long = "word " * 500
    hs = extraction.extract_hidden_states(m, tok, ["Say words."], [long], max_response_tokens=16, progress=False)
    assert hs.n_tokens[0] < 100
    cut = extraction.truncate_response(tok, long, 16)
    ref, _, _ = naive_end_states(m, tok, "Say words.", cut)
    np.testing.assert_allclose(hs.end[0], ref, **close)


def test_bad_arguments_are_explained(default_model):
    m, tok = default_model.model, default_model.tokenizer
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        extraction.extract_hidden_states(m, tok, PROMPTS[:2], RESPONSES[:1], progress=False)
    with pytest.raises(ValueError, match="pools"):
        extraction.extract_hidden_states(m, tok, PROMPTS[:1], RESPONSES[:1], pools=("max",), progress=False)


def test_end_token_state_is_the_last_real_position_under_left_and_right_padding():
    hidden = torch.randn(2, 4, 3)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    torch.testing.assert_close(extraction.end_token_states(hidden, right), hidden[[0, 1], [1, 3]])
    torch.testing.assert_close(extraction.end_token_states(hidden, left), hidden[[0, 1], [3, 3]])
    torch.testing.assert_close(extraction.end_token_states(hidden, right.bool()), hidden[[0, 1], [1, 3]])
