"""Linear probes per layer and the paper's hybrid (gated, multi-layer) reward model."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from reprank.base import defaults


def fit_probe(train_x: np.ndarray, train_y: np.ndarray, *, C: float = 0.1, seed: int = 0):
    """One linear probe on one layer's states (n, d): scikit-learn's standardisation, then logistic regression.

    ``probe.decision_function(x)`` is its logit of "unsafe"; notebook 01 negates it to use the probe as a reward.
    """
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000, random_state=seed))
    return probe.fit(train_x, train_y)


def probe_layers(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    layers: list[int],
    *,
    C: float = 0.1,
    seed: int = 0,
    progress: bool = True,
    auroc_fn=roc_auc_score,
) -> pd.DataFrame:
    """Fit one standardized logistic-regression probe per layer; score it on held-out states.

    ``*_x`` have shape (n, n_layers, d); ``*_y`` are 1 for unsafe responses. Returns one row per layer
    with held-out accuracy and AUROC. ``auroc_fn(labels, scores)`` computes the AUROC (notebook 01 passes
    the student's own).
    """
    if len(set(train_y)) < 2 or len(set(test_y)) < 2:
        raise ValueError("Probes need both safe and unsafe examples in the training and the held-out split.")
    rows = []
    for j, layer in enumerate(tqdm(layers, desc="probes", unit="layer", disable=not progress)):
        probe = fit_probe(train_x[:, j], train_y, C=C, seed=seed)
        score = probe.predict_proba(test_x[:, j])[:, 1]
        rows.append(
            {
                "layer": layer,
                "accuracy": accuracy_score(test_y, score > 0.5),
                "auroc": float(auroc_fn(test_y, score)),
            }
        )
    return pd.DataFrame(rows)


MIN_STD = 1e-4  # the floor on a feature's standard deviation: a feature constant in training divides by this


def feature_statistics(states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature mean and standard deviation (n - 1 in the denominator, floored at ``MIN_STD``) over the
    rows of (n, n_layers, d) training states: two (n_layers, d) tensors."""
    return states.mean(0), states.std(0).clamp(min=MIN_STD)


def layer_scores(states, mean, std, weight, bias) -> torch.Tensor:
    """``t_l = w_l . (h_l - mu_l) / s_l + b_l``: (..., n_layers, d) states -> (..., n_layers) scores."""
    return ((states - mean) / std * weight).sum(-1) + bias


def hybrid_reward(states, mean, std, weight, bias, gate_weight) -> torch.Tensor:
    """The hybrid RM's forward, ``R = sum_l sigmoid(V t)_l t_l``: (..., n_layers, d) states -> (...) rewards.

    ``gate_weight`` is V, (n_layers, n_layers): the gate of layer l reads ``(V t)_l = sum_k V[l, k] t_k``.
    """
    t = layer_scores(states, mean, std, weight, bias)
    return (torch.sigmoid(t @ gate_weight.T) * t).sum(-1)


class HybridRewardModel(torch.nn.Module):
    """One linear score per layer, mixed by a sigmoid gate: ``R = sum_l sigmoid(V t)_l * t_l``.

    ``t_l = w_l . (h_l - mu_l) / s_l + b_l`` reads layer ``l``'s hidden state. Unlike the paper we standardize each
    feature with training-set statistics (stored as buffers): layers differ in scale by 100x on small
    models, and a shared learning rate then trains them all.
    """

    def __init__(self, n_layers: int, hidden_size: int, layers: list[int] | None = None, forward_fn=None):
        super().__init__()
        # forward_fn(states, mean, std, weight, bias, gate_weight) -> rewards; notebook 01 passes the student's own.
        self.forward_fn = forward_fn or hybrid_reward
        self.layers = list(layers) if layers is not None else list(range(1, n_layers + 1))
        self.register_buffer("feature_mean", torch.zeros(n_layers, hidden_size))
        self.register_buffer("feature_std", torch.ones(n_layers, hidden_size))
        self.probe_weight = torch.nn.Parameter(torch.zeros(n_layers, hidden_size))
        self.probe_bias = torch.nn.Parameter(torch.zeros(n_layers))
        self.gate = torch.nn.Linear(n_layers, n_layers, bias=False)
        torch.nn.init.zeros_(self.gate.weight)  # every gate starts at 0.5: all layers count equally

    @torch.no_grad()
    def fit_normalization(self, states: torch.Tensor, statistics_fn=feature_statistics) -> None:
        mean, std = statistics_fn(states)
        self.feature_mean.copy_(mean)
        self.feature_std.copy_(std)

    def layer_scores(self, states: torch.Tensor) -> torch.Tensor:
        """(..., n_layers, d) hidden states -> (..., n_layers) per-layer scores ``t``."""
        return layer_scores(states.to(self.probe_weight.dtype), self.feature_mean, self.feature_std,
                            self.probe_weight, self.probe_bias)

    def gates(self, states: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.gate(self.layer_scores(states)))

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.forward_fn(states.to(self.probe_weight.dtype), self.feature_mean, self.feature_std,
                               self.probe_weight, self.probe_bias, self.gate.weight)

    def save(self, path: str | Path, **metadata) -> Path:
        path = Path(path)
        if path.exists():
            raise FileExistsError(f"{path} exists; reward models are never overwritten: choose a new path.")
        path.parent.mkdir(parents=True, exist_ok=True)
        n_layers, hidden = self.feature_mean.shape
        torch.save(
            {"state_dict": self.state_dict(), "n_layers": n_layers, "hidden_size": hidden, "layers": self.layers,
             "metadata": metadata},
            path,
        )
        return path

    @classmethod
    def load(cls, path: str | Path) -> "HybridRewardModel":
        saved = torch.load(path, map_location="cpu", weights_only=True)
        model = cls(saved["n_layers"], saved["hidden_size"], saved["layers"])
        model.load_state_dict(saved["state_dict"])
        model.metadata = saved.get("metadata", {})
        return model.eval()


def margin_bt_loss(chosen_reward: torch.Tensor, rejected_reward: torch.Tensor,
                   margin: float = defaults.RM_MARGIN) -> torch.Tensor:
    """Bradley-Terry loss with a margin, as in the paper: ``-log sigmoid(R_c - R_r - margin)``."""
    return -F.logsigmoid(chosen_reward - rejected_reward - margin).mean()


def pairwise_accuracy_of_rewards(chosen_reward, rejected_reward) -> float:
    """The share of pairs whose chosen reward is strictly above the rejected one (a tie is a miss); nan for
    no pairs."""
    chosen, rejected = np.asarray(chosen_reward), np.asarray(rejected_reward)
    if chosen.size == 0:
        return float("nan")
    return float(np.mean(chosen > rejected))


@torch.no_grad()
def pairwise_accuracy(model: HybridRewardModel, chosen: np.ndarray, rejected: np.ndarray) -> float:
    """How often the reward model ranks chosen above rejected (hidden states (n, n_layers, d))."""
    model.eval()
    return pairwise_accuracy_of_rewards(model(torch.as_tensor(chosen)).numpy(), model(torch.as_tensor(rejected)).numpy())


@dataclass
class RewardTrainingResult:
    model: HybridRewardModel
    history: pd.DataFrame  # epoch, train_loss, train_accuracy, val_loss, val_accuracy
    best_epoch: int


def train_hybrid_reward_model(
    train_chosen: np.ndarray,
    train_rejected: np.ndarray,
    val_chosen: np.ndarray,
    val_rejected: np.ndarray,
    *,
    layers: list[int] | None = None,
    epochs: int = defaults.RM_EPOCHS,
    lr: float = defaults.RM_LR,
    weight_decay: float = defaults.RM_WEIGHT_DECAY,
    batch_size: int = defaults.RM_BATCH_SIZE,
    margin: float = defaults.RM_MARGIN,
    seed: int = 0,
    progress: bool = True,
    loss_fn=margin_bt_loss,
    forward_fn=None,
    statistics_fn=feature_statistics,
) -> RewardTrainingResult:
    """Train the hybrid RM on (chosen, rejected) hidden-state pairs of shape (n, n_layers, d).

    Adam with weight decay, the paper's margin-1 Bradley-Terry loss; the checkpoint kept is the one
    with the best validation pairwise accuracy (ties: lower validation loss), as in the authors' code.
    ``loss_fn(chosen_reward, rejected_reward, margin)`` is the loss, ``forward_fn`` the model's forward (see
    :func:`hybrid_reward`) and ``statistics_fn`` the standardisation's statistics (see :func:`feature_statistics`):
    notebook 01 passes the student's own.
    """
    if train_chosen.shape != train_rejected.shape or train_chosen.ndim != 3:
        raise ValueError(f"chosen/rejected must both be (n, n_layers, d); got {train_chosen.shape}, {train_rejected.shape}")
    if len(train_chosen) == 0 or len(val_chosen) == 0:
        raise ValueError("Need at least one training and one validation pair.")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    _, n_layers, hidden = train_chosen.shape
    model = HybridRewardModel(n_layers, hidden, layers, forward_fn=forward_fn)
    tc, tr = torch.as_tensor(train_chosen), torch.as_tensor(train_rejected)
    vc, vr = torch.as_tensor(val_chosen), torch.as_tensor(val_rejected)
    model.fit_normalization(torch.cat([tc, tr]), statistics_fn)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)

    history, best, best_key = [], None, None
    for epoch in tqdm(range(1, epochs + 1), desc="reward model", unit="epoch", disable=not progress):
        model.train()
        losses = []
        for idx in torch.randperm(len(tc), generator=generator).split(batch_size):
            loss = loss_fn(model(tc[idx]), model(tr[idx]), margin)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item() * len(idx))
        model.eval()
        with torch.no_grad():
            val_loss = loss_fn(model(vc), model(vr), margin).item()
        row = {
            "epoch": epoch,
            "train_loss": sum(losses) / len(tc),
            "train_accuracy": pairwise_accuracy(model, train_chosen, train_rejected),
            "val_loss": val_loss,
            "val_accuracy": pairwise_accuracy(model, val_chosen, val_rejected),
        }
        history.append(row)
        key = (row["val_accuracy"], -val_loss)
        if best_key is None or key > best_key:
            best_key, best = key, (epoch, copy.deepcopy(model.state_dict()))
    model.load_state_dict(best[1])
    return RewardTrainingResult(model.eval(), pd.DataFrame(history), best[0])
