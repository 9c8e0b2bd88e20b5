"""Command line: ``reprank run`` executes the notebook series with papermill into a new run folder."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import yaml

from .runs import environment_record, new_run_dir, repo_root


def notebooks_dir() -> Path:
    return repo_root() / "notebooks"


def profiles_dir() -> Path:
    return repo_root() / "profiles"


def list_notebooks() -> list[Path]:
    return sorted(notebooks_dir().glob("[0-9][0-9]_*.ipynb"))


def load_profile(name: str) -> dict:
    path = profiles_dir() / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in profiles_dir().glob("*.yaml")))
        raise SystemExit(f"Unknown profile '{name}' (looked for {path}); known profiles: {known}")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise SystemExit(f"{path}: a profile must be a mapping of notebook parameters to values")
    return values


def parse_overrides(items: list[str]) -> dict:
    """``key=value`` pairs; values are read as YAML (so 3, 0.1, true, [1, 2] keep their types)."""
    overrides = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"--set expects key=value, got '{item}'")
        key, value = item.split("=", 1)
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


def select_notebooks(only: list[str] | None) -> list[Path]:
    notebooks = list_notebooks()
    if not only:
        return notebooks
    chosen = [nb for nb in notebooks if any(nb.name.startswith(prefix) for prefix in only)]
    if not chosen:
        raise SystemExit(f"No notebook matches {only}; available: {[nb.name for nb in notebooks]}")
    return chosen


def kernel_environment() -> None:
    """Make papermill's ``python3`` kernel this interpreter's, whatever other kernels the machine has."""
    share = Path(sys.prefix) / "share" / "jupyter"
    os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(share), os.environ.get("JUPYTER_PATH")]))


def execute_series(notebooks: list[Path], parameters: dict, run_dir: Path, progress: bool = True) -> list[dict]:
    """Run notebooks in order into ``run_dir``; each gets the parameters it declares."""
    import papermill

    kernel_environment()
    results = []
    for notebook in notebooks:
        declared = papermill.inspect_notebook(str(notebook))
        given = {k: v for k, v in parameters.items() if k in declared}
        given["output_dir"] = str(run_dir.resolve())
        start = time.perf_counter()
        print(f"[reprank] {notebook.name} -> {run_dir / notebook.name}", flush=True)
        papermill.execute_notebook(
            str(notebook),
            str(run_dir / notebook.name),
            parameters=given,
            kernel_name="python3",
            cwd=str(notebook.parent),
            progress_bar=progress,
        )
        results.append({"notebook": notebook.name, "parameters": given, "seconds": round(time.perf_counter() - start, 1)})
    return results


def cmd_run(args: argparse.Namespace) -> int:
    parameters = load_profile(args.profile)
    parameters.update(parse_overrides(args.set or []))
    notebooks = select_notebooks(args.notebooks)
    unknown = _unknown_parameters(parameters, notebooks)
    if unknown:
        raise SystemExit(f"Parameters {sorted(unknown)} are not parameters of any selected notebook")
    run_dir = new_run_dir(args.runs_root, prefix=f"{args.profile}-")
    record = {"profile": args.profile, "parameters": parameters, "notebooks": [nb.name for nb in notebooks],
              **environment_record()}
    (run_dir / "run.json").write_text(json.dumps(record, indent=2))
    print(f"[reprank] run folder: {run_dir}", flush=True)
    results = execute_series(notebooks, parameters, run_dir, progress=not args.quiet)
    record["timings"] = results
    (run_dir / "run.json").write_text(json.dumps(record, indent=2))
    print(f"[reprank] done: executed notebooks, figures/ and metrics.json are in {run_dir}", flush=True)
    return 0


def _unknown_parameters(parameters: dict, notebooks: list[Path]) -> set[str]:
    import papermill

    declared = set()
    for notebook in notebooks:
        declared |= set(papermill.inspect_notebook(str(notebook)))
    return set(parameters) - declared


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import RefusalClassifier, evaluate_model, read_prompt_file
    from .models import load_model

    prompts = read_prompt_file(args.prompts)
    out = Path(args.output) if args.output else new_run_dir(prefix="evaluate-")
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} exists and is not empty; evaluations never overwrite: pick a new --output")
    out.mkdir(parents=True, exist_ok=True)
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
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    print(f"[reprank] per-prompt responses and verdicts: {out / 'responses.jsonl'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reprank", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute the notebook series into a new run folder")
    run.add_argument("--profile", default="cpu", help="profiles/<name>.yaml (default: cpu)")
    run.add_argument("--notebooks", nargs="*", help="only these notebooks (prefixes such as 01 02)")
    run.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="override profile parameters")
    run.add_argument("--runs-root", default=None, help="parent folder of run folders (default: runs/)")
    run.add_argument("--quiet", action="store_true", help="no papermill progress bar")
    run.set_defaults(func=cmd_run)
    ev = sub.add_parser("evaluate", help="judge a model's answers to a prompt file (refusals, over-refusals)")
    ev.add_argument("--model", default="smollm2-135m-gguf", help="model id, local folder, or the offline default")
    ev.add_argument("--adapter", default=None, help="a saved PEFT (LoRA) adapter folder to apply")
    ev.add_argument("--prompts", required=True,
                    help="JSONL with a 'prompt' field (optional boolean 'harmful'), or a text file, one per line")
    ev.add_argument("--output", default=None, help="new folder for responses.jsonl and summary.json")
    ev.add_argument("--max-new-tokens", type=int, default=64)
    ev.add_argument("--batch-size", type=int, default=16)
    ev.add_argument("--seed", type=int, default=0)
    ev.set_defaults(func=cmd_evaluate)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())


def ensure_step(run_dir: str | Path, prefix: str, section: str, parameters: dict) -> dict:
    """Make sure an earlier notebook's results are in ``run_dir``; if not, execute that notebook there.

    This is how a notebook runs alone: it rebuilds what it needs with the same parameters, in its own
    run folder, by running the earlier lesson itself (one source of truth, no copied code).
    """
    from .runs import read_metrics

    run_dir = Path(run_dir)
    if section not in read_metrics(run_dir):
        notebook = next(nb for nb in list_notebooks() if nb.name.startswith(prefix))
        print(f"[reprank] {section} missing in {run_dir}: running {notebook.name} first", flush=True)
        execute_series([notebook], parameters, run_dir, progress=False)
    return read_metrics(run_dir)[section]
