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
its results were copied from. Points run one after another, or ``jobs`` at once; each is a separate
``python -m reprank.sweep RUN_DIR`` process whose output goes to ``sweep.log`` in its folder.

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
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from . import runner
from .runs import read_run_record, run_finished, runs_root, write_run_record

SPEC_KEYS = {"name", "description", "profile", "notebooks", "set", "grid", "from_run"}
ASIDE = re.compile(r"\.(failed|incomplete|stale)-\d{8}-\d{6}(-\d+)?$")


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


def load_spec(path: str | Path) -> SweepSpec:
    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"No sweep spec at {path}")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise SystemExit(f"{path}: a sweep spec is a mapping (profile, notebooks, set, grid, from_run)")
    unknown = set(values) - SPEC_KEYS
    if unknown:
        raise SystemExit(f"{path}: unknown keys {sorted(unknown)}; a sweep spec has {sorted(SPEC_KEYS)}")
    grid = values.get("grid") or {}
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise SystemExit(f"{path}: grid must map each parameter to a non-empty list of values")
    if not isinstance(values.get("set") or {}, dict):
        raise SystemExit(f"{path}: set must be a mapping of parameters to values")
    overlap = set(grid) & set(values.get("set") or {})
    if overlap:
        raise SystemExit(f"{path}: {sorted(overlap)} are both in set and in grid")
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
        raise SystemExit(f"Grid values that differ give the same folder name {clashes}; make them distinct")
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


def point_environment(jobs: int) -> dict:
    """The environment of one point's process: its own Jupyter runtime and IPython folders (kernels of
    parallel runs share no connection files or history database), and with ``jobs`` > 1 a fair share
    of the CPU threads unless the caller set them."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    scratch = tempfile.mkdtemp(prefix="reprank-kernel-")
    env["JUPYTER_RUNTIME_DIR"] = str(Path(scratch) / "runtime")
    env["IPYTHONDIR"] = str(Path(scratch) / "ipython")
    if jobs > 1:
        threads = str(max(1, (os.cpu_count() or 1) // jobs))
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(name, threads)
    return env


def _run_point(folder: Path, spec: SweepSpec, name: str, point: dict, parameters: dict, notebooks: list[Path],
               from_run: str | None, jobs: int) -> PointResult:
    start = time.perf_counter()
    sweep = {"name": spec.name, "spec_file": spec.path, "point_name": name, "point": point,
             "spec": {k: v for k, v in asdict(spec).items() if k != "path"}}
    print(f"[sweep] {name}: started (log: {folder / 'sweep.log'})", flush=True)
    env = point_environment(jobs)
    try:
        runner.start_run(folder, spec.profile, parameters, notebooks, from_run=from_run, extra={"sweep": sweep})
        with open(folder / "sweep.log", "w") as log:
            process = subprocess.run([sys.executable, "-m", "reprank.sweep", str(folder)], stdout=log,
                                     stderr=subprocess.STDOUT, env=env)
    except Exception as exc:  # e.g. the disk filled while copying from_run: this point fails, the others go on
        seconds = round(time.perf_counter() - start, 1)
        print(f"[sweep] {name}: FAILED before running: {exc!r}", flush=True)
        return PointResult(name, "failed", seconds, str(folder), f"could not start: {exc!r}")
    finally:
        shutil.rmtree(Path(env["IPYTHONDIR"]).parent, ignore_errors=True)
    record = read_run_record(folder)
    seconds = round(time.perf_counter() - start, 1)
    if record.get("status") == "done" and process.returncode == 0:
        print(f"[sweep] {name}: done in {seconds} s", flush=True)
        return PointResult(name, "done", seconds, str(folder))
    failure = record.get("failure")
    if failure:
        detail = failure["summary"]
        short = f"{failure['notebook']} In [{failure['exec_count']}]: {failure['ename']}: {failure['evalue']}"
    else:
        detail = f"the run process exited with code {process.returncode}; see {folder / 'sweep.log'}"
        record.update(status="failed", failure={"notebook": None, "cell_index": None, "ename": "ProcessExit",
                                                "evalue": detail, "output": str(folder / "sweep.log"),
                                                "summary": detail})
        write_run_record(folder, record)
        short = detail
    print(f"[sweep] {name}: FAILED in {seconds} s: {detail}", flush=True)
    return PointResult(name, "failed", seconds, str(folder), short if len(short) <= 120 else short[:117] + "...")


def run_sweep(spec: SweepSpec, runs_root_dir: str | Path | None = None, jobs: int = 1,
              notebooks: list[str] | None = None, from_run: str | Path | None = None) -> list[PointResult]:
    """Run every grid point that has not finished yet; returns one result per point, in grid order.

    ``notebooks`` and ``from_run`` override the spec's. A failing point does not stop the others.
    """
    selected = runner.select_notebooks(notebooks or spec.notebooks)
    from_run = from_run or spec.from_run
    from_run = str(Path(from_run).resolve()) if from_run else None
    if from_run and not (Path(from_run) / "metrics.json").is_file():
        raise SystemExit(f"from_run {from_run}: no metrics.json there, so no finished step to start from")
    sweep_dir = Path(runs_root_dir or runs_root()) / spec.name
    sweep_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, PointResult] = {}
    todo = []
    for name, point in plan_points(spec):
        parameters = runner.build_parameters(spec.profile, {**spec.set, **point}, selected)
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
        todo.append((folder, name, point, parameters))
    print(f"[sweep] {spec.name}: {len(todo)} to run, {len(results)} finished earlier; folder {sweep_dir}", flush=True)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {name: pool.submit(_run_point, folder, spec, name, point, parameters, selected, from_run, jobs)
                   for folder, name, point, parameters in todo}
        for name, future in futures.items():
            results[name] = future.result()
    ordered = [results[name] for name, _ in plan_points(spec)]
    summary = {"spec": {k: v for k, v in asdict(spec).items()}, "jobs": jobs, "finished_at": _stamp(),
               "points": [asdict(r) for r in ordered]}
    tmp = sweep_dir / "sweep.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2, default=str))
    tmp.replace(sweep_dir / "sweep.json")
    return ordered


def format_table(results: list[PointResult]) -> str:
    width = max([len("point")] + [len(r.name) for r in results])
    lines = [f"{'point':<{width}}  {'status':<7}  {'seconds':>8}  detail"]
    lines += [f"{r.name:<{width}}  {r.status:<7}  {r.seconds:>8.1f}  {r.detail}" for r in results]
    return "\n".join(lines)


def cmd_sweep(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    results = run_sweep(spec, args.runs_root, jobs=args.jobs, notebooks=args.notebooks, from_run=args.from_run)
    print(format_table(results), flush=True)
    failed = [r.name for r in results if r.status == "failed"]
    if failed:
        print(f"[sweep] {len(failed)} of {len(results)} points failed: {', '.join(failed)}", flush=True)
        return 1
    return 0


def _execute_point(argv: list[str]) -> int:
    """``python -m reprank.sweep RUN_DIR``: execute a run folder that :func:`reprank.runner.start_run` prepared."""
    record = runner.execute_run(argv[0], progress=False)
    if record["status"] != "done":
        print(f"[reprank] FAILED: {record['failure']['summary']}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(_execute_point(sys.argv[1:]))
