"""Executing notebooks: ``reprank run``, run records (``run.json``) and :func:`ensure_step`.

``reprank run`` and every sweep point go through :func:`start_run` and :func:`execute_run`: one record
format. Parameters are built and checked (types included) in :mod:`reprank.running.parameters` before any folder
is made; a notebook gets only the parameters it declares.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

from reprank.running import registry
from reprank.base.errors import UserError
from reprank.base.fileio import atomic_write_json
from reprank.running.parameters import (build_parameters, declared_parameters, list_notebooks, notebook_parameters,  # noqa: F401
                         notebooks_dir, parse_overrides, select_notebooks)
from reprank.running.runs import environment_record, new_run_dir, now, read_metrics, read_run_record, write_run_record

EXIT_STATUS = {"SIGINT": 130, "SIGTERM": 143}


def kernel_environment() -> None:
    """Make papermill's ``python3`` kernel this interpreter's, whatever other kernels the machine has."""
    share = Path(sys.prefix) / "share" / "jupyter"
    os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(share), os.environ.get("JUPYTER_PATH")]))


def ipc_kernel_manager():
    """A kernel manager whose kernel talks over local IPC sockets, not TCP: only this user's processes can
    connect, and ipykernel has no reason to log "Kernel is running over TCP without encryption".

    The sockets get a unique name in the Jupyter runtime folder (jupyter_client's default, ``kernel-ipc``
    in the current folder, would clash between runs started at once from the same notebooks folder).
    """
    import uuid

    from jupyter_client.manager import AsyncKernelManager
    from jupyter_core.paths import jupyter_runtime_dir
    from traitlets import CaselessStrEnum, default

    class IPCKernelManager(AsyncKernelManager):
        transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)

        @default("ip")
        def _ip_default(self) -> str:
            folder = Path(jupyter_runtime_dir())
            folder.mkdir(parents=True, exist_ok=True)
            return str(folder / f"reprank-{uuid.uuid4().hex[:16]}-ipc")

    return IPCKernelManager


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
                   timings: list | None = None, current: dict | None = None) -> list[dict]:
    """Run notebooks in order into ``run_dir``; each gets the parameters it declares (and the reference
    solutions unless ``parameters`` says otherwise: :func:`reprank.running.parameters.notebook_parameters`).

    Each finished notebook appends ``{notebook, parameters, seconds}`` to ``timings`` (returned); ``current``
    is updated with the notebook being executed and its output. A notebook that raises stops the series
    with :class:`NotebookFailed`; papermill has already written the executed notebook, error included.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    kernel_environment()
    timings = [] if timings is None else timings
    for notebook in notebooks:
        given = notebook_parameters(notebook, parameters)
        given["output_dir"] = str(Path(run_dir).resolve())
        output = Path(run_dir) / notebook.name
        if current is not None:
            current.update(notebook=notebook.name, output=str(output))
        start = time.perf_counter()
        print(f"[reprank] {notebook.name} -> {output}", flush=True)
        try:
            papermill.execute_notebook(str(notebook), str(output), parameters=given, kernel_name="python3",
                                       cwd=str(notebook.parent), progress_bar=progress,
                                       kernel_manager_class=ipc_kernel_manager())
        except PapermillExecutionError as exc:
            raise NotebookFailed(notebook.name, str(output), exc.cell_index, exc.exec_count, exc.ename,
                                 exc.evalue, exc.source or "") from exc
        except Exception as exc:  # the kernel died or never started, the notebook is unreadable, ...
            raise NotebookFailed(notebook.name, str(output), ename=type(exc).__name__, evalue=str(exc)) from exc
        timings.append({"notebook": notebook.name, "parameters": given,
                        "seconds": round(time.perf_counter() - start, 1)})
    return timings


# What a run folder holds of a finished step: copied by --from-run so a later step need not redo it.
EARLIER_RESULTS = ("artifacts", "cache", "figures", "metrics.json")


def check_from_run(source: str | Path, option: str = "--from-run") -> Path:
    source = Path(source).resolve()
    if not (source / "metrics.json").is_file():
        raise UserError(f"{option} {source}: no metrics.json there, so no finished step to start from")
    return source


def copy_earlier_results(source: str | Path, run_dir: Path, parameters: dict, steps: list[str] | None = None) -> dict:
    """Copy an earlier run's results into ``run_dir`` (which must be new); returns what to record.

    Notebooks see a finished earlier step by its section in ``metrics.json`` (:func:`ensure_step`), so the
    copied metrics and artifacts make them skip that step. Parameters that differ between the earlier run
    and this one are recorded and printed: a changed ``model_id`` there means the copied results do not fit.
    With ``steps`` (prefixes), only those steps' results: their metrics sections, the whole cache, and the
    files of artifacts/ and figures/ that no other step made (:func:`registry.step_of_file`).
    """
    source = check_from_run(source)
    keep = lambda name: steps is None or registry.step_of_file(name) in (*steps, None)
    copied = []
    for name in EARLIER_RESULTS:
        if (source / name).is_dir():
            skip = None if name == "cache" else (lambda folder, names: [n for n in names if not keep(n)])
            shutil.copytree(source / name, run_dir / name, ignore=skip)
        elif (source / name).is_file():
            shutil.copy2(source / name, run_dir / name)
        else:
            continue
        copied.append(name)
    registry.record_copied(run_dir)  # the copied steps' artifacts are theirs here: a step re-run replaces them
    sections = read_metrics(source)
    if steps is not None:
        sections = {key: value for key, value in sections.items() if key in {registry.step(s).section for s in steps}}
        atomic_write_json(run_dir / "metrics.json", sections, sort_keys=True)
    earlier = read_run_record(source)
    differ = {key: {"earlier": value, "now": parameters[key]}
              for key, value in earlier.get("parameters", {}).items() if key in parameters and parameters[key] != value}
    if differ:
        print(f"[reprank] note: parameters differ from the run the results come from: {differ}", flush=True)
    return {"path": str(source), "copied": copied, "sections": sorted(sections),
            "git_commit": earlier.get("git_commit"), "parameters_that_differ": differ}


def start_run(run_dir: Path, profile: str, parameters: dict, notebooks: list[Path],
              from_run: str | Path | None = None, extra: dict | None = None,
              from_steps: list[str] | None = None) -> dict:
    """Write ``run.json`` into a new run folder (and copy an earlier run's results, of ``from_steps`` only if
    given, when asked)."""
    record = {"profile": profile, "parameters": parameters, "notebooks": [nb.name for nb in notebooks],
              **(extra or {}), **environment_record(), "status": "started", "started_at": now()}
    if from_run:
        record["from_run"] = copy_earlier_results(from_run, run_dir, parameters, from_steps)
    write_run_record(run_dir, record)
    return record


def _running_cell(output: str | None) -> dict:
    """The last cell papermill started in the executed notebook it saved: the one an interrupt stopped."""
    try:
        cells = json.loads(Path(output).read_text())["cells"]
    except (OSError, TypeError, ValueError, KeyError):
        return {}
    started = [i for i, cell in enumerate(cells) if cell.get("metadata", {}).get("papermill", {}).get("start_time")]
    if not started:
        return {}
    cell = cells[started[-1]]
    return {"cell_index": started[-1], "cell_first_line": _first_line("".join(cell.get("source", "")))}


def execute_run(run_dir: str | Path, progress: bool = True) -> dict:
    """Execute the notebooks that ``run_dir/run.json`` names, with its parameters; record how it went.

    ``run.json`` gets ``timings`` (one entry per finished notebook), ``seconds``, ``finished_at`` and
    ``status``: "done"; "failed" with ``failure`` (notebook, cell index, error, executed notebook); or
    "interrupted" (SIGINT or SIGTERM) with ``interrupted`` (signal, notebook, cell if known) and ``failure``.
    Papermill shuts the kernel down when the interrupt cancels the execution.
    """
    run_dir = Path(run_dir)
    record = read_run_record(run_dir)
    notebooks = [notebooks_dir() / name for name in record["notebooks"]]
    record.update(status="running", timings=[])
    write_run_record(run_dir, record)
    start, current, received = time.perf_counter(), {}, {"signal": "SIGINT"}

    def on_sigterm(signum, frame):
        received["signal"] = "SIGTERM"
        raise KeyboardInterrupt

    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, on_sigterm) if main else None
    try:
        execute_series(notebooks, record["parameters"], run_dir, progress=progress, timings=record["timings"],
                       current=current)
        record["status"] = "done"
    except NotebookFailed as exc:
        record.update(status="failed", failure=exc.to_dict())
    except KeyboardInterrupt:
        where = {**current, **_running_cell(current.get("output"))}
        cell = f" in cell {where['cell_index']} ({where['cell_first_line']!r})" if "cell_index" in where else ""
        summary = f"interrupted by {received['signal']} during {where.get('notebook', 'start-up')}{cell}"
        record.update(status="interrupted", interrupted={"signal": received["signal"], **where},
                      failure={"notebook": where.get("notebook"), "cell_index": where.get("cell_index"),
                               "exec_count": None, "ename": received["signal"], "evalue": "interrupted",
                               "output": where.get("output"), "summary": summary})
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
    record.update(seconds=round(time.perf_counter() - start, 1), finished_at=now())
    write_run_record(run_dir, record)
    return record


def ensure_step(run_dir: str | Path, step: str, section: str | None = None, parameters: dict | None = None,
                **overrides) -> dict:
    """Make sure an earlier step's results are in ``run_dir``; if not, execute that notebook there first.

    This is how a notebook runs in a folder it was given without the earlier results (``reprank run
    --notebooks 02``; :func:`reprank.teaching.lesson.start_lesson` calls it): the earlier lesson itself rebuilds what
    is missing (one source of truth, no copied code), with the parameters recorded in the run folder's
    ``run.json`` (those the earlier notebook declares), then ``parameters`` and ``overrides`` (a caller passes
    ``model_id`` and ``seed``), and that notebook's own defaults for the rest (but the reference solutions,
    unless one of those sets ``use_reference_solutions``: a student's notebook goes on from finished earlier
    lessons). Returns the step's metrics section.
    """
    run_dir = Path(run_dir)
    section = section or registry.step(step).section
    if section not in read_metrics(run_dir):
        notebook = next((nb for nb in list_notebooks() if nb.name.startswith(step)), None)
        if notebook is None:
            raise UserError(f"{run_dir}: step {step} is missing and no notebook {step}_* is in {notebooks_dir()}")
        given = {**read_run_record(run_dir).get("parameters", {}), **(parameters or {}), **overrides}
        print(f"[reprank] {section} missing in {run_dir}: running {notebook.name} first", flush=True)
        execute_series([notebook], given, run_dir, progress=False)
    return read_metrics(run_dir)[section]


def cmd_run(args: argparse.Namespace) -> int:
    notebooks = select_notebooks(args.notebooks)
    items = args.set or []
    sources = {item.split("=", 1)[0].strip(): f"--set {item}" for item in items}
    parameters = build_parameters(args.profile, parse_overrides(items), notebooks, sources)
    if args.from_run:
        check_from_run(args.from_run)
    run_dir = new_run_dir(args.runs_root, prefix=f"{Path(args.profile).stem}-")
    start_run(run_dir, args.profile, parameters, notebooks, from_run=args.from_run)
    print(f"[reprank] run folder: {run_dir}", flush=True)
    record = execute_run(run_dir, progress=not args.quiet)
    if record["status"] == "interrupted":
        print(f"[reprank] {record['failure']['summary']}; run.json records it", file=sys.stderr, flush=True)
        return EXIT_STATUS[record["interrupted"]["signal"]]
    if record["status"] != "done":
        print(f"[reprank] FAILED: {record['failure']['summary']}", file=sys.stderr, flush=True)
        return 1
    print(f"[reprank] done: executed notebooks, figures/ and metrics.json are in {run_dir}", flush=True)
    return 0
