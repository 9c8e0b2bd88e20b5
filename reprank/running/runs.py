"""Run folders: every run writes to a new folder; notebooks of one run share it."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import os
import platform
import re
import subprocess
from pathlib import Path

import reprank

from reprank.base.fileio import atomic_write_json

PACKAGES = ("torch", "transformers", "trl", "peft", "datasets", "scikit-learn", "papermill", "reprank")


def repo_root() -> Path:
    """The repository this package lives in (editable install), else the current folder."""
    candidate = Path(reprank.__file__).resolve().parents[1]
    return candidate if (candidate / "notebooks").is_dir() else Path.cwd()


def runs_root() -> Path:
    return Path(os.environ.get("REPRANK_RUNS") or repo_root() / "runs")


def now() -> str:
    """The time as run records write it (ISO 8601, to the second)."""
    return dt.datetime.now().isoformat(timespec="seconds")


def new_run_dir(root: str | Path | None = None, prefix: str = "") -> Path:
    """Create a fresh, timestamped run folder; never reuses an existing one."""
    root = Path(root) if root else runs_root()
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    for attempt in range(1000):
        path = root / f"{prefix}{stamp}" if attempt == 0 else root / f"{prefix}{stamp}-{attempt}"
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"Could not create a new run folder under {root}")


def resolve_run_dir(output_dir: str | Path | None) -> Path:
    """A notebook's output folder: the one it was given (shared by a run's notebooks), else a new one."""
    if not output_dir:
        return new_run_dir()
    path = Path(output_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _to_jsonable(value):
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    if isinstance(value, dict):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def update_metrics(run_dir: str | Path, section: str, values: dict) -> Path:
    """Write ``values`` under ``section`` in the run's ``metrics.json`` (other sections are kept)."""
    path = Path(run_dir) / "metrics.json"
    metrics = json.loads(path.read_text()) if path.is_file() else {}
    metrics[section] = _to_jsonable(values)
    return atomic_write_json(path, metrics, sort_keys=True)


def read_metrics(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def save_figure(fig, run_dir: str | Path, name: str) -> Path:
    """Save a matplotlib figure as ``figures/<name>.png`` in the run folder."""
    path = Path(run_dir) / "figures" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def read_run_record(run_dir: str | Path) -> dict:
    """The run's ``run.json`` (parameters, notebooks, environment, status, timings), or {} if there is none."""
    path = Path(run_dir) / "run.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def write_run_record(run_dir: str | Path, record: dict) -> Path:
    """Write ``run.json`` atomically (a reader never sees half a file)."""
    return atomic_write_json(Path(run_dir) / "run.json", _to_jsonable(record))


# A run folder that a rerun of its sweep renamed, ``<point>.<why>-<YYYYmmdd-HHMMSS>[-n]``: an earlier attempt.
# Here, not in sweep.py, so that reports can tell such folders without importing the sweep machinery.
MOVED_ASIDE = re.compile(r"\.(failed|incomplete|stale)-\d{8}-\d{6}(-\d+)?$")


def run_finished(record: dict) -> bool:
    """Whether a run completed every notebook it was asked to run.

    Runs record ``status`` ("started", "running", "done", "failed"); older run.json files without it
    count as finished when they have a timing for every notebook.
    """
    if "status" in record:
        return record["status"] == "done"
    timed = {t.get("notebook") for t in record.get("timings") or []}
    return bool(record.get("notebooks")) and set(record["notebooks"]) <= timed


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo_root(), capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=repo_root(), capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def environment_record() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {"python": platform.python_version(), "platform": platform.platform(), "packages": versions,
            "git_commit": git_commit()}
