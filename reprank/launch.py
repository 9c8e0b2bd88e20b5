"""Hidden-state extraction and DPO training, data-parallel under ``accelerate launch`` (or as one process).

The notebooks run everything in one process. For many prompts or a bigger model, the two steps that dominate
also run on several GPUs (or CPU processes) with the same package code::

    accelerate launch --config_file configs/accelerate/multi_gpu.yaml -m reprank.launch extract \\
        --rows rows.jsonl --out hidden.npz
    accelerate launch --config_file configs/accelerate/multi_gpu.yaml -m reprank.launch train \\
        --pairs pairs.jsonl --out adapter/ --method confidence --max_steps 200

``extract`` reads JSONL rows with ``prompt`` and ``response`` fields, gives each process a contiguous share of
the rows (``PartialState.split_between_processes``), runs ``reprank.lm.extraction.extract_hidden_states`` on it,
gathers the shares on the main process in the original row order and writes one ``.npz`` (``end``, optionally
``mean``, ``layers``, ``n_tokens``; float32 whatever the device). ``train`` reads a pairs JSONL
(``reprank.data.pairs.load_pairs_jsonl``) and calls ``reprank.method.align.train_dpo``. Its flags are reprank's own
(``ReprankTrainArgs``: ``--pairs``, ``--out``, ``--method``, ``--nll_weight`` ...) plus every field of TRL's
``DPOConfig`` under its own name (``--learning_rate``, ``--max_steps``, ``--per_device_train_batch_size``,
``--beta``, ``--max_length``, ``--seed``, ...; transformers' parser also accepts ``--max-steps`` etc.), read by
``transformers.HfArgumentParser`` with reprank's defaults (``align.training_defaults()``) where none is given.
Those defaults, and those of ``--nll_weight``, ``--alpha`` and ``--tau``, come from ``reprank.base.defaults``, as the
notebooks' do: ``train`` without flags trains with notebook 04's settings, its NLL term included.
TRL's trainer does the data-parallel part itself (each process sees its own batches, gradients are averaged),
so ``--per_device_train_batch_size`` is per process. The main process saves the LoRA adapter (and the
tokenizer) in ``--out`` with a ``train_summary.json``.

Without ``accelerate launch`` both subcommands run as a single process: ``python -m reprank.launch ...``.
Without a GPU, several processes talk over gloo (``configs/accelerate/cpu_2proc.yaml``, used by the tests).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from reprank.base import defaults

from reprank.lm.models import DEFAULT_MODEL


def distributed_state():
    """The process's ``accelerate.PartialState``: gloo over CPU processes when there is no GPU, else NCCL.

    ``accelerate launch`` starts several CPU processes through its multi-GPU launcher (torchrun) but tells
    them nothing about the CPU; asking for ``cpu=True`` when CUDA is absent makes them one gloo group.
    """
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def read_rows(path: str | Path) -> list[dict]:
    """JSONL rows, each with non-empty string fields ``prompt`` and ``response``."""
    from reprank.base.fileio import FileFormatError, read_jsonl

    rows = read_jsonl(path)
    for number, row in enumerate(rows, start=1):
        for field in ("prompt", "response"):
            if not isinstance(row.get(field), str):
                raise FileFormatError(f"{path}, line {number}: needs a string field '{field}'")
    if not rows:
        raise FileFormatError(f"{path}: no rows")
    return rows


def _layers(value: str) -> list[int] | None:
    return None if value == "all" else [int(v) for v in value.split(",")]


# ----------------------------------------------------------------------------------------------- extract


def extract(args: argparse.Namespace) -> Path:
    from accelerate.utils import gather_object

    from reprank.lm.extraction import extract_hidden_states
    from reprank.lm.models import load_model

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


@dataclass
class ReprankTrainArgs:
    """``launch train``'s own flags; everything else is a ``DPOConfig`` field (see the module docstring)."""

    pairs: str = field(metadata={"help": "pairs JSONL (prompt, chosen, rejected[, confidence])"})
    out: str = field(metadata={"help": "folder for the adapter, tokenizer and train_summary.json"})
    method: str = field(default="dpo", metadata={"help": "the preference loss (one of align.METHODS)"})
    split: str | None = field(default=None, metadata={"help": "train only on pairs of this split (default: all)"})
    epsilon: float | None = field(default=None, metadata={"help": "label smoothing for --method dpo_smoothing"})
    nll_weight: float = field(default=defaults.NLL_WEIGHT,
                              metadata={"help": "weight of TRL's 'sft' (chosen NLL) loss term (0: none)"})
    reward_model: str | None = field(default=None, metadata={"help": "HybridRewardModel file, for confidence_policy, paper and paper_pair"})
    alpha: float = field(default=defaults.ALPHA,
                         metadata={"help": "sharpness of the paper's p (notebook 02 fits one: confidence.json)"})
    tau: float = field(default=defaults.PAIR_TAU,
                       metadata={"help": "scale of paper_pair's per-pair p (notebook 02 fits one: confidence.json)"})
    model_id: str = field(default=DEFAULT_MODEL, metadata={"help": "the policy model (default: the offline default)"})
    dtype: str = field(default="auto", metadata={"help": "auto (GPU: bf16, else fp16; CPU: fp32), float32, ..."})
    quiet: bool = field(default=False, metadata={"help": "no progress bars or summary line"})


# launch-only defaults on top of reprank's: every LoRA weight gets a gradient, so skip DDP's extra graph walk;
# the output folder defaults to OUT/trainer; gradient_checkpointing (transformers 5's deprecated alias of
# activation_checkpointing, which TRL defaults to True) counts only when given.
LAUNCH_DEFAULTS = {"ddp_find_unused_parameters": False, "output_dir": None, "gradient_checkpointing": None}


def split_train_args(args: argparse.Namespace):
    """The parsed namespace -> ``(ReprankTrainArgs, DPOConfig)``, the DPOConfig built by ``align.dpo_config``."""
    from trl import DPOConfig

    from reprank.method import align

    values = vars(args)
    ours = ReprankTrainArgs(**{f.name: values[f.name] for f in dataclasses.fields(ReprankTrainArgs)})
    dpo = {f.name: values[f.name] for f in dataclasses.fields(DPOConfig) if f.init and f.name in values}
    dpo["output_dir"] = dpo["output_dir"] or str(Path(ours.out) / "trainer")
    dpo["disable_tqdm"] = True if ours.quiet else dpo["disable_tqdm"]
    return ours, align.dpo_config(nll_weight=ours.nll_weight, **dpo)


def train(args: argparse.Namespace) -> Path:
    from reprank.method import align
    from reprank.data.pairs import load_pairs_jsonl
    from reprank.lm.models import load_model

    state = distributed_state()
    args, config = split_train_args(args)
    pairs = load_pairs_jsonl(args.pairs, seed=config.seed)
    if args.split:
        pairs = pairs.filter(lambda row: row["split"] == args.split)
        if len(pairs) == 0:
            raise ValueError(f"{args.pairs}: no pairs in split '{args.split}'")
    kwargs = {}
    if args.method == "dpo_smoothing":
        kwargs["epsilon"] = args.epsilon
    if args.method in align.POLICY_METHODS:  # checked before the model loads
        if not args.reward_model:
            raise SystemExit(f"--method {args.method} needs --reward-model (a saved HybridRewardModel)")
        from reprank.method.reward import HybridRewardModel

        kwargs["reward_model"] = HybridRewardModel.load(args.reward_model)
        kwargs["alpha"], kwargs["tau"] = args.alpha, args.tau
    loaded = load_model(args.model_id, device=state.device, dtype=args.dtype)
    out = Path(args.out)
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
            "per_device_batch_size": config.per_device_train_batch_size,
            "global_batch_size": config.per_device_train_batch_size * config.gradient_accumulation_steps
            * state.num_processes,
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
    from transformers import HfArgumentParser
    from trl import DPOConfig

    from reprank.method.align import METHODS, training_defaults

    p = argparse.ArgumentParser(prog="python -m reprank.launch",
                                description="Data-parallel extraction and DPO training (run under accelerate launch).")
    # transformers' dataclass parser for the subcommands: "train" reads ReprankTrainArgs and DPOConfig with it.
    sub = p.add_subparsers(dest="command", required=True, parser_class=HfArgumentParser)

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

    # Every DPOConfig field is a train flag, with reprank's defaults (align.training_defaults, from
    # reprank.base.defaults) replacing TRL's where the user gives none.
    tr = sub.add_parser("train", help="LoRA DPO (or a confidence-aware variant) on a pairs JSONL -> adapter folder",
                        dataclass_types=[ReprankTrainArgs, DPOConfig])
    tr.set_defaults(**training_defaults(), **LAUNCH_DEFAULTS)
    for action in tr._actions:  # the method list lives in align; a dataclass field cannot import it lazily
        if action.dest == "method":
            action.choices = METHODS
    tr.set_defaults(func=train)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from reprank.base.errors import EXIT_USER_ERROR, UserError

    args = parser().parse_args(argv)
    try:
        args.func(args)
    except UserError as exc:  # a bad rows or pairs file: one line, as from `reprank`
        print(f"reprank.launch: error: {exc}", file=sys.stderr, flush=True)
        return EXIT_USER_ERROR
    finally:
        state = distributed_state()
        if state.use_distributed:
            state.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
