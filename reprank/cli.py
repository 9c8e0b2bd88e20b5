"""Command line: ``reprank run`` executes the notebook series with papermill into a new run folder;
``reprank sweep`` runs a grid of such runs; ``reprank report`` compares run folders; ``reprank evaluate``
judges a model's answers. This module only parses arguments: the work is in the modules it dispatches to."""

from __future__ import annotations

import argparse
import sys

from reprank.base.errors import EXIT_USER_ERROR, UserError


def _run(args: argparse.Namespace) -> int:
    from reprank.running.runner import cmd_run  # each command imports only what it needs: `reprank report` loads no model

    return cmd_run(args)


def _sweep(args: argparse.Namespace) -> int:
    from reprank.running.sweep import cmd_sweep

    return cmd_sweep(args)


def _report(args: argparse.Namespace) -> int:
    from reprank.running.report import cmd_report

    return cmd_report(args)


def _evaluate(args: argparse.Namespace) -> int:
    from reprank.running.evaluate_command import cmd_evaluate

    return cmd_evaluate(args)


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
    run.set_defaults(func=_run)
    sweep = sub.add_parser("sweep", help="run a grid of parameter values, one run folder per grid point")
    sweep.add_argument("spec", help="sweep spec YAML (see profiles/sweeps/ and reprank.running.sweep)")
    sweep.add_argument("--jobs", type=int, default=1, help="local: points at once (default 1: one after another)")
    sweep.add_argument("--runs-root", default=None, help="parent of the sweep folder (default: runs/)")
    sweep.add_argument("--notebooks", nargs="*", help="only these notebooks (overrides the spec's notebooks)")
    sweep.add_argument("--from-run", default=None, metavar="DIR", help="overrides the spec's from_run")
    sweep.add_argument("--executor", default="local", help="where points run, via submitit: local (default) or slurm")
    sweep.add_argument("--partition", default=None, help="slurm: the partition to submit to")
    sweep.add_argument("--time", type=int, default=None, metavar="MINUTES",
                       help="time limit of each point (local default: a week)")
    sweep.add_argument("--gpus-per-node", type=int, default=None,
                       help="GPUs for each point (local default: the GPUs `reprank run` would see)")
    sweep.add_argument("--cpus-per-task", type=int, default=None, help="slurm: CPUs for each point")
    sweep.add_argument("--mem-gb", type=float, default=None, help="slurm: memory for each point, in GB")
    sweep.add_argument("--max-parallel", type=int, default=None,
                       help="points running at once (slurm: the job array's limit; local: same as --jobs)")
    sweep.set_defaults(func=_sweep)
    rep = sub.add_parser("report", help="tables, plots and a standalone HTML report across run or sweep folders")
    rep.add_argument("paths", nargs="+", metavar="RUN_OR_SWEEP_DIR")
    rep.add_argument("--output", default=None, help="new folder for the report (default: a new runs/report-<time>/)")
    rep.add_argument("--metric", action="append", default=None,
                     help="a metric to plot (dotted name, or a part of names); repeatable")
    rep.set_defaults(func=_report)
    ev = sub.add_parser("evaluate", help="judge a model's answers to a prompt file (refusals, over-refusals)")
    ev.add_argument("--model", default="smollm2-135m-gguf", help="model id, local folder, or the offline default")
    ev.add_argument("--adapter", default=None, help="a saved PEFT (LoRA) adapter folder to apply")
    ev.add_argument("--prompts", required=True,
                    help="JSONL with a 'prompt' field (optional boolean 'harmful'), or a text file, one per line")
    ev.add_argument("--output", default=None, help="new folder for responses.jsonl and summary.json")
    ev.add_argument("--max-new-tokens", type=int, default=64)
    ev.add_argument("--batch-size", type=int, default=32)
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
