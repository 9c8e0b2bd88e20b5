"""Preference pairs: their schema, JSONL files, and the PKU-SafeRLHF loader.

A pair is a prompt with a ``chosen`` and a ``rejected`` response, optional safety flags, a source and a
split. Bad input raises `reprank.data.sources.DataError` naming the file (or origin), row and field, e.g.
``data/pairs.jsonl, row 3, field 'chosen': must be a non-empty string``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import datasets

from reprank.data.sources import SPLITS, DataError, assign_split, check_bool, check_str, field_error
from reprank.base.fileio import read_jsonl, write_jsonl

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
        prompt, chosen, rejected = (check_str(origin, i, row, f) for f in PAIR_FIELDS)
        if chosen.strip() == rejected.strip():
            raise field_error(origin, i, "rejected", "identical to 'chosen'")
        source = row.get("source")
        if source is None:
            source = "unknown"
        elif not isinstance(source, str) or not source.strip():
            raise field_error(origin, i, "source", f"must be a non-empty string, got {source!r:.40}")
        split = row.get("split")
        if split is None:
            split = assign_split(prompt, seed)
        elif split not in SPLITS:
            raise field_error(origin, i, "split", f"must be one of {SPLITS}, got {split!r:.40}")
        clean.append({
            **row,
            "prompt": prompt,
            "chosen": chosen,
            "rejected": rejected,
            "chosen_safe": check_bool(origin, i, row, "chosen_safe", optional=True),
            "rejected_safe": check_bool(origin, i, row, "rejected_safe", optional=True),
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


TRAINING_COLUMNS = ("prompt", "chosen", "rejected", "confidence", "source")  # what training reads of a pairs table


def training_pairs(frame, name: str, seed: int = 0) -> datasets.Dataset:
    """A pairs table (a DataFrame, e.g. notebook 03's re-ranked pairs) cut to ``TRAINING_COLUMNS`` (those it has) and
    checked by ``validate_pairs``; an error names the pairs ``name``."""
    columns = [c for c in TRAINING_COLUMNS if c in frame]
    return validate_pairs(frame[columns].to_dict("records"), origin=f"pairs '{name}'", seed=seed)


def load_pairs_jsonl(path: str | Path, seed: int = 0) -> datasets.Dataset:
    """Read and validate a JSONL file of preference pairs."""
    return validate_pairs(read_jsonl(path, error=DataError), origin=str(path), seed=seed)


def save_pairs_jsonl(
    pairs: Sequence[Mapping] | datasets.Dataset, path: str | Path, overwrite: bool = False
) -> None:
    """Validate `pairs` and write them as JSONL (atomically); refuses to replace an existing file unless `overwrite`."""
    path = Path(path)
    ds = validate_pairs(pairs, origin=f"pairs for {path}")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(ds, path)


def load_pku_saferlhf(
    source: str | Path, split: str = "train", max_rows: int | None = None, seed: int = 0
) -> datasets.Dataset:
    """PKU-SafeRLHF as preference pairs: chosen = the safer response (`safer_response_id`).

    `source` is a local .json/.jsonl file, or anything `datasets.load_dataset` accepts, such as the hub id
    "PKU-Alignment/PKU-SafeRLHF" (its `split` is then loaded; needs internet). Our own
    train/validation/test `split` column is re-derived from the prompt with `assign_split`.
    """
    source = str(source)
    if Path(source).suffix in (".json", ".jsonl"):
        if not Path(source).is_file():
            raise DataError(f"{source}: file not found")
        try:
            raw = datasets.load_dataset("json", data_files=source, split="train")
        except Exception as exc:  # the json builder raises deep, generic errors
            if source.endswith(".jsonl"):
                read_jsonl(source, error=DataError)  # names the bad line, if that is the problem
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
            raise field_error(source, i, "safer_response_id", f"must be 0 or 1, got {safer!r}")
        safe = [check_bool(source, i, row, f"is_response_{k}_safe") for k in (0, 1)]
        pairs.append({
            "prompt": row["prompt"],
            "chosen": row[f"response_{safer}"],
            "rejected": row[f"response_{1 - safer}"],
            "chosen_safe": safe[safer],
            "rejected_safe": safe[1 - safer],
            "source": "pku_saferlhf",
        })
    return validate_pairs(pairs, origin=source, seed=seed)


def off_policy_pairs(n_harmful: int, n_benign: int, refusals: Sequence[str], seed: int = 0) -> list[dict]:
    """Pairs whose answers the policy did not write, for the off-policy DPO baseline (the paper's starting point).

    Harmful: a request from pyrit's human-labelled objective set with a response that people judged to achieve
    it (written by other models) as *rejected*, one of our written ``refusals`` as *chosen*. Benign: a request
    from pyrit's refusal set with a response people judged not to refuse as *chosen*, a written refusal as
    *rejected*. Up to ``n_harmful`` + ``n_benign`` pairs (fewer where the sets hold fewer), seeded.
    """
    import random

    from reprank.data.sources import load_human_labelled

    rng = random.Random(seed)
    objective = [r for r in load_human_labelled("objective", seed=seed).to_list() if r["unsafe"]]
    answered = [r for r in load_human_labelled("refusal", seed=seed).to_list() if r["refusal"] is False]
    rows = []
    for kind, records, n in (("harmful", objective, n_harmful), ("benign", answered, n_benign)):
        for record in rng.sample(records, min(n, len(records))):
            refusal = rng.choice(list(refusals))
            chosen, rejected = (refusal, record["response"]) if kind == "harmful" else (record["response"], refusal)
            rows.append({"prompt": record["prompt"], "chosen": chosen, "rejected": rejected,
                         "source": f"offpolicy_{kind}"})
    return rows
