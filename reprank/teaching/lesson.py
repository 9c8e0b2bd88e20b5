"""A lesson's plumbing in one call: its run folder, the earlier steps it reads, its metrics, figures and ledger.

Each notebook's setup cell calls::

    lesson = start_lesson("03", output_dir=output_dir, model_id=model_id, seed=seed)

* Given an ``output_dir`` (``reprank run`` and sweeps always pass one to papermill; a student may name a
  folder too), the lesson works there and, through :func:`reprank.running.runner.ensure_step`, first executes an
  earlier notebook whose results are missing there.
* Run by hand (``output_dir = ""``), it starts a new folder under ``runs/`` from the latest finished run whose
  earlier steps fit: the same ``model_id`` and ``seed`` (the keywords passed here) and every other parameter
  of those steps at its notebook's default. Their results are copied as ``reprank run --from-run`` copies
  them. If no run fits, it first builds the earlier steps, with progress, in a run folder of their own
  (``runs/defaults-*``), which later notebooks then reuse.

A lesson saves and loads artifacts by name (``lesson.save("rm_pairs", pairs)``, ``lesson.load("hybrid_rm")``):
:mod:`reprank.running.registry` knows each one's file and format, and its one rule for a file already there (a notebook
re-run in its own run folder replaces its own artifacts; nothing else is ever overwritten).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from reprank.running import registry, runner
from reprank.measure.compute import ComputeLedger
from reprank.base.errors import UserError
from reprank.running.parameters import notebooks_dir, parameter_defaults
from reprank.running.runs import (MOVED_ASIDE, new_run_dir, now, read_metrics, read_run_record, resolve_run_dir, run_finished,
                   runs_root, save_figure, update_metrics, write_run_record)

# Rough minutes per step at the notebooks' defaults on 2 idle CPU cores (the README's timings of the `cpu`
# profile, rounded): an estimate for the message, not a measurement of this machine.
ESTIMATED_MINUTES = {"01": 8, "02": 1, "03": 6, "04": 13}  # make run at 4806437: 491, 16, 381, 782 s
# Parameters a step's results do not depend on: where they go, and who wrote the exercises (checked either way).
NOT_COMPARED = {"output_dir", "use_reference_solutions"}


def _notebook(prefix: str) -> Path:
    return notebooks_dir() / registry.step(prefix).notebook


def expected_parameters(prefix: str, shared: dict) -> dict:
    """What step ``prefix`` must have run with to be reused: its notebook's defaults, with ``shared``."""
    defaults = parameter_defaults(_notebook(prefix))
    values = {**defaults, **{k: v for k, v in shared.items() if k in defaults}}
    return {k: v for k, v in values.items() if k not in NOT_COMPARED}


def step_parameters(run_dir: str | Path, prefix: str) -> dict | None:
    """The parameters step ``prefix`` ran with in ``run_dir`` (its notebook's defaults, updated with what
    run.json recorded), or None where the step has no results there or they cannot be traced.

    A step this run did not execute but copied (``from_run`` in run.json) ran with what that run recorded.
    """
    run_dir = Path(run_dir)
    section = registry.step(prefix).section
    if section not in read_metrics(run_dir):
        return None
    record, notebook = read_run_record(run_dir), _notebook(prefix)
    source = record.get("from_run") or {}
    if notebook.name not in record.get("notebooks", []) and section in source.get("sections", []):
        earlier = Path(source["path"])
        return step_parameters(earlier, prefix) if earlier.resolve() != run_dir.resolve() else None
    defaults = parameter_defaults(notebook)
    given = dict(record.get("parameters") or {})
    for timing in record.get("timings") or []:
        if timing.get("notebook") == notebook.name:
            given.update(timing.get("parameters") or {})
    return {**defaults, **{k: v for k, v in given.items() if k in defaults}}


def compatible(run_dir: Path, prefixes: list[str], shared: dict) -> bool:
    """Whether every step of ``prefixes`` finished in ``run_dir`` with the parameters this lesson expects."""
    for prefix in prefixes:
        ran = step_parameters(run_dir, prefix)
        if ran is None or any(ran.get(k) != v for k, v in expected_parameters(prefix, shared).items()):
            return False
    return True


def latest_compatible_run(prefixes: list[str], shared: dict, root: str | Path | None = None) -> Path | None:
    """The most recently finished run folder under ``root`` (runs/; sweep points included) whose steps
    ``prefixes`` fit, else None. Folders a sweep moved aside and unfinished runs are never reused."""
    root = Path(root) if root else runs_root()
    folders = [p.parent for p in [*root.glob("*/run.json"), *root.glob("*/*/run.json")]
               if not MOVED_ASIDE.search(p.parent.name)]
    finished = [f for f in folders if run_finished(read_run_record(f))]
    for folder in sorted(finished, key=lambda f: (f / "run.json").stat().st_mtime, reverse=True):
        if compatible(folder, prefixes, shared):
            return folder
    return None


def _describe(prefixes: list[str], shared: dict) -> str:
    given = ", ".join(f"{k}={v!r}" for k, v in shared.items())
    return f"step{'s' if len(prefixes) > 1 else ''} {', '.join(prefixes)}" + (f" with {given}" if given else "")


def build_steps(prefixes: list[str], shared: dict) -> Path:
    """Execute the notebooks of ``prefixes`` at their defaults (with ``shared``) in a new run folder, with
    papermill's progress bar; their exercises go on with the reference solutions. Returns the folder."""
    run_dir = new_run_dir(prefix="defaults-")
    minutes = " + ".join(f"{p}: ~{ESTIMATED_MINUTES[p]}" for p in prefixes)
    print(f"No finished run under {run_dir.parent} has {_describe(prefixes, shared)} and their notebooks' default "
          f"parameters: building them first in {run_dir} (~{sum(ESTIMATED_MINUTES[p] for p in prefixes)} min, a "
          f"rough estimate for 2 CPU cores: {minutes}). To go on from a run of your own instead, set output_dir "
          f"to its folder (this notebook then writes into it).", flush=True)
    notebooks = [_notebook(p) for p in prefixes]
    runner.start_run(run_dir, "defaults", {**shared, "use_reference_solutions": True}, notebooks)
    record = runner.execute_run(run_dir, progress=True)
    if record["status"] != "done":
        raise RuntimeError(f"building the earlier steps failed: {record['failure']['summary']}")
    return run_dir


@dataclass
class Lesson:
    """One notebook's run folder and what it writes there. ``ledger`` counts this step's compute."""

    step: registry.Step
    run_dir: Path
    by_hand: bool = False  # started from output_dir = "": save_metrics also marks the run done in run.json
    parameters: dict = field(default_factory=dict)  # the notebook's parameter values, recorded when by hand
    ledger: ComputeLedger = field(default_factory=ComputeLedger)
    started: float = field(default_factory=time.perf_counter)

    def artifact(self, name: str) -> Path:
        """Where artifact ``name`` of the run folder is (see :mod:`reprank.running.registry`). One line of error if an
        earlier step finished here without writing it (its results predate the file). To read or write the
        artifact itself, :meth:`load` and :meth:`save`."""
        path, spec = registry.artifact(self.run_dir, name), registry.ARTIFACTS[name]
        if (not path.exists() and spec.step < self.step.prefix
                and registry.step(spec.step).section in read_metrics(self.run_dir)):
            raise UserError(f"{self.run_dir}: step {spec.step} finished there without writing {path.name} "
                            f"({spec.description}); its results predate it: run this notebook in a new folder "
                            f"(output_dir = \"\")")
        return path

    def save(self, name: str, value, **options) -> Path:
        """Save this step's artifact ``name`` in its format (``registry.save_artifact``: a reward model's metadata or
        the pairs' ``seed`` as ``options``); a re-run replaces what this step saved, never anything else."""
        return registry.save_artifact(self.run_dir, name, value, step=self.step.prefix, **options)

    def load(self, name: str, default=registry.REQUIRED, **options):
        """Artifact ``name`` read in its format (``registry.load_artifact``); ``default`` if no step wrote it here
        (one line of error, as :meth:`artifact`, if an earlier step finished here without writing it)."""
        self.artifact(name)
        return registry.load_artifact(self.run_dir, name, default, **options)

    def earlier_parameter(self, prefix: str, name: str):
        """A parameter earlier step ``prefix`` ran with in this run folder (notebook 03 cuts responses as notebook
        01 did: ``lesson.earlier_parameter("01", "max_response_tokens")``), so no lesson restates another's."""
        values = step_parameters(self.run_dir, prefix)
        if values is None or name not in values:
            raise UserError(f"{self.run_dir}: no record of the {name} step {prefix} ran with; run this notebook in a "
                            f"new folder (output_dir = \"\")")
        return values[name]

    def earlier_ledger(self, prefix: str) -> ComputeLedger:
        """The compute ledger an earlier step recorded (``compute_03``)."""
        return self.load(f"compute_{prefix}")

    def save_figure(self, fig, name: str) -> Path:
        return save_figure(fig, self.run_dir, name)

    def save_metrics(self, values: dict) -> dict:
        """Write ``values`` as this step's section of metrics.json (returned as written: plain JSON types), and
        this step's ledger where the registry names a file for it; run by hand, also record the step's
        parameters and time in run.json and mark the run done."""
        ledger_name = f"compute_{self.step.prefix}"
        if self.ledger.entries and ledger_name in registry.ARTIFACTS:
            self.save(ledger_name, self.ledger)
        update_metrics(self.run_dir, self.step.section, values)
        if self.by_hand:
            record = read_run_record(self.run_dir)
            timing = {"notebook": self.step.notebook, "parameters": self.parameters,
                      "seconds": round(time.perf_counter() - self.started, 1)}
            record["timings"] = [t for t in record.get("timings") or [] if t["notebook"] != self.step.notebook]
            record["timings"].append(timing)
            record.update(status="done", finished_at=now(), seconds=timing["seconds"])
            write_run_record(self.run_dir, record)
        return read_metrics(self.run_dir)[self.step.section]


def _start_by_hand(step: registry.Step, values: dict, shared: dict) -> Path:
    earlier = registry.earlier_steps(step.prefix)  # 06 reads 01-04, not 05
    source = latest_compatible_run(earlier, shared) if earlier else None
    if earlier and source is None:
        source = build_steps(earlier, shared)
    run_dir = new_run_dir(prefix="by-hand-")
    # Its parameters as a profile would give them (the exercises' setting is in the timing save_metrics records).
    given = {**{k: v for k, v in values.items() if k not in NOT_COMPARED}, **shared}
    runner.start_run(run_dir, "by hand", given, [_notebook(step.prefix)], from_run=source, from_steps=earlier)
    if source is None:
        print(f"run folder: {run_dir}", flush=True)
    else:
        print(f"run folder: {run_dir} ({_describe(earlier, shared)} copied from {source}, the latest finished run "
              "where they ran at their notebooks' defaults)", flush=True)
    return run_dir


def start_lesson(step: str, output_dir: str | Path = "", namespace: dict | None = None, **shared) -> Lesson:
    """Set up notebook ``step``'s run folder (see the module's docstring) and return its :class:`Lesson`.

    ``shared`` are the parameters the earlier steps must share with this one (``model_id``, ``seed``). Run by
    hand, the values of the parameters the notebook declares are read from ``namespace`` (default: the
    calling notebook's globals, where its parameters cell just ran) and recorded in run.json.
    """
    this = registry.step(step)
    if output_dir:
        run_dir = resolve_run_dir(output_dir)
        for prefix in this.needs:
            runner.ensure_step(run_dir, prefix, **shared)
        print(f"run folder: {run_dir}", flush=True)
        lesson = Lesson(this, run_dir)
    else:
        namespace = sys._getframe(1).f_globals if namespace is None else namespace
        declared = parameter_defaults(_notebook(this.prefix))
        values = {k: namespace.get(k, v) for k, v in declared.items() if k != "output_dir"}
        lesson = Lesson(this, _start_by_hand(this, values, shared), by_hand=True, parameters=values)
    (lesson.run_dir / "artifacts").mkdir(exist_ok=True)
    return lesson
