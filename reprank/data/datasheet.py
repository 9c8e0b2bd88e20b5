"""Datasheet: row counts of every prompt and label source, as a markdown table.

Run ``python -m reprank.data.datasheet --summary`` (data/README.md's tables come from it).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections import Counter
from collections.abc import Sequence
from typing import Any

import datasets

from reprank.data.sources import (DataError, data_dir, load_benign_prompts, load_harmful_prompts, load_heldout_harmful_prompts,
                   load_human_labelled, load_refusals, read_prompt_rows)


def _near_duplicates_dropped() -> list[dict]:
    """Benchmark prompts that exact dedup keeps and near-duplicate dedup drops (source, split of each)."""
    kept = set(load_harmful_prompts()["prompt"])
    return [r for r in load_harmful_prompts(near_duplicate_threshold=None).to_list() if r["prompt"] not in kept]


def _heldout_dropped() -> list[str]:
    """Held-out prompts dropped because they near-duplicate a benchmark prompt."""
    path = data_dir() / "heldout_harmful_prompts.jsonl"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kept = set(load_heldout_harmful_prompts(path)["prompt"])
    return [p for p in read_prompt_rows(path, ("prompt",))["prompt"] if p not in kept]


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
    count("harmful_near_duplicates_dropped", _near_duplicates_dropped, {"source": col("source"), "split": col("split")})
    count("benign", load_benign_prompts,
          {"sounds_harmful": col("sounds_harmful"), "category": col("category"), "split": col("split"),
           "over_refusal_type": lambda r: r["over_refusal_type"] or "none"})
    count("heldout", load_heldout_harmful_prompts, {"category": col("category"), "split": col("split")})
    count("heldout_dropped_as_benchmark_near_duplicates", _heldout_dropped, {})
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
    parser = argparse.ArgumentParser(prog="python -m reprank.data.datasheet", description=__doc__.splitlines()[0])
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
