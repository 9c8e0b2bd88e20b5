"""The steps of the series and the files each one makes for a later one, each under one name.

Notebooks and the runner ask here for a path (``registry.artifact(run_dir, "reranked_pairs")``) instead of
typing file names. Files are never overwritten silently: a notebook that finds one already there writes a
new, timestamped name (:func:`new_artifact_path`) and records the path it used in its metrics section under
the artifact's ``metrics_key``; :func:`artifact` resolves through that record first.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from .runs import read_metrics


@dataclass(frozen=True)
class Step:
    prefix: str  # "01"
    notebook: str  # the notebook's file name
    section: str  # its section in metrics.json; present once the step has finished
    needs: tuple[str, ...] = ()  # the steps whose results it reads; a notebook run in a given folder builds any missing


@dataclass(frozen=True)
class Artifact:
    step: str  # the prefix of the step that writes it
    filename: str  # under the run folder's artifacts/
    metrics_key: str | None = None  # the key of the step's metrics section that records the path actually used
    description: str = ""


STEPS = {
    "01": Step("01", "01_probing_safety_representations.ipynb", "01_probing"),
    "02": Step("02", "02_label_confidence.ipynb", "02_confidence", ("01",)),
    "03": Step("03", "03_reranking.ipynb", "03_reranking", ("01",)),  # uses 02's fitted tau when 02 ran
    "04": Step("04", "04_aligning_with_confidence.ipynb", "04_alignment", ("02", "03")),  # 02 and 03 build 01
    "05": Step("05", "05_where_confidence_helps.ipynb", "05_noise", ("02", "03")),  # an experiment after 04
}

ARTIFACTS = {
    "hybrid_rm": Artifact("01", "hybrid_rm.pt", "rm_path", "the hybrid reward model (weights, layers, model id)"),
    "rm_pairs": Artifact("01", "rm_pairs.jsonl", None, "the preference pairs the reward model was trained on"),
    "responses": Artifact("01", "responses.jsonl", None, "labelled (prompt, response) rows of notebook 01"),
    "confidence": Artifact("02", "confidence.json", None, "the fitted temperature tau and alpha"),
    "reranked_pairs": Artifact("03", "reranked_pairs.jsonl", "pairs_path", "the re-ranked training pairs"),
    "candidates": Artifact("03", "candidates.jsonl", "candidates_path", "every scored candidate of notebook 03"),
    "compute_03": Artifact("03", "compute_03.json", None, "notebook 03's compute ledger"),
    "sampling": Artifact("03", "sampling.json", "sampling_path", "notebook 03's sampling and pairing settings"),
}

SAMPLING_KEYS = ("temperature", "top_k", "top_p", "repetition_penalty", "samples_per_prompt", "max_new_tokens",
                 "pairing", "pairs_per_prompt", "reference_per_prompt", "alpha")
"""What ``sampling.json`` holds: how notebook 03 sampled candidates and read pairs off their ranking."""


def step(prefix: str) -> Step:
    try:
        return STEPS[prefix[:2]]
    except KeyError:
        raise KeyError(f"unknown step {prefix!r}; steps: {', '.join(STEPS)}") from None


def step_of_file(name: str) -> str | None:
    """The step that made a file of a run folder's artifacts/ or figures/: by its ``NN_`` prefix (figures, 04's
    answers) or its registered artifact's name (timestamped ones included); None if not known."""
    if name[2:3] == "_" and name[:2] in STEPS:
        return name[:2]
    for spec in ARTIFACTS.values():
        stem, suffix = Path(spec.filename).stem, Path(spec.filename).suffix
        if name == spec.filename or (name.startswith(f"{stem}-") and name.endswith(suffix)):
            return spec.step
    return None


def _spec(name: str) -> Artifact:
    try:
        return ARTIFACTS[name]
    except KeyError:
        raise KeyError(f"unknown artifact {name!r}; artifacts: {', '.join(ARTIFACTS)}") from None


def default_path(run_dir: str | Path, name: str) -> Path:
    return Path(run_dir) / "artifacts" / _spec(name).filename


def artifact(run_dir: str | Path, name: str) -> Path:
    """Where artifact ``name`` of the run folder is: the path its step recorded in metrics.json, else the
    registry's file name under ``artifacts/``."""
    spec = _spec(name)
    if spec.metrics_key:
        recorded = read_metrics(run_dir).get(STEPS[spec.step].section, {}).get(spec.metrics_key)
        if recorded:
            return Path(run_dir) / recorded
    return default_path(run_dir, name)


def new_artifact_path(run_dir: str | Path, name: str) -> Path:
    """A path to write artifact ``name`` to: its usual name, or a timestamped one if that file exists."""
    path = default_path(run_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        return path
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate, n = path.with_name(f"{path.stem}-{stamp}{path.suffix}"), 0
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.stem}-{stamp}-{n}{path.suffix}")
    return candidate


def relative(run_dir: str | Path, path: str | Path) -> str:
    """How a notebook records an artifact's path in its metrics (relative to the run folder)."""
    return str(Path(path).resolve().relative_to(Path(run_dir).resolve()))
