"""Sweep points as submitit jobs: the executor (local processes or SLURM), the job each point runs, and
the loop that submits the points and collects how each went.

Each point is one submitit job running :func:`run_point` on a run folder that :func:`reprank.running.runner.start_run`
prepared; submitit keeps its pickles and the jobs' stdout/stderr in ``<sweep>/.submitit/<job id>/``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from reprank.base.errors import UserError

EXECUTORS = ("local", "slurm")
LOCAL_TIMEOUT_MIN = 7 * 24 * 60  # submitit's local default is 2 minutes: it would kill a real point
SLURM_ONLY = ("partition", "cpus_per_task", "mem_gb")


@dataclass
class ExecutorOptions:
    executor: str = "local"
    jobs: int = 1  # local: points at once (--max-parallel says the same and wins)
    max_parallel: int | None = None  # slurm: the job array's parallelism (submitit's default: 256)
    partition: str | None = None
    time: int | None = None  # minutes
    gpus_per_node: int | None = None
    cpus_per_task: int | None = None
    mem_gb: float | None = None

    @classmethod
    def from_args(cls, args) -> "ExecutorOptions":
        values = {name: getattr(args, name, None) for name in cls.__dataclass_fields__}
        values = {k: v for k, v in values.items() if v is not None}
        options = cls(**values)
        options.check()
        return options

    def check(self) -> None:
        if self.executor not in EXECUTORS:
            raise UserError(f"--executor {self.executor}: unknown; use one of {', '.join(EXECUTORS)}")
        for name in ("jobs", "max_parallel", "time", "gpus_per_node", "cpus_per_task", "mem_gb"):
            value = getattr(self, name)
            if value is not None and (value < 0 or (value == 0 and name != "gpus_per_node")):
                raise UserError(f"--{name.replace('_', '-')} {value}: must be a positive number")

    @property
    def parallel(self) -> int | None:
        """Points running at once: local runs ``--max-parallel`` or ``--jobs``; SLURM only ``--max-parallel``."""
        return self.max_parallel or (self.jobs if self.executor == "local" else None)


def make_executor(options: ExecutorOptions, folder: Path, name: str = "reprank-sweep"):
    """A submitit executor for ``options``; its files go to ``folder/<job id>/``. Submits nothing."""
    import submitit

    if options.executor == "slurm" and submitit.SlurmExecutor.affinity() <= 0:
        raise UserError("--executor slurm: no SLURM here (srun is not on PATH); run the sweep from a SLURM "
                        "login node, or use --executor local")
    executor = submitit.AutoExecutor(folder=Path(folder) / "%j", cluster=options.executor)
    parameters = {"name": name, "timeout_min": options.time or (LOCAL_TIMEOUT_MIN if options.executor == "local"
                                                                 else None)}
    if options.executor == "slurm":
        parameters.update(gpus_per_node=options.gpus_per_node, cpus_per_task=options.cpus_per_task,
                          mem_gb=options.mem_gb, slurm_partition=options.partition,
                          slurm_array_parallelism=options.max_parallel)
    elif options.gpus_per_node is not None:
        parameters["gpus_per_node"] = options.gpus_per_node
    executor.update_parameters(**{k: v for k, v in parameters.items() if v is not None})
    return executor


def job_environment(options: ExecutorOptions) -> dict:
    """Variables each point's job sets before running its notebooks (None: unset the variable)."""
    env = {}
    if options.executor == "local" and options.gpus_per_node is None:
        # submitit's local executor sets CUDA_VISIBLE_DEVICES to gpus_per_node GPUs, none by default:
        # give the points the GPUs that `reprank run` would see instead.
        env["CUDA_VISIBLE_DEVICES"] = os.environ.get("CUDA_VISIBLE_DEVICES")
    threads = options.cpus_per_task if options.executor == "slurm" else None
    if options.executor == "local" and (options.parallel or 1) > 1:
        threads = max(1, (os.cpu_count() or 1) // options.parallel)  # a fair share of the cores each
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if threads and variable not in os.environ:
            env[variable] = str(threads)
    return env


def run_point(run_dir: str, environment: dict) -> dict:
    """The job of one grid point: execute the notebooks that ``run_dir/run.json`` names (runs in the job).

    Each point gets its own Jupyter runtime and IPython folders, so kernels of points running side by side
    share no connection files or history database.
    """
    from reprank.running.runner import execute_run

    for variable, value in environment.items():
        if value is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = value
    scratch = tempfile.mkdtemp(prefix="reprank-kernel-")
    os.environ.update(JUPYTER_RUNTIME_DIR=str(Path(scratch) / "runtime"), IPYTHONDIR=str(Path(scratch) / "ipython"),
                      PYTHONUNBUFFERED="1")
    try:
        record = execute_run(run_dir, progress=False)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"status": record["status"], "seconds": record.get("seconds"), "failure": record.get("failure")}


def run_jobs(executor, options: ExecutorOptions, tasks: list[tuple[str, str]], on_start, on_end,
             poll_s: float = 0.5) -> None:
    """Submit ``run_point`` for each ``(name, run_dir)`` and wait for all of them.

    SLURM gets one job array (at most ``--max-parallel`` running); the local executor starts every job it
    is given at once, so here at most ``parallel`` are submitted at a time. ``on_start(name, job)`` and
    ``on_end(name, job, outcome, error)`` report progress: ``outcome`` is what :func:`run_point` returned,
    ``error`` the job's exception (it crashed, timed out or was cancelled) or None.
    Ctrl-C cancels the jobs still running: a later rerun of the sweep then finds those points incomplete.
    """
    environment = job_environment(options)
    pending, running = list(tasks), {}
    limit = options.parallel or len(tasks) or 1
    try:
        if options.executor == "slurm" and pending:
            jobs = _submitted(options, executor.map_array, run_point, [d for _, d in pending],
                              [environment] * len(pending))
            running, pending = {name: job for (name, _), job in zip(pending, jobs)}, []
            for name, job in running.items():
                on_start(name, job)
        while pending or running:
            while pending and len(running) < limit:
                name, run_dir = pending.pop(0)
                running[name] = _submitted(options, executor.submit, run_point, run_dir, environment)
                on_start(name, running[name])
            for name, job in list(running.items()):
                if job.done():
                    del running[name]
                    error = job.exception()
                    on_end(name, job, None if error else job.result(), error)
            if running:
                time.sleep(poll_s)
    except (KeyboardInterrupt, UserError):
        for job in running.values():
            job.cancel(check=False)
        raise


def _submitted(options: ExecutorOptions, submit, *args):
    """``submit(*args)``; a refused submission (sbatch: bad partition, no such account, ...) is a UserError."""
    from submitit.core.utils import FailedJobError, FailedSubmissionError

    try:
        return submit(*args)
    except (FailedJobError, FailedSubmissionError) as exc:
        lines = [line for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
        raise UserError(f"--executor {options.executor}: the submission was refused: {lines[-1].strip()} "
                        "(the points not run are moved aside and rerun by the next `reprank sweep`)") from None
