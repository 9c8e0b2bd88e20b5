"""Label noise: flip a known share of the training pairs, then ask which loss copes and whether p finds the flips.

``flip_labels`` swaps chosen and rejected in a seeded, exact share of the pairs within each ``source`` (harmful
and benign re-ranked pairs alike), chosen without looking at any reward: a flipped pair is wrong because we made
it wrong, not because a reward model thought so. It marks them in a boolean ``flipped`` column, which
``ConfidenceDPOTrainer`` reads to log, per step, how well the confidence it trains with finds them
(``FlipDetectionWindow``). Its two steps are ``flip_mask`` (which pairs: an exact, seeded share per group) and
``swap_labels`` (the flipped copy: every column of a side moves with it); notebook 05 has the student write
both. ``ARMS`` names the arms of the noise experiment (one ``align`` method each, on clean or noisy pairs);
``arm_settings`` turns an arm and the noise rate into ``make_trainer`` arguments.
"""

from __future__ import annotations

import zlib
from collections import deque
from typing import Callable

import datasets
import numpy as np
import pandas as pd

from reprank.method.confidence import detection_auroc, flip_pairs

# Arm -> (align method, trained on the flipped pairs?). "dpo_smoothing" gets epsilon = the noise rate.
ARMS = {
    "dpo_clean": ("dpo", False),
    "dpo_noisy": ("dpo", True),
    "dpo_smoothing": ("dpo_smoothing", True),
    "paper": ("paper", True),
    "paper_pair": ("paper_pair", True),
    "confidence": ("confidence", True),
}


def flip_labels(pairs: pd.DataFrame | datasets.Dataset, fraction: float = 0.25, seed: int = 0, *,
                by: str | None = "source") -> pd.DataFrame | datasets.Dataset:
    """A copy of ``pairs`` with chosen and rejected swapped in ``round(n_s * fraction)`` pairs of each ``by`` group.

    Which pairs flip depends only on ``seed``, the group's name and its size: never on a reward, so the flips
    are independent of anything a reward model (or the policy) could know. An exact count per group (not a coin
    per pair) keeps the noise rate the same across seeds and the harmful/benign mix the same in the flipped
    pairs as in all pairs. ``by=None`` flips over all pairs at once.

    Everything that belongs to a side moves with it: ``chosen_X`` and ``rejected_X`` columns are swapped too
    (``chosen_reward``, ``chosen_origin``, ``chosen_safe``, ...), and a ``confidence`` column becomes ``1 - p`` on
    flipped pairs: the probability that the *new* label is right under the same per-pair model, exact for
    ``sigmoid((R_c - R_r) / tau)`` (notebook 03's pairs with notebook 02's tau); for the paper's floored formula
    recompute it from the swapped reward columns instead. Adds a boolean column ``flipped``.

    The matched control: a share ``fraction`` of labels flipped at random means each stored label is right
    with probability ``1 - fraction``, so label smoothing with ``epsilon = fraction`` (``dpo_smoothing``,
    p = 1 - epsilon for every pair) is the constant confidence that is calibrated for this noise. It shrinks
    every pair equally; a confidence that helps must beat it by singling out the flipped pairs.
    """
    as_dataset = isinstance(pairs, datasets.Dataset)
    frame = pairs.to_pandas() if as_dataset else pairs.reset_index(drop=True).copy()
    if "flipped" in frame:
        raise ValueError("pairs already have a 'flipped' column: flip the clean pairs, once")
    frame = swap_labels(frame, flip_mask(frame, fraction, seed, by=by))
    return datasets.Dataset.from_pandas(frame, preserve_index=False) if as_dataset else frame


def flip_mask(pairs: pd.DataFrame, fraction: float = 0.25, seed: int = 0, *, by: str | None = "source",
              draw: Callable[..., np.ndarray] = flip_pairs) -> np.ndarray:
    """Which rows of ``pairs`` ``flip_labels`` flips: a boolean array, ``round(n_s * fraction)`` True in each ``by``
    group, in row order. ``draw(n, fraction, seed)`` gives one group's mask (``confidence.flip_pairs``; notebook 05
    passes the student's own), seeded by ``[seed, crc32(group name)]``: one stream per group, so adding or dropping
    a group leaves the others' flips as they were. ``by=None`` draws over all pairs at once."""
    if by is not None and by not in pairs:
        raise ValueError(f"pairs have no {by!r} column to stratify by (columns: {list(pairs.columns)}); "
                         "pass by=None to flip over all pairs")
    groups = (pairs[by].astype(str) if by is not None else pd.Series("all", index=pairs.index)).to_numpy()
    flipped = np.zeros(len(pairs), dtype=bool)
    for name in sorted(set(groups)):
        rows = np.flatnonzero(groups == name)
        flipped[rows] = draw(len(rows), fraction, seed=[seed, zlib.crc32(name.encode())])
    return flipped


def swap_labels(pairs: pd.DataFrame, flipped) -> pd.DataFrame:
    """A copy of ``pairs`` (same index and columns) whose rows marked in ``flipped`` (booleans, by position) have
    chosen and rejected swapped, with everything that belongs to a side: every ``chosen_X`` with its ``rejected_X``,
    and a ``confidence`` p turned into ``1 - p``; plus a boolean column ``flipped``, last. ``pairs`` is left as it
    was. Raises ValueError when ``pairs`` already has a ``flipped`` column or ``flipped`` is not one flag per row."""
    flipped = np.asarray(flipped, dtype=bool).reshape(-1)
    if "flipped" in pairs:
        raise ValueError("pairs already have a 'flipped' column: flip the clean pairs, once")
    if len(flipped) != len(pairs):
        raise ValueError(f"Got {len(flipped)} flip flags for {len(pairs)} pairs; give one per pair")
    frame = pairs.copy()
    for column in [c for c in frame.columns if c == "chosen" or c.startswith("chosen_")]:
        other = "rejected" + column.removeprefix("chosen")
        if other in frame:
            # .to_numpy(): assigning one column's values to the other, not aligning them by name back onto themselves
            chosen, rejected = frame[column].to_numpy(copy=True), frame[other].to_numpy(copy=True)
            frame.loc[flipped, column], frame.loc[flipped, other] = rejected[flipped], chosen[flipped]
    if "confidence" in frame:
        frame.loc[flipped, "confidence"] = 1.0 - frame.loc[flipped, "confidence"]
    frame["flipped"] = flipped
    return frame


def arm_settings(arm: str, label_noise: float) -> dict:
    """What one arm of the noise experiment trains: ``{"method", "noisy", "epsilon"}`` (``epsilon`` for
    ``dpo_smoothing`` only: the matched one, equal to ``label_noise``; else None)."""
    if arm not in ARMS:
        raise ValueError(f"arm must be one of {tuple(ARMS)}; got {arm!r}")
    method, noisy = ARMS[arm]
    if method == "dpo_smoothing" and not 0.0 < label_noise < 0.5:
        raise ValueError(f"the matched smoothing arm needs 0 < label_noise < 0.5; got {label_noise}")
    return {"method": method, "noisy": noisy, "epsilon": label_noise if method == "dpo_smoothing" else None}


class FlipDetectionWindow:
    """AUROC of ``1 - p`` for the flipped pairs among the pairs of the last ``batches`` batches.

    A batch of 4 pairs at 25% noise holds no flipped pair about a third of the time, and an AUROC needs both
    kinds; so each step's value pools the pairs of the last ``batches`` batches (the current one included): 8
    batches of 4 hold ~8 flipped pairs at 25% noise. The pooled p come from up to ``batches`` steps of training
    (a moving policy and, for ``paper``, a moving reward model): the value trails the current state a little.
    ``batches=1`` is the batch alone. ``update`` returns None while the window lacks either kind.
    The paper's batch p is one value per batch: within a batch it ties every pair (AUROC 0.5); across the
    window it can still rank batches with more flips lower.
    """

    def __init__(self, batches: int = 8):
        if batches < 1:
            raise ValueError(f"batches must be at least 1; got {batches}")
        self._recent = deque(maxlen=batches)

    def update(self, p, flipped) -> float | None:
        """Add one batch's confidences and flip flags; the AUROC over the window, or None if it is one-sided."""
        self._recent.append((np.asarray(p, dtype=float).reshape(-1), np.asarray(flipped, dtype=bool).reshape(-1)))
        flags = np.concatenate([f for _, f in self._recent])
        if flags.all() or not flags.any():
            return None
        return detection_auroc(np.concatenate([c for c, _ in self._recent]), flags)


class FlipDetection:
    """A pair observer for ``ConfidenceDPOTrainer(pair_observers=[FlipDetection])`` (one instance per mode):
    each batch's mean p of the flipped and of the clean pairs (``confidence/mean_flipped``,
    ``confidence/mean_clean``, when the batch holds that kind) and ``confidence/flip_auroc``, the AUROC of
    ``1 - p`` for the flipped pairs over the last ``batches`` batches (``FlipDetectionWindow``)."""

    def __init__(self, batches: int = 8):
        self.window = FlipDetectionWindow(batches)

    @classmethod
    def every(cls, batches: int = 8):
        """A factory the trainer calls once per mode."""
        return lambda: cls(batches)

    def __call__(self, p, flipped) -> dict:
        p, flipped = np.asarray(p, dtype=float), np.asarray(flipped, dtype=bool)
        logged = {f"confidence/mean_{name}": float(p[rows].mean())
                  for name, rows in (("flipped", flipped), ("clean", ~flipped)) if rows.any()}
        auroc = self.window.update(p, flipped)
        if auroc is not None:  # logged only once the window holds both kinds
            logged["confidence/flip_auroc"] = auroc
        return logged
