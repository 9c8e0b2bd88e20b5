"""Device and dtype choice (GPU when present, CPU fp32 otherwise), tested on a CPU with CUDA mocked."""

import numpy as np
import pytest
import torch

from reprank.lm import models
from reprank.lm.extraction import extract_hidden_states
from reprank.lm.generation import SamplingConfig, generate_responses


def fake_gpu(monkeypatch, *, native_bf16: bool):
    """CUDA 'present'; bf16 native (Ampere+) or only emulated (a T4, where torch's default check says yes)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: native_bf16 or including_emulation)


def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_device_is_cuda_when_available_else_cpu(monkeypatch):
    no_gpu(monkeypatch)
    assert models.pick_device() == models.pick_device("auto") == torch.device("cpu")
    fake_gpu(monkeypatch, native_bf16=True)
    assert models.pick_device() == models.pick_device("auto") == torch.device("cuda")
    assert models.pick_device("cpu") == torch.device("cpu")  # an explicit choice wins


def test_dtype_is_fp32_on_cpu_bf16_on_ampere_fp16_on_a_t4(monkeypatch):
    no_gpu(monkeypatch)
    assert models.pick_dtype(torch.device("cpu")) is torch.float32
    assert not models.bf16_supported()
    fake_gpu(monkeypatch, native_bf16=True)
    assert models.pick_dtype(torch.device("cpu")) is torch.float32  # a CPU stays fp32 even with a GPU around
    assert models.pick_dtype(torch.device("cuda")) is torch.bfloat16
    assert models.pick_dtype(torch.device("cuda:1"), "auto") is torch.bfloat16
    fake_gpu(monkeypatch, native_bf16=False)
    assert models.pick_dtype(torch.device("cuda")) is torch.float16  # emulated bf16 is slow: fp16


def test_explicit_dtype_names_and_objects(monkeypatch):
    fake_gpu(monkeypatch, native_bf16=True)
    assert models.pick_dtype(torch.device("cuda"), "float32") is torch.float32
    assert models.pick_dtype(torch.device("cpu"), torch.bfloat16) is torch.bfloat16
    with pytest.raises(ValueError, match="Unknown dtype"):
        models.pick_dtype(torch.device("cpu"), "float33")
    with pytest.raises(ValueError, match="Unknown dtype"):
        models.pick_dtype(torch.device("cpu"), "nn")  # an attribute of torch, but not a dtype


class _Recorder:
    """Stands in for a transformers model: records the dtype it was loaded in and where it was moved."""

    def __init__(self, dtype):
        self.dtype, self.device = dtype, None

    def to(self, device):
        self.device = device
        return self

    def eval(self):
        return self


@pytest.mark.parametrize("native_bf16, expected", [(True, torch.bfloat16), (False, torch.float16), (None, torch.float32)])
def test_load_model_puts_the_model_on_the_chosen_device_and_dtype(monkeypatch, native_bf16, expected):
    import transformers

    if native_bf16 is None:
        no_gpu(monkeypatch)
    else:
        fake_gpu(monkeypatch, native_bf16=native_bf16)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained",
                        lambda path, dtype=None, **kwargs: _Recorder(dtype))
    loaded = models.load_model()
    assert loaded.model.dtype is expected
    assert loaded.model.device == torch.device("cpu" if native_bf16 is None else "cuda")
    # Explicit arguments override the choice.
    forced = models.load_model(device="cpu", dtype="float32")
    assert forced.model.device == torch.device("cpu") and forced.model.dtype is torch.float32


def test_default_load_uses_the_picked_device_and_dtype(default_model, device, dtype):
    # fp32 on a CPU (every number in the README), bf16 or fp16 on a GPU.
    assert next(default_model.model.parameters()).dtype is dtype
    assert models.model_device(default_model.model).type == device.type
    if device.type == "cpu":
        assert dtype is torch.float32


def test_a_half_precision_model_gives_float32_numpy_hidden_states_and_text(default_model):
    # The GPU path's dtype handling, run on the CPU: a bf16 model in, float32 numpy arrays and strings out.
    half = models.load_model(device="cpu", dtype="bfloat16")
    assert next(half.model.parameters()).dtype is torch.bfloat16
    prompts, responses = ["How do I bake bread?", "Name a colour."], ["Mix flour and water, then bake.", "Blue."]
    low = extract_hidden_states(half.model, half.tokenizer, prompts, responses, pools=("end", "mean"),
                                layers=[1, 15, 30], progress=False)
    full = extract_hidden_states(default_model.model, default_model.tokenizer, prompts, responses,
                                 pools=("end", "mean"), layers=[1, 15, 30], progress=False)
    for ours, reference in ((low.end, full.end), (low.mean, full.mean)):
        assert isinstance(ours, np.ndarray) and ours.dtype == np.float32
        cosine = (ours * reference).sum(-1) / (np.linalg.norm(ours, axis=-1) * np.linalg.norm(reference, axis=-1))
        assert cosine.min() > 0.95, cosine
    answers = generate_responses(half.model, half.tokenizer, ["Name a fruit."], SamplingConfig(max_new_tokens=4),
                                 progress=False)
    assert isinstance(answers[0][0], str) and answers[0][0]
