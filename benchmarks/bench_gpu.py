"""GPU-path check: hidden-state extraction and LoRA-DPO steps on CUDA (fp32, bf16) and on the CPU (fp32).

The weights are RANDOM (seeded): the architecture of the default model, SmolLM2-135M-Instruct, built from its
config in ``benchmarks/smollm2_135m/`` (the default model's config and tokenizer, no weights), so that nothing
needs the 538 MB of real weights. Speed and memory are the real architecture's; hidden-state values and losses
are not the real model's (the bf16-vs-fp32 differences below are those of random weights: an order of magnitude).

Everything goes through the package: device and dtype from ``reprank.lm.models.pick_device`` / ``pick_dtype`` /
``bf16_supported``, hidden states from ``reprank.lm.extraction.extract_hidden_states``, training steps from
``reprank.method.align.dpo_config`` + ``make_trainer`` (a ``ConfidenceDPOTrainer``, LoRA r16 on all linear layers) on
in-memory (prompt, chosen, rejected) pairs made from ``data/``. Measured:

* extraction tokens/s on CUDA in fp32 and in ``pick_dtype``'s choice (bf16 on an H100), and on the CPU in fp32;
  the end-token states of bf16 vs fp32 and of GPU fp32 vs CPU fp32 (max abs, relative L2, cosine);
* seconds per DPO step (first step left out), for methods ``confidence`` and ``confidence_policy`` (a random
  ``HybridRewardModel``): CUDA fp32, CUDA bf16 weights + bf16 autocast, CUDA bf16 weights with ``dpo_config``'s
  defaults (what ``load_model()`` + notebook 04 do on a GPU), CPU fp32; peak GPU memory, losses finite.

    python benchmarks/bench_gpu.py [--device cpu|cuda|all] [--steps 5] [--cpu-steps N] [--out results.json]

On a lent GPU machine, whose image has torch, accelerate and peft but no trl or datasets (and transformers 5.17):
here, download into a folder ``.whl`` that ``.git/info/exclude`` ignores the wheels of transformers==5.24.0 trl==1.16.0
peft==0.21.2 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 platformdirs==4.14.8 regex==2026.11.19 (pip download
--no-deps, Python 3.12, manylinux x86-64; 17 MB), carry it, and there, in the repo root:

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    PYTHONPATH=/tmp/site:. PYTHONUNBUFFERED=1 python3 benchmarks/bench_gpu.py --cpu-steps 2 --out $OUT/bench_gpu.json

It exits 1 when any part failed (each part's error is in the JSON; the other parts still run).
"""

from __future__ import annotations

import argparse
import copy
import gc
import importlib.metadata
import json
import lzma
import math
import platform
import random
import shutil
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from reprank.lm.extraction import extract_hidden_states
from reprank.base.fileio import read_jsonl
from reprank.lm.models import bf16_supported, pick_device, pick_dtype

ASSETS = Path(__file__).resolve().parent / "smollm2_135m"
DATA = Path(__file__).resolve().parents[1] / "data"  # read directly: the extraction part needs no `datasets`
WEIGHTS = "RANDOM weights (seeded), same architecture as the default model SmolLM2-135M-Instruct"
TINY = {"num_hidden_layers": 1, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 16}  # --tiny, for smoke tests
PACKAGES = ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "tokenizers", "huggingface_hub",
            "pyarrow")


def say(*parts) -> None:
    print(*parts, flush=True)


def load_tokenizer():
    """The default model's tokenizer (chat template included), from the compressed copy in ``ASSETS``."""
    with tempfile.TemporaryDirectory(prefix="bench_gpu_tokenizer_") as tmp:
        folder = Path(tmp)
        for name in ("tokenizer_config.json", "chat_template.jinja"):
            shutil.copy(ASSETS / name, folder / name)
        (folder / "tokenizer.json").write_bytes(lzma.decompress((ASSETS / "tokenizer.json.xz").read_bytes()))
        return AutoTokenizer.from_pretrained(folder)


def build_model(seed: int = 0, **overrides) -> torch.nn.Module:
    """The default model's architecture with random weights (fp32, CPU, eval mode); ``overrides`` change its config."""
    config = AutoConfig.from_pretrained(ASSETS, **overrides)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()


def make_texts(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """n (prompt, response) texts from ``data/``: a benign prompt, and as its 'response' four other prompts joined."""
    prompts = [row["prompt"] for row in read_jsonl(DATA / "benign_prompts.jsonl")]
    rng = random.Random(seed)
    return [rng.choice(prompts) for _ in range(n)], [" ".join(rng.sample(prompts, 4)) for _ in range(n)]


def make_pairs(n: int, seed: int = 0):
    """n preference pairs: a written refusal chosen over a long answer (as re-ranked safety pairs are), a confidence."""
    from datasets import Dataset

    prompts, rejected = make_texts(n, seed)
    refusals, rng = [row["text"] for row in read_jsonl(DATA / "refusals.jsonl")], random.Random(seed + 1)
    return Dataset.from_dict({"prompt": prompts, "chosen": [rng.choice(refusals) for _ in range(n)],
                              "rejected": rejected, "confidence": [rng.uniform(0.6, 1.0) for _ in range(n)]})


def time_extraction(base, device, dtype, tokenizer, prompts, responses, args) -> tuple[np.ndarray, dict]:
    """Best of ``args.repeats`` full passes of ``extract_hidden_states`` (all layers, end token), after a warm-up."""
    model = copy.deepcopy(base).to(device, dtype)
    kwargs = {"batch_size": args.batch_size, "max_batch_tokens": args.max_batch_tokens,
              "max_response_tokens": args.max_response_tokens, "progress": False}
    extract_hidden_states(model, tokenizer, prompts[: args.batch_size], responses[: args.batch_size], **kwargs)
    best = math.inf
    for _ in range(args.repeats):
        start = time.perf_counter()
        states = extract_hidden_states(model, tokenizer, prompts, responses, **kwargs)
        best = min(best, time.perf_counter() - start)
    tokens = int(states.n_tokens.sum())
    return states.end, {"texts": len(prompts), "tokens": tokens, "seconds": best, "tokens_per_s": tokens / best}


def compare(test: np.ndarray, ref: np.ndarray) -> dict:
    """How far end-token states ``test`` are from ``ref`` (n, layers, d): max abs, relative L2, cosine per vector."""
    t, r = test.astype(np.float64), ref.astype(np.float64)
    diff = t - r
    cos = (t * r).sum(-1) / (np.linalg.norm(t, axis=-1) * np.linalg.norm(r, axis=-1) + 1e-30)
    per_layer = np.sqrt((diff ** 2).sum((0, 2)) / (r ** 2).sum((0, 2)))
    return {"max_abs": float(np.abs(diff).max()), "ref_max_abs": float(np.abs(r).max()),
            "rel_l2": float(np.linalg.norm(diff) / np.linalg.norm(r)), "worst_layer_rel_l2": float(per_layer.max()),
            "cos_min": float(cos.min()), "cos_mean": float(cos.mean())}


class StepTimer(TrainerCallback):
    """Wall time of each optimizer step (the GPU synchronized at both ends)."""

    def __init__(self, cuda: bool):
        self.cuda, self.seconds, self.start = cuda, [], 0.0

    def _now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_step_begin(self, *args, **kwargs):
        self.start = self._now()

    def on_step_end(self, *args, **kwargs):
        self.seconds.append(self._now() - self.start)


def run_dpo(base, tokenizer, device, dtype, method: str, steps: int, args, **precision) -> dict:
    """``steps`` + 1 LoRA-DPO steps (the first is warm-up) with ``method``, the model's weights in ``dtype``."""
    import datasets

    from reprank.method import align
    from reprank.method.reward import HybridRewardModel

    datasets.disable_progress_bars()
    torch.manual_seed(args.seed)
    model, reward, cuda = copy.deepcopy(base).to(device, dtype), None, device.type == "cuda"
    if method == "confidence_policy":  # a random reward model, trained on the policy's states as it goes
        reward = HybridRewardModel(base.config.num_hidden_layers, base.config.hidden_size)
        torch.nn.init.normal_(reward.probe_weight, std=base.config.hidden_size ** -0.5)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory(prefix="bench_gpu_dpo_") as out:  # the trainer's output_dir (nothing saved)
        config = align.dpo_config(out, max_steps=steps + 1, disable_tqdm=True, max_length=args.max_length,
                                  per_device_train_batch_size=args.train_batch, **precision)
        start = time.perf_counter()  # make_trainer includes the one-off reference pass (precompute_ref_log_probs)
        trainer = align.make_trainer(model, tokenizer, make_pairs((steps + 1) * args.train_batch, args.seed),
                                     method=method, config=config, reward_model=reward,
                                     train_reward_model=reward is not None)
        setup, timer = time.perf_counter() - start, StepTimer(cuda)
        trainer.add_callback(timer)
        trainer.train()
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row and "train_runtime" not in row]
    lora = [p for name, p in trainer.model.named_parameters() if "lora_" in name]
    return {"method": method, "trainer_device": str(trainer.args.device), "weights": str(dtype).removeprefix("torch."),
            "mixed_precision": str(trainer.accelerator.mixed_precision), "timed_steps": len(timer.seconds) - 1,
            "s_per_step": float(np.mean(timer.seconds[1:])) if len(timer.seconds) > 1 else None,
            "first_step_s": timer.seconds[0], "setup_s": setup, "losses": losses,
            "finite": all(map(math.isfinite, losses)) and all(bool(torch.isfinite(p).all()) for p in lora),
            "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2 ** 20 if cuda else None}


def environment() -> dict:
    """Package versions, the CPU, torch's threads and fp32 matmul precision, the GPU if any."""
    info = {"python": platform.python_version(), "torch_cuda": torch.version.cuda}
    for name in PACKAGES:
        try:
            info[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            info[name] = None
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")]
    info.update(cpu=names[0] if names else platform.processor(), torch_threads=torch.get_num_threads(),
                fp32_matmul_precision=torch.get_float32_matmul_precision())
    if torch.cuda.is_available():
        info.update(gpu=torch.cuda.get_device_name(), capability=".".join(map(str, torch.cuda.get_device_capability())))
    return info


def attempt(report: dict, section: str, name: str, fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, returning a row or (result, row); the row (or the error) goes into ``report[section]``.
    Returns the result, or None."""
    say(f"[{section}] {name} ...")
    try:
        result = fn(*args, **kwargs)
        result, row = result if isinstance(result, tuple) else (None, result)
    except Exception as exc:  # noqa: BLE001  one failing part must not cost the others' numbers on a one-shot machine
        traceback.print_exc()
        result, row = None, {"error": f"{type(exc).__name__}: {exc}"}
    report[section].append({"run": name, **row})
    say(f"[{section}] {name}: {json.dumps(row, default=str)}")
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return result


def print_tables(report: dict) -> None:
    say(f"\n== {report['weights']}\n== package picks: {report['picked']}\n== {report['environment']}")
    say(f"{'extraction':16s} {'texts':>5s} {'tokens':>7s} {'s':>7s} {'tok/s':>9s}")
    for r in report["extraction"]:
        say(f"{r['run']:16s} " + (r.get("error") or
                                   f"{r['texts']:5d} {r['tokens']:7d} {r['seconds']:7.2f} {r['tokens_per_s']:9.0f}"))
    say(f"{'end states':28s} {'max|d|':>8s} {'max|ref|':>8s} {'rel L2':>8s} {'worst lyr':>9s} {'cos min':>8s} cos mean")
    for name, c in report["compare"].items():
        say(f"{name:28s} {c['max_abs']:8.3g} {c['ref_max_abs']:8.3g} {c['rel_l2']:8.2e} {c['worst_layer_rel_l2']:9.2e} "
            f"{c['cos_min']:8.5f} {c['cos_mean']:.5f}")
    say(f"{'dpo':34s} {'method':17s} {'s/step':>7s} {'1st s':>6s} {'setup s':>7s} {'peak MiB':>8s} loss 1st->last, ok")
    for r in report["dpo"]:
        say(f"{r['run']:34s} " + (r.get("error") or (
            f"{r['method']:17s} {r['s_per_step'] or math.nan:7.3f} {r['first_step_s']:6.2f} {r['setup_s']:7.2f} "
            f"{r['peak_gpu_mib'] or math.nan:8.0f} {r['losses'][0]:.4f}->{r['losses'][-1]:.4f}, {r['finite']}")))


def plan(args, use_cuda: bool, half: torch.dtype | None) -> tuple[list, list]:
    """The extraction runs (device, dtype) and the DPO runs (name, device, weights dtype, method, steps, precision)."""
    cuda, cpu, name = torch.device("cuda"), torch.device("cpu"), str(half).removeprefix("torch.")
    methods = [m for m in args.methods.split(",") if m]
    cpu_steps = args.steps if args.cpu_steps is None else args.cpu_steps
    runs = [(cuda, torch.float32), (cuda, half)] if use_cuda else []
    runs += [(cpu, torch.float32)] if args.device != "cuda" else []
    gpu = {"use_cpu": False, "bf16": False, "fp16": False}  # dpo_config's defaults are the CPU's: say GPU and precision
    mixed = {**gpu, "bf16": half == torch.bfloat16, "fp16": half == torch.float16}
    trainings = []
    for method in methods:
        if use_cuda:
            trainings += [("cuda fp32", cuda, torch.float32, method, args.steps, gpu),
                          (f"cuda {name} + autocast", cuda, half, method, args.steps, mixed)]
            if method == methods[0]:  # what load_model() + dpo_config() give on a GPU (notebook 04 on Colab)
                trainings.append((f"cuda {name}, dpo_config defaults", cuda, half, method, args.steps, {}))
        if args.device != "cuda":
            trainings.append(("cpu fp32", cpu, torch.float32, method, cpu_steps, {"use_cpu": True}))
    return runs, trainings


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda", "all"), default="all",
                        help="all: CUDA (if present) and CPU")
    parser.add_argument("--steps", type=int, default=5, help="timed DPO steps per CUDA run (after one warm-up step)")
    parser.add_argument("--cpu-steps", type=int, default=None, help="timed DPO steps per CPU run (default: --steps)")
    parser.add_argument("--methods", default="confidence,confidence_policy", help="make_trainer methods to train")
    parser.add_argument("--texts", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32, help="extraction texts per batch")
    parser.add_argument("--max-batch-tokens", type=int, default=8192,
                        help="extraction padded tokens per batch (at the default lengths --batch-size binds)")
    parser.add_argument("--max-response-tokens", type=int, default=80)
    parser.add_argument("--repeats", type=int, default=2, help="extraction passes; the best is reported")
    parser.add_argument("--train-batch", type=int, default=4, help="pairs per DPO step")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--tiny", action="store_true",
                        help="smoke tests only: a 1-layer, 64-wide model (same vocabulary)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write every number as JSON here (rewritten after each part)")
    args = parser.parse_args(argv)
    auto = pick_device()
    report = {"weights": WEIGHTS, "args": vars(args), "environment": environment(),
              "picked": {"pick_device": str(auto), "pick_dtype": str(pick_dtype(auto)),
                         "bf16_supported": bf16_supported()},
              "extraction": [], "compare": {}, "dpo": []}
    say(f"bench_gpu: {WEIGHTS}: timings are the architecture's; hidden states and losses are not the model's")
    say(f"package picks: {report['picked']}\nenvironment: {report['environment']}")

    def save():
        if args.out:
            Path(args.out).write_text(json.dumps(report, indent=2, default=str))

    use_cuda = args.device in ("cuda", "all") and torch.cuda.is_available()
    if args.device == "cuda" and not use_cuda:
        say("no CUDA on this machine: the CUDA parts are skipped")
    half = pick_dtype(torch.device("cuda")) if use_cuda else None
    runs, trainings = plan(args, use_cuda, half)
    tokenizer = load_tokenizer()
    base = build_model(args.seed, **(TINY if args.tiny else {}))
    prompts, responses = make_texts(args.texts, args.seed)

    states = {}
    for device, dtype in runs:
        name = f"{device.type} {str(dtype).removeprefix('torch.')}"
        states[name] = attempt(report, "extraction", name, time_extraction, base, device, dtype, tokenizer, prompts,
                               responses, args)
        save()
    for test, ref in [(f"cuda {str(half).removeprefix('torch.')}", "cuda float32"), ("cuda float32", "cpu float32")]:
        if states.get(test) is not None and states.get(ref) is not None:
            report["compare"][f"{test} vs {ref}"] = compare(states[test], states[ref])

    for name, device, dtype, method, steps, precision in trainings:
        attempt(report, "dpo", name, run_dpo, base, tokenizer, device, dtype, method, steps, args, **precision)
        save()
    print_tables(report)
    save()
    return int(any("error" in r for r in report["extraction"] + report["dpo"]))


if __name__ == "__main__":
    raise SystemExit(main())
