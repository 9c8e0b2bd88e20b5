"""Sweeps: a grid of parameter values, each point a full run in its own folder.

A sweep spec is a YAML file (examples in ``profiles/sweeps/``)::

    profile: smoke              # base profile (profiles/<name>.yaml); default: cpu
    notebooks: ["04"]           # optional: only these notebooks (prefixes), as `reprank run --notebooks`
    set: {n_harmful: 24}        # optional: fixed overrides for every point
    grid:                       # the cartesian product of these lists is the set of runs
      method: [dpo, confidence]
      seed: [0, 1]
    from_run: runs/smoke-...    # optional: every point starts from a copy of this run's results
    name: my-sweep              # optional: the sweep folder's name; default: the spec file's name

Every key of ``set`` and ``grid`` must be a parameter of a notebook that runs. Relative ``from_run`` paths
are read from the current folder.

Layout: point ``{method: dpo, seed: 1}`` runs into ``<runs-root>/<sweep name>/method=dpo,seed=1/``, an
ordinary run folder whose ``run.json`` also records the sweep (spec and grid point) and, where used, the run
its results were copied from. Each point is one submitit job (:mod:`reprank.running.sweep_jobs`): with
``--executor local`` (default) a process on this machine, ``--jobs`` at once; with ``--executor slurm`` a task
of one SLURM job array (``--partition``, ``--time``, ``--gpus-per-node``, ...). The jobs' stdout and stderr
are in ``<sweep>/.submitit/<job id>/``; ``sweep.json`` lists every point's status, job id and log.

Rerunning a sweep skips every point whose folder holds a finished run (``run.json`` status "done") with the
same profile, parameters, notebooks and ``from_run``. Any other point folder is never overwritten: it is moved
aside to ``<point>.<why>-<YYYYmmdd-HHMMSS>`` (why: ``failed``, ``incomplete`` — interrupted or crashed —
or ``stale`` — finished, but with other parameters than the spec now gives) and the point runs again into a
fresh folder. ``reprank report`` on a sweep folder reads only the finished points, not the moved-aside ones.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from reprank.running import runner
from reprank.base.errors import UserError
from reprank.base.fileio import atomic_write_json, read_text
from reprank.running.runs import read_run_record, run_finished, runs_root, write_run_record
from reprank.running.sweep_jobs import SLURM_ONLY, ExecutorOptions, make_executor, run_jobs

SPEC_KEYS = {"name", "description", "profile", "notebooks", "set", "grid", "from_run"}


@dataclass
class SweepSpec:
    name: str
    profile: str = "cpu"
    notebooks: list[str] | None = None
    set: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)
    from_run: str | None = None
    description: str = ""
    path: str | None = None


@dataclass
class PointResult:
    name: str
    status: str  # done, failed or skipped
    seconds: float
    folder: str
    detail: str = ""
    log: str = ""  # the job's stdout in <sweep>/.submitit/ (stderr beside it)
    job_id: str = ""


def load_spec(path: str | Path) -> SweepSpec:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"No sweep spec at {path}")
    try:
        values = yaml.safe_load(read_text(path)) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(values, dict):
        raise UserError(f"{path}: a sweep spec is a mapping (profile, notebooks, set, grid, from_run)")
    unknown = set(values) - SPEC_KEYS
    if unknown:
        raise UserError(f"{path}: unknown keys {sorted(unknown)}; a sweep spec has {sorted(SPEC_KEYS)}")
    grid = values.get("grid") or {}
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise UserError(f"{path}: grid must map each parameter to a non-empty list of values")
    if not isinstance(values.get("set") or {}, dict):
        raise UserError(f"{path}: set must be a mapping of parameters to values")
    overlap = set(grid) & set(values.get("set") or {})
    if overlap:
        raise UserError(f"{path}: {sorted(overlap)} are both in set and in grid")
    notebooks = values.get("notebooks")
    return SweepSpec(name=str(values.get("name") or path.stem), profile=values.get("profile") or "cpu",
                     notebooks=[str(n) for n in notebooks] if notebooks else None, set=values.get("set") or {},
                     grid=grid, from_run=values.get("from_run"), description=values.get("description") or "",
                     path=str(path.resolve()))


def expand_grid(grid: dict) -> list[dict]:
    """The cartesian product of the grid's lists, in the spec's order (the last key varies fastest)."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def _slug_value(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("_") or "_"


def point_name(point: dict) -> str:
    """A readable, deterministic folder name: ``method=dpo,seed=1`` (``base`` for an empty grid)."""
    return ",".join(f"{key}={_slug_value(value)}" for key, value in point.items()) or "base"


def plan_points(spec: SweepSpec) -> list[tuple[str, dict]]:
    points = [(point_name(p), p) for p in expand_grid(spec.grid)]
    names = [name for name, _ in points]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise UserError(f"Grid values that differ give the same folder name {clashes}; make them distinct")
    return points


def _fingerprint(profile: str, parameters: dict, notebooks: list[str], from_run: str | None) -> str:
    return json.dumps({"profile": profile, "parameters": parameters, "notebooks": notebooks, "from_run": from_run},
                      sort_keys=True, default=str)


def _recorded_fingerprint(record: dict) -> str:
    return _fingerprint(record.get("profile"), record.get("parameters"), record.get("notebooks"),
                        (record.get("from_run") or {}).get("path"))


def _stamp() -> str:
    return dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def move_aside(folder: Path, why: str) -> Path:
    """Rename ``folder`` to ``<folder>.<why>-<time>`` (a new name, never an existing one)."""
    base = folder.with_name(f"{folder.name}.{why}-{_stamp()}")
    target, n = base, 0
    while target.exists():
        n += 1
        target = base.with_name(f"{base.name}-{n}")
    folder.rename(target)
    return target


def _start_point(folder: Path, spec: SweepSpec, name: str, point: dict, parameters: dict, notebooks: list[Path],
                 from_run: str | None) -> PointResult | None:
    """Write the point's run.json (and copy ``from_run``); a failure here fails this point only."""
    sweep = {"name": spec.name, "spec_file": spec.path, "point_name": name, "point": point,
             "spec": {k: v for k, v in asdict(spec).items() if k != "path"}}
    try:
        runner.start_run(folder, spec.profile, parameters, notebooks, from_run=from_run, extra={"sweep": sweep})
    except Exception as exc:  # e.g. the disk filled while copying from_run: this point fails, the others go on
        print(f"[sweep] {name}: FAILED before running: {exc!r}", flush=True)
        return PointResult(name, "failed", 0.0, str(folder), f"could not start: {exc!r}")
    return None


def _finished_point(name: str, folder: Path, job, outcome: dict | None, error, seconds: float) -> PointResult:
    """How a point's job went, from its run.json; a job that died before recording it is recorded here."""
    record = read_run_record(folder)
    log = str(job.paths.stdout)
    seconds = (outcome or {}).get("seconds") or seconds
    if error is None and record.get("status") == "done":
        print(f"[sweep] {name}: done in {seconds} s", flush=True)
        return PointResult(name, "done", seconds, str(folder), log=log, job_id=str(job.job_id))
    failure = record.get("failure") if record.get("status") == "failed" else None
    if failure:
        detail = failure["summary"]
        short = f"{failure['notebook']} In [{failure['exec_count']}]: {failure['ename']}: {failure['evalue']}"
    else:  # the job crashed, timed out or was cancelled before execute_run recorded anything
        detail = short = f"job {job.job_id} failed ({type(error).__name__}); see {job.paths.stderr}"
        record.update(status="failed", failure={"notebook": None, "cell_index": None, "ename": type(error).__name__,
                                                "evalue": str(error)[-2000:], "output": str(job.paths.stderr),
                                                "summary": detail})
        write_run_record(folder, record)
    print(f"[sweep] {name}: FAILED in {seconds} s: {detail}", flush=True)
    return PointResult(name, "failed", seconds, str(folder), short if len(short) <= 120 else short[:117] + "...",
                       log=log, job_id=str(job.job_id))


def run_sweep(spec: SweepSpec, runs_root_dir: str | Path | None = None, jobs: int = 1,
              notebooks: list[str] | None = None, from_run: str | Path | None = None,
              options: ExecutorOptions | None = None) -> list[PointResult]:
    """Run every grid point that has not finished yet, one submitit job each; one result per point, in grid order.

    ``notebooks`` and ``from_run`` override the spec's; ``options`` picks the executor (default: local,
    ``jobs`` at once). A failing point does not stop the others.
    """
    options = options or ExecutorOptions(jobs=jobs)
    options.check()
    selected = runner.select_notebooks(notebooks or spec.notebooks)
    from_run = from_run or spec.from_run
    from_run = str(runner.check_from_run(from_run, option="from_run")) if from_run else None
    planned = plan_points(spec)
    with_parameters = [(name, point, runner.build_parameters(spec.profile, {**spec.set, **point}, selected))
                       for name, point in planned]  # every point checked before anything is moved or run
    sweep_dir = Path(runs_root_dir or runs_root()) / spec.name
    executor = make_executor(options, sweep_dir / ".submitit", name=f"reprank-{spec.name}")
    sweep_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, PointResult] = {}
    todo = []
    for name, point, parameters in with_parameters:
        folder = sweep_dir / name
        if folder.exists():
            record = read_run_record(folder)
            same = _recorded_fingerprint(record) == _fingerprint(
                spec.profile, json.loads(json.dumps(parameters, default=str)), [nb.name for nb in selected], from_run)
            if run_finished(record) and same:
                results[name] = PointResult(name, "skipped", 0.0, str(folder), "finished earlier")
                continue
            why = "stale" if run_finished(record) else ("failed" if record.get("status") == "failed" else "incomplete")
            aside = move_aside(folder, why)
            print(f"[sweep] {name}: the earlier folder ({why}) is kept as {aside.name}", flush=True)
        folder.mkdir()
        results[name] = _start_point(folder, spec, name, point, parameters, selected, from_run)
        if results[name] is None:
            del results[name]
            todo.append((name, str(folder)))
    print(f"[sweep] {spec.name}: {len(todo)} to run ({options.executor} executor), "
          f"{sum(r.status == 'skipped' for r in results.values())} finished earlier; folder {sweep_dir}", flush=True)
    started: dict[str, float] = {}

    def on_start(name, job):
        started[name] = time.perf_counter()
        print(f"[sweep] {name}: job {job.job_id} submitted (log: {job.paths.stdout})", flush=True)

    def on_end(name, job, outcome, error):
        seconds = round(time.perf_counter() - started[name], 1)
        results[name] = _finished_point(name, sweep_dir / name, job, outcome, error, seconds)

    run_jobs(executor, options, todo, on_start, on_end)
    ordered = [results[name] for name, _ in planned]
    atomic_write_json(sweep_dir / "sweep.json", {
        "spec": asdict(spec), "executor": asdict(options), "finished_at": _stamp(),
        "points": [asdict(r) for r in ordered]}, default=str)
    return ordered


def format_table(results: list[PointResult]) -> str:
    width = max([len("point")] + [len(r.name) for r in results])
    lines = [f"{'point':<{width}}  {'status':<7}  {'seconds':>8}  detail"]
    lines += [f"{r.name:<{width}}  {r.status:<7}  {r.seconds:>8.1f}  {r.detail}" for r in results]
    return "\n".join(lines)


def cmd_sweep(args: argparse.Namespace) -> int:
    """``reprank sweep``: reads args spec, runs_root, notebooks, from_run and the executor options
    (executor, jobs, max_parallel, partition, time, gpus_per_node, cpus_per_task, mem_gb)."""
    options = ExecutorOptions.from_args(args)
    ignored = [f"--{k.replace('_', '-')}" for k in SLURM_ONLY if getattr(args, k, None) is not None]
    if options.executor == "local" and ignored:
        print(f"[sweep] note: {', '.join(ignored)} only apply to --executor slurm; ignored", flush=True)
    spec = load_spec(args.spec)
    results = run_sweep(spec, args.runs_root, notebooks=args.notebooks, from_run=args.from_run, options=options)
    print(format_table(results), flush=True)
    failed = [r.name for r in results if r.status == "failed"]
    if failed:
        print(f"[sweep] {len(failed)} of {len(results)} points failed: {', '.join(failed)}", flush=True)
        return 1
    return 0
