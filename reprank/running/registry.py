"""The steps of the series and the files each one makes for a later one, each under one name and in one format.

A notebook saves and loads its artifacts by name, through its lesson (``lesson.save("rm_pairs", pairs)``,
``lesson.load("hybrid_rm")``; here :func:`save_artifact` and :func:`load_artifact`): the registry knows each one's
file under ``artifacts/`` and its format (``Artifact.format``: a reward model, preference pairs, a table as JSON
lines, a JSON value, a compute ledger), so no notebook types a file name or picks a reader.

One rule for a file that is already there. A step saves only its own artifacts, always under the registry's
name, and every save is recorded in ``artifacts/manifest.json`` (the step, the file's SHA-256). Saving over a
file that the same step saved and that nobody changed since replaces it (atomically): re-running a notebook in
its own run folder replaces its own results, and a step's results copied from another run (``--from-run``, an
older run's included) count as that step's. Any other file there (one a user made or edited, or one from before
the manifest) is never overwritten: the save stops with one line naming the file and what to do. No step saves
another's.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from reprank.base.errors import UserError
from reprank.base.fileio import atomic_write_json, read_text, write_jsonl
from reprank.running.runs import now, read_metrics


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
    format: str = "json"  # one of FORMATS: how save_artifact writes it and load_artifact reads it


STEPS = {
    "01": Step("01", "01_probing_safety_representations.ipynb", "01_probing"),
    "02": Step("02", "02_label_confidence.ipynb", "02_confidence", ("01",)),
    "03": Step("03", "03_reranking.ipynb", "03_reranking", ("01",)),  # uses 02's fitted tau when 02 ran
    "04": Step("04", "04_aligning_with_confidence.ipynb", "04_alignment", ("02", "03")),  # 02 and 03 build 01
    "05": Step("05", "05_where_confidence_helps.ipynb", "05_noise", ("02", "03")),  # an experiment after 04
    "06": Step("06", "06_baselines_and_compute.ipynb", "06_baselines", ("04",)),  # 04's other comparisons
}

ARTIFACTS = {
    "hybrid_rm": Artifact("01", "hybrid_rm.pt", "rm_path", "the hybrid reward model (weights, layers, model id)",
                          "reward_model"),
    "rm_pairs": Artifact("01", "rm_pairs.jsonl", None, "the preference pairs the reward model was trained on", "pairs"),
    "responses": Artifact("01", "responses.jsonl", None, "labelled (prompt, response) rows of notebook 01", "table"),
    "confidence": Artifact("02", "confidence.json", None, "the fitted temperature tau and alpha", "json"),
    "reranked_pairs": Artifact("03", "reranked_pairs.jsonl", "pairs_path", "the re-ranked training pairs", "pairs"),
    "candidates": Artifact("03", "candidates.jsonl", "candidates_path", "every scored candidate of notebook 03",
                           "table"),
    "compute_03": Artifact("03", "compute_03.json", None, "notebook 03's compute ledger", "ledger"),
    "sampling": Artifact("03", "sampling.json", "sampling_path", "notebook 03's sampling and pairing settings", "json"),
    "answers_04": Artifact("04", "answers_04.jsonl", None, "every judged answer of notebook 04, one row per (arm, prompt)",
                           "table"),
    "compute_04": Artifact("04", "compute_04.json", None, "notebook 04's compute ledger", "ledger"),
    "answers_06": Artifact("06", "answers_06.jsonl", None, "every judged answer of notebook 06, one row per (arm, prompt)",
                           "table"),
    "compute_06": Artifact("06", "compute_06.json", None, "notebook 06's compute ledger", "ledger"),
}
MANIFEST = "manifest.json"  # under artifacts/: what each step saved there (see the module docstring)

SAMPLING_KEYS = ("temperature", "top_k", "top_p", "repetition_penalty", "samples_per_prompt", "max_new_tokens",
                 "pairing", "pairs_per_prompt", "reference_per_prompt", "alpha")
"""What ``sampling.json`` holds: how notebook 03 sampled candidates and read pairs off their ranking."""


MAIN_SERIES = ("01", "02", "03", "04")  # the four steps `make run` runs; 05 and 06 are experiments after them


def earlier_steps(prefix: str) -> list[str]:
    """The steps of the main series before step ``prefix``: what a notebook run by hand reuses or builds first."""
    return [p for p in MAIN_SERIES if p < prefix[:2]]


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
    """A path to write artifact ``name`` to: its usual name, or a timestamped one if that file exists.

    The rule before :func:`save_artifact`, kept for notebooks that still write through paths: new code saves by
    name (a timestamped file is one a later step never reads unless the step records it under ``metrics_key``).
    """
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


# ----------------------------------------------------------------------------------------------- saving and loading


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(run_dir: str | Path) -> dict:
    """``artifacts/manifest.json``: for each file a step saved there, ``{"artifact", "step", "sha256", "saved_at"}``."""
    path = Path(run_dir) / "artifacts" / MANIFEST
    return json.loads(read_text(path)) if path.is_file() else {}


def saved_by_step(run_dir: str | Path, name: str) -> bool:
    """Whether artifact ``name``'s file in ``run_dir`` is the one its step saved there, unchanged since."""
    path, spec = default_path(run_dir, name), _spec(name)
    entry = read_manifest(run_dir).get(spec.filename)
    return bool(entry and entry.get("step") == spec.step and path.is_file() and entry.get("sha256") == _sha256(path))


def record_copied(run_dir: str | Path) -> None:
    """Record the artifacts just copied into a new run folder from another run (``--from-run``) as their steps'
    own, so that a step re-run there replaces them: entries copied with the files are kept, and files from a run
    made before the manifest get one."""
    manifest = read_manifest(run_dir)
    for name, spec in ARTIFACTS.items():
        path = default_path(run_dir, name)
        if path.is_file() and spec.filename not in manifest:
            manifest[spec.filename] = {"artifact": name, "step": spec.step, "sha256": _sha256(path), "saved_at": now(),
                                       "copied": True}
    if manifest:
        atomic_write_json(Path(run_dir) / "artifacts" / MANIFEST, manifest, sort_keys=True)


def _write_reward_model(path, model, **metadata):
    model.save(path, **metadata)


def _read_reward_model(path):
    from reprank.method.reward import HybridRewardModel

    return HybridRewardModel.load(path)


def _write_pairs(path, pairs, seed: int = 0):
    import pandas as pd

    from reprank.data.pairs import validate_pairs

    rows = pairs.to_dict("records") if isinstance(pairs, pd.DataFrame) else pairs  # or a Dataset, or dicts
    write_jsonl(validate_pairs(rows, origin=f"pairs for {path.name}", seed=seed), path)


def _read_pairs(path, seed: int = 0):
    from reprank.data.pairs import load_pairs_jsonl

    return load_pairs_jsonl(path, seed=seed).to_pandas()


def _write_table(path, table):
    import pandas as pd

    pd.DataFrame(table).to_json(path, orient="records", lines=True)


def _read_table(path):
    import pandas as pd

    return pd.read_json(path, orient="records", lines=True)


def _write_ledger(path, ledger):
    ledger.save(path)


def _read_ledger(path):
    from reprank.measure.compute import ComputeLedger

    return ComputeLedger.load(path)


# format -> (write(path, value, **options), read(path, **options), what load returns)
FORMATS = {
    "reward_model": (_write_reward_model, _read_reward_model, "a reprank.method.reward.HybridRewardModel (.pt)"),
    "pairs": (_write_pairs, _read_pairs, "a DataFrame of validated preference pairs (JSON lines)"),
    "table": (_write_table, _read_table, "a DataFrame (JSON lines, one record per row)"),
    "json": (lambda path, value: atomic_write_json(path, value), lambda path: json.loads(read_text(path)),
             "a JSON value"),
    "ledger": (_write_ledger, _read_ledger, "a reprank.measure.compute.ComputeLedger"),
}


class ArtifactExistsError(UserError, FileExistsError):
    """A file is where an artifact goes, and the registry's rule keeps it (see the module docstring)."""


def save_artifact(run_dir: str | Path, name: str, value, *, step: str, **options) -> Path:
    """Save ``value`` as artifact ``name`` of step ``step`` in its format (``options`` go to the writer: a reward
    model's metadata, the pairs' ``seed``); returns its path. A file already there follows the module's rule."""
    spec = _spec(name)
    if spec.step != step[:2]:
        raise ValueError(f"artifact {name!r} ({spec.description}) is notebook {spec.step}'s; "
                         f"notebook {step[:2]} cannot save it")
    path = default_path(run_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not saved_by_step(run_dir, name):
        raise ArtifactExistsError(
            f"{path} is there, and notebook {spec.step} did not save it or it changed since: it is never overwritten. "
            f"Move it away, or run notebook {spec.step} in a new folder (output_dir = \"\")")
    write = FORMATS[spec.format][0]
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp, value, **options)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    manifest = read_manifest(run_dir)
    manifest[spec.filename] = {"artifact": name, "step": spec.step, "sha256": _sha256(path), "saved_at": now()}
    atomic_write_json(path.parent / MANIFEST, manifest, sort_keys=True)
    return path


REQUIRED = object()  # load_artifact without a default: a missing file is an error


def load_artifact(run_dir: str | Path, name: str, default=REQUIRED, **options):
    """Artifact ``name`` of the run folder, read in its format (where :func:`artifact` finds it); ``default`` when
    the file is not there, else one line naming the step that saves it."""
    spec, path = _spec(name), artifact(run_dir, name)
    if not path.is_file():
        if default is not REQUIRED:
            return default
        raise UserError(f"{path}: not there ({spec.description}); notebook {spec.step} saves it: run it in "
                        f"{Path(run_dir)} first")
    return FORMATS[spec.format][1](path, **options)
