"""Notebook 04's answers of two runs, paired on the prompts both answered: each arm of run B against the same arm of A.

    python benchmarks/compare_runs_04.py RUN_A RUN_B [--arms dpo paper] [--n-boot 2000]

Two runs of the main job with different settings upstream (notebook 01's reward data, say) judge the same held-out
prompts when their seed and evaluation sizes agree, so an arm's answers can be compared paired across the runs, as
notebook 04 compares its arms within one run: for every arm, source (test split, held-out source) and judge, the
paired bootstrap interval of B - A and the exact McNemar p-value of each rate (`discrimination.paired_verdict`),
and the interval of Δd'. One seed per run: a difference is the two runs' whole difference (their pairs, their
training), not one setting's effect.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from reprank.measure import discrimination, evaluate
from reprank.running import registry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    parser.add_argument("--arms", nargs="+", default=["untuned", "dpo", "paper"])
    parser.add_argument("--n-boot", type=int, default=2000)
    args = parser.parse_args()

    frames = {name: registry.load_artifact(run, "answers_04") for name, run in (("A", args.run_a), ("B", args.run_b))}
    key = lambda frame: set(zip(frame.prompts, frame.prompt))
    if key(frames["A"]) != key(frames["B"]):
        raise SystemExit(f"{args.run_b}: notebook 04 judged other prompts than {args.run_a} (seed, n_eval_* or the "
                         "data differ); only runs on the same prompts can be paired")
    answers = {f"{arm} ({name})": frame[frame.arm == arm] for name, frame in frames.items() for arm in args.arms}
    harmful = frames["A"][frames["A"].harmful]
    sources = {source: set(part.prompt) for source, part in harmful.groupby("prompts")}
    table = evaluate.answer_table(answers, sources)

    rows = []
    for (judge, source), part in table.groupby(["judge", "source"]):
        summary = discrimination.discrimination_summary(part, n_boot=args.n_boot).set_index("arm")
        for arm in args.arms:
            a, b = f"{arm} (A)", f"{arm} (B)"
            row = {"arm": arm, "judge": judge, "source": source}
            for statistic in ("safe_rate", "over_refusal_rate", "dprime"):
                shown = (lambda v: f"{v:.2f}") if statistic == "dprime" else (lambda v: f"{100 * v:.0f}%")
                row[f"{statistic} A -> B"] = f"{shown(summary.loc[a, statistic])} -> {shown(summary.loc[b, statistic])}"
                row[f"{statistic}: B - A"] = discrimination.paired_verdict(part, b, a, statistic=statistic,
                                                                          n_boot=args.n_boot)
            rows.append(row)
    with pd.option_context("display.width", 250, "display.max_colwidth", 60):
        print(pd.DataFrame(rows).set_index(["judge", "source", "arm"]).to_string())


if __name__ == "__main__":
    main()
