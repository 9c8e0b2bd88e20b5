"""Shared fixtures: the real default model, loaded once per test session, and the device it runs on.

The suite runs on whatever ``models.pick_device()`` picks: the CPU in fp32 here, a GPU in bf16/fp16 on a
CUDA host. Tests move their own inputs to the model's device (``on_model``) and compare dtypes with
``models.pick_dtype(device)`` instead of assuming fp32.
"""

import pytest
import torch


@pytest.fixture(scope="session")
def default_model():
    from reprank.lm.models import load_model

    return load_model()


@pytest.fixture(scope="session")
def device() -> torch.device:
    """The device ``load_model()`` puts the default model on."""
    from reprank.lm.models import pick_device

    return pick_device()


@pytest.fixture(scope="session")
def dtype(device) -> torch.dtype:
    """The dtype ``load_model()`` chooses on that device (fp32 on a CPU)."""
    from reprank.lm.models import pick_dtype

    return pick_dtype(device)


@pytest.fixture(scope="session")
def close(dtype) -> dict:
    """``assert_allclose`` tolerances for comparing two forward passes: tight in fp32, looser in half precision
    (bf16 keeps ~3 significant digits; padded and unpadded batches round differently)."""
    return {"rtol": 1e-3, "atol": 1e-3} if dtype == torch.float32 else {"rtol": 5e-2, "atol": 5e-2}


def _on_model(inputs, model):
    """Tokenizer output (or a tensor) moved to the device of ``model``'s parameters."""
    from reprank.lm.models import model_device

    return inputs.to(model_device(model))


@pytest.fixture(scope="session")
def on_model():
    return _on_model


@pytest.fixture(scope="session")
def tokenizer():
    """The default model's tokenizer (for the tiny random models of ``tests/tiny.py``)."""
    from transformers import AutoTokenizer

    from reprank.lm.models import resolve_model_path

    return AutoTokenizer.from_pretrained(resolve_model_path())


@pytest.fixture(scope="session")
def benchmark_script():
    """Import a script of benchmarks/ by its file name (the folder is not a package): ``benchmark_script("bench_gpu")``."""
    import importlib.util
    from pathlib import Path

    def load(name: str):
        path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
