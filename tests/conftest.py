"""Shared fixtures: the real default model, loaded once per test session, and the device it runs on.

The suite runs on whatever ``models.pick_device()`` picks: the CPU in fp32 here, a GPU in bf16/fp16 on a
CUDA host. Tests move their own inputs to the model's device (``on_model``) and compare dtypes with
``models.pick_dtype(device)`` instead of assuming fp32.
"""

import os

import pytest
import torch


# `make test` runs two pytest-xdist workers (`-n 2 --dist loadfile`: a test file stays on one worker; xdist 3.8's
# `loadgroup` marks are ignored under pytest 9). tests/test_notebooks.py is the critical path (its tests share one
# run folder, in order): it goes first, and its kernels keep both cores at full priority. A worker running any other test lowers its own priority and uses one thread from then on, so the
# unit tests fill the cores' idle moments (kernel start-up, imports, Python between forwards) instead of slowing
# the notebooks. Without xdist nothing changes but the order.
def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.get_closest_marker("notebook") is None)  # stable: notebooks first


_BACKGROUND = {"done": False}


@pytest.fixture(autouse=True)
def _background_beside_the_notebooks(request):
    if (os.environ.get("PYTEST_XDIST_WORKER") and not _BACKGROUND["done"]
            and request.node.get_closest_marker("notebook") is None):
        os.nice(10)  # this worker, and every process it starts from now on
        torch.set_num_threads(1)
        _BACKGROUND["done"] = True
    yield


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
