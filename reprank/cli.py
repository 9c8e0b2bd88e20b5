"""Command line: ``reprank run`` executes the notebook series with papermill into a new run folder;
``reprank sweep`` runs a grid of such runs; ``reprank report`` compares run folders."""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import os
import shutil
import sys
import time
from pathlib import Path

import yaml

from .runs import (environment_record, new_run_dir, read_metrics, read_run_record, repo_root,
                   write_run_record)


def notebooks_dir() -> Path:
    """The lessons' folder; ``REPRANK_NOTEBOOKS`` points elsewhere (the tests use small fake notebooks)."""
    return Path(os.environ.get("REPRANK_NOTEBOOKS") or repo_root() / "notebooks")


def profiles_dir() -> Path:
    return repo_root() / "profiles"


def list_notebooks() -> list[Path]:
    return sorted(notebooks_dir().glob("[0-9][0-9]_*.ipynb"))


def load_profile(name: str) -> dict:
    """``profiles/<name>.yaml``, or a YAML file given by its path (``my/profile.yaml``)."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else profiles_dir() / f"{name}.yaml"
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


class NotebookFailed(RuntimeError):
    """A notebook of a run raised: which notebook, which cell, what error, and where the executed copy is."""

    def __init__(self, notebook: str, output: str, cell_index: int | None = None, exec_count: int | None = None,
                 ename: str = "", evalue: str = "", source: str = ""):
        self.notebook, self.output, self.cell_index, self.exec_count = notebook, output, cell_index, exec_count
        self.ename, self.evalue, self.source = ename, evalue, source
        super().__init__(self.summary())

    def summary(self) -> str:
        return (f"{self.notebook} failed{self.where()}: {self.ename}: {self.evalue} "
                f"-- the executed notebook: {self.output}")

    def where(self) -> str:
        """The failing cell as Jupyter shows it, ``In [n]`` (papermill's ``cell_index`` also counts its
        injected-parameters cell but not the error banners it adds to the executed notebook)."""
        if self.cell_index is None:
            return ""
        return f" in cell In [{self.exec_count}] ({_first_line(self.source)!r})"

    def to_dict(self) -> dict:
        return {"notebook": self.notebook, "output": self.output, "cell_index": self.cell_index,
                "exec_count": self.exec_count, "ename": self.ename, "evalue": self.evalue,
                "cell_first_line": _first_line(self.source), "summary": self.summary()}


def _first_line(source: str) -> str:
    return next((line.strip() for line in source.splitlines() if line.strip()), "")[:80]


def execute_series(notebooks: list[Path], parameters: dict, run_dir: Path, progress: bool = True,
                   timings: list | None = None) -> list[dict]:
    """Run notebooks in order into ``run_dir``; each gets the parameters it declares.

    Each finished notebook appends ``{notebook, parameters, seconds}`` to ``timings`` (returned). A notebook
    that raises stops the series with :class:`NotebookFailed`; papermill has already written the executed
    notebook, error included, into ``run_dir``.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    kernel_environment()
    timings = [] if timings is None else timings
    for notebook in notebooks:
        declared = declared_parameters(notebook)
        given = {k: v for k, v in parameters.items() if k in declared}
        given["output_dir"] = str(run_dir.resolve())
        output = run_dir / notebook.name
        start = time.perf_counter()
        print(f"[reprank] {notebook.name} -> {output}", flush=True)
        try:
            papermill.execute_notebook(str(notebook), str(output), parameters=given, kernel_name="python3",
                                       cwd=str(notebook.parent), progress_bar=progress)
        except PapermillExecutionError as exc:
            raise NotebookFailed(notebook.name, str(output), exc.cell_index, exc.exec_count, exc.ename,
                                 exc.evalue, exc.source or "") from exc
        except Exception as exc:  # the kernel died or never started, the notebook is unreadable, ...
            raise NotebookFailed(notebook.name, str(output), ename=type(exc).__name__, evalue=str(exc)) from exc
        timings.append({"notebook": notebook.name, "parameters": given,
                        "seconds": round(time.perf_counter() - start, 1)})
    return timings


@functools.lru_cache(maxsize=None)
def _declared(path: str, mtime: float) -> frozenset:
    import ast

    cells = json.loads(Path(path).read_text())["cells"]
    source = next(("".join(c["source"]) for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])), "")
    return frozenset(target.id for node in ast.parse(source).body if isinstance(node, (ast.Assign, ast.AnnAssign))
                     for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
                     if isinstance(target, ast.Name))


def declared_parameters(notebook: Path) -> frozenset:
    """The names assigned in a notebook's ``parameters`` cell.

    Read with Python's own parser: papermill's line parser skips a line whose comment holds ``=`` or
    brackets (``layers = "all"  # (1 = first layer)``), which would make such a parameter look unknown.
    """
    return _declared(str(notebook), notebook.stat().st_mtime)


def build_parameters(profile: str, overrides: dict, notebooks: list[Path]) -> dict:
    """A profile's values updated with ``overrides``, checked against the notebooks' parameters.

    A profile describes the whole series, so its keys must be parameters of some notebook of the series;
    an override must be a parameter of a notebook that will run (else it would silently change nothing).
    """
    parameters = load_profile(profile)
    series = set().union(*(declared_parameters(nb) for nb in list_notebooks()))
    unknown = set(parameters) - series
    if unknown:
        raise SystemExit(f"Profile '{profile}': {sorted(unknown)} are not parameters of any notebook")
    selected = set().union(*(declared_parameters(nb) for nb in notebooks))
    unknown = set(overrides) - selected
    if unknown:
        raise SystemExit(f"Parameters {sorted(unknown)} are not parameters of any selected notebook "
                         f"({', '.join(nb.name for nb in notebooks)})")
    parameters.update(overrides)
    return parameters


# What a run folder holds of a finished step: copied by --from-run so a later step need not redo it.
EARLIER_RESULTS = ("artifacts", "cache", "figures", "metrics.json")


def copy_earlier_results(source: str | Path, run_dir: Path, parameters: dict) -> dict:
    """Copy an earlier run's results into ``run_dir`` (which must be new); returns what to record.

    Notebooks see a finished earlier step by its section in ``metrics.json`` (:func:`ensure_step`), so the
    copied metrics and artifacts make them skip that step. Parameters that differ between the earlier run
    and this one are recorded and printed: a changed ``model_id`` there means the copied results do not fit.
    """
    source = Path(source).resolve()
    if not (source / "metrics.json").is_file():
        raise SystemExit(f"--from-run {source}: no metrics.json there, so no finished step to start from")
    copied = []
    for name in EARLIER_RESULTS:
        if (source / name).is_dir():
            shutil.copytree(source / name, run_dir / name)
        elif (source / name).is_file():
            shutil.copy2(source / name, run_dir / name)
        else:
            continue
        copied.append(name)
    earlier = read_run_record(source)
    differ = {key: {"earlier": value, "now": parameters[key]}
              for key, value in earlier.get("parameters", {}).items() if key in parameters and parameters[key] != value}
    if differ:
        print(f"[reprank] note: parameters differ from the run the results come from: {differ}", flush=True)
    return {"path": str(source), "copied": copied, "sections": sorted(read_metrics(source)),
            "git_commit": earlier.get("git_commit"), "parameters_that_differ": differ}


def _now() -> str:
    return dt.datetime.now().isoformat(timespec="seconds")


def start_run(run_dir: Path, profile: str, parameters: dict, notebooks: list[Path],
              from_run: str | Path | None = None, extra: dict | None = None) -> dict:
    """Write ``run.json`` into a new run folder (and copy an earlier run's results when asked).

    ``reprank run`` and every sweep point go through here and :func:`execute_run`: one record format.
    """
    record = {"profile": profile, "parameters": parameters, "notebooks": [nb.name for nb in notebooks],
              **(extra or {}), **environment_record(), "status": "started", "started_at": _now()}
    if from_run:
        record["from_run"] = copy_earlier_results(from_run, run_dir, parameters)
    write_run_record(run_dir, record)
    return record


def execute_run(run_dir: str | Path, progress: bool = True) -> dict:
    """Execute the notebooks that ``run_dir/run.json`` names, with its parameters; record how it went.

    ``run.json`` gets ``timings`` (one entry per finished notebook), ``seconds``, ``finished_at`` and
    ``status``: "done", or "failed" with ``failure`` (notebook, cell index, error, executed notebook).
    """
    run_dir = Path(run_dir)
    record = read_run_record(run_dir)
    notebooks = [notebooks_dir() / name for name in record["notebooks"]]
    record.update(status="running", timings=[])
    write_run_record(run_dir, record)
    start = time.perf_counter()
    try:
        execute_series(notebooks, record["parameters"], run_dir, progress=progress, timings=record["timings"])
        record["status"] = "done"
    except NotebookFailed as exc:
        record.update(status="failed", failure=exc.to_dict())
    record.update(seconds=round(time.perf_counter() - start, 1), finished_at=_now())
    write_run_record(run_dir, record)
    return record


def cmd_run(args: argparse.Namespace) -> int:
    notebooks = select_notebooks(args.notebooks)
    parameters = build_parameters(args.profile, parse_overrides(args.set or []), notebooks)
    run_dir = new_run_dir(args.runs_root, prefix=f"{Path(args.profile).stem}-")
    start_run(run_dir, args.profile, parameters, notebooks, from_run=args.from_run)
    print(f"[reprank] run folder: {run_dir}", flush=True)
    record = execute_run(run_dir, progress=not args.quiet)
    if record["status"] != "done":
        print(f"[reprank] FAILED: {record['failure']['summary']}", file=sys.stderr, flush=True)
        return 1
    print(f"[reprank] done: executed notebooks, figures/ and metrics.json are in {run_dir}", flush=True)
    return 0


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


def _lazy(module: str):
    import importlib

    return importlib.import_module(f"reprank.{module}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reprank", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute the notebook series into a new run folder")
    run.add_argument("--profile", default="cpu", help="profiles/<name>.yaml or a YAML file's path (default: cpu)")
    run.add_argument("--notebooks", nargs="*", help="only these notebooks (prefixes such as 01 02)")
    run.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="override profile parameters")
    run.add_argument("--runs-root", default=None, help="parent folder of run folders (default: runs/)")
    run.add_argument("--from-run", default=None, metavar="DIR",
                     help="start from a copy of an earlier run folder's results (artifacts, cache, figures, metrics)")
    run.add_argument("--quiet", action="store_true", help="no papermill progress bar")
    run.set_defaults(func=cmd_run)
    sweep = sub.add_parser("sweep", help="run a grid of parameter values, one run folder per grid point")
    sweep.add_argument("spec", help="sweep spec YAML (see profiles/sweeps/ and reprank.sweep)")
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
    sweep.set_defaults(func=lambda args: _lazy("sweep").cmd_sweep(args))
    rep = sub.add_parser("report", help="tables, plots and a standalone HTML report across run or sweep folders")
    rep.add_argument("paths", nargs="+", metavar="RUN_OR_SWEEP_DIR")
    rep.add_argument("--output", default=None, help="new folder for the report (default: a new runs/report-<time>/)")
    rep.add_argument("--metric", action="append", default=None,
                     help="a metric to plot (dotted name, or a part of names); repeatable")
    rep.set_defaults(func=lambda args: _lazy("report").cmd_report(args))
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
    run_dir = Path(run_dir)
    if section not in read_metrics(run_dir):
        notebook = next(nb for nb in list_notebooks() if nb.name.startswith(prefix))
        print(f"[reprank] {section} missing in {run_dir}: running {notebook.name} first", flush=True)
        execute_series([notebook], parameters, run_dir, progress=False)
    return read_metrics(run_dir)[section]
