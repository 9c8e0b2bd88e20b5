"""``reprank evaluate``: judge a model's (optionally adapted) answers to a prompt file.

Everything a user can get wrong is checked before the model loads, and reported as one
:class:`~reprank.base.errors.UserError` line naming what to fix: the prompt file (missing, not UTF-8, a bad line,
row or field), the ``--adapter`` folder, a ``--model`` that cannot load offline, and an ``--output`` folder
that is not new. The command line prints that line and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from reprank.base.errors import UserError
from reprank.base.fileio import atomic_write_json, new_output_folder


def check_adapter(adapter: str | Path | None) -> Path | None:
    """The ``--adapter`` folder, if it is one PEFT can load (it holds ``adapter_config.json``)."""
    if adapter is None:
        return None
    path = Path(adapter).expanduser()
    hint = "give the folder a training run saved its LoRA adapter in (e.g. runs/<run>/adapters/confidence)"
    if not path.is_dir():
        raise UserError(f"--adapter {path}: folder not found; {hint}")
    if not (path / "adapter_config.json").is_file():
        raise UserError(f"--adapter {path}: no adapter_config.json in it, so it is not a PEFT adapter; {hint}")
    return path


def _check_numbers(args: argparse.Namespace) -> None:
    for option, value in (("--max-new-tokens", args.max_new_tokens), ("--batch-size", args.batch_size)):
        if value < 1:
            raise UserError(f"{option} must be at least 1, got {value}")


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Args: model, adapter, prompts, output, max_new_tokens, batch_size, seed (as ``reprank evaluate`` parses)."""
    from reprank.measure.evaluate import RefusalClassifier, evaluate_model, read_prompt_file
    from reprank.lm.models import check_model_id, load_model
    from reprank.running.runs import new_run_dir

    # The cheap checks first: a typo should cost a second, not a model load.
    prompts = read_prompt_file(args.prompts)
    adapter = check_adapter(args.adapter)
    check_model_id(args.model)
    _check_numbers(args)
    out = new_output_folder(args.output, what="evaluate") if args.output else new_run_dir(prefix="evaluate-")
    try:
        loaded = load_model(args.model)
    except BaseException:
        if not any(out.iterdir()):  # leave no empty folder behind: the same --output works once fixed
            out.rmdir()
        raise
    model = loaded.model
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload().eval()
    judged, summary = evaluate_model(
        model, loaded.tokenizer, list(prompts.prompt[prompts.harmful]), list(prompts.prompt[~prompts.harmful]),
        classifier=RefusalClassifier.fit_on_human_labels(), max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size, seed=args.seed)
    judged.to_json(out / "responses.jsonl", orient="records", lines=True)
    summary = {"model": args.model, "adapter": args.adapter, "prompts": str(args.prompts), **summary}
    atomic_write_json(out / "summary.json", summary)
    print(json.dumps(summary, indent=2))
    print(f"[reprank] per-prompt responses and verdicts: {out / 'responses.jsonl'}")
    return 0
