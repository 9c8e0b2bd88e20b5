"""Labelled responses and preference pairs for the probes and the hybrid reward model.

Two sources of labels:
* human-labelled responses (pyrit's scorer sets: did the response achieve the harmful objective?);
* our own rule-made labels on the policy's answers: for a harmful prompt, the policy's compliance is
  unsafe and a refusal is the safer answer; for a benign prompt, the policy's helpful answer beats a
  refusal (refusing harmless requests is the failure we want the reward to punish too).
"""

from __future__ import annotations

import random
from typing import Sequence

import pandas as pd

from reprank.base import defaults
from reprank.data.sources import assign_split
from reprank.data.pairs import validate_pairs
from reprank.data.judges import is_refusal

# kind -> (is the response unsafe?, what it is)
RESPONSE_KINDS = {
    "human_unsafe": (True, "human-labelled: the harmful objective was achieved"),
    "human_safe": (False, "human-labelled: the harmful objective was not achieved"),
    "policy_compliance": (True, "the policy's answer to a harmful prompt, not a refusal"),
    "policy_refusal": (False, "the policy's answer to a harmful prompt that refuses"),
    "reference_refusal": (False, "a written refusal to a harmful prompt"),
    "policy_benign": (False, "the policy's answer to a benign prompt"),
    "benign_refusal": (False, "a written refusal to a benign prompt (safe, but unhelpful)"),
}


def build_response_table(
    human: pd.DataFrame,
    harmful_answers: dict[str, str | Sequence[str]],
    benign_answers: dict[str, str | Sequence[str]],
    refusals: Sequence[str],
    *,
    refusals_per_prompt: int = defaults.RM_REFUSALS_PER_PROMPT,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per (prompt, response) with its safety label, kind, split and decoding.

    ``human`` has columns prompt, response, unsafe; ``*_answers`` map a prompt to the policy's answer, or to
    a list of answers: the greedy one first, then any sampled ones (column ``decoding``: "greedy" or
    "sampled"; "written" for refusals, "human" for the labelled rows). Each harmful prompt also gets
    ``refusals_per_prompt`` distinct written refusals and each benign prompt one, picked at random (seeded).
    More than one shows the reward several wordings of a refusal per prompt: with two (and 100 epochs) it ranked the
    refusal first in more harmful validation pools, but the aligned models of seed 0 were less safe on the held-out
    source, so the default stays one (docs/results.md, "Two refusals a prompt"; ``refusals_per_prompt=1`` draws what
    ``random.choice`` drew before the option existed).
    """
    if not 1 <= refusals_per_prompt <= len(refusals):
        raise ValueError(f"refusals_per_prompt = {refusals_per_prompt}: use 1 to {len(refusals)}, "
                         "the number of written refusals")
    rng = random.Random(seed)
    rows = []
    as_list = lambda answers: [answers] if isinstance(answers, str) else list(answers)
    decoding = lambda k: "greedy" if k == 0 else "sampled"
    for prompt, response, unsafe in zip(human["prompt"], human["response"], human["unsafe"]):
        rows.append((prompt, response, "human_unsafe" if unsafe else "human_safe", "human"))
    written = lambda prompt: [(prompt, text, "reference_refusal", "written")
                              for text in rng.sample(list(refusals), refusals_per_prompt)]
    for prompt in sorted(set(human.loc[human["unsafe"].astype(bool), "prompt"])):
        rows += written(prompt)
    for prompt, answers in harmful_answers.items():
        for k, answer in enumerate(as_list(answers)):
            rows.append((prompt, answer, "policy_refusal" if is_refusal(answer) else "policy_compliance", decoding(k)))
        rows += written(prompt)
    for prompt, answers in benign_answers.items():
        helpful = [(k, a) for k, a in enumerate(as_list(answers)) if not is_refusal(a)]
        # (an answer the untuned policy refused teaches nothing here)
        rows += [(prompt, answer, "policy_benign", decoding(k)) for k, answer in helpful]
        if helpful:
            rows.append((prompt, rng.choice(refusals), "benign_refusal", "written"))
    table = pd.DataFrame(rows, columns=["prompt", "response", "kind", "decoding"])
    table = table.drop_duplicates(["prompt", "response"]).reset_index(drop=True)
    table["unsafe"] = table["kind"].map(lambda k: RESPONSE_KINDS[k][0])
    table["split"] = [assign_split(p, seed=seed) for p in table["prompt"]]
    return table


def build_reward_pairs(table: pd.DataFrame, *, max_pairs_per_prompt: int = 4, seed: int = 0) -> pd.DataFrame:
    """(chosen, rejected) row-index pairs from a response table, never across prompts.

    Harmful prompts: every safe response (refusals, safe human-labelled answers) beats every unsafe one.
    Benign prompts: the policy's answer beats the refusal. At most ``max_pairs_per_prompt`` per prompt.
    """
    rng = random.Random(seed)
    pairs = []
    for prompt, group in table.groupby("prompt", sort=True):
        if (group["kind"] == "policy_benign").any():
            chosen = group.index[group["kind"] == "policy_benign"]
            rejected = group.index[group["kind"] == "benign_refusal"]
            source = "benign_helpful_over_refusal"
        else:
            chosen = group.index[~group["unsafe"]]
            rejected = group.index[group["unsafe"]]
            source = "harmful_safe_over_unsafe"
        candidates = [(int(c), int(r)) for c in chosen for r in rejected]
        rng.shuffle(candidates)
        for c, r in candidates[:max_pairs_per_prompt]:
            pairs.append({"chosen_row": c, "rejected_row": r, "prompt": prompt, "source": source,
                          "split": table.at[c, "split"]})
    return pd.DataFrame(pairs, columns=["chosen_row", "rejected_row", "prompt", "source", "split"])


def pairs_as_dataset(table: pd.DataFrame, pairs: pd.DataFrame, origin: str = "reward pairs"):
    """The pairs in reprank's preference-pair schema (validated ``datasets.Dataset``)."""
    rows = [
        {
            "prompt": p.prompt,
            "chosen": table.at[p.chosen_row, "response"],
            "rejected": table.at[p.rejected_row, "response"],
            "chosen_safe": not bool(table.at[p.chosen_row, "unsafe"]),
            "rejected_safe": not bool(table.at[p.rejected_row, "unsafe"]),
            "source": p.source,
            "split": p.split,
        }
        for p in pairs.itertuples()
    ]
    return validate_pairs(rows, origin=origin)
