"""Command line: ``reprank run`` executes the notebook series with papermill into a new run folder;
``reprank sweep`` runs a grid of such runs; ``reprank report`` compares run folders; ``reprank evaluate``
judges a model's answers. This module only parses arguments: the work is in the modules it dispatches to."""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import EXIT_USER_ERROR, UserError


def _dispatch(module: str, function: str):
    """Import the command's module only when it runs (``reprank report`` need not load the runner)."""
    return lambda args: getattr(importlib.import_module(f"reprank.{module}"), function)(args)


def _evaluate(args: argparse.Namespace) -> int:
    try:
        from . import evaluate_command
    except ModuleNotFoundError as exc:
        if exc.name != "reprank.evaluate_command":
            raise
        return _evaluate_fallback(args)
    return evaluate_command.cmd_evaluate(args)


def _evaluate_fallback(args: argparse.Namespace) -> int:
    """``reprank evaluate`` until :mod:`reprank.evaluate_command` exists (it is being written separately)."""
    import json
    from pathlib import Path

    from .evaluate import RefusalClassifier, evaluate_model, read_prompt_file
    from .fileio import atomic_write_json, new_output_folder
    from .models import load_model
    from .runs import new_run_dir

    prompts = read_prompt_file(args.prompts)
    out = new_output_folder(args.output, "an evaluation") if args.output else new_run_dir(prefix="evaluate-")
    loaded = load_model(args.model)
    model = loaded.model
    if args.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, args.adapter).merge_and_unload().eval()
    judged, summary = evaluate_model(
        model, loaded.tokenizer, list(prompts.prompt[prompts.harmful]), list(prompts.prompt[~prompts.harmful]),
        classifier=RefusalClassifier.fit_on_human_labels(), max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size, seed=args.seed)
    judged.to_json(out / "responses.jsonl", orient="records", lines=True)
    summary = {"model": args.model, "adapter": args.adapter, "prompts": str(args.prompts), **summary}
    atomic_write_json(out / "summary.json", summary)
    print(json.dumps(summary, indent=2))
    print(f"[reprank] per-prompt responses and verdicts: {Path(out) / 'responses.jsonl'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reprank", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute the notebook series into a new run folder")
    run.add_argument("--profile", default="cpu", help="profiles/<name>.yaml or a YAML file's path (default: cpu)")
    run.add_argument("--notebooks", nargs="*", help="only these notebooks (prefixes such as 01 02)")
    run.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="override profile parameters")
    run.add_argument("--runs-root", default=None, help="parent folder of run folders (default: runs/)")
    run.add_argument("--from-run", default=None, metavar="DIR",
                     help="start from a copy of an earlier run folder's results (artifacts, cache, figures, metrics)")
    run.add_argument("--quiet", action="store_true", help="no papermill progress bar")
    run.set_defaults(func=_dispatch("runner", "cmd_run"))
    sweep = sub.add_parser("sweep", help="run a grid of parameter values, one run folder per grid point")
    sweep.add_argument("spec", help="sweep spec YAML (see profiles/sweeps/ and reprank.sweep)")
    sweep.add_argument("--jobs", type=int, default=1, help="runs at once (default 1: one after another)")
    sweep.add_argument("--runs-root", default=None, help="parent of the sweep folder (default: runs/)")
    sweep.add_argument("--notebooks", nargs="*", help="only these notebooks (overrides the spec's notebooks)")
    sweep.add_argument("--from-run", default=None, metavar="DIR", help="overrides the spec's from_run")
    sweep.set_defaults(func=_dispatch("sweep", "cmd_sweep"))
    rep = sub.add_parser("report", help="tables, plots and a standalone HTML report across run or sweep folders")
    rep.add_argument("paths", nargs="+", metavar="RUN_OR_SWEEP_DIR")
    rep.add_argument("--output", default=None, help="new folder for the report (default: a new runs/report-<time>/)")
    rep.add_argument("--metric", action="append", default=None,
                     help="a metric to plot (dotted name, or a part of names); repeatable")
    rep.set_defaults(func=_dispatch("report", "cmd_report"))
    ev = sub.add_parser("evaluate", help="judge a model's answers to a prompt file (refusals, over-refusals)")
    ev.add_argument("--model", default="smollm2-135m-gguf", help="model id, local folder, or the offline default")
    ev.add_argument("--adapter", default=None, help="a saved PEFT (LoRA) adapter folder to apply")
    ev.add_argument("--prompts", required=True,
                    help="JSONL with a 'prompt' field (optional boolean 'harmful'), or a text file, one per line")
    ev.add_argument("--output", default=None, help="new folder for responses.jsonl and summary.json")
    ev.add_argument("--max-new-tokens", type=int, default=64)
    ev.add_argument("--batch-size", type=int, default=16)
    ev.add_argument("--seed", type=int, default=0)
    ev.set_defaults(func=_evaluate)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a command; an error the user can fix is one line on stderr and exit status 2 (``--debug``: the
    traceback instead)."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as exc:
        if args.debug:
            raise
        print(f"reprank: error: {exc}", file=sys.stderr, flush=True)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
