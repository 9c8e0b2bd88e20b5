"""Label confidence: how much to trust each stored preference label, and how well that trust is calibrated.

The paper weights each DPO batch by a confidence computed from the reward model's scores of the chosen
and rejected responses. Here we also offer a per-pair, temperature-calibrated confidence, and the tools to
check either one: expected calibration error, reliability tables, and detection of deliberately flipped
labels.
"""

from __future__ import annotations

from typing import Callable, TypeVar

import numpy as np
import pandas as pd
import torch
from scipy.optimize import minimize_scalar
from scipy.special import log_expit
from scipy.stats import binned_statistic
from sklearn.metrics import roc_auc_score

from reprank.base import defaults

ArrayLike = TypeVar("ArrayLike", torch.Tensor, np.ndarray)


def _numpy(values) -> np.ndarray:
    """A flat, writable float64 copy; lists go straight to float64 (via torch they would pass through float32).

    A copy, because pandas hands out read-only arrays that ``torch.from_numpy`` warns about.
    """
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().double()
    return np.array(values, dtype=np.float64).reshape(-1)


def _pair(chosen, rejected) -> tuple[torch.Tensor, torch.Tensor]:
    """Both score vectors as float64 tensors of one shape, with a clear error when they do not pair up."""
    c, r = torch.from_numpy(_numpy(chosen)), torch.from_numpy(_numpy(rejected))
    if len(c) != len(r):
        raise ValueError(f"Got {len(c)} chosen but {len(r)} rejected scores; they must pair up.")
    if len(c) == 0:
        raise ValueError("Need at least one (chosen, rejected) pair.")
    return c, r


def _result_dtype(like) -> torch.dtype:
    """The caller's float dtype for tensor results (float32 loss * float64 weight would upcast the loss)."""
    if isinstance(like, torch.Tensor) and like.is_floating_point():
        return like.dtype
    return torch.get_default_dtype()


def paper_batch_confidence(chosen_scores, rejected_scores, alpha: float = defaults.ALPHA) -> torch.Tensor:
    """The paper's confidence of one batch: ``max(sigmoid(alpha * (mean sig(s_c) - mean sig(s_r))), 0.5)``.

    Labels are never flipped: a batch whose reward disagrees with its labels gets p = 0.5, which makes
    the confidence-weighted DPO loss neutral about it rather than pushing the other way. Returns a
    scalar tensor (no gradient: the reward model is frozen during DPO).
    """
    c, r = _pair(chosen_scores, rejected_scores)
    margin = torch.sigmoid(c).mean() - torch.sigmoid(r).mean()
    return torch.sigmoid(alpha * margin).clamp(min=defaults.CONFIDENCE_FLOOR).to(_result_dtype(chosen_scores))


def batched_paper_confidence(
    chosen_scores, rejected_scores, batch_size: int, alpha: float = defaults.ALPHA, seed: int = 0,
    batch_confidence: Callable = paper_batch_confidence,
) -> np.ndarray:
    """Each pair's confidence as training would see it: its (seeded, shuffled) batch's ``p``.

    The paper's p belongs to a batch, not a pair, so one pair's confidence depends on its batch mates.
    ``batch_size=1`` gives the per-pair version of the same formula. ``batch_confidence(s_c, s_r, alpha)``
    computes one batch's p from float64 tensors (notebook 02 passes the student's own).
    """
    c, r = _pair(chosen_scores, rejected_scores)
    batch = torch.from_numpy(batch_ids(len(c), batch_size, seed))
    confidence = torch.empty(len(c), dtype=c.dtype)
    for b in batch.unique():
        members = batch == b
        confidence[members] = float(batch_confidence(c[members], r[members], alpha))
    return confidence.numpy()


def floor_share(confidence, batch) -> float:
    """The share of batches whose ``p`` sits at the 0.5 floor (``p <= 0.5``): batches, not pairs.

    ``confidence`` holds each pair's p as ``batched_paper_confidence`` returns it (one value per batch,
    repeated for its pairs) and ``batch`` each pair's batch id (``batch_ids``; ``np.arange(n)`` for batches of one).
    Such a batch pulls neither way in the conservative loss. With ``alpha > 0`` it is the share of batches
    whose gap ``mean sig(s_c) - mean sig(s_r)`` is at most 0, whatever ``alpha``.
    """
    conf, ids = _numpy(confidence), np.asarray(batch).reshape(-1)
    if len(conf) != len(ids):
        raise ValueError(f"Got {len(conf)} confidences but {len(ids)} batch ids; they must pair up.")
    if len(conf) == 0:
        raise ValueError("Need at least one pair.")
    return float(pd.Series(conf <= defaults.CONFIDENCE_FLOOR).groupby(ids).all().mean())


def batch_ids(n: int, batch_size: int, seed: int = 0) -> np.ndarray:
    """The batch each of ``n`` pairs falls in after a seeded shuffle (what ``batched_paper_confidence`` uses)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1; got {batch_size}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    ids = np.empty(n, dtype=np.int64)
    ids[order] = np.arange(n) // batch_size
    return ids


def fit_alpha(
    chosen_scores, rejected_scores, label_correct, batch_size: int, seed: int = 0,
    bounds: tuple[float, float] = (0.1, 100.0),
) -> float:
    """The paper's sharpness ``alpha`` fitted like ``tau``: the batch confidence as a probability that a label is right.

    Every pair gets its (seeded, shuffled) batch's ``p = max(sigmoid(alpha * gap), 0.5)`` exactly as training
    would; ``alpha`` minimises the binary negative log-likelihood of ``label_correct`` over ``log alpha`` within
    ``bounds``. Needs some wrong labels (e.g. flipped on purpose): with none, the optimum runs to the upper bound.
    """
    c, r = _pair(chosen_scores, rejected_scores)
    y = _labels(label_correct, len(c))
    # Each pair's batch gap (mean sigma(s_c) - mean sigma(s_r)), with the same batches as batched_paper_confidence.
    batch = batch_ids(len(c), batch_size, seed)
    sig_c, sig_r = pd.Series(torch.sigmoid(c).numpy()), pd.Series(torch.sigmoid(r).numpy())
    gap = (sig_c.groupby(batch).transform("mean") - sig_r.groupby(batch).transform("mean")).to_numpy()
    # log p and log (1 - p) of p = max(sigmoid(alpha gap), floor), computed stably
    floor = defaults.CONFIDENCE_FLOOR
    return _fit_scale(lambda alpha: _binary_nll(np.maximum(log_expit(alpha * gap), np.log(floor)),
                                                np.minimum(log_expit(-alpha * gap), np.log(1 - floor)), y), bounds)


def pair_confidence(chosen_reward: ArrayLike, rejected_reward: ArrayLike, tau: float) -> ArrayLike:
    """Probability that the stored label is right, ``sigmoid((R_c - R_r) / tau)``.

    Unlike the paper's p this may fall below 0.5: the reward then says the pair is more likely flipped.
    Returns a tensor for tensor input, else a numpy array.
    """
    if tau <= 0:
        raise ValueError(f"tau must be positive; got {tau}")
    c, r = _pair(chosen_reward, rejected_reward)
    p = torch.sigmoid((c - r) / tau)
    return p.to(_result_dtype(chosen_reward)) if isinstance(chosen_reward, torch.Tensor) else p.numpy()


def fit_temperature(
    chosen_reward, rejected_reward, label_correct, bounds: tuple[float, float] = (0.05, 100.0)
) -> float:
    """The ``tau`` that makes ``pair_confidence`` a calibrated probability of ``label_correct`` (1 = label right).

    Minimizes the binary negative log-likelihood over ``log tau`` within ``bounds``; bounded, so it still
    returns a finite tau when every label is correct (the unbounded optimum would be tau -> 0).
    """
    c, r = _pair(chosen_reward, rejected_reward)
    margin = (c - r).numpy()
    y = _labels(label_correct, len(margin))
    return _fit_scale(lambda tau: _temperature_nll(margin, y, tau), bounds)


def label_nll(chosen_reward, rejected_reward, label_correct, tau: float) -> float:
    """The mean negative log-likelihood of ``label_correct`` under ``pair_confidence(..., tau)``: what
    ``fit_temperature`` minimises. From log-sigmoids, so a confident wrong label costs a large finite number."""
    if tau <= 0:
        raise ValueError(f"tau must be positive; got {tau}")
    c, r = _pair(chosen_reward, rejected_reward)
    margin = (c - r).numpy()
    return _temperature_nll(margin, _labels(label_correct, len(margin)), tau)


def _temperature_nll(margin: np.ndarray, y: np.ndarray, tau: float) -> float:
    # log sigma(m / tau) if the label is right, log(1 - sigma(m / tau)) = log sigma(-m / tau) if not
    return _binary_nll(log_expit(margin / tau), log_expit(-margin / tau), y)


def _binary_nll(log_p: np.ndarray, log_q: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(y * log_p + (1 - y) * log_q))


def _labels(label_correct, n: int) -> np.ndarray:
    y = _numpy(label_correct)
    if len(y) != n:
        raise ValueError(f"Got {n} pairs but {len(y)} labels; they must pair up.")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("label_correct must hold only 0 and 1.")
    return y


def _fit_scale(nll: Callable[[float], float], bounds: tuple[float, float]) -> float:
    """The scale within ``bounds`` that minimises ``nll(scale)``, searched over its log."""
    lo, hi = bounds
    if not 0 < lo < hi:
        raise ValueError(f"bounds must satisfy 0 < low < high; got {bounds}")
    result = minimize_scalar(lambda log_scale: nll(np.exp(log_scale)), bounds=(np.log(lo), np.log(hi)),
                             method="bounded")
    return float(np.exp(result.x))


def reliability_table(confidence, correct, n_bins: int = 10) -> pd.DataFrame:
    """Mean confidence and accuracy per equal-width confidence bin over [0, 1] (non-empty bins only).

    The rows of a reliability diagram: a calibrated confidence has ``accuracy == mean_confidence`` in
    every bin. Bins are half-open ``[lower, upper)`` except the last, which includes 1.
    """
    conf, hit = _numpy(confidence), _numpy(correct)
    if len(conf) != len(hit):
        raise ValueError(f"Got {len(conf)} confidences but {len(hit)} outcomes; they must pair up.")
    if len(conf) == 0:
        raise ValueError("Need at least one prediction.")
    if conf.min() < 0 or conf.max() > 1:
        raise ValueError("Confidences must lie in [0, 1].")
    edges = np.arange(n_bins + 1) / n_bins  # i / n, exactly as written: linspace puts 0.9 in [0.8, 0.9)
    mean_conf = binned_statistic(conf, conf, "mean", bins=edges).statistic
    accuracy = binned_statistic(conf, hit, "mean", bins=edges).statistic
    count = binned_statistic(conf, conf, "count", bins=edges).statistic.astype(int)
    table = pd.DataFrame(
        {
            "bin_lower": edges[:-1],
            "bin_upper": edges[1:],
            "mean_confidence": mean_conf,
            "accuracy": accuracy,
            "count": count,
        }
    )
    return table[table["count"] > 0].reset_index(drop=True)


def expected_calibration_error(confidence, correct, n_bins: int = 10) -> float:
    """``sum_b (n_b / n) |accuracy_b - confidence_b|`` over equal-width bins: one number for "is p a probability"."""
    table = reliability_table(confidence, correct, n_bins)
    gap = (table["accuracy"] - table["mean_confidence"]).abs()
    return float((gap * table["count"]).sum() / table["count"].sum())


def flip_pairs(n: int, fraction: float, seed) -> np.ndarray:
    """A boolean mask of exactly ``round(n * fraction)`` pairs to flip, chosen by ``seed`` (an int, or a
    sequence of ints as numpy's ``default_rng`` takes: ``noise.flip_mask`` seeds each group apart).

    An exact count (not a per-pair coin) keeps the injected noise rate identical across seeds.
    """
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must lie in [0, 1]; got {fraction}")
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng(seed).choice(n, size=int(round(n * fraction)), replace=False)] = True
    return mask


def detection_auroc(confidence, flipped) -> float:
    """How well low confidence finds flipped pairs: AUROC of ``1 - confidence`` against ``flipped``."""
    conf, flipped = _numpy(confidence), _numpy(flipped).astype(bool)
    if len(conf) != len(flipped):
        raise ValueError(f"Got {len(conf)} confidences but {len(flipped)} flip flags; they must pair up.")
    if flipped.all() or not flipped.any():
        raise ValueError("Detection AUROC needs both flipped and unflipped pairs.")
    return float(roc_auc_score(flipped, 1.0 - conf))
