"""Hidden-state extraction and DPO training, data-parallel under ``accelerate launch`` (or as one process).

The notebooks run everything in one process. For many prompts or a bigger model, the two steps that dominate
also run on several GPUs (or CPU processes) with the same package code::

    accelerate launch --config_file configs/accelerate/multi_gpu.yaml -m reprank.launch extract \\
        --rows rows.jsonl --out hidden.npz
    accelerate launch --config_file configs/accelerate/multi_gpu.yaml -m reprank.launch train \\
        --pairs pairs.jsonl --out adapter/ --method confidence --max-steps 200

``extract`` reads JSONL rows with ``prompt`` and ``response`` fields, gives each process a contiguous share of
the rows (``PartialState.split_between_processes``), runs ``reprank.extraction.extract_hidden_states`` on it,
gathers the shares on the main process in the original row order and writes one ``.npz`` (``end``, optionally
``mean``, ``layers``, ``n_tokens``; float32 whatever the device). ``train`` reads a pairs JSONL
(``reprank.data.load_pairs_jsonl``) and calls ``reprank.align.train_dpo``; TRL's trainer does the
data-parallel part itself (each process sees its own batches, gradients are averaged), so
``--batch-size`` is per process. The main process saves the LoRA adapter (and the tokenizer) in ``--out``
with a ``train_summary.json``.

Without ``accelerate launch`` both subcommands run as a single process: ``python -m reprank.launch ...``.
Without a GPU, several processes talk over gloo (``configs/accelerate/cpu_2proc.yaml``, used by the tests).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .models import DEFAULT_MODEL


def distributed_state():
    """The process's ``accelerate.PartialState``: gloo over CPU processes when there is no GPU, else NCCL.

    ``accelerate launch`` starts several CPU processes through its multi-GPU launcher (torchrun) but tells
    them nothing about the CPU; asking for ``cpu=True`` when CUDA is absent makes them one gloo group.
    """
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def read_rows(path: str | Path) -> list[dict]:
    """JSONL rows, each with non-empty string fields ``prompt`` and ``response``."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            for field in ("prompt", "response"):
                if not isinstance(row.get(field), str):
                    raise ValueError(f"{path}, line {number}: needs a string field '{field}'")
            rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no rows")
    return rows


def _layers(value: str) -> list[int] | None:
    return None if value == "all" else [int(v) for v in value.split(",")]


# ----------------------------------------------------------------------------------------------- extract


def extract(args: argparse.Namespace) -> Path:
    from accelerate.utils import gather_object

    from .extraction import extract_hidden_states
    from .models import load_model

    state = distributed_state()
    rows = read_rows(args.rows)
    loaded = load_model(args.model_id, device=state.device, dtype=args.dtype)
    pools = tuple(args.pools.split(","))
    start = time.perf_counter()
    with state.split_between_processes(list(range(len(rows)))) as mine:
        shard = {"index": list(mine), "end": None, "mean": None, "n_tokens": None, "layers": None}
        if mine:
            states = extract_hidden_states(
                loaded.model, loaded.tokenizer,
                [rows[i]["prompt"] for i in mine], [rows[i]["response"] for i in mine],
                layers=_layers(args.layers), pools=pools, batch_size=args.batch_size,
                max_batch_tokens=args.max_batch_tokens, max_response_tokens=args.max_response_tokens,
                progress=state.is_main_process and not args.quiet,
            )
            shard.update(end=states.end, mean=states.mean, n_tokens=states.n_tokens, layers=states.layers)
    shards = [s for s in gather_object([shard]) if s["index"]]  # in process order = row order
    seconds = time.perf_counter() - start
    out = Path(args.out)
    if state.is_main_process:
        index = [i for s in shards for i in s["index"]]
        assert index == list(range(len(rows))), "shards must come back in row order"
        arrays = {
            "end": np.concatenate([s["end"] for s in shards]).astype(np.float32),
            "n_tokens": np.concatenate([s["n_tokens"] for s in shards]),
            "layers": np.asarray(shards[0]["layers"]),
            "num_processes": np.asarray(state.num_processes),
        }
        if "mean" in pools:
            arrays["mean"] = np.concatenate([s["mean"] for s in shards]).astype(np.float32)
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez(out, **arrays)
        if not args.quiet:
            print(f"{len(rows)} rows on {state.num_processes} process(es) in {seconds:.1f} s -> {out}", flush=True)
    state.wait_for_everyone()
    return out


# ----------------------------------------------------------------------------------------------- train


def train(args: argparse.Namespace) -> Path:
    from . import align, data
    from .models import load_model

    state = distributed_state()
    pairs = data.load_pairs_jsonl(args.pairs, seed=args.seed)
    if args.split:
        pairs = pairs.filter(lambda row: row["split"] == args.split)
        if len(pairs) == 0:
            raise ValueError(f"{args.pairs}: no pairs in split '{args.split}'")
    loaded = load_model(args.model_id, device=state.device, dtype=args.dtype)
    out = Path(args.out)
    config = align.dpo_config(
        out / "trainer",
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        max_length=args.max_length,
        learning_rate=args.learning_rate,
        beta=args.beta,
        nll_weight=args.nll_weight,
        seed=args.seed,
        logging_steps=1,
        disable_tqdm=args.quiet,
        ddp_find_unused_parameters=False,  # every LoRA weight gets a gradient; skip DDP's extra graph walk
    )
    kwargs = {}
    if args.method == "dpo_smoothing":
        kwargs["epsilon"] = args.epsilon
    if args.method == "confidence_policy":
        if not args.reward_model:
            raise SystemExit("--method confidence_policy needs --reward-model (a saved HybridRewardModel)")
        from .reward import HybridRewardModel

        kwargs["reward_model"] = HybridRewardModel.load(args.reward_model)
    start = time.perf_counter()
    trainer, policy = align.train_dpo(loaded.model, loaded.tokenizer, pairs, method=args.method, config=config,
                                      **kwargs)
    seconds = time.perf_counter() - start
    trainer.accelerator.wait_for_everyone()
    if state.is_main_process:
        adapter = trainer.accelerator.unwrap_model(policy)
        adapter.save_pretrained(out)
        loaded.tokenizer.save_pretrained(out)
        losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
        summary = {
            "model_id": args.model_id,
            "method": args.method,
            "pairs": len(pairs),
            "num_processes": state.num_processes,
            "distributed_type": str(state.distributed_type),
            "device": str(state.device),
            "dtype": str(next(loaded.model.parameters()).dtype),
            "steps": trainer.state.global_step,
            "epoch": trainer.state.epoch,  # passes over the pairs, all processes together
            "per_device_batch_size": args.batch_size,
            "global_batch_size": args.batch_size * args.gradient_accumulation_steps * state.num_processes,
            "losses": losses,
            "seconds": seconds,
        }
        (out / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        with contextlib.suppress(OSError):
            (out / "trainer").rmdir()  # the Trainer's output folder stays empty (save_strategy="no")
        if not args.quiet:
            print(f"{summary['steps']} steps on {state.num_processes} process(es) in {seconds:.1f} s -> {out}",
                  flush=True)
    state.wait_for_everyone()
    return out


# ----------------------------------------------------------------------------------------------- CLI


def parser() -> argparse.ArgumentParser:
    from .align import METHODS

    p = argparse.ArgumentParser(prog="python -m reprank.launch",
                                description="Data-parallel extraction and DPO training (run under accelerate launch).")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp):
        sp.add_argument("--model-id", default=DEFAULT_MODEL, help="the policy model (default: the offline default)")
        sp.add_argument("--dtype", default="auto", help="auto (GPU: bf16, else fp16; CPU: fp32), float32, bfloat16 ...")
        sp.add_argument("--quiet", action="store_true", help="no progress bars or summary line")

    ex = sub.add_parser("extract", help="hidden states at the end token of (prompt, response) rows -> one .npz")
    ex.add_argument("--rows", required=True, help="JSONL with 'prompt' and 'response' fields")
    ex.add_argument("--out", required=True, help="the .npz to write")
    ex.add_argument("--layers", default="all", help="'all' or comma-separated hidden-state indices, e.g. 1,5,9")
    ex.add_argument("--pools", default="end", help="'end' or 'end,mean'")
    ex.add_argument("--batch-size", type=int, default=32)
    ex.add_argument("--max-batch-tokens", type=int, default=2048)
    ex.add_argument("--max-response-tokens", type=int, default=128)
    common(ex)
    ex.set_defaults(func=extract)

    tr = sub.add_parser("train", help="LoRA DPO (or a confidence-aware variant) on a pairs JSONL -> adapter folder")
    tr.add_argument("--pairs", required=True, help="pairs JSONL (prompt, chosen, rejected[, confidence])")
    tr.add_argument("--out", required=True, help="folder for the adapter, tokenizer and train_summary.json")
    tr.add_argument("--method", default="dpo", choices=METHODS)
    tr.add_argument("--split", default=None, help="train only on pairs of this split (default: every pair)")
    tr.add_argument("--max-steps", type=int, default=100)
    tr.add_argument("--batch-size", type=int, default=4, help="pairs per process per step")
    tr.add_argument("--gradient-accumulation-steps", type=int, default=1)
    tr.add_argument("--max-length", type=int, default=128)
    tr.add_argument("--learning-rate", type=float, default=5e-4)
    tr.add_argument("--beta", type=float, default=0.1)
    tr.add_argument("--epsilon", type=float, default=None, help="label smoothing for --method dpo_smoothing")
    tr.add_argument("--nll-weight", type=float, default=0.0)
    tr.add_argument("--reward-model", default=None, help="HybridRewardModel file for --method confidence_policy")
    tr.add_argument("--seed", type=int, default=0)
    common(tr)
    tr.set_defaults(func=train)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.func(args)
    finally:
        state = distributed_state()
        if state.use_distributed:
            state.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
